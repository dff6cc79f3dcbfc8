#!/bin/sh
# description: the Go binding in the test host (go test binary linked against libboxlite through pkg-config, run from the outer root): its host-only and real-box tests (streamed exec, stdin through cat, exit codes, context cancellation of a command and of a start, 8 concurrent execs), and the README's Go example as written
# timeout: 240
[ -x "$ASSETS/go/boxlite.test" ] || fail "the Go assets are missing (scripts/test-harness.sh builds them)"
outer=$(host_root_assets) || exit 1
mark go-tests
in_host_root BOXLITE_E2E=1 BOXLITE_RUNTIME_DIR="$outer/c/runtime" BOXLITE_HOME=/tmp/go-home \
    "$outer/go/boxlite.test" -test.v -test.count=1 -test.timeout=200s >/tmp/go.out 2>&1
rc=$?
mark go-tests-done
cat /tmp/go.out
expect_eq 0 "$rc" "status of the Go tests"
if grep -q -e '^--- FAIL' -e '^--- SKIP' /tmp/go.out; then fail "a Go test failed or was skipped"; fi
n=$(grep -c '^--- PASS: TestE2E' /tmp/go.out)
[ "$n" -ge 10 ] || fail "only $n real-box Go tests passed"

# The README's example, as written.
in_host_root BOXLITE_RUNTIME_DIR="$outer/c/runtime" BOXLITE_HOME=/tmp/go-home "$outer/go/hello" \
    >/tmp/hello.out 2>&1
rc=$?
cat /tmp/hello.out
expect_eq 0 "$rc" "status of the README's Go example"
grep -qx hello /tmp/hello.out || fail "the example did not print hello"
grep -qx Linux /tmp/hello.out || fail "the example's uname -s did not print Linux"
grep -qx "command: exit status 0" /tmp/hello.out || fail "the example's command did not succeed"
