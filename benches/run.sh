#!/usr/bin/env bash
# Runs the criterion benchmarks.
#   benches/run.sh            probe-guest boot on the local /dev/kvm (needs /dev/kvm)
#   benches/run.sh harness    Linux boot to /init inside the e2e harness (QEMU, minutes)
#   benches/run.sh all        both
# Extra arguments after the group go to criterion (e.g. `benches/run.sh probe -- --quick`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
group=${1:-probe}
shift || true

run_probe() {
    cargo build -q --release -p boxlite-shim
    BOXLITE_PROBE_DIR=$(bash scripts/build-probes.sh | tail -n 1)
    export BOXLITE_PROBE_DIR BOXLITE_SHIM=$root/target/release/boxlite-shim
    cargo bench -p boxlite-benches --bench probe_boot "$@"
}

run_harness() {
    BOXLITE_KERNEL_DIR=$(bash scripts/build-kernel.sh | tail -n 1)
    cargo build -q --release --target x86_64-unknown-linux-musl -p boxlite-shim
    cargo build -q -p boxlite-harness
    export BOXLITE_KERNEL_DIR BOXLITE_HARNESS=$root/target/debug/boxlite-harness \
        BOXLITE_MUSL_SHIM=$root/target/x86_64-unknown-linux-musl/release/boxlite-shim
    cargo bench -p boxlite-benches --bench harness_boot "$@"
}

case "$group" in
    probe) run_probe "$@" ;;
    harness) run_harness "$@" ;;
    all) run_probe "$@"; run_harness "$@" ;;
    *) echo "benches/run.sh: unknown group '$group' (probe, harness, all)" >&2; exit 2 ;;
esac
