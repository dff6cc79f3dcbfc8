#!/bin/sh
# description: two boxes on one ext4 base image: each writes through its own qcow2 overlay and sees only its own files, the base is unchanged, qemu-img check passes on each overlay, rm frees it
# timeout: 180
use_boxes
QEMU_IMG="$ASSETS/qemu-img/qemu-img"
[ -x "$QEMU_IMG" ] || fail "qemu-img is missing from the harness assets"
cp "$ASSETS/rootfs.ext4" /tmp/base.ext4
before=$(sha256sum /tmp/base.ext4 | cut -d' ' -f1)
mark boxes
for b in left right; do
    "$BOXLITE" run -d --name "$b" --root-disk /tmp/base.ext4 >/dev/null || fail "run -d $b failed"
done
mark boxes-running
for b in left right; do
    "$BOXLITE" exec "$b" -- sh -c "grep -q '^/dev/vda / ext4' /proc/mounts && echo $b >/owner && sync" ||
        fail "cannot write in $b"
done
expect_eq left "$("$BOXLITE" exec left -- cat /owner)" "left sees its own file"
expect_eq right "$("$BOXLITE" exec right -- cat /owner)" "right sees its own file"
for b in left right; do "$BOXLITE" stop "$b" || fail "stop $b"; done
mark boxes-stopped
expect_eq "$before" "$(sha256sum /tmp/base.ext4 | cut -d' ' -f1)" "sha256 of the base image"
for b in left right; do
    overlay="$BOXLITE_HOME/boxes/$(box_field "$b" id)/disks/root.qcow2"
    "$QEMU_IMG" check "$overlay" >/tmp/check 2>&1 || fail "qemu-img check $b: $(cat /tmp/check)"
    "$QEMU_IMG" info "$overlay" | grep -q "backing file: /tmp/base.ext4" || fail "$b's overlay does not name the base"
done
# Started again, each box still has its own file.
expect_eq left "$("$BOXLITE" exec left -- cat /owner)" "left after a restart"
"$BOXLITE" rm -f left right || fail "rm failed"
[ -z "$(ls "$BOXLITE_HOME/boxes")" ] || fail "box folders left behind: $(ls "$BOXLITE_HOME/boxes")"
