#!/bin/sh
# description: a read-only virtio-blk disk: the guest sees it read-only and raw writes fail; the image is unchanged
# timeout: 120
use_boxes
cp "$ASSETS/data.ext4" /tmp/ro.ext4
before=$(sha256sum </tmp/ro.ext4)
"$BOXLITE" run --disk /tmp/ro.ext4:ro -- sh -c '
    echo "ro=$(cat /sys/block/vda/ro)"
    if dd if=/dev/zero of=/dev/vda bs=4096 count=1 oflag=direct 2>/dev/null; then echo write-ok; else echo write-refused; fi' >/tmp/out
cat /tmp/out
grep -qx "ro=1" /tmp/out || fail "the guest does not see the disk as read-only"
grep -qx "write-refused" /tmp/out || fail "a raw write to the read-only disk succeeded"
expect_eq "$before" "$(sha256sum </tmp/ro.ext4)" "image checksum"
