#!/bin/sh
# /init of the harness's test host (the Linux that QEMU boots, with a nested /dev/kvm).
# Mounts the per-test 9p share at /work, runs /work/test.sh with the helper library sourced,
# prints HARNESS-TEST-EXIT <status> and powers off (reboot=t makes QEMU exit at once).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo HARNESS-OUTER-INIT
mount -t tmpfs tmpfs /tmp

finish() {
    echo "HARNESS-TEST-EXIT $1"
    sync
    reboot -f
    # reboot -f returns only on failure; PID 1 exiting panics the kernel, and panic=-1 resets.
    echo "HARNESS-ERROR reboot -f failed"
    exit 1
}

mkdir -p /work
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=131072 work /work; then
    echo "HARNESS-ERROR cannot mount the 9p share 'work' (host kernel needs NET_9P_VIRTIO and 9P_FS)"
    finish 125
fi
if [ ! -c /dev/kvm ]; then
    echo "HARNESS-NO-KVM the host kernel needs KVM_AMD and QEMU's CPU must offer svm"
    finish 125
fi

# The optional read-only assets share (boxlite-harness --assets-dir).
mkdir -p /assets
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=131072,ro assets /assets 2>/dev/null; then
    export ASSETS=/assets
fi

# The outer machine's root, read-only, with this test host's /dev (kvm), /proc, /sys and /tmp
# over it: `in_host_root CMD` runs an outer (glibc) program here unchanged.
mkdir -p /hostroot
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=131072,ro hostroot /hostroot 2>/dev/null; then
    for d in dev proc sys tmp; do mount -o bind "/$d" "/hostroot/$d"; done
    export HOST_ROOT=/hostroot
fi

export SHIM=/opt/boxlite/boxlite-shim
export GUEST_KERNEL=/opt/boxlite/vmlinux
export GUEST_BZIMAGE=/opt/boxlite/bzImage
export GUEST_INITRD=/opt/boxlite/guest-initrd.cpio
export HARNESS_LIB=/opt/boxlite/harness-lib.sh
export WORK=/work
cd /work || finish 125
/bin/sh -c '. "$HARNESS_LIB" && . /work/test.sh' </dev/null
finish $?
