# Helpers sourced before every harness case (tests/harness/cases/*.sh). POSIX sh (busybox ash).
# Environment: SHIM, GUEST_KERNEL (PVH vmlinux), GUEST_BZIMAGE, GUEST_INITRD, WORK (the per-test
# 9p share, also saved on the machine running the harness under <report-dir>/<case>/work).

# mark NAME: the harness timestamps "HARNESS-MARK NAME" on its own clock (see the summary file).
mark() { echo "HARNESS-MARK $*"; }

# log MSG: a line in the console log.
log() { echo "harness: $*"; }

# fail MSG: ends the case as failed with MSG as the reason; shows the shim's stderr if any.
fail() {
    if [ -s "$WORK/shim.stderr" ]; then
        echo "harness: last lines of $WORK/shim.stderr:"
        tail -n 20 "$WORK/shim.stderr" | while IFS= read -r l || [ -n "$l" ]; do echo "shim| $l"; done
    fi
    echo "HARNESS-FAIL $*"
    exit 1
}

# expect_eq EXPECTED ACTUAL [WHAT]
expect_eq() {
    [ "$1" = "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}

# expect_range MIN MAX ACTUAL [WHAT]: integer MIN <= ACTUAL <= MAX
expect_range() {
    case "$3" in '' | *[!0-9]*) fail "${4:-value}: expected an integer in [$1, $2], got '$3'" ;; esac
    if [ "$3" -lt "$1" ] || [ "$3" -gt "$2" ]; then
        fail "${4:-value}: expected $1..$2, got $3"
    fi
}

# guest_cmdline ACTION: the guest kernel command line for the guest initramfs's /init.
guest_cmdline() { echo "console=ttyS0 reboot=k panic=-1 quiet harness.action=${1:-marker}"; }

# Runs "$@" as the shim: stdout (the guest console with --console -) is copied to
# $WORK/guest-console.log and to the harness console as "guest| <line>", stderr goes to
# $WORK/shim.stderr. Sets SHIM_RC to its exit status.
_run_guest() {
    rm -f "$WORK/shim.rc"
    mark shim-spawn
    { "$@" 2>"$WORK/shim.stderr"; echo "$?" >"$WORK/shim.rc"; } | tee "$WORK/guest-console.log" |
        while IFS= read -r l || [ -n "$l" ]; do echo "guest| $l"; done
    SHIM_RC=$(cat "$WORK/shim.rc" 2>/dev/null)
    mark shim-exit
    log "shim exited with status ${SHIM_RC:-unknown}"
    grep -m 1 boot-timer "$WORK/shim.stderr" | while IFS= read -r l; do echo "shim| $l"; done
}

# run_shim ARGS...: runs "$SHIM" ARGS (see _run_guest).
run_shim() { _run_guest "$SHIM" "$@"; }

# run_shim_piped FILE: runs "$SHIM" with no flags, FILE fed to its stdin through a pipe.
# shellcheck disable=SC2016 # expanded by the inner sh
run_shim_piped() { _run_guest sh -c 'cat "$1" | "$SHIM"' run_shim_piped "$1"; }

# expect_guest_line PATTERN [FILE]: the guest console (default $WORK/guest-console.log) has a
# line matching PATTERN (grep basic regex).
expect_guest_line() {
    grep -q -- "$1" "${2:-$WORK/guest-console.log}" || fail "guest console has no line matching '$1'"
}

# guest_value KEY [FILE]: prints the word after "KEY " on the first guest console line with it.
guest_value() {
    sed -n "s/.*$1 \\([^ ]*\\).*/\\1/p" "${2:-$WORK/guest-console.log}" | tr -d '\r' | head -n 1
}

# wait_for_line FILE PATTERN SECONDS [PID]: waits until FILE has a line matching PATTERN.
# Returns 1 after SECONDS, or 2 as soon as process PID (when given) has ended.
wait_for_line() {
    _deadline=$(($(date +%s) + $3))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        [ "$(date +%s)" -lt "$_deadline" ] || return 1
        if [ -n "$4" ] && ! kill -0 "$4" 2>/dev/null; then
            grep -q -- "$2" "$1" 2>/dev/null && return 0
            return 2
        fi
        sleep 0.05
    done
}

# --- Boxes with the guest agent (need the assets share, see scripts/test-harness.sh) ---------
# BOX_CMDLINE: the kernel command line of an agent box (the boxlite CLI uses the same).
BOX_CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"

# use_boxes: exports BOXLITE (the static CLI), its defaults (kernel, agent rootfs, shim) and its
# home (BOXLITE_HOME, on the test host's tmpfs).
use_boxes() {
    if [ -z "${ASSETS:-}" ] || [ ! -x "$ASSETS/boxlite" ] || [ ! -f "$ASSETS/rootfs.cpio" ]; then
        fail "the harness assets (boxlite CLI, agent rootfs) are missing: see scripts/test-harness.sh"
    fi
    export BOXLITE="$ASSETS/boxlite" BOXLITE_SHIM="$SHIM" BOXLITE_KERNEL="$GUEST_KERNEL"
    export BOXLITE_INITRD="$ASSETS/rootfs.cpio" BOXLITE_HOME=/tmp/boxlite-home
}

# box_field BOX FIELD: one field of `boxlite inspect BOX` (`state`, `id`, `pid`, `reason`...).
box_field() {
    "$BOXLITE" inspect "$1" | sed -n "s/^    \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -n 1
}

# start_box [SHIM FLAGS...]: boots a long-lived agent box in the background ($BOX_PID) with its
# vsock socket at $BOX_UDS and its console in $WORK/box-console.log, and waits for the agent.
start_box() {
    use_boxes
    mkdir -p /tmp/box
    BOX_UDS=/tmp/box/v.sock
    mark box-spawn
    "$SHIM" --kernel "$GUEST_KERNEL" --initrd "$BOXLITE_INITRD" --cmdline "$BOX_CMDLINE" \
        --vsock "$BOX_UDS" --console "$WORK/box-console.log" "$@" 2>"$WORK/shim.stderr" &
    BOX_PID=$!
    # The agent retries its readiness connection for 30 s: binding just after the spawn is fine.
    "$BOXLITE" wait-ready --vsock "$BOX_UDS" --boot-timeout 60 ||
        fail "the box's agent never signalled readiness (console: $WORK/box-console.log)"
    mark box-ready
}

# stop_box: asks the agent to power the box off; the shim must end with status 0 (guest reset).
stop_box() {
    "$BOXLITE" shutdown --vsock "$BOX_UDS" || fail "boxlite shutdown failed"
    wait "$BOX_PID"
    expect_eq 0 "$?" "shim exit status after the agent's shutdown"
    mark box-stopped
}

# bx ARGS...: boxlite exec in the running box.
bx() { "$BOXLITE" exec --vsock "$BOX_UDS" "$@"; }

# expect_file_eq EXPECTED_TEXT FILE [WHAT]: FILE holds exactly EXPECTED_TEXT plus a newline.
expect_file_eq() {
    printf '%s\n' "$1" >/tmp/expected.$$
    cmp -s /tmp/expected.$$ "$2" || fail "${3:-$2}: expected '$1', got '$(cat "$2")'"
    rm -f /tmp/expected.$$
}

# in_host_root CMD ARGS...: runs an outer-machine program (glibc, with its own libraries) in
# the test host: chroot into the outer root shared read-only at $HOST_ROOT, where /dev, /proc,
# /sys and /tmp are the test host's. Paths are the outer machine's; write results under /tmp.
in_host_root() {
    [ -n "${HOST_ROOT:-}" ] || fail "the outer root is not shared into this test host (9p tag hostroot)"
    chroot "$HOST_ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp "$@"
}

# host_root_assets: prints the outer machine's path of $ASSETS and makes sure it is visible in
# the host root too (an outer folder under /tmp is hidden there by the test host's /tmp: the
# assets share is then mounted at that path).
host_root_assets() {
    [ -f "$ASSETS/outer-path" ] || fail "the assets carry no outer-path (scripts/test-harness.sh writes it)"
    _outer=$(cat "$ASSETS/outer-path")
    if [ ! -e "$HOST_ROOT$_outer/outer-path" ]; then
        mkdir -p "$HOST_ROOT$_outer" && mount -o bind "$ASSETS" "$HOST_ROOT$_outer" ||
            fail "cannot show the assets at $_outer in the host root"
    fi
    echo "$_outer"
}
