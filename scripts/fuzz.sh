#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each on a
# copy of the committed corpus (fuzz/corpus/<target>, so runs never grow the repository's),
# one target at a time. Installs cargo-fuzz when missing; the stable toolchain works with
# RUSTC_BOOTSTRAP=1. Prints per target
#
#   fuzz <target>: <execs> execs, <cov> cov, ok|FAILED
#
# and last "fuzz: N targets, M failed". Fails if a target crashed, leaked, timed out or did not
# build; a crash leaves its input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 30 s, every target)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"
seconds=${1:-30}
shift || true
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2 || { echo "fuzz: cannot install cargo-fuzz"; exit 1; }
fi
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
if ! cargo fuzz build -O >&2; then
    echo "fuzz: the targets do not build"
    echo "fuzz: ${#targets[@]} targets, ${#targets[@]} failed"
    exit 1
fi
failed=0
logs=$root/target/fuzz-logs
mkdir -p "$logs"
for target in "${targets[@]}"; do
    run=corpus-run/$target
    rm -rf "$run" && mkdir -p "$run" && cp -r "corpus/$target/." "$run/" 2>/dev/null
    log=$logs/$target.log
    cargo fuzz run -O "$target" "$run" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    if ((rc == 0)); then
        verdict=ok
    else
        verdict=FAILED
        failed=$((failed + 1))
        tail -n 30 "$log"
    fi
    echo "fuzz $target: ${execs:-0} execs, ${cov:-0} cov, $verdict"
done
echo "fuzz: ${#targets[@]} targets, $failed failed"
((failed == 0))
