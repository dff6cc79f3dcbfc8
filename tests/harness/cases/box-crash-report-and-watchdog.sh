#!/bin/sh
# description: a guest kernel panic at boot gives a Failed box with a crash report; kill -9 of a non-detached box's host process stops the box (watchdog)
# timeout: 180
use_boxes
mark panic-box
"$BOXLITE" run --name broken --kernel-arg rdinit=/nonexistent --kernel-arg init=/nonexistent -- true 2>/tmp/err
rc=$?
mark panic-box-done
cat /tmp/err
expect_eq 125 "$rc" "status of a box that cannot start"
grep -q "failed to start" /tmp/err || fail "no start failure in: $(cat /tmp/err)"
grep -q "guest kernel panicked" /tmp/err || fail "the report does not say the kernel panicked"
grep -q "Kernel panic - not syncing" /tmp/err || fail "the report does not quote the console"
expect_eq failed "$(box_field broken state)" "state of the box"
"$BOXLITE" ps -a | grep -q "broken *failed" || fail "ps -a does not show it failed"
"$BOXLITE" rm broken || fail "rm of a failed box"

# A non-detached box dies with the program that started it.
mark watchdog-box
"$BOXLITE" run --name tied -- sleep 600 &
cli=$!
i=0
until [ "$(box_field tied state 2>/dev/null)" = running ]; do
    i=$((i + 1)); [ $i -lt 600 ] || fail "the box never ran"; sleep 0.1
done
pid=$(box_field tied pid)
kill -9 "$cli"
mark watchdog-kill
i=0
while [ -d "/proc/$pid" ]; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "the shim outlived its host process by 30 s"; sleep 0.1
done
mark watchdog-stopped
state=$(box_field tied state)
[ "$state" = stopped ] || [ "$state" = failed ] || fail "state after the watchdog: $state"
"$BOXLITE" rm -f tied
