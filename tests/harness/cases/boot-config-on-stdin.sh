#!/bin/sh
# description: `boxlite-shim encode-config ... | boxlite-shim` (postcard config on stdin) boots to the guest's /init, exit 0
# timeout: 90
"$SHIM" encode-config --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
    --cmdline "$(guest_cmdline marker)" --mem-mib 256 --vcpus 1 --console - \
    >"$WORK/config.bin" 2>"$WORK/encode-config.stderr"
rc=$?
expect_eq 0 "$rc" "encode-config exit status"
[ -s "$WORK/config.bin" ] || fail "encode-config wrote nothing"
log "encoded config: $(wc -c <"$WORK/config.bin") bytes"
run_shim_piped "$WORK/config.bin"
expect_guest_line BOXLITE-GUEST-INIT-OK
expect_eq 0 "$SHIM_RC" "shim exit status (0 = guest reset)"
