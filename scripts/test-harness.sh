#!/usr/bin/env bash
# Runs the harness e2e tier (tests/harness): every case in tests/harness/cases/ boots a fresh
# QEMU (TCG, emulated AMD-V) test host whose nested /dev/kvm runs boxlite-shim with real Linux
# guests. This is what CI calls.
#
# Usage: scripts/test-harness.sh [run flags...]    e.g. --filter boot --jobs 1
#        scripts/test-harness.sh list
#   Extra flags go to `boxlite-harness run` (see `boxlite-harness help`); reports land in
#   target/harness-report/ unless --report-dir is given.
#
# Builds or locates: Debian's qemu-system-x86 and busybox-static (apt-get, through sudo when
# not root), the kernel (scripts/build-kernel.sh, cached), the static musl boxlite-shim and the
# runner. A piece that cannot be built is reported by the runner, which then counts every case
# as skipped and exits non-zero: the tier never passes without having run.
# The LAST LINE of stdout is `tier harness: N passed, M failed, K skipped`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
readonly MUSL=x86_64-unknown-linux-musl

log() { printf '[test-harness] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

ensure_packages() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    installed busybox-static || missing+=(busybox-static)
    installed e2fsck-static || missing+=(e2fsck-static)
    installed e2fsprogs || missing+=(e2fsprogs)
    command -v socat >/dev/null || missing+=(socat)
    command -v qemu-img >/dev/null || missing+=(qemu-utils)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

build_runner() {
    log "building boxlite-harness"
    cargo build -q -p boxlite-harness >&2
    runner="$target_dir/debug/boxlite-harness"
}

if [ "${1:-}" = list ] || [ "${1:-}" = help ]; then
    build_runner
    exec "$runner" "$@"
fi

ensure_packages

# Kernel: the same image is the test host and the guest.
if kdir=$(bash scripts/build-kernel.sh | tail -n 1) && [ -n "$kdir" ]; then
    log "kernel: $kdir"
else
    log "ERROR: scripts/build-kernel.sh failed (see above); the tier cannot run"
    kdir="$target_dir/harness-no-kernel"
fi

# Shim: static musl binary (the test host has no shared libraries).
shim="$target_dir/$MUSL/release/boxlite-shim"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$MUSL"; then
    log "adding the $MUSL rust target"
    rustup target add "$MUSL" >&2
fi
log "building boxlite-shim ($MUSL, release)"
if ! cargo build -q --release --target "$MUSL" -p boxlite-shim >&2; then
    log "ERROR: building boxlite-shim failed (see above); the tier cannot run"
    shim="$target_dir/harness-no-shim/boxlite-shim"
fi

# Assets every test host sees read-only at /assets: the boxlite CLI (static), the guest root
# filesystem (agent + busybox) as initramfs and ext4 image, a blank ext4 data image, Debian's
# static e2fsck, and Debian's socat and qemu-img with their shared libraries (run through their
# loader). A piece that cannot be built is left out; the cases that need it fail and say so.
assets="$target_dir/harness-assets"
build_assets() {
    rm -rf "$assets" && mkdir -p "$assets"
    log "building the boxlite CLI ($MUSL, release)"
    cargo build -q --release --target "$MUSL" -p boxlite-cli -p boxlite-benches >&2 &&
        cp "$target_dir/$MUSL/release/boxlite" "$target_dir/$MUSL/release/boxlite-box-bench" "$assets/"
    local rootfs
    if rootfs=$(bash scripts/build-rootfs.sh | tail -n 1) && [ -d "$rootfs" ]; then
        cp "$rootfs/initramfs.cpio" "$assets/rootfs.cpio"
        cp "$rootfs/rootfs.ext4" "$assets/rootfs.ext4"
    else
        log "ERROR: scripts/build-rootfs.sh failed; the agent cases will fail"
    fi
    truncate -s 32M "$assets/data.ext4" && mkfs.ext4 -q -F -L boxlite-data "$assets/data.ext4" >&2
    cp /sbin/e2fsck.static "$assets/e2fsck"
    bundle /usr/bin/socat socat
    bundle /usr/bin/qemu-img qemu-img
    build_c_assets || log "ERROR: building the C ABI assets failed; the C case will fail"
    build_go_assets || log "ERROR: building the Go assets failed; the Go case will fail"
    build_node_assets || log "ERROR: building the Node assets failed; the Node case will fail"
}

# The C ABI in the test host, where it runs from the outer root (in_host_root): libboxlite
# installed under c/ (header, pkg-config file), a C program built against that installation,
# and the runtime assets in c/runtime/ for BOXLITE_RUNTIME_DIR. outer-path names this folder
# as the outer machine sees it.
build_c_assets() {
    local c=$assets/c pc
    log "installing libboxlite for the C cases"
    PREFIX=$c scripts/install.sh --no-assets --debug >&2 || return 1
    pc=$(PKG_CONFIG_PATH=$c/lib/pkgconfig pkg-config --cflags --libs boxlite) || return 1
    # shellcheck disable=SC2086 # pkg-config's flags are words
    cc -std=c11 -Wall -Wextra -Werror -o "$c/harness_box" ffi/tests/c/harness_box.c $pc || return 1
    # shellcheck disable=SC2086
    cc -std=c11 -Wall -Wextra -Werror -o "$c/hello" ffi/examples/hello.c $pc || return 1
    mkdir -p "$c/runtime"
    cp "$shim" "$c/runtime/boxlite-shim"
    cp "$kdir/vmlinux" "$c/runtime/vmlinux"
    cp "$assets/rootfs.cpio" "$c/runtime/initramfs.cpio"
    echo "$assets" >"$assets/outer-path"
}

# The Go binding in the test host, beside the C ABI's installation (go/): its test binary
# (host-only and real-box tests) and the README's example, both linked against c/lib through
# pkg-config and run from the outer root.
build_go_assets() {
    local g=$assets/go
    scripts/ensure-packages.sh go:golang-go || return 1
    mkdir -p "$g"
    # A build cache of its own: Go's cache does not key the link on pkg-config's rpath, so a
    # binary linked against another installation could come back from a shared cache.
    (cd bindings/go && export PKG_CONFIG_PATH=$assets/c/lib/pkgconfig GOFLAGS=-mod=mod GOPROXY=off \
        GOCACHE=$target_dir/go-cache-harness &&
        go test -c -o "$g/boxlite.test" . && go build -o "$g/hello" ./examples/hello) >&2
}

# The Node package in the test host (node/): its files with koffi installed by npm ci, run by
# the outer root's node.
build_node_assets() {
    local n=$assets/node
    scripts/ensure-packages.sh npm:npm || return 1
    (cd bindings/node && npm ci --no-audit --no-fund --loglevel=error) >&2 || return 1
    mkdir -p "$n"
    cp -r bindings/node/. "$n/"
}

# bundle BINARY NAME: a dynamically linked Debian tool for the test host, which has no shared
# libraries of its own: the binary and its libraries in $assets/NAME/, run through their loader
# by the wrapper $assets/NAME/NAME.
bundle() {
    local bin=$1 name=$2 dir=$assets/$2 lib
    mkdir -p "$dir"
    for lib in $(ldd "$bin" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
        cp -L "$lib" "$dir/"
    done
    cp "$bin" "$dir/$name.bin"
    cat >"$dir/$name" <<WRAP
#!/bin/sh
# Debian's $name inside the test host, which has no shared libraries of its own.
d=\$(dirname "\$0")
exec "\$d/ld-linux-x86-64.so.2" --library-path "\$d" "\$d/$name.bin" "\$@"
WRAP
    chmod +x "$dir/$name"
}
build_assets || log "ERROR: building the harness assets failed (see above)"

build_runner
exec "$runner" run \
    --host-kernel "$kdir/vmlinux" \
    --guest-kernel "$kdir/vmlinux" \
    --guest-bzimage "$kdir/bzImage" \
    --shim "$shim" \
    --busybox /bin/busybox \
    --assets-dir "$assets" \
    "$@"
