/* The C ABI with a real box (harness tier): create, start, exec with output streamed through
 * the execution's descriptor, stdin through cat, exit codes, kill, stop, remove, and a one-shot
 * boxlite_run of `echo hello`. Built against the installed header and library through
 * pkg-config; run in the test host by tests/harness/cases/ffi-c-real-box.sh. Ends with
 * "N passed, M failed". */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "boxlite.h"

static int passed, failed;

static void check(int ok, const char *what, boxlite_error *err) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL %s%s%s\n", what, err ? ": " : "", err ? err->message : "");
    }
    boxlite_error_free(err);
}

/* Runs argv in the box, feeding `input` (if any) to its stdin; collects stdout and stderr
 * through the descriptor interface; returns the status of boxlite_exec_wait. */
static boxlite_status run_streamed(boxlite_box box, const char *const *argv, size_t argc,
                                   const char *input, char *out, size_t out_len, char *errbuf,
                                   size_t err_len, int *code, int *sig) {
    boxlite_error *err = NULL;
    boxlite_exec_options opts = {.struct_size = sizeof opts, .argv = argv, .argc = argc,
                                 .uid = -1, .gid = -1, .stdin = input != NULL};
    boxlite_exec ex = 0;
    boxlite_status st = boxlite_box_exec(box, &opts, &ex, &err);
    check(st == BOXLITE_OK, "exec", err);
    if (st != BOXLITE_OK) return st;
    if (input) {
        err = NULL;
        check(boxlite_exec_write_stdin(ex, (const uint8_t *)input, strlen(input), &err) ==
                  BOXLITE_OK, "write stdin", err);
        err = NULL;
        check(boxlite_exec_close_stdin(ex, &err) == BOXLITE_OK, "close stdin", err);
    }
    int fd = -1;
    err = NULL;
    check(boxlite_exec_fd(ex, &fd, &err) == BOXLITE_OK && fd >= 0, "exec fd", err);
    size_t got_out = 0, got_err = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 60000) != 1) {
            check(0, "the exec descriptor never became readable", NULL);
            break;
        }
        char buf[4096];
        boxlite_stream stream = BOXLITE_STREAM_NONE;
        size_t n = 0;
        err = NULL;
        st = boxlite_exec_read(ex, &stream, (uint8_t *)buf, sizeof buf, 0, &n, &err);
        if (st == BOXLITE_TIMEOUT) {
            boxlite_error_free(err);
            continue;
        }
        if (st != BOXLITE_OK) {
            check(0, "read", err);
            break;
        }
        boxlite_error_free(err);
        if (n == 0) break;
        char *dst = stream == BOXLITE_STREAM_STDERR ? errbuf : out;
        size_t *got = stream == BOXLITE_STREAM_STDERR ? &got_err : &got_out;
        size_t cap = stream == BOXLITE_STREAM_STDERR ? err_len : out_len;
        size_t take = n < cap - 1 - *got ? n : cap - 1 - *got;
        memcpy(dst + *got, buf, take);
        *got += take;
    }
    out[got_out] = 0;
    errbuf[got_err] = 0;
    err = NULL;
    st = boxlite_exec_wait(ex, 30000, code, sig, &err);
    check(st == BOXLITE_OK, "wait", err);
    boxlite_exec_free(ex, NULL);
    return st;
}

int main(void) {
    boxlite_error *err = NULL;
    boxlite_runtime rt = 0;
    check(boxlite_runtime_open(NULL, &rt, &err) == BOXLITE_OK, "open the runtime", err);

    boxlite_options opts = 0;
    err = NULL;
    check(boxlite_options_new(&opts, &err) == BOXLITE_OK, "options", err);
    boxlite_options_set_name(opts, "c-box", NULL);
    boxlite_options_set_memory_mib(opts, 256, NULL);
    boxlite_options_add_env(opts, "FROM", "c", NULL);
    boxlite_box box = 0;
    err = NULL;
    check(boxlite_create(rt, opts, &box, &err) == BOXLITE_OK, "create", err);
    boxlite_options_free(opts, NULL);
    err = NULL;
    check(boxlite_box_start(box, &err) == BOXLITE_OK, "start", err);
    boxlite_box_state state = 0;
    boxlite_box_get_state(box, &state, NULL);
    check(state == BOXLITE_BOX_RUNNING, "running after start", NULL);

    char out[4096], errb[4096];
    int code = -1, sig = -1;
    const char *script[] = {"sh", "-c",
                            "for i in 1 2 3; do echo line $i; done; echo from $FROM >&2; exit 3"};
    run_streamed(box, script, 3, NULL, out, sizeof out, errb, sizeof errb, &code, &sig);
    check(strcmp(out, "line 1\nline 2\nline 3\n") == 0, "streamed stdout", NULL);
    check(strcmp(errb, "from c\n") == 0, "separate stderr with the box env", NULL);
    check(code == 3 && sig == 0, "exit code 3", NULL);

    const char *cat[] = {"cat"};
    run_streamed(box, cat, 1, "through stdin\n", out, sizeof out, errb, sizeof errb, &code, &sig);
    check(strcmp(out, "through stdin\n") == 0 && code == 0, "stdin through cat", NULL);

    const char *sleeper[] = {"sleep", "600"};
    boxlite_exec_options sopts = {.struct_size = sizeof sopts, .argv = sleeper, .argc = 2,
                                  .uid = -1, .gid = -1};
    boxlite_exec ex = 0;
    err = NULL;
    check(boxlite_box_exec(box, &sopts, &ex, &err) == BOXLITE_OK, "exec sleep", err);
    err = NULL;
    check(boxlite_exec_kill(ex, 9, &err) == BOXLITE_OK, "kill", err);
    err = NULL;
    check(boxlite_exec_wait(ex, 30000, &code, &sig, &err) == BOXLITE_OK && sig == 9, "killed by 9",
          err);
    boxlite_exec_free(ex, NULL);

    err = NULL;
    check(boxlite_box_stop(box, &err) == BOXLITE_OK, "stop", err);
    boxlite_box_get_state(box, &state, NULL);
    check(state == BOXLITE_BOX_STOPPED, "stopped after stop", NULL);
    err = NULL;
    check(boxlite_remove(rt, "c-box", false, &err) == BOXLITE_OK, "remove", err);
    boxlite_box_free(box, NULL);

    const char *hello[] = {"echo", "hello"};
    boxlite_run_result *res = NULL;
    err = NULL;
    check(boxlite_run(rt, 0, hello, 2, &res, &err) == BOXLITE_OK, "boxlite_run", err);
    if (res) {
        check(res->stdout_len == 6 && memcmp(res->stdout_data, "hello\n", 6) == 0 &&
                  res->exit_code == 0, "boxlite_run echo hello", NULL);
        boxlite_run_result_free(res);
    }
    boxlite_box_list *list = NULL;
    boxlite_list(rt, &list, NULL);
    check(list && list->len == 0, "no box left", NULL);
    boxlite_box_list_free(list);
    boxlite_runtime_close(rt, NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
