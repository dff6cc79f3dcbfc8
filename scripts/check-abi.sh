#!/usr/bin/env bash
# Guards the C ABI: fails when include/boxlite.h differs from a fresh cbindgen generation, or
# when the symbols libboxlite.so exports (nm -D --defined-only) differ from ffi/symbols.txt.
# After an intended ABI change, regenerate both in the same commit:
#
#   scripts/gen-header.sh && scripts/check-abi.sh --update
#
# Usage: scripts/check-abi.sh [--update] [LIBDIR]   (LIBDIR: where libboxlite.so is; default:
# built with scripts/build-ffi.sh --debug)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
update=0
if [[ ${1:-} == --update ]]; then update=1; shift; fi
libdir=${1:-$(scripts/build-ffi.sh --debug | tail -1)}
fail=0

fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
scripts/gen-header.sh "$fresh"
if ! diff -u include/boxlite.h "$fresh"; then
    echo "check-abi: include/boxlite.h is stale; run scripts/gen-header.sh and commit it" >&2
    fail=1
fi

symbols=$(nm -D --defined-only "$libdir/libboxlite.so" | awk '{print $NF}' | sort)
if ((update)); then
    printf '%s\n' "$symbols" > ffi/symbols.txt
    echo "check-abi: wrote ffi/symbols.txt ($(wc -l < ffi/symbols.txt) symbols)"
elif ! diff -u ffi/symbols.txt <(printf '%s\n' "$symbols"); then
    echo "check-abi: libboxlite.so exports other symbols than ffi/symbols.txt; if intended, run" \
         "scripts/check-abi.sh --update and commit the list with the change" >&2
    fail=1
fi
soname=$(readelf -d "$libdir/libboxlite.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ $soname != libboxlite.so.0 ]]; then
    echo "check-abi: soname is '$soname', not libboxlite.so.0" >&2
    fail=1
fi
((fail == 0)) && echo "check-abi: header, symbols and soname match"
exit "$fail"
