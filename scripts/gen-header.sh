#!/usr/bin/env bash
# Generates the C header of libboxlite from ffi/src with cbindgen (installed with
# `cargo install cbindgen --locked` when missing). Writes include/boxlite.h, or the file given.
#
# Usage: scripts/gen-header.sh [OUTPUT]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${1:-include/boxlite.h}
if ! command -v cbindgen >/dev/null; then
    echo "gen-header: installing cbindgen" >&2
    cargo install cbindgen --locked --version 0.29.4 >&2
fi
cbindgen --quiet --config ffi/cbindgen.toml --crate boxlite-ffi --output "$out" ffi
