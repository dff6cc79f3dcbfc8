#!/bin/sh
# description: one box: exit codes 0/1/127, death by signal, stderr kept apart, stdin through cat, timeout kill
# timeout: 150
start_box
bx -- true;                   expect_eq 0 "$?" "status of true"
bx -- false;                  expect_eq 1 "$?" "status of false"
bx -- no-such-command 2>/dev/null; expect_eq 127 "$?" "status of a missing command"
bx -- sh -c 'kill -9 $$';     expect_eq 137 "$?" "status of a command killed by SIGKILL (128 + 9)"
bx -- sh -c 'echo to-out; echo to-err >&2' >/tmp/out 2>/tmp/err
expect_eq 0 "$?" "status of the two-stream command"
expect_file_eq to-out /tmp/out "stdout"
expect_file_eq to-err /tmp/err "stderr"
printf 'line one\nline two\n' >/tmp/in
bx -i -- cat </tmp/in >/tmp/out
expect_eq 0 "$?" "status of cat"
cmp -s /tmp/in /tmp/out || fail "stdin piped through cat came back as '$(cat /tmp/out)'"
bx --timeout 1 -- sleep 30 2>/tmp/err
expect_eq 137 "$?" "status of a command past its timeout"
grep -q "timed out" /tmp/err || fail "no timeout notice: $(cat /tmp/err)"
stop_box
