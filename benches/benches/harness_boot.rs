//! Linux guest boot inside the e2e harness: `boxlite-shim` spawn → the guest's /init marker,
//! measured on the harness's host-side clock from the test host's console (the `shim-spawn` mark
//! and the `guest /init` line of the case timeline). Each sample boots a fresh QEMU test host
//! running the `boot-pvh-to-init` case, so one sample takes several seconds.
//!
//! Run through `benches/run.sh harness`, which builds the kernel, the static shim and the runner
//! and passes their paths in BOXLITE_HARNESS, BOXLITE_KERNEL_DIR and BOXLITE_MUSL_SHIM.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run the benchmarks through benches/run.sh"))
}

/// Reads "<ms> ms  <event>" lines of the case timeline in the runner's summary file.
fn timeline_ms(summary: &str, event: &str) -> Option<u64> {
    summary.lines().find_map(|line| {
        let (ms, rest) = line.trim().split_once(" ms")?;
        (rest.trim() == event).then(|| ms.trim().parse().ok())?
    })
}

fn shim_spawn_to_guest_init(report_dir: &PathBuf) -> Duration {
    let status = Command::new(env_path("BOXLITE_HARNESS"))
        .arg("run")
        .arg("--host-kernel")
        .arg(env_path("BOXLITE_KERNEL_DIR").join("vmlinux"))
        .arg("--guest-kernel")
        .arg(env_path("BOXLITE_KERNEL_DIR").join("vmlinux"))
        .arg("--guest-bzimage")
        .arg(env_path("BOXLITE_KERNEL_DIR").join("bzImage"))
        .arg("--shim")
        .arg(env_path("BOXLITE_MUSL_SHIM"))
        .args([
            "--filter",
            "boot-pvh-to-init",
            "--jobs",
            "1",
            "--report-dir",
        ])
        .arg(report_dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running boxlite-harness");
    assert!(
        status.success(),
        "the boot-pvh-to-init case failed; see {}",
        report_dir.display()
    );
    let summary =
        std::fs::read_to_string(report_dir.join("summary.txt")).expect("reading the summary");
    let spawn =
        timeline_ms(&summary, "mark shim-spawn").expect("no shim-spawn mark in the timeline");
    let init = timeline_ms(&summary, "guest /init").expect("no guest /init event in the timeline");
    Duration::from_millis(init - spawn)
}

fn harness_boot(c: &mut Criterion) {
    let report_dir =
        std::env::temp_dir().join(format!("boxlite-bench-harness-{}", std::process::id()));
    let mut group = c.benchmark_group("harness_boot");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(60));
    group.bench_function("shim_spawn_to_guest_init", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| shim_spawn_to_guest_init(&report_dir))
                .sum()
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(report_dir);
}

criterion_group!(benches, harness_boot);
criterion_main!(benches);
