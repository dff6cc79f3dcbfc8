#!/bin/sh
# description: two boxes on qcow2 overlays over one raw ext4 base each see only their own writes; the base is unchanged and qemu-img check is clean
# timeout: 240
QEMU_IMG="$ASSETS/qemu-img/qemu-img"
[ -x "$QEMU_IMG" ] || fail "qemu-img is missing from the harness assets: see scripts/test-harness.sh"
cp "$ASSETS/data.ext4" /tmp/base.ext4 || fail "cannot copy the blank ext4 image"
base_sum=$(sha256sum /tmp/base.ext4 | cut -d" " -f1)
for name in a b; do
    "$QEMU_IMG" create -q -f qcow2 -b /tmp/base.ext4 -F raw "/tmp/$name.qcow2" ||
        fail "qemu-img create of overlay $name failed"
done
mark overlays-created

# Each box writes its own file, then lists what it sees.
for name in a b; do
    start_box --qcow2-disk "/tmp/$name.qcow2"
    bx -- sh -c "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo 'box $name' >/mnt/$name.txt &&
        umount /mnt" || fail "box $name could not write to its overlay"
    stop_box
done
mark written
for name in a b; do
    start_box --qcow2-disk "/tmp/$name.qcow2"
    bx -- sh -c 'mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && ls /mnt | grep "\.txt$" &&
        cat /mnt/*.txt && umount /mnt' >/tmp/seen.$name || fail "box $name could not read its overlay"
    stop_box
    printf '%s.txt\nbox %s\n' "$name" "$name" >/tmp/want.$name
    cmp -s /tmp/want.$name /tmp/seen.$name || fail "box $name sees '$(cat /tmp/seen.$name)'"
done
mark read-back

expect_eq "$base_sum" "$(sha256sum /tmp/base.ext4 | cut -d" " -f1)" "sha256 of the shared base"
for name in a b; do
    "$QEMU_IMG" check -f qcow2 "/tmp/$name.qcow2" >/tmp/check.$name 2>&1
    rc=$?
    cat /tmp/check.$name
    expect_eq 0 "$rc" "qemu-img check status of overlay $name"
    grep -q "No errors were found" /tmp/check.$name || fail "qemu-img check of overlay $name: $(cat /tmp/check.$name)"
done
