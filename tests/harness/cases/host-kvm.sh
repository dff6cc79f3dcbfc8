#!/bin/sh
# description: the test host has /dev/kvm and KVM reports nested paging (checks the harness itself; no shim)
# timeout: 60
[ -c /dev/kvm ] || fail "/dev/kvm is missing in the test host"
dmesg >"$WORK/dmesg.txt"
grep -i -e 'kvm' -e 'svm' "$WORK/dmesg.txt"
grep -qi 'nested paging enabled' "$WORK/dmesg.txt" ||
    fail "dmesg has no 'Nested Paging enabled' (see $WORK/dmesg.txt)"
