#!/usr/bin/env bash
# The main job: run a command in a box and show its output (default: echo hello).
#
#   scripts/run-box.sh [--harness] [-- COMMAND [ARGS...]]
#
# Where this host has hardware virtualization (svm/vmx, a real /dev/kvm) the box runs here:
# `boxlite run` starts boxlite-shim with the default guest kernel and the agent rootfs, waits
# for the agent, runs the command over vsock and shuts the box down. Elsewhere, such as on the
# PVM-backed machines this project is developed on, it says why and runs the same static
# `boxlite run` inside the e2e harness: QEMU (TCG) emulating an AMD-V test host whose nested
# /dev/kvm runs the box. Exits with the command's status.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=$root/target/run-box
say() { printf 'boxlite: %s\n' "$*" >&2; }

force_harness=
while (($#)); do
    case "$1" in
        --harness) force_harness=1; shift ;;
        --) shift; break ;;
        *) echo "usage: scripts/run-box.sh [--harness] [-- COMMAND [ARGS...]]" >&2; exit 2 ;;
    esac
done
(($#)) || set -- echo hello

# Prints why this host cannot run Linux guests natively; prints nothing when it can.
native_blocker() {
    if [ -n "$force_harness" ]; then
        echo "--harness was given"
    elif [ -d /sys/module/kvm_pvm ]; then
        echo "/dev/kvm here is the PVM software hypervisor, which emulates guest kernel mode at ~1 M instructions/s (a Linux guest needs ~90 s to reach /init and faults on its first syscall)"
    elif ! grep -qwE 'svm|vmx' /proc/cpuinfo; then
        echo "this CPU reports no hardware virtualization (no svm/vmx flag in /proc/cpuinfo)"
    elif ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
        echo "/dev/kvm is missing or not read/writable by $(id -un) (is kvm_intel/kvm_amd loaded, is the user in the 'kvm' group?)"
    fi
}

blocker=$(native_blocker)
if [ -z "$blocker" ]; then
    say "hardware KVM available: running the box natively"
    kdir=$(bash scripts/build-kernel.sh | tail -n 1)
    rootfs=$(bash scripts/build-rootfs.sh | tail -n 1)
    cargo build -q --release -p boxlite-shim -p boxlite-cli >&2
    exec target/release/boxlite --kernel "$kdir/vmlinux" --initrd "$rootfs/initramfs.cpio" \
        --shim target/release/boxlite-shim run --rm -- "$@"
fi

say "cannot run the box natively: $blocker."
say "running it inside the e2e harness instead: QEMU (TCG) emulates an AMD-V test host whose nested /dev/kvm runs boxlite-shim"
# A one-off harness case that runs the command with the static boxlite CLI in the test host.
quoted=
for arg in "$@"; do quoted+=" '${arg//\'/\'\\\'\'}'"; done
mkdir -p "$out/cases"
cat >"$out/cases/run-box.sh" <<CASE
#!/bin/sh
# description: the README's main job: boxlite run${quoted}
# timeout: 300
use_boxes
mark box-run
"\$BOXLITE" run --name main-job --${quoted} >"\$WORK/stdout" 2>"\$WORK/stderr"
echo \$? >"\$WORK/status"
mark box-done
cp "\$("\$BOXLITE" inspect main-job | sed -n 's/^    "dir": "\\(.*\\)",\$/\\1/p')/console.log" "\$WORK/box-console.log"
[ "\$(cat "\$WORK/status")" != 125 ] || fail "boxlite itself failed: \$(cat "\$WORK/stderr")"
CASE
bash scripts/test-harness.sh --cases-dir "$out/cases" --jobs 1 --report-dir "$out/report" >&2 || {
    say "the harness run failed; see $out/report"
    exit 125
}
work=$out/report/run-box/work
cat "$work/stdout"
cat "$work/stderr" >&2
say "(box console: $work/box-console.log)"
exit "$(cat "$work/status")"
