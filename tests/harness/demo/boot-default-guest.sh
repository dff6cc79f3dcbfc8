#!/bin/sh
# description: the README's main job through the harness: boot the default guest kernel and keep its whole console
# timeout: 120
run_shim --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
    --cmdline "console=ttyS0 reboot=k panic=-1 printk.time=1 harness.action=nproc" \
    --mem-mib 256 --vcpus 2 --console -
expect_guest_line BOXLITE-GUEST-INIT-OK
expect_eq 0 "$SHIM_RC" "shim exit status (0 = guest reset)"
