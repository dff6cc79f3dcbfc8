#!/bin/sh
# description: time to hello through the lifecycle runtime (create -> start -> exec echo hello -> output), with the start pipeline's stages, 10 runs
# timeout: 600
use_boxes
# Milliseconds since the test host booted (10 ms resolution).
now_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
i=0
while [ $i -lt 10 ]; do
    i=$((i + 1))
    t0=$(now_ms)
    "$BOXLITE" run -d --name "hello$i" >/dev/null || fail "run -d failed"
    out=$("$BOXLITE" exec "hello$i" -- echo hello)
    t1=$(now_ms)
    [ "$out" = hello ] || fail "unexpected output: $out"
    stages=$("$BOXLITE" inspect "hello$i" | tr -d ' \n' | sed -n 's/.*"start":{\([^}]*\)}.*/\1/p')
    echo "BENCH time-to-hello run=$i total_ms=$((t1 - t0)) $stages"
    "$BOXLITE" rm -f "hello$i" || fail "rm failed"
done
