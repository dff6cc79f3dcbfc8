#!/usr/bin/env bash
# Builds libboxlite and installs it (library, header, boxlite.pc; no runtime assets) under
# target/c-tests/prefix with scripts/install.sh, compiles the host-only C tests
# (ffi/tests/c/host_paths.c) and the README's example (ffi/examples/hello.c) with `cc` and
# `pkg-config --cflags --libs boxlite` against that installation, links the tests statically
# once more, and runs them under valgrind memcheck (0 errors, 0 bytes definitely lost) and
# statically linked without it. The last line is "N passed, M failed".
#
# Usage: ffi/tests/run-c-tests.sh [--release]   (--release: the release-ffi profile)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
scripts/ensure-packages.sh pkg-config:pkg-config valgrind:valgrind
out=$root/target/c-tests
prefix=$out/prefix
rm -rf "$prefix"
mkdir -p "$out"
if [[ ${1:-} == --release ]]; then
    PREFIX=$prefix scripts/install.sh --no-assets
else
    PREFIX=$prefix scripts/install.sh --no-assets --debug
fi
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cflags=(-std=c11 -Wall -Wextra -Werror $(pkg-config --cflags boxlite))
libs=($(pkg-config --libs boxlite))
cc "${cflags[@]}" ffi/tests/c/host_paths.c "${libs[@]}" -lpthread -o "$out/host_paths"
cc "${cflags[@]}" ffi/examples/hello.c "${libs[@]}" -o "$out/hello"
# The static library links too.
cc "${cflags[@]}" ffi/tests/c/host_paths.c "$prefix/lib/libboxlite.a" -lpthread -ldl -lm \
    -o "$out/host_paths_static"

# No LD_LIBRARY_PATH: boxlite.pc's rpath finds libboxlite.so.0 in the installation.
"$out/host_paths_static" > "$out/static.log" 2>&1 || { cat "$out/static.log"; exit 1; }
valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    "$out/host_paths"
