#!/bin/sh
# description: shim boots the bzImage + guest initramfs (256 MiB, 1 vCPU) to the guest's /init, exit 0
# timeout: 90
run_shim --kernel "$GUEST_BZIMAGE" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline marker)" \
    --mem-mib 256 --vcpus 1 --console -
expect_guest_line BOXLITE-GUEST-INIT-OK
expect_eq 0 "$SHIM_RC" "shim exit status (0 = guest reset)"
