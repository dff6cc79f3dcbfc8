/* Runs `echo hello` in a box, then streams a command's output through the exec descriptor.
 *
 *   cc hello.c -I include -L target/release-ffi -lboxlite -o hello
 *   LD_LIBRARY_PATH=target/release-ffi ./hello
 */
#include <poll.h>
#include <stdio.h>

#include "boxlite.h"

static int fail(const char *what, boxlite_error *err) {
    fprintf(stderr, "%s: %s\n", what, err ? err->message : "?");
    boxlite_error_free(err);
    return 1;
}

int main(void) {
    boxlite_error *err = NULL;
    boxlite_runtime rt = 0;
    if (boxlite_runtime_open(NULL, &rt, &err) != BOXLITE_OK) return fail("open", err);

    /* One shot: a box is created, runs the command, and is removed. */
    const char *argv[] = {"echo", "hello"};
    boxlite_run_result *res = NULL;
    if (boxlite_run(rt, 0, argv, 2, &res, &err) != BOXLITE_OK) return fail("run", err);
    fwrite(res->stdout_data, 1, res->stdout_len, stdout);
    printf("exit code %d\n", res->exit_code);
    boxlite_run_result_free(res);

    /* Streamed: poll the execution's descriptor, read what is pending, then wait. */
    boxlite_box box = 0;
    if (boxlite_create(rt, 0, &box, &err) != BOXLITE_OK) return fail("create", err);
    const char *script[] = {"sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.1; done"};
    boxlite_exec_options opts = {.struct_size = sizeof opts, .argv = script, .argc = 3,
                                 .uid = -1, .gid = -1};
    boxlite_exec ex = 0;
    if (boxlite_box_exec(box, &opts, &ex, &err) != BOXLITE_OK) return fail("exec", err);
    int fd = -1;
    boxlite_exec_fd(ex, &fd, NULL);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, -1);
        char buf[4096];
        boxlite_stream stream;
        size_t n = 0;
        if (boxlite_exec_read(ex, &stream, (uint8_t *)buf, sizeof buf, 0, &n, &err) != BOXLITE_OK)
            return fail("read", err);
        if (n == 0) break; /* the output has ended */
        fwrite(buf, 1, n, stream == BOXLITE_STREAM_STDERR ? stderr : stdout);
    }
    int code = -1, sig = 0;
    if (boxlite_exec_wait(ex, 5000, &code, &sig, &err) != BOXLITE_OK) return fail("wait", err);
    printf("streamed command: exit code %d, signal %d\n", code, sig);
    boxlite_exec_free(ex, NULL);
    boxlite_box_stop(box, NULL);
    char *id = NULL;
    boxlite_box_id(box, &id, NULL);
    boxlite_remove(rt, id, true, NULL);
    boxlite_string_free(id);
    boxlite_box_free(box, NULL);
    boxlite_runtime_close(rt, NULL);
    return code;
}
