#!/usr/bin/env bash
# Build the boxlite guest root filesystem, offline, from Debian's busybox-static
# and the musl-static boxlite-agent:
#
#   initramfs.cpio  newc cpio archive, uncompressed: the agent as /init (and
#                   /sbin/init -> /init), busybox with its applet links in /bin,
#                   /etc/passwd and /etc/group with root (and nobody), empty
#                   mount points (dev proc sys tmp run sysroot)
#   rootfs.ext4     an ext4 image of the same tree (BOXLITE_ROOTFS_MIB, default
#                   64 MiB), for boxlite.root=/dev/vda
#   manifest.txt    what went in, with checksums
#
# Usage: scripts/build-rootfs.sh [--help]
#   Builds the agent (cargo build --release --target x86_64-unknown-linux-musl
#   -p boxlite-agent), then the images unless cached.  The LAST LINE OF STDOUT
#   is the absolute output directory:
#       dir=$(scripts/build-rootfs.sh | tail -1)
#
# Booting: pass initramfs.cpio as the initrd; the kernel command line needs
# "reboot=k" (the agent's shutdown reboots, which ends the VM) and a vsock
# device for the agent (port 2695; readiness on host port 2696).  To run from
# the disk, attach rootfs.ext4 as the first virtio-blk disk and add
# "boxlite.root=/dev/vda" (optionally "boxlite.rootflags=ro"): the agent mounts
# it and switches root.
#
# Cache: <target dir>/rootfs/<key>/, key = sha256(agent + busybox + RECIPE +
# image size).  It appears by an atomic rename once complete.  Files are
# owned by root in both images (through fakeroot when not run as root).
#
# Progress and tool output go to stderr.  Missing Debian packages are
# installed with apt-get (through sudo when not root).
set -euo pipefail

readonly DEB_PACKAGES=(busybox-static cpio e2fsprogs)
readonly RUST_TARGET=x86_64-unknown-linux-musl
readonly BUSYBOX=/bin/busybox
readonly IMAGE_MIB=${BOXLITE_ROOTFS_MIB:-64}
# Applets that must not shadow the agent as the guest's init.
readonly SKIPPED_APPLETS=(busybox init linuxrc)
# Fixed identities so the same inputs give the same images.
readonly FS_UUID=4b0c5e1f-7a3d-4e2b-9c61-0b0c5e1f7a3d
readonly FS_LABEL=boxlite-root
# Everything in this script that changes the output; part of the cache key.
# Bump "recipe=" when changing how the tree or the images are made.
readonly RECIPE="recipe=1 cpio=newc ext4 uuid=$FS_UUID label=$FS_LABEL skip=${SKIPPED_APPLETS[*]}"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly REPO=$script_dir/..

log() { printf '[build-rootfs %s] %s\n' "$(elapsed)" "$*" >&2; }
die() {
    printf '[build-rootfs] ERROR: %s\n' "$*" >&2
    exit 1
}
elapsed() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# Runs its arguments as root: directly when root, else through sudo.
as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    else
        command -v sudo >/dev/null || die "need root or sudo to run: $*"
        sudo "$@"
    fi
}

ensure_packages() {
    local p missing=()
    for p in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing missing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Prints the path of the freshly built agent.
build_agent() {
    local target_dir
    if ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
        log "adding the Rust target $RUST_TARGET"
        rustup target add "$RUST_TARGET" >&2
    fi
    log "building boxlite-agent for $RUST_TARGET"
    (cd "$REPO" && cargo build --release --target "$RUST_TARGET" -p boxlite-agent >&2)
    target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    printf '%s\n' "$target_dir/$RUST_TARGET/release/boxlite-agent"
}

# Lays out the guest tree in $1.
make_tree() {
    local tree=$1 agent=$2 applet
    mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,sysroot,var}
    chmod 1777 "$tree/tmp"
    chmod 0700 "$tree/root"
    install -m 0755 "$agent" "$tree/init"
    ln -s ../init "$tree/sbin/init"
    install -m 0755 "$BUSYBOX" "$tree/bin/busybox"
    while read -r applet; do
        [[ " ${SKIPPED_APPLETS[*]} " == *" $applet "* ]] && continue
        ln -s busybox "$tree/bin/$applet"
    done < <("$BUSYBOX" --list)
    cat >"$tree/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$tree/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    chmod 0644 "$tree/etc/passwd" "$tree/etc/group"
    # Fixed timestamps: the archive depends on the inputs only (the ext4 image
    # also records when its inodes were written).
    find "$tree" -exec touch -h -d @0 {} +
}

# Writes the newc archive of tree $1 to $2.
make_initramfs() {
    local tree=$1 out=$2
    (cd "$tree" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$out"
    cpio --list --quiet <"$out" | grep -qx init || die "$out has no /init"
}

# Writes an ext4 image of tree $1 to $2.
make_ext4() {
    local tree=$1 out=$2 owner=()
    if [[ $(id -u) != 0 ]]; then
        command -v fakeroot >/dev/null || die "not root and no fakeroot: the image's files would not be owned by root"
        owner=(fakeroot)
    fi
    truncate -s "${IMAGE_MIB}M" "$out"
    "${owner[@]}" mkfs.ext4 -q -F -L "$FS_LABEL" -U "$FS_UUID" \
        -E "root_owner=0:0,hash_seed=$FS_UUID" -d "$tree" "$out" >&2
    e2fsck -fn "$out" >/dev/null 2>&1 || die "$out does not pass e2fsck"
}

main() {
    case ${1:-} in
    "") ;;
    -h | --help)
        usage
        return 0
        ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    if ! [[ $IMAGE_MIB =~ ^[0-9]+$ ]] || ((IMAGE_MIB < 8)); then
        die "BOXLITE_ROOTFS_MIB must be a number of MiB >= 8"
    fi
    ensure_packages
    [[ -x $BUSYBOX ]] || die "$BUSYBOX missing although busybox-static is installed"

    local agent key cache out work
    agent=$(build_agent)
    [[ -x $agent ]] || die "the agent was not built at $agent"
    key=$( {
        sha256sum <"$agent"
        sha256sum <"$BUSYBOX"
        printf '%s size=%s\n' "$RECIPE" "$IMAGE_MIB"
    } | sha256sum | cut -c1-16)
    cache=$(cd "$REPO" && mkdir -p "${CARGO_TARGET_DIR:-target}/rootfs" && cd "${CARGO_TARGET_DIR:-target}/rootfs" && pwd)
    out=$cache/$key
    if [[ -f $out/manifest.txt ]]; then
        log "cached: $out"
        printf '%s\n' "$out"
        return 0
    fi

    work=$(mktemp -d "$cache/.work.XXXXXX")
    # shellcheck disable=SC2064 # expand $work now: it is local to main
    trap "rm -rf '$work'" EXIT
    log "laying out the guest tree"
    make_tree "$work/tree" "$agent"
    mkdir "$work/out"
    log "writing initramfs.cpio"
    make_initramfs "$work/tree" "$work/out/initramfs.cpio"
    log "writing rootfs.ext4 (${IMAGE_MIB} MiB)"
    make_ext4 "$work/tree" "$work/out/rootfs.ext4"
    {
        printf 'recipe: %s size=%s\n' "$RECIPE" "$IMAGE_MIB"
        printf 'agent: %s %s\n' "$("$agent" --version)" "$(sha256sum <"$agent" | cut -d' ' -f1)"
        printf 'busybox: %s %s\n' "$(dpkg-query -W -f='${Version}' busybox-static)" "$(sha256sum <"$BUSYBOX" | cut -d' ' -f1)"
        (cd "$work/out" && sha256sum initramfs.cpio rootfs.ext4)
    } >"$work/out/manifest.txt"
    # Atomic: a concurrent build of the same key may have won; keep its result.
    mv -T "$work/out" "$out" 2>/dev/null || [[ -f $out/manifest.txt ]] || die "cannot move the images to $out"
    log "done: $(du -sh "$out" | cut -f1) in $out"
    printf '%s\n' "$out"
}

main "$@"
