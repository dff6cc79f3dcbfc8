#!/usr/bin/env bash
# The main job: boot the default guest kernel in a box (boxlite-shim) and show its console.
#
# Where this host has hardware virtualization (svm/vmx, a real /dev/kvm) the shim runs here.
# Elsewhere, such as on the PVM-backed machines this project is developed on, it says why and
# boots the box inside the e2e harness: QEMU (TCG) emulating an AMD-V test host, whose nested
# /dev/kvm runs the same static shim and kernel.
#
# Usage: scripts/run-box.sh [--harness]    (--harness: use the harness even if native works)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=$root/target/run-box
mkdir -p "$out"
say() { printf 'boxlite: %s\n' "$*" >&2; }

# Prints why this host cannot run Linux guests natively; prints nothing when it can.
native_blocker() {
    if [ -d /sys/module/kvm_pvm ]; then
        echo "/dev/kvm here is the PVM software hypervisor, which emulates guest kernel mode at ~1 M instructions/s (a Linux guest needs ~90 s to reach /init and faults on its first syscall)"
    elif ! grep -qwE 'svm|vmx' /proc/cpuinfo; then
        echo "this CPU reports no hardware virtualization (no svm/vmx flag in /proc/cpuinfo)"
    elif ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
        echo "/dev/kvm is missing or not read/writable by $(id -un) (is kvm_intel/kvm_amd loaded, is the user in the 'kvm' group?)"
    fi
}

blocker=$(native_blocker)
if [ "${1:-}" = --harness ] && [ -z "$blocker" ]; then blocker="--harness was given"; fi

if [ -z "$blocker" ]; then
    say "hardware KVM available: booting natively"
    kdir=$(bash scripts/build-kernel.sh | tail -n 1)
    cargo build -q --release -p boxlite-shim -p boxlite-harness >&2
    target/release/boxlite-harness guest-initrd --out "$out/guest-initrd.cpio"
    exec target/release/boxlite-shim --kernel "$kdir/vmlinux" --initrd "$out/guest-initrd.cpio" \
        --cmdline "console=ttyS0 reboot=k panic=-1 printk.time=1 harness.action=nproc" \
        --mem-mib 256 --vcpus 2
fi

say "cannot boot natively: $blocker."
say "booting the box through the e2e harness instead: QEMU (TCG) emulates an AMD-V test host whose nested /dev/kvm runs boxlite-shim"
rc=0
bash scripts/test-harness.sh --cases-dir tests/harness/demo --jobs 1 --report-dir "$out" >&2 || rc=$?
console=$out/boot-default-guest/work/guest-console.log
if [ -f "$console" ]; then
    say "guest console (boxlite-shim --console - inside the test host):"
    cat "$console"
fi
exit "$rc"
