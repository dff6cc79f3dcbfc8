#!/bin/sh
# description: the Node package in the test host (the outer root's node with koffi, loading libboxlite.so): its host-only and real-box tests under node --test (streamed exec, stdin, exit codes, abort, concurrent execs) and the README's Node example as written
# timeout: 240
[ -f "$ASSETS/node/package.json" ] || fail "the Node assets are missing (scripts/test-harness.sh builds them)"
outer=$(host_root_assets) || exit 1
lib="$outer/c/lib/libboxlite.so"
mark node-tests
in_host_root BOXLITE_E2E=1 BOXLITE_LIBRARY="$lib" BOXLITE_RUNTIME_DIR="$outer/c/runtime" \
    BOXLITE_HOME=/tmp/node-home sh -c 'cd "$1" && node --test test/' sh "$outer/node" >/tmp/node.out 2>&1
rc=$?
mark node-tests-done
cat /tmp/node.out
expect_eq 0 "$rc" "status of the Node tests"
grep -qx '# fail 0' /tmp/node.out || fail "a Node test failed"
grep -qx '# skipped 0' /tmp/node.out || fail "a Node test was skipped"

# The README's example, as written.
in_host_root BOXLITE_LIBRARY="$lib" BOXLITE_RUNTIME_DIR="$outer/c/runtime" BOXLITE_HOME=/tmp/node-home \
    node "$outer/node/examples/hello.js" >/tmp/hello.out 2>&1
rc=$?
cat /tmp/hello.out
expect_eq 0 "$rc" "status of the README's Node example"
grep -qx hello /tmp/hello.out || fail "the example did not print hello"
