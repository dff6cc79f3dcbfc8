#!/usr/bin/env bash
# Builds and installs libboxlite with everything a program needs to run a box:
#
#   <prefix>/lib/libboxlite.so.0.1.0, libboxlite.so.0, libboxlite.so, libboxlite.a
#   <prefix>/include/boxlite.h
#   <prefix>/lib/pkgconfig/boxlite.pc
#   <prefix>/lib/boxlite/{boxlite-shim,vmlinux,initramfs.cpio}   the runtime assets
#
# so that `cc app.c $(pkg-config --cflags --libs boxlite)` builds a program that runs a box with
# no other setup (the library finds the assets in lib/boxlite next to itself). The assets come
# from the existing caches (scripts/build-kernel.sh, scripts/build-rootfs.sh), built when
# missing; progress goes to stderr.
#
# Usage: PREFIX=/usr/local DESTDIR= scripts/install.sh [--no-assets] [--debug]
#   --no-assets  the library, header and boxlite.pc only (for the host-only C tests)
#   --debug      the library of the dev profile (faster to build)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
prefix=${PREFIX:-/usr/local}
dest=${DESTDIR:-}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
log() { printf 'install: %s\n' "$*" >&2; }
assets=1 profile=()
for arg in "$@"; do
    case $arg in
        --no-assets) assets=0 ;;
        --debug) profile=(--debug) ;;
        *) echo "install: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

log "building libboxlite"
libdir_build=$(scripts/build-ffi.sh "${profile[@]}" | tail -1)
if ((assets)); then
    log "building the VMM (boxlite-shim)"
    cargo build --release -p boxlite-shim >&2
    log "the guest kernel"
    kernel_dir=$(scripts/build-kernel.sh | tail -1)
    log "the default initramfs"
    rootfs_dir=$(scripts/build-rootfs.sh | tail -1)
fi

lib=$dest$prefix/lib
install -d "$lib/pkgconfig" "$lib/boxlite" "$dest$prefix/include"
install -m 0755 "$libdir_build/libboxlite.so" "$lib/libboxlite.so.$version"
ln -sf "libboxlite.so.$version" "$lib/libboxlite.so.0"
ln -sf libboxlite.so.0 "$lib/libboxlite.so"
install -m 0644 "$libdir_build/libboxlite.a" "$lib/libboxlite.a"
install -m 0644 include/boxlite.h "$dest$prefix/include/boxlite.h"
if ((assets)); then
    install -m 0755 target/release/boxlite-shim "$lib/boxlite/boxlite-shim"
    install -m 0644 "$kernel_dir/vmlinux" "$lib/boxlite/vmlinux"
    install -m 0644 "$rootfs_dir/initramfs.cpio" "$lib/boxlite/initramfs.cpio"
fi
cat > "$lib/pkgconfig/boxlite.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: boxlite
Description: Embeddable microVMs: run untrusted code in boxes
Version: $version
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lboxlite
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
# A system prefix: refresh the loader's cache (other prefixes are found through the rpath).
if [[ -z $dest && $(id -u) == 0 && ( $prefix == /usr || $prefix == /usr/local ) ]] &&
    command -v ldconfig >/dev/null; then
    ldconfig || true
fi
log "installed under $dest$prefix"
