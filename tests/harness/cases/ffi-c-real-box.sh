#!/bin/sh
# description: the README's C example runs as written, and a C program using only boxlite.h and -lboxlite (built through pkg-config, glibc, run from the outer root): a real box created, exec'd with output streamed through the exec descriptor, stdin, kill, stop, remove, and boxlite_run of echo hello
# timeout: 180
[ -x "$ASSETS/c/harness_box" ] || fail "the C ABI assets are missing (scripts/test-harness.sh builds them)"
outer=$(host_root_assets) || exit 1
mark c-program
in_host_root BOXLITE_RUNTIME_DIR="$outer/c/runtime" BOXLITE_HOME=/tmp/c-home \
    "$outer/c/harness_box" >/tmp/c.out 2>/tmp/c.err
rc=$?
mark c-program-done
cat /tmp/c.out /tmp/c.err
expect_eq 0 "$rc" "status of the C program"
grep -q "^[1-9][0-9]* passed, 0 failed$" /tmp/c.out || fail "the C program did not pass: $(tail -n 3 /tmp/c.out)"

# The README's example, as written.
in_host_root BOXLITE_RUNTIME_DIR="$outer/c/runtime" BOXLITE_HOME=/tmp/c-home "$outer/c/hello" >/tmp/hello.out 2>&1
expect_eq 0 "$?" "status of the README's C example"
cat /tmp/hello.out
grep -qx hello /tmp/hello.out || fail "the example did not print hello"
grep -qx "streamed command: exit code 0, signal 0" /tmp/hello.out || fail "the example's streamed command failed"
