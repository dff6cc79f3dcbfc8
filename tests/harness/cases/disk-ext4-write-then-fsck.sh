#!/bin/sh
# description: a box writes files to an ext4 virtio-blk disk; afterwards e2fsck -fn is clean and a second box reads them back
# timeout: 180
use_boxes
cp "$ASSETS/data.ext4" /tmp/data.ext4 || fail "cannot copy the blank ext4 image"
"$BOXLITE" run --disk /tmp/data.ext4 -- sh -c '
    mkdir -p /mnt && mount -t ext4 /dev/vda /mnt &&
    echo "written by the guest" >/mnt/hello.txt &&
    head -c 1048576 /dev/urandom >/mnt/random.bin && sha256sum /mnt/random.bin | cut -d" " -f1 >/mnt/random.sha &&
    umount /mnt' || fail "the writing box failed"
mark written
"$ASSETS/e2fsck" -fn /tmp/data.ext4 >/tmp/fsck 2>&1
rc=$?
cat /tmp/fsck
expect_eq 0 "$rc" "e2fsck -fn status on the image the guest wrote"
"$BOXLITE" run --disk /tmp/data.ext4:ro -- sh -c '
    mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && cat /mnt/hello.txt &&
    [ "$(sha256sum /mnt/random.bin | cut -d" " -f1)" = "$(cat /mnt/random.sha)" ] && echo hash-ok' >/tmp/out ||
    fail "the reading box failed: $(cat /tmp/out)"
printf 'written by the guest\nhash-ok\n' >/tmp/want
cmp -s /tmp/want /tmp/out || fail "read back '$(cat /tmp/out)'"
