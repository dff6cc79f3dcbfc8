#!/bin/sh
# description: boxlite run --root-disk: the agent switches root to the ext4 image on /dev/vda and runs commands there
# timeout: 120
use_boxes
cp "$ASSETS/rootfs.ext4" /tmp/root.ext4
"$BOXLITE" run --root-disk /tmp/root.ext4 -- sh -c 'grep " / " /proc/mounts; echo marker >/root-disk-marker && cat /root-disk-marker' >/tmp/out
expect_eq 0 "$?" "boxlite run status"
cat /tmp/out
grep -q "^/dev/vda / ext4" /tmp/out || fail "/ is not the ext4 root disk: $(cat /tmp/out)"
grep -qx marker /tmp/out || fail "cannot write to the root disk"
