#!/bin/sh
# description: the guest's PID 1 exits so its kernel panics: the shim exits 3 (guest panic)
# timeout: 90
run_shim --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline panic)" \
    --mem-mib 256 --vcpus 1 --console -
expect_guest_line BOXLITE-GUEST-INIT-OK
expect_eq 3 "$SHIM_RC" "shim exit status (3 = guest panic)"
