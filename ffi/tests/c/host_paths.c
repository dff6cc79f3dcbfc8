/* Host-only tests of libboxlite's C ABI: every status reachable without a VM. Built and run
 * (under valgrind) by ffi/tests/run-c-tests.sh; prints "N passed, M failed" last. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boxlite.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (cond) {                                                                           \
            passed++;                                                                         \
        } else {                                                                              \
            failed++;                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

/* Checks that `call` returned `want` with an error whose message contains `needle`. */
static void expect(const char *what, boxlite_status got, boxlite_error *err, boxlite_status want,
                   const char *needle) {
    const char *msg = err ? err->message : "(no error)";
    CHECK(got == want, "%s: got %s, want %s (%s)", what, boxlite_status_name(got),
          boxlite_status_name(want), msg);
    if (want != BOXLITE_OK) {
        CHECK(err != NULL && err->status == got && err->message != NULL, "%s: no error filled", what);
        if (needle && err)
            CHECK(strstr(err->message, needle) != NULL, "%s: message '%s' lacks '%s'", what, msg,
                  needle);
    } else {
        CHECK(err == NULL, "%s: error set on success", what);
    }
    boxlite_error_free(err);
}

#define EXPECT(call, want, needle)                                                            \
    do {                                                                                      \
        boxlite_error *err_ = (boxlite_error *)0x1;                                           \
        boxlite_status st_ = call;                                                            \
        expect(#call, st_, err_, want, needle);                                               \
    } while (0)
/* `call` must use `&err_` as its error out parameter. */

static void test_version(void) {
    CHECK(boxlite_version() != NULL && strlen(boxlite_version()) > 0, "no version");
    CHECK(boxlite_abi_version() == BOXLITE_ABI_VERSION, "abi %u", boxlite_abi_version());
    CHECK(strcmp(boxlite_status_name(BOXLITE_NOT_FOUND), "BOXLITE_NOT_FOUND") == 0, "name");
    CHECK(strcmp(boxlite_status_name(999), "BOXLITE_UNKNOWN") == 0, "unknown status name");
    boxlite_error_free(NULL);
    boxlite_string_free(NULL);
    boxlite_box_list_free(NULL);
    boxlite_run_result_free(NULL);
}

static void test_bad_handles(boxlite_runtime rt) {
    boxlite_options opts = 0;
    EXPECT(boxlite_options_set_cpus(0, 2, &err_), BOXLITE_INVALID_HANDLE, "NULL");
    EXPECT(boxlite_box_free(0, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_box_start(rt, &err_), BOXLITE_INVALID_HANDLE, "not a box handle");
    EXPECT(boxlite_box_stop(0x123456789ULL, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_box_kill(0x123456789ULL, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_exec_wait(rt, 0, NULL, NULL, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_exec_kill(0, 9, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_exec_free(0, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_exec_close_stdin(~0ULL, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_runtime_close(0, &err_), BOXLITE_INVALID_HANDLE, NULL);
    int fd = -1;
    EXPECT(boxlite_exec_fd(0, &fd, &err_), BOXLITE_INVALID_HANDLE, NULL);

    EXPECT(boxlite_options_new(&opts, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_free(opts, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_set_cpus(opts, 2, &err_), BOXLITE_INVALID_HANDLE, "freed");
    EXPECT(boxlite_options_free(opts, &err_), BOXLITE_INVALID_HANDLE, "freed");
    /* A status without an error out parameter. */
    CHECK(boxlite_options_free(opts, NULL) == BOXLITE_INVALID_HANDLE, "no err");
}

static void test_bad_arguments(boxlite_runtime rt) {
    boxlite_options opts = 0;
    boxlite_box b = 0;
    EXPECT(boxlite_options_new(NULL, &err_), BOXLITE_INVALID_ARGUMENT, "NULL");
    EXPECT(boxlite_runtime_open(NULL, NULL, &err_), BOXLITE_INVALID_ARGUMENT, "NULL");
    EXPECT(boxlite_options_new(&opts, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_set_cpus(opts, 0, &err_), BOXLITE_INVALID_ARGUMENT, "vCPUs");
    EXPECT(boxlite_options_set_cpus(opts, 300, &err_), BOXLITE_INVALID_ARGUMENT, "vCPUs");
    EXPECT(boxlite_options_set_memory_mib(opts, 1, &err_), BOXLITE_INVALID_ARGUMENT, "memory");
    EXPECT(boxlite_options_set_name(opts, "\xff\xfe", &err_), BOXLITE_INVALID_ARGUMENT, "UTF-8");
    EXPECT(boxlite_options_add_env(opts, "A=B", "x", &err_), BOXLITE_INVALID_ARGUMENT, "A=B");
    EXPECT(boxlite_options_add_env(opts, "A", NULL, &err_), BOXLITE_INVALID_ARGUMENT, "value");
    EXPECT(boxlite_options_set_kernel(opts, NULL, NULL, &err_), BOXLITE_INVALID_ARGUMENT, "kernel");
    EXPECT(boxlite_options_add_disk(opts, "\xc3\x28", false, &err_), BOXLITE_INVALID_ARGUMENT,
           "UTF-8");
    EXPECT(boxlite_options_set_name(opts, "a b", &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_create(rt, opts, &b, &err_), BOXLITE_INVALID_ARGUMENT, "name");
    EXPECT(boxlite_create(rt, 0, NULL, &err_), BOXLITE_INVALID_ARGUMENT, "out");
    EXPECT(boxlite_get(rt, "\xc3\x28", &b, &err_), BOXLITE_INVALID_ARGUMENT, "UTF-8");
    EXPECT(boxlite_get(rt, NULL, &b, &err_), BOXLITE_INVALID_ARGUMENT, "NULL");
    EXPECT(boxlite_remove(rt, "\xff", false, &err_), BOXLITE_INVALID_ARGUMENT, "UTF-8");
    EXPECT(boxlite_list(rt, NULL, &err_), BOXLITE_INVALID_ARGUMENT, NULL);
    boxlite_run_result *res = NULL;
    EXPECT(boxlite_run(rt, 0, NULL, 0, &res, &err_), BOXLITE_INVALID_ARGUMENT, "argv");
    const char *bad_argv[] = {"echo", "\xff"};
    EXPECT(boxlite_run(rt, 0, bad_argv, 2, &res, &err_), BOXLITE_INVALID_ARGUMENT, "argv[1]");
    CHECK(res == NULL, "a result after a refused run");
    EXPECT(boxlite_options_free(opts, &err_), BOXLITE_OK, NULL);
}

static void test_boxes(boxlite_runtime rt) {
    boxlite_options opts = 0;
    boxlite_box web = 0, again = 0, by_prefix = 0;
    char *id = NULL, *json = NULL;
    EXPECT(boxlite_options_new(&opts, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_set_name(opts, "web", &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_set_cpus(opts, 2, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_add_env(opts, "SECRET", "s3cr3t", &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_options_set_working_dir(opts, "/tmp", &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_create(rt, opts, &web, &err_), BOXLITE_OK, NULL);
    CHECK(web != 0, "no handle");
    EXPECT(boxlite_create(rt, opts, &again, &err_), BOXLITE_ALREADY_EXISTS, "web");
    EXPECT(boxlite_options_free(opts, &err_), BOXLITE_OK, NULL);

    EXPECT(boxlite_box_id(web, &id, &err_), BOXLITE_OK, NULL);
    CHECK(id && strlen(id) >= 8, "id %s", id ? id : "(null)");
    char prefix[8] = {0};
    memcpy(prefix, id, 6);
    EXPECT(boxlite_get(rt, prefix, &by_prefix, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_get(rt, "web", &again, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_get(rt, "no-such-box", &again, &err_), BOXLITE_NOT_FOUND, "no-such-box");

    boxlite_box_state state = -1;
    EXPECT(boxlite_box_get_state(by_prefix, &state, &err_), BOXLITE_OK, NULL);
    CHECK(state == BOXLITE_BOX_CONFIGURED, "state %d", (int)state);

    boxlite_box_list *list = NULL;
    EXPECT(boxlite_list(rt, &list, &err_), BOXLITE_OK, NULL);
    CHECK(list && list->len == 1, "list len %zu", list ? list->len : 0);
    if (list && list->len == 1) {
        CHECK(strcmp(list->items[0].id, id) == 0, "listed id %s", list->items[0].id);
        CHECK(list->items[0].name && strcmp(list->items[0].name, "web") == 0, "listed name");
        CHECK(list->items[0].state == BOXLITE_BOX_CONFIGURED, "listed state");
    }
    boxlite_box_list_free(list);

    EXPECT(boxlite_box_info_json(web, &json, &err_), BOXLITE_OK, NULL);
    CHECK(json && strstr(json, "\"configured\"") && strstr(json, "\"web\""), "info %s", json);
    CHECK(json && !strstr(json, "s3cr3t"), "info shows the secret: %s", json);
    boxlite_string_free(json);
    json = NULL;
    EXPECT(boxlite_box_metrics_json(web, &json, &err_), BOXLITE_OK, NULL);
    CHECK(json && strstr(json, "rss_bytes"), "metrics %s", json);
    boxlite_string_free(json);

    /* Executions refuse malformed options before touching the box. */
    boxlite_exec_options eo;
    memset(&eo, 0, sizeof eo);
    boxlite_exec ex = 0;
    EXPECT(boxlite_box_exec(web, &eo, &ex, &err_), BOXLITE_INVALID_ARGUMENT, "struct_size");
    eo.struct_size = sizeof eo;
    EXPECT(boxlite_box_exec(web, &eo, &ex, &err_), BOXLITE_INVALID_ARGUMENT, "argv");
    const char *argv[] = {"true"};
    const char *env[] = {"NOEQUALS"};
    eo.argv = argv;
    eo.argc = 1;
    eo.env = env;
    eo.envc = 1;
    EXPECT(boxlite_box_exec(web, &eo, &ex, &err_), BOXLITE_INVALID_ARGUMENT, "KEY=VALUE");
    EXPECT(boxlite_box_exec(web, NULL, &ex, &err_), BOXLITE_INVALID_ARGUMENT, "NULL");

    EXPECT(boxlite_remove(rt, "web", false, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_remove(rt, "web", false, &err_), BOXLITE_NOT_FOUND, "web");
    /* The handle is still a valid handle; the box behind it is gone. */
    EXPECT(boxlite_box_get_state(web, &state, &err_), BOXLITE_NOT_FOUND, NULL);
    EXPECT(boxlite_box_free(web, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_box_free(web, &err_), BOXLITE_INVALID_HANDLE, "freed");
    EXPECT(boxlite_box_free(by_prefix, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_box_free(again, &err_), BOXLITE_OK, NULL);
    boxlite_string_free(id);
}

static void test_missing_assets(const char *home) {
    boxlite_runtime rt = 0;
    boxlite_box b = 0;
    EXPECT(boxlite_runtime_open_with_assets(home, "/nonexistent/boxlite-shim",
                                            "/nonexistent/vmlinux", "/nonexistent/initramfs.cpio",
                                            &rt, &err_),
           BOXLITE_OK, NULL);
    EXPECT(boxlite_create(rt, 0, &b, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_box_start(b, &err_), BOXLITE_ASSET_MISSING, "vmlinux");
    boxlite_box_state state = -1;
    EXPECT(boxlite_box_get_state(b, &state, &err_), BOXLITE_OK, NULL);
    CHECK(state == BOXLITE_BOX_CONFIGURED, "state after a refused start: %d", (int)state);
    char *id = NULL;
    EXPECT(boxlite_box_id(b, &id, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_remove(rt, id, false, &err_), BOXLITE_OK, NULL);
    boxlite_string_free(id);
    /* Closing the runtime invalidates its box handles. */
    EXPECT(boxlite_runtime_close(rt, &err_), BOXLITE_OK, NULL);
    EXPECT(boxlite_box_get_state(b, &state, &err_), BOXLITE_INVALID_HANDLE, NULL);
    EXPECT(boxlite_runtime_close(rt, &err_), BOXLITE_INVALID_HANDLE, NULL);
}

enum { THREADS = 4, PER_THREAD = 6 };
struct worker {
    boxlite_runtime rt;
    int index;
    int ok;
    int won_shared;
};

static void *work(void *arg) {
    struct worker *w = arg;
    char name[32];
    w->ok = 1;
    for (int j = 0; j < PER_THREAD; j++) {
        boxlite_options o = 0;
        boxlite_box b = 0;
        snprintf(name, sizeof name, "t%d-box%d", w->index, j);
        if (boxlite_options_new(&o, NULL) != BOXLITE_OK) w->ok = 0;
        if (boxlite_options_set_name(o, name, NULL) != BOXLITE_OK) w->ok = 0;
        if (boxlite_create(w->rt, o, &b, NULL) != BOXLITE_OK) w->ok = 0;
        boxlite_options_free(o, NULL);
        boxlite_box_list *list = NULL;
        if (boxlite_list(w->rt, &list, NULL) != BOXLITE_OK) w->ok = 0;
        boxlite_box_list_free(list);
        boxlite_box found = 0;
        if (boxlite_get(w->rt, name, &found, NULL) != BOXLITE_OK) w->ok = 0;
        boxlite_box_free(found, NULL);
        if (boxlite_remove(w->rt, name, false, NULL) != BOXLITE_OK) w->ok = 0;
        if (boxlite_box_free(b, NULL) != BOXLITE_OK) w->ok = 0;
    }
    boxlite_options o = 0;
    boxlite_box b = 0;
    boxlite_options_new(&o, NULL);
    boxlite_options_set_name(o, "shared", NULL);
    boxlite_status st = boxlite_create(w->rt, o, &b, NULL);
    boxlite_options_free(o, NULL);
    if (st == BOXLITE_OK) {
        w->won_shared = 1;
        boxlite_box_free(b, NULL);
    } else if (st != BOXLITE_ALREADY_EXISTS) {
        w->ok = 0;
    }
    return NULL;
}

static void test_threads(boxlite_runtime rt) {
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){.rt = rt, .index = i};
        pthread_create(&threads[i], NULL, work, &workers[i]);
    }
    int winners = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(workers[i].ok, "thread %d saw a failure", i);
        winners += workers[i].won_shared;
    }
    CHECK(winners == 1, "%d threads created the box named shared", winners);
    boxlite_box_list *list = NULL;
    EXPECT(boxlite_list(rt, &list, &err_), BOXLITE_OK, NULL);
    CHECK(list && list->len == 1, "after the threads: %zu boxes", list ? list->len : 0);
    boxlite_box_list_free(list);
    EXPECT(boxlite_remove(rt, "shared", false, &err_), BOXLITE_OK, NULL);
}

int main(void) {
    char home[] = "/tmp/boxlite-c-test-XXXXXX";
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        return 2;
    }
    boxlite_runtime rt = 0;
    test_version();
    EXPECT(boxlite_runtime_open(home, &rt, &err_), BOXLITE_OK, NULL);
    test_bad_handles(rt);
    test_bad_arguments(rt);
    test_boxes(rt);
    test_threads(rt);
    EXPECT(boxlite_runtime_close(rt, &err_), BOXLITE_OK, NULL);
    test_missing_assets(home);

    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", home);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", home);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
