#!/bin/sh
# description: box I/O benchmarks (exec round-trip, vsock throughput, virtio-blk reads vs the host file)
# timeout: 600
[ -x "$ASSETS/boxlite-box-bench" ] || fail "boxlite-box-bench is missing from the harness assets"
cp "$ASSETS/rootfs.ext4" /tmp/bench.img
start_box --mem-mib 512 --ro-disk /tmp/bench.img
mark bench-start
"$ASSETS/boxlite-box-bench" box --vsock "$BOX_UDS" --disk-guest /dev/vda --disk-host /tmp/bench.img |
    while IFS= read -r line; do echo "BENCH $line"; done
mark bench-done
stop_box
