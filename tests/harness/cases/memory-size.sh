#!/bin/sh
# description: --mem-mib 256: the guest's MemTotal is 200..256 MiB, exit 0
# timeout: 90
run_shim --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline meminfo)" \
    --mem-mib 256 --vcpus 1 --console -
expect_guest_line BOXLITE-GUEST-INIT-OK
expect_range $((200 * 1024)) $((256 * 1024)) "$(guest_value BOXLITE-GUEST-MEMTOTAL-KB)" "guest MemTotal (kB)"
expect_eq 0 "$SHIM_RC" "shim exit status (0 = guest reset)"
