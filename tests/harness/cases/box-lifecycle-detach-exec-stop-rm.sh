#!/bin/sh
# description: the life of a detached box through the CLI: run -d, ps from another process, exec (reattached, env, exit codes), inspect, logs, stop, start again, rm
# timeout: 180
use_boxes
mark create
id=$("$BOXLITE" run -d --name web -e GREETING=hello -e TOKEN=sentinel-4b1d --cpus 1 --memory 256) || fail "boxlite run -d failed"
mark running
[ -n "$id" ] || fail "run -d printed no id"
expect_eq running "$(box_field web state)" "state after run -d"
"$BOXLITE" ps >/tmp/ps
cat /tmp/ps
grep -q "^${id%????????????} *web *running" /tmp/ps || fail "ps does not list web as running: $(cat /tmp/ps)"
# Each exec is a new CLI process: it reattaches to the running box (no boot).
expect_eq hello "$("$BOXLITE" exec web -- sh -c 'echo $GREETING')" "box env in exec"
expect_eq "hi there" "$("$BOXLITE" exec -e WHO=there web -- sh -c 'echo hi $WHO')" "exec env"
"$BOXLITE" exec web -- sh -c 'exit 7'
expect_eq 7 "$?" "exit code of the command"
"$BOXLITE" exec "${id%????????????????}" -- true || fail "exec by id prefix failed"
"$BOXLITE" logs web | grep -q "boxlite-agent" || fail "logs show no agent line"
pid=$(box_field web pid)
[ -d "/proc/$pid" ] || fail "the box's shim (pid $pid) is not alive"
# The box's env lives in options.json only: not in the shim's argv or environment, no log.
expect_eq sentinel-4b1d "$("$BOXLITE" exec web -- sh -c 'echo $TOKEN')" "secret env in the guest"
tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q sentinel && fail "the secret is in the shim's argv"
tr '\0' '\n' <"/proc/$pid/environ" | grep -q sentinel && fail "the secret is in the shim's environment"
leaks=$(grep -rl sentinel-4b1d "$BOXLITE_HOME" | grep -v '/options.json$')
[ -z "$leaks" ] || fail "the secret leaked into: $leaks"
mark stop
"$BOXLITE" stop web || fail "boxlite stop failed"
mark stopped
expect_eq stopped "$(box_field web state)" "state after stop"
[ -d "/proc/$pid" ] && fail "the shim (pid $pid) outlived stop"
grep -q '"outcome": "GuestReset"' "$BOXLITE_HOME/boxes/$id/exit" || fail "exit file: $(cat "$BOXLITE_HOME/boxes/$id/exit")"
# An exec on a stopped box starts it first.
expect_eq again "$("$BOXLITE" exec web -- echo again)" "exec on a stopped box"
"$BOXLITE" rm web && fail "rm of a running box must be refused"
"$BOXLITE" rm -f web || fail "rm -f failed"
[ -e "$BOXLITE_HOME/boxes/$id" ] && fail "the box folder is still there"
expect_eq "" "$("$BOXLITE" ps -a | tail -n +2)" "ps -a after rm"
