#!/bin/sh
# description: one box: 10 MiB of output byte-exact (sha256), then 8 concurrent execs with distinct output
# timeout: 180
start_box
# 10 MiB of random bytes made in the guest and hashed there; the transfer alone is timed.
bx -- sh -c 'head -c 10485760 /dev/urandom >/tmp/bulk && sha256sum /tmp/bulk' >/tmp/guest-sha ||
    fail "cannot make the test data in the guest"
mark bulk-start
bx -- cat /tmp/bulk >/tmp/bulk
expect_eq 0 "$?" "status of cat of the 10 MiB file"
mark bulk-done
expect_eq 10485760 "$(wc -c </tmp/bulk)" "bytes received"
expect_eq "$(cut -d' ' -f1 </tmp/guest-sha)" "$(sha256sum </tmp/bulk | cut -d' ' -f1)" "sha256 of the 10 MiB stream"
mark concurrent-start
pids=
for n in 1 2 3 4 5 6 7 8; do
    bx -- sh -c "sleep 1; echo exec-$n" >/tmp/c.$n 2>&1 &
    pids="$pids $!"
done
wait_all=0
for pid in $pids; do wait "$pid" || wait_all=1; done
mark concurrent-done
expect_eq 0 "$wait_all" "every concurrent exec succeeded"
for n in 1 2 3 4 5 6 7 8; do expect_file_eq "exec-$n" /tmp/c.$n "output of exec $n"; done
stop_box
