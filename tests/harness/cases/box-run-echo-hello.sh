#!/bin/sh
# description: boxlite run boots the agent rootfs over our vsock, runs echo hello (exact stdout), shuts the box down
# timeout: 120
use_boxes
mark box-run
"$BOXLITE" run -- echo hello >/tmp/out 2>/tmp/err
rc=$?
mark box-run-done
cat /tmp/err
expect_eq 0 "$rc" "boxlite run status"
expect_file_eq hello /tmp/out "stdout of echo hello"
