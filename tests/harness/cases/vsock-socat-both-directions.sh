#!/bin/sh
# description: socat on the host reaches a guest listener with CONNECT <port>; a guest program reaches socat at UDS_<port>; RST when nobody listens
# timeout: 150
start_box
SOCAT="$ASSETS/socat/socat"
[ -x "$SOCAT" ] || fail "socat is missing from the harness assets"

# Host -> guest: a guest program listens on vsock port 7000, sends a greeting, keeps what it gets.
bx -- sh -c 'echo hello-from-guest | /init vsock-listen 7000 >/tmp/got' 2>/tmp/listen.err &
listener=$!
tries=0
while :; do
    printf 'CONNECT 7000\nhello-from-host\n' | "$SOCAT" -t 5 - "UNIX-CONNECT:$BOX_UDS" >/tmp/reply 2>/tmp/socat.err
    grep -q hello-from-guest /tmp/reply && break
    tries=$((tries + 1))
    [ "$tries" -lt 40 ] || fail "no answer from the guest listener: '$(cat /tmp/reply)' $(cat /tmp/socat.err)"
    sleep 0.25 # the guest listener may not be up yet: the device then resets the stream
done
head -n 1 /tmp/reply | grep -Eq '^OK [0-9]+$' || fail "no 'OK <port>' line: $(cat /tmp/reply)"
port=$(head -n 1 /tmp/reply | cut -d' ' -f2)
expect_range 1073741824 2147483647 "$port" "host port of the CONNECT stream"
wait "$listener"
expect_eq 0 "$?" "status of the guest listener"
bx -- cat /tmp/got >/tmp/got
expect_file_eq hello-from-host /tmp/got "what the guest listener received"

# Guest -> host: socat listens at UDS_7001 and answers one line.
"$SOCAT" "UNIX-LISTEN:${BOX_UDS}_7001" SYSTEM:'read line; echo "ack $line"' &
server=$!
tries=0
while [ ! -S "${BOX_UDS}_7001" ]; do
    tries=$((tries + 1)); [ "$tries" -lt 40 ] || fail "socat never listened"; sleep 0.1
done
bx -- sh -c 'echo ping | /init vsock-connect 7001' >/tmp/ack
expect_eq 0 "$?" "status of the guest program connecting to the host"
expect_file_eq "ack ping" /tmp/ack "the host's answer"
wait "$server"

# Nobody listens at UDS_7002: the guest's connection is reset.
bx -- /init vsock-connect 7002 </dev/null 2>/tmp/err
[ "$?" -ne 0 ] || fail "connecting to a host port nobody listens on succeeded"
grep -q "cannot connect to host vsock port 7002" /tmp/err || fail "unexpected error: $(cat /tmp/err)"
stop_box
