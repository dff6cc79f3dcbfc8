#!/usr/bin/env bash
# Runs the criterion benchmarks.
#   benches/run.sh            probe-guest boot on the local /dev/kvm (needs /dev/kvm)
#   benches/run.sh harness    Linux boot to /init inside the e2e harness (QEMU, minutes)
#   benches/run.sh harness-io box I/O inside the harness: exec round-trip p50/p99, vsock
#                             throughput, virtio-blk sequential/random reads vs the host file,
#                             and time to hello through the lifecycle runtime with its stages
#   benches/run.sh runtime    the runtime's bookkeeping: open/list with 1,000 boxes, create
#   benches/run.sh all        all three
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

run_harness_io() {
    local report=$root/target/bench-harness-io
    bash scripts/test-harness.sh --cases-dir benches/harness --jobs 1 --report-dir "$report" >&2
    sed -n 's/.*BENCH //p' "$report/box-io/console.log" "$report/time-to-hello/console.log"
}

run_runtime() {
    cargo bench -p boxlite-benches --bench runtime_state "$@"
}

case "$group" in
    probe) run_probe "$@" ;;
    harness) run_harness "$@" ;;
    harness-io) run_harness_io ;;
    runtime) run_runtime "$@" ;;
    all) run_probe "$@"; run_harness "$@"; run_harness_io; run_runtime "$@" ;;
    *) echo "benches/run.sh: unknown group '$group' (probe, harness, harness-io, runtime, all)" >&2; exit 2 ;;
esac
