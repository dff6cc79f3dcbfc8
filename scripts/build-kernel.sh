#!/usr/bin/env bash
# Build the boxlite microVM kernel (guest kernel and QEMU "test host" kernel)
# from Debian's linux-source-6.1 and guest/kernel/config.fragment.
#
# Usage: scripts/build-kernel.sh [--print-dir | --check-only | --help]
#   (none)        build unless cached; the LAST LINE OF STDOUT is the absolute
#                 cache directory, holding vmlinux, bzImage and config:
#                     dir=$(scripts/build-kernel.sh | tail -1)
#   --print-dir   print the cache directory it would use; build nothing
#   --check-only  run only `make allnoconfig` + the option check (fast way to
#                 iterate on the fragment); prints the path of the .config
#
# Cache: ${BOXLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/boxlite}/kernel/<key>/
#   key = sha256(fragment + installed linux-source-6.1 version + RECIPE below).
#   The directory appears by an atomic rename once complete, so a killed build
#   never leaves a half-filled cache.  The sources are extracted once into
#   kernel/work/src-<version>/; builds run out of tree in kernel/work/build-<key>/
#   (kept on failure so a rerun continues incrementally, removed on success).
#
# Every CONFIG_X=y line of the fragment must be =y in the final .config, every
# "# CONFIG_X is not set" line must be off, other values must match; otherwise
# the script fails naming each option (Kconfig silently drops options whose
# dependencies are unmet).
#
# Progress and all tool output go to stderr.  Missing Debian packages are
# installed with apt-get (through sudo when not root).
set -euo pipefail

readonly SRC_PKG=linux-source-6.1
readonly SRC_TARBALL=/usr/src/linux-source-6.1.tar.xz
readonly SRC_TOPDIR=linux-source-6.1
readonly DEB_PACKAGES=(linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils perl)
readonly MAKE_TARGETS=(vmlinux bzImage)
# Fixed identity strings in `uname -v` / /proc/version instead of this machine's.
export KBUILD_BUILD_USER=boxlite KBUILD_BUILD_HOST=boxlite
# Everything in this script that changes the output; part of the cache key.
# Bump "recipe=" when changing how the kernel is built.
readonly RECIPE="recipe=1 arch=x86 base=allnoconfig targets=${MAKE_TARGETS[*]} user=$KBUILD_BUILD_USER host=$KBUILD_BUILD_HOST"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly FRAGMENT="$script_dir/../guest/kernel/config.fragment"
readonly PROGRESS_EVERY=100 # print a progress line every N compiled files

log() { printf '[build-kernel %s] %s\n' "$(elapsed)" "$*" >&2; }
die() {
    printf '[build-kernel] ERROR: %s\n' "$*" >&2
    exit 1
}
elapsed() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# Prints the installed version of package $1, or nothing when not installed.
installed_version() {
    local out
    out=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null) || return 0
    [[ $out == "installed "* ]] && printf '%s\n' "${out#installed }"
    return 0
}

ensure_packages() {
    local p missing=() sudo=()
    for p in "${DEB_PACKAGES[@]}"; do
        [[ -n $(installed_version "$p") ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing missing Debian packages: ${missing[*]}"
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Version of linux-source-6.1 for the cache key.  --print-dir must not install
# anything: when the package is missing it uses the version apt would install.
source_version() {
    local v
    v=$(installed_version "$SRC_PKG")
    if [[ -z $v && $1 == print-dir ]]; then
        v=$(apt-cache policy "$SRC_PKG" 2>/dev/null | awk '/Candidate:/ {print $2}')
        [[ $v == "(none)" ]] && v=
    fi
    [[ -n $v ]] || die "$SRC_PKG is not installed (and apt knows no candidate version)"
    printf '%s\n' "$v"
}

cache_key() { # $1 = source version
    {
        printf 'fragment:\n'
        cat "$FRAGMENT"
        printf '\npackage: %s %s\nrecipe: %s\n' "$SRC_PKG" "$1" "$RECIPE"
    } | sha256sum | cut -d' ' -f1
}

# Extract the kernel sources once per package version (atomically).
extract_sources() { # $1 = work dir, $2 = version; prints the source dir
    local work=$1 ver=${2//[^A-Za-z0-9.+~-]/_} src tmp lock_fd
    src="$work/src-$ver"
    exec {lock_fd}>"$work/src.lock"
    flock "$lock_fd"
    if [[ ! -f $src/Makefile ]]; then
        [[ -f $SRC_TARBALL ]] || die "$SRC_TARBALL missing although $SRC_PKG is installed"
        log "extracting $SRC_TARBALL (once per package version) ..."
        rm -rf "$work"/.src-*.tmp.*
        tmp=$(mktemp -d "$work/.src-$ver.tmp.XXXXXX")
        tar -xJf "$SRC_TARBALL" -C "$tmp"
        [[ -f $tmp/$SRC_TOPDIR/Makefile ]] || die "unexpected tarball layout (no $SRC_TOPDIR/Makefile)"
        rm -rf "$src"
        mv -T "$tmp/$SRC_TOPDIR" "$src"
        rmdir "$tmp"
    fi
    exec {lock_fd}>&-
    printf '%s\n' "$src"
}

# Compare the final .config with the fragment; report every mismatch.
check_config() { # $1 = fragment, $2 = final .config, $3 = source dir
    local frag=$1 cfg=$2 src=$3 line name want got where bad=0
    declare -A final=()
    while IFS= read -r line; do
        final[${line%%=*}]=${line#*=}
    done < <(grep '^CONFIG_' "$cfg")
    while IFS= read -r line; do
        line=${line%$'\r'}
        line=${line%"${line##*[![:space:]]}"}
        if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
            name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
        elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            name=${BASH_REMATCH[1]} want=n
        else
            continue
        fi
        got=${final[$name]:-n}
        [[ $got == "$want" ]] && continue
        bad=$((bad + 1))
        where=$(grep -rlE --include='Kconfig*' "^(menu)?config ${name#CONFIG_}\$" "$src" 2>/dev/null |
            sed "s|^$src/||" | head -3 | paste -sd' ' -) || true
        if grep -q "^# $name is not set\$" "$cfg"; then
            printf '  %s: wanted %s, got n (dependencies unmet? see %s)\n' "$name" "$want" "${where:-?}" >&2
        elif [[ -z $where ]]; then
            printf '  %s: wanted %s, but no Kconfig defines it (typo?)\n' "$name" "$want" >&2
        else
            printf '  %s: wanted %s, got %s (see %s)\n' "$name" "$want" "${final[$name]:-<absent: a dependency is unmet>}" "$where" >&2
        fi
    done <"$frag"
    if ((bad)); then
        printf '[build-kernel] ERROR: %d option(s) of %s not as requested in the final .config (listed above)\n' "$bad" "$FRAGMENT" >&2
        return 1
    fi
    return 0
}

# Reads make's output: appends all of it to the log file $1 and prints a
# condensed view (every Nth compiled file, link steps, warnings) to stderr.
progress_filter() {
    local logf=$1 line n=0
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case $line in
        "  CC "* | "  AS "*)
            n=$((n + 1))
            if ((n % PROGRESS_EVERY == 0)); then
                log "$n files compiled (now ${line##* })"
            fi
            ;;
        "  LD "*vmlinux* | "  BUILD "* | "  OBJCOPY "* | "  SORTTAB "* | "Kernel: "*)
            log "${line#"${line%%[![:space:]]*}"}"
            ;;
        *warning:* | *WARNING:* | *error:* | *Error\ [0-9]* | *"No rule to make"*)
            printf '%s\n' "$line" >&2
            ;;
        esac
    done >>"$logf"
    if ((n > 0)); then
        log "$n files compiled/assembled"
    fi
    return 0
}

# Runs `make` in the build dir with output condensed; on failure shows the log tail.
run_make() { # $1 = source dir, $2 = build dir, $3 = log file, rest = make arguments
    local src=$1 build=$2 logf=$3
    shift 3
    printf '\n===== make %s\n' "$*" >>"$logf"
    if make -C "$src" O="$build" ARCH=x86 "$@" 2>&1 </dev/null | progress_filter "$logf"; then
        return 0
    fi
    printf '[build-kernel] ERROR: make %s failed; last 60 lines of %s:\n' "$*" "$logf" >&2
    tail -n 60 "$logf" >&2
    exit 1
}

main() {
    local mode=build
    case ${1:-} in
    "") ;;
    --print-dir) mode=print-dir ;;
    --check-only) mode=check-only ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
    (($# <= 1)) || die "expected at most one argument (try --help)"
    [[ -f $FRAGMENT ]] || die "fragment not found: $FRAGMENT"
    [[ $(uname -m) == x86_64 ]] || die "only x86_64 build machines are supported (got $(uname -m))"

    [[ $mode == print-dir ]] || ensure_packages
    local version key root out work src build logf
    version=$(source_version "$mode")
    key=$(cache_key "$version")
    root=${BOXLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/boxlite}
    [[ $root == /* ]] || root="$PWD/$root"
    out="$root/kernel/$key"

    if [[ $mode == print-dir ]]; then
        printf '%s\n' "$out"
        return 0
    fi
    if [[ $mode == build && -f $out/vmlinux && -f $out/bzImage && -f $out/config ]]; then
        log "cached: $out"
        printf '%s\n' "$out"
        return 0
    fi

    work="$root/kernel/work"
    mkdir -p "$work"
    # One build per key at a time (a second caller waits, then finds the cache).
    local lock_fd
    exec {lock_fd}>"$work/build-$key.lock"
    if ! flock -n "$lock_fd"; then
        log "another build of this kernel is running; waiting for it ..."
        flock "$lock_fd"
    fi
    if [[ $mode == build && -f $out/vmlinux ]]; then
        log "cached (built by a concurrent run): $out"
        printf '%s\n' "$out"
        return 0
    fi
    rm -rf "$root/kernel/.tmp-$key".* # leftovers of a killed publish

    src=$(extract_sources "$work" "$version")
    build="$work/build-$key"
    mkdir -p "$build"
    logf="$build/build.log"
    : >"$logf"
    log "linux-source $version, key $key"
    log "build dir $build (full log: $logf)"

    # The exact fragment that was hashed, next to the objects.
    cp "$FRAGMENT" "$build/boxlite.fragment"
    run_make "$src" "$build" "$logf" allnoconfig KCONFIG_ALLCONFIG="$build/boxlite.fragment"
    if ! check_config "$build/boxlite.fragment" "$build/.config" "$src"; then
        rm -rf "$build" # this fragment cannot be built; keep no junk around
        exit 1
    fi
    log "config OK: every option of the fragment is set as requested"
    if [[ $mode == check-only ]]; then
        printf '%s\n' "$build/.config"
        return 0
    fi

    log "building ${MAKE_TARGETS[*]} with $(nproc) jobs ..."
    run_make "$src" "$build" "$logf" -j"$(nproc)" "${MAKE_TARGETS[@]}"
    check_config "$build/boxlite.fragment" "$build/.config" "$src" || exit 1

    # Publish atomically: fill a temp dir next to the final one, then rename.
    local tmp
    tmp=$(mktemp -d "$root/kernel/.tmp-$key.XXXXXX")
    cp "$build/vmlinux" "$tmp/vmlinux"
    cp "$build/arch/x86/boot/bzImage" "$tmp/bzImage"
    cp "$build/.config" "$tmp/config"
    cp "$build/boxlite.fragment" "$tmp/fragment"
    {
        printf 'package: %s %s\n' "$SRC_PKG" "$version"
        printf 'recipe: %s\n' "$RECIPE"
        printf 'release: %s\n' "$(cat "$build/include/config/kernel.release" 2>/dev/null || echo '?')"
        printf 'built: %s in %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(elapsed)"
    } >"$tmp/build-info"
    chmod 0755 "$tmp"
    mv -T "$tmp" "$out"
    rm -rf "$build"
    log "done: vmlinux $(stat -c %s "$out/vmlinux") bytes, bzImage $(stat -c %s "$out/bzImage") bytes"
    printf '%s\n' "$out"
}

main "$@"
