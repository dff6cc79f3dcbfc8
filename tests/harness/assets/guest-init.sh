#!/bin/sh
# /init of the harness's guest initramfs (the Linux guest that boxlite-shim boots).
# Reads harness.action=<action> from /proc/cmdline:
#   marker   print BOXLITE-GUEST-INIT-OK, reboot (the default)
#   nproc    ... then BOXLITE-GUEST-NPROC <online cpus>, reboot
#   meminfo  ... then BOXLITE-GUEST-MEMTOTAL-KB <MemTotal kB>, reboot
#   panic    ... then exit PID 1, so the kernel panics
#   sleep    ... then sleep forever (the host stops the VM)
# Every action prints BOXLITE-GUEST-INIT-OK first: the harness times "shim spawn -> guest /init"
# from it.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

action=marker
# shellcheck disable=SC2013 # the words of the command line, on purpose
for word in $(cat /proc/cmdline); do
    case "$word" in
    harness.action=*) action="${word#harness.action=}" ;;
    esac
done

echo BOXLITE-GUEST-INIT-OK
case "$action" in
marker) ;;
nproc) echo "BOXLITE-GUEST-NPROC $(nproc)" ;;
meminfo) echo "BOXLITE-GUEST-MEMTOTAL-KB $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" ;;
panic)
    echo "BOXLITE-GUEST-PANICKING (PID 1 exits)"
    exit 1
    ;;
sleep)
    while :; do sleep 3600; done
    ;;
*) echo "BOXLITE-GUEST-UNKNOWN-ACTION $action" ;;
esac
reboot -f
echo "BOXLITE-GUEST-REBOOT-FAILED"
exit 1
