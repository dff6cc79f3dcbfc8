//! `boxlite-box-bench`: I/O benchmarks of a running box, for the harness tier
//! (`benches/run.sh harness-io`). Static (musl), so the test host and the guest can run it.
//!
//! - `boxlite-box-bench box --vsock UDS --disk-guest /dev/vdb --disk-host IMAGE`: against a
//!   running agent box: exec round-trip latency of `true` (p50/p99), vsock throughput in both
//!   directions, then copies itself into the guest and runs the disk reads there and, with the
//!   same code, on the image file on the host;
//! - `boxlite-box-bench seqread PATH` / `randread PATH COUNT`: O_DIRECT reads of PATH (1 MiB
//!   sequential, or COUNT random 4 KiB), printing MB/s or IOPS.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use boxlite_lifecycle::{ExecRequest, GuestSession};

const MIB: usize = 1 << 20;
const LATENCY_RUNS: usize = 200;
const VSOCK_BYTES: usize = 64 * MIB;
const RANDOM_READS: usize = 4000;

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("boxlite-box-bench: {message}");
    std::process::exit(1)
}

/// A buffer aligned for O_DIRECT (4 KiB), carved out of a larger vector.
fn aligned(len: usize) -> (Vec<u8>, usize) {
    let buf = vec![0u8; len + 4096];
    let offset = buf.as_ptr().align_offset(4096);
    (buf, offset)
}

/// Opens `path` for O_DIRECT reads; on a filesystem without O_DIRECT (tmpfs, where the harness
/// keeps its images) it falls back to cached reads, which is what the VMM itself gets there.
fn open_direct(path: &str) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => File::open(path),
            _ => Err(e),
        })
        .unwrap_or_else(|e| fail(format!("cannot open {path}: {e}")))
}

fn size_of(file: &File, path: &str) -> u64 {
    // Block devices report 0 in metadata; seeking to the end works for both.
    let mut probe = file.try_clone().unwrap_or_else(|e| fail(e));
    std::io::Seek::seek(&mut probe, std::io::SeekFrom::End(0))
        .unwrap_or_else(|e| fail(format!("{path}: {e}")))
}

fn seqread(path: &str) -> f64 {
    let file = open_direct(path);
    let size = size_of(&file, path);
    let (mut buf, off) = aligned(MIB);
    let start = Instant::now();
    let mut at = 0u64;
    while at < size {
        let n = file
            .read_at(&mut buf[off..off + MIB], at)
            .unwrap_or_else(|e| fail(format!("{path}: {e}")));
        if n == 0 {
            break;
        }
        at += n as u64;
    }
    at as f64 / MIB as f64 / start.elapsed().as_secs_f64()
}

fn randread(path: &str, count: usize) -> f64 {
    let file = open_direct(path);
    let blocks = size_of(&file, path) / 4096;
    if blocks == 0 {
        fail(format!("{path} is smaller than 4 KiB"));
    }
    let (mut buf, off) = aligned(4096);
    // xorshift64: the same offsets on every run and on both sides.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = (state % blocks) * 4096;
        file.read_exact_at(&mut buf[off..off + 4096], at)
            .unwrap_or_else(|e| fail(format!("{path}: {e}")));
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `argv` in the box with `stdin` and returns (stdout, wall time).
fn exec(session: &GuestSession, argv: &[&str], stdin: Option<&[u8]>) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let handle = session
        .exec(ExecRequest {
            stdin: stdin.is_some(),
            ..ExecRequest::new(argv.iter().copied())
        })
        .unwrap_or_else(|e| fail(format!("{argv:?}: {e}")));
    if let Some(bytes) = stdin {
        for chunk in bytes.chunks(256 * 1024) {
            handle
                .write_stdin(chunk)
                .unwrap_or_else(|e| fail(format!("stdin of {argv:?}: {e}")));
        }
        handle.close_stdin().unwrap_or_else(|e| fail(e));
    }
    let output = handle
        .output()
        .unwrap_or_else(|e| fail(format!("{argv:?}: {e}")));
    if !output.status.success() {
        fail(format!(
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    (output.stdout, start.elapsed())
}

fn bench_box(uds: &str, disk_guest: &str, disk_host: &str) {
    let session = GuestSession::vsock(uds);
    for _ in 0..5 {
        exec(&session, &["true"], None);
    }
    let mut times: Vec<Duration> = (0..LATENCY_RUNS)
        .map(|_| exec(&session, &["true"], None).1)
        .collect();
    times.sort_unstable();
    println!(
        "exec-roundtrip-true: p50 {:.2} ms, p99 {:.2} ms ({LATENCY_RUNS} runs)",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );

    exec(
        &session,
        &[
            "sh",
            "-c",
            &format!("head -c {VSOCK_BYTES} /dev/zero >/tmp/vsock-bench"),
        ],
        None,
    );
    let (out, took) = exec(&session, &["cat", "/tmp/vsock-bench"], None);
    assert_eq!(out.len(), VSOCK_BYTES, "guest-to-host bytes");
    println!(
        "vsock-guest-to-host: {:.1} MB/s (64 MiB through exec stdout)",
        VSOCK_BYTES as f64 / MIB as f64 / took.as_secs_f64()
    );
    let data = vec![0x5au8; VSOCK_BYTES];
    let (_, took) = exec(&session, &["sh", "-c", "cat >/dev/null"], Some(&data));
    println!(
        "vsock-host-to-guest: {:.1} MB/s (64 MiB through exec stdin)",
        VSOCK_BYTES as f64 / MIB as f64 / took.as_secs_f64()
    );

    // The same binary runs the disk reads in the guest.
    let mut me = Vec::new();
    File::open("/proc/self/exe")
        .and_then(|mut f| f.read_to_end(&mut me))
        .unwrap_or_else(|e| fail(e));
    exec(
        &session,
        &["sh", "-c", "cat >/tmp/box-bench && chmod +x /tmp/box-bench"],
        Some(&me),
    );
    for (what, args) in [("seqread", vec!["seqread"]), ("randread", vec!["randread"])] {
        let count = RANDOM_READS.to_string();
        let mut guest_argv = vec!["/tmp/box-bench"];
        guest_argv.extend(&args);
        guest_argv.push(disk_guest);
        if what == "randread" {
            guest_argv.push(&count);
        }
        let (guest, _) = exec(&session, &guest_argv, None);
        let host = if what == "seqread" {
            format!("{:.1}", seqread(disk_host))
        } else {
            format!("{:.0}", randread(disk_host, RANDOM_READS))
        };
        let unit = if what == "seqread" {
            "MB/s (1 MiB O_DIRECT)"
        } else {
            "IOPS (4 KiB O_DIRECT, random)"
        };
        println!(
            "blk-{what}: guest {} vs host file {host} {unit}",
            String::from_utf8_lossy(&guest).trim()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1), arg(2)) {
        (Some("seqread"), Some(path), None) => println!("{:.1}", seqread(path)),
        (Some("randread"), Some(path), Some(count)) => {
            let count = count.parse().unwrap_or_else(|_| fail("randread COUNT must be a number"));
            println!("{:.0}", randread(path, count));
        }
        (Some("box"), _, _) => {
            let flag = |name: &str| {
                args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
                    .unwrap_or_else(|| fail(format!("box needs {name}")))
            };
            bench_box(&flag("--vsock"), &flag("--disk-guest"), &flag("--disk-host"));
        }
        _ => fail("usage: boxlite-box-bench box --vsock UDS --disk-guest DEV --disk-host IMAGE | seqread PATH | randread PATH COUNT"),
    }
}
