#!/usr/bin/env bash
# Builds libboxlite, compiles the host-only C tests (ffi/tests/c/host_paths.c) and the README's
# example (ffi/examples/hello.c) with `cc` against include/boxlite.h, and runs the tests under
# valgrind memcheck (0 errors, 0 bytes definitely lost) and once more without it. The last line
# is "N passed, M failed".
#
# Usage: ffi/tests/run-c-tests.sh [--release]   (--release: the release-ffi profile)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
if [[ ${1:-} == --release ]]; then
    libdir=$(scripts/build-ffi.sh | tail -1)
else
    libdir=$(scripts/build-ffi.sh --debug | tail -1)
fi
out=$root/target/c-tests
mkdir -p "$out"
cflags=(-std=c11 -Wall -Wextra -Werror -I include)
cc "${cflags[@]}" ffi/tests/c/host_paths.c -L "$libdir" -lboxlite -lpthread -o "$out/host_paths"
cc "${cflags[@]}" ffi/examples/hello.c -L "$libdir" -lboxlite -o "$out/hello"
# The static library links too.
cc "${cflags[@]}" ffi/tests/c/host_paths.c "$libdir/libboxlite.a" -lpthread -ldl -lm \
    -o "$out/host_paths_static"

if ! command -v valgrind >/dev/null; then
    echo "run-c-tests: installing valgrind" >&2
    apt-get install -y valgrind >&2
fi
# The programs ask for the soname, libboxlite.so.0.
ln -sf "$libdir/libboxlite.so" "$out/libboxlite.so.0"
export LD_LIBRARY_PATH=$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$out/host_paths_static" > "$out/static.log" 2>&1 || { cat "$out/static.log"; exit 1; }
valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    "$out/host_paths"
