#!/bin/sh
# description: SIGTERM to the shim while the guest sleeps: the shim exits 6 (host-requested shutdown)
# timeout: 90
console="$WORK/guest-console.log"
: >"$console"
mark shim-spawn
"$SHIM" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline sleep)" \
    --mem-mib 256 --vcpus 1 --console "$console" 2>"$WORK/shim.stderr" &
pid=$!
wait_for_line "$console" BOXLITE-GUEST-INIT-OK 60 "$pid"
case $? in
0) ;;
2)
    wait "$pid"
    fail "the shim exited ($?) before the guest's /init marker"
    ;;
*)
    kill -KILL "$pid" 2>/dev/null
    fail "no guest /init marker in $console within 60 s"
    ;;
esac
mark guest-init
kill -TERM "$pid"
mark sigterm-sent
wait "$pid"
rc=$?
mark shim-exit
expect_eq 6 "$rc" "shim exit status after SIGTERM (6 = host-requested shutdown)"
