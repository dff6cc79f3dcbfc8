#!/bin/sh
# description: --vcpus 2: the guest sees 2 online CPUs (BOXLITE-GUEST-NPROC 2), exit 0
# timeout: 120
run_shim --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline nproc)" \
    --mem-mib 256 --vcpus 2 --console -
expect_guest_line BOXLITE-GUEST-INIT-OK
expect_eq 2 "$(guest_value BOXLITE-GUEST-NPROC)" "guest nproc"
expect_eq 0 "$SHIM_RC" "shim exit status (0 = guest reset)"
