#!/usr/bin/env bash
# Build the probe guests (guest/probe: probe-pvh, probe-linux64) for
# x86_64-unknown-none. The last line on stdout is the absolute directory
# holding both binaries; cargo's progress goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
probe_dir="$root/guest/probe"
target=x86_64-unknown-none

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build-probes: adding rust target $target" >&2
    rustup target add "$target" >&2
fi

# Run from the probe workspace so guest/probe/.cargo/config.toml applies
# (relocation-model=static). RUSTFLAGS from the environment would replace
# that config (and host-oriented flags make no sense for this target).
cd "$probe_dir"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    cargo build --release --target "$target" --bins >&2

out="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
out="${out:-$probe_dir/target}/$target/release"
for bin in probe-pvh probe-linux64; do
    [[ -f "$out/$bin" ]] || { echo "build-probes: missing $out/$bin" >&2; exit 1; }
done
echo "$out"
