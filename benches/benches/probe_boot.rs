//! Probe-guest boot on the local /dev/kvm, through the real `boxlite-shim` binary:
//!
//! - `spawn_to_first_serial_byte`: fork/exec of the shim → first console byte on its stdout
//!   (VM build, kernel load, vCPU start, the probe's first `out` to COM1);
//! - `spawn_to_exit`: the same → the shim has exited after the probe's i8042 reset (the whole
//!   lifetime of a minimal VM, teardown included).
//!
//! Run through `benches/run.sh`, which builds the release shim and the probes and sets
//! BOXLITE_SHIM and BOXLITE_PROBE_DIR.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn path_from_env(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run the benchmarks through benches/run.sh"));
    assert!(path.exists(), "{var}={} does not exist", path.display());
    path
}

/// One boot: returns (spawn → first stdout byte, spawn → exit).
fn boot_once(shim: &PathBuf, probe: &PathBuf) -> (Duration, Duration) {
    let start = Instant::now();
    let mut child = Command::new(shim)
        .arg("--kernel")
        .arg(probe)
        .args([
            "--cmdline",
            "probe=hello",
            "--mem-mib",
            "64",
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning boxlite-shim");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut byte = [0u8; 1];
    let n = stdout.read(&mut byte).expect("reading the console");
    let first_byte = start.elapsed();
    assert_eq!(n, 1, "the probe printed nothing");
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("reading the console");
    let status = child.wait().expect("waiting for the shim");
    let exit = start.elapsed();
    assert!(
        status.success(),
        "the probe VM did not end with a clean reset: {status}"
    );
    (first_byte, exit)
}

fn probe_boot(c: &mut Criterion) {
    let shim = path_from_env("BOXLITE_SHIM");
    let probe = path_from_env("BOXLITE_PROBE_DIR").join("probe-pvh");
    let mut group = c.benchmark_group("probe_boot");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("spawn_to_first_serial_byte", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| boot_once(&shim, &probe).0).sum())
    });
    group.bench_function("spawn_to_exit", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| boot_once(&shim, &probe).1).sum())
    });
    group.finish();
}

criterion_group!(benches, probe_boot);
criterion_main!(benches);
