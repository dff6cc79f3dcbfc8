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
