#!/usr/bin/env bash
# Builds libboxlite (ffi/) with unwinding, so that a panic inside it becomes BOXLITE_INTERNAL
# instead of aborting the host program: the workspace's release profile has panic = "abort",
# the release-ffi profile (Cargo.toml) inherits it with panic = "unwind".
#
#   target/release-ffi/libboxlite.so      soname libboxlite.so.0
#   target/release-ffi/libboxlite.a
#
# Usage: scripts/build-ffi.sh [--debug]   (--debug: the dev profile, target/debug/)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [[ ${1:-} == --debug ]]; then
    cargo build -p boxlite-ffi
    echo "$root/target/debug"
else
    cargo build -p boxlite-ffi --profile release-ffi
    echo "$root/target/release-ffi"
fi
