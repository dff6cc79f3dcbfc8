//! Tier 2: probe guests drive the virtio devices on the local /dev/kvm.
//!
//! The probe (`guest/probe`, scenarios `blk` and `vsock`) carries a minimal polled virtio-mmio
//! driver. These tests boot it with the real `boxlite-shim` binary, play the host side (disk
//! images, Unix sockets) and check both the guest's report on COM1 and what reached the host.
//!
//! Needs /dev/kvm and the probes built (`scripts/build-probes.sh`, or BOXLITE_PROBE_DIR).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boxlite_proto::VmOutcome;

mod common;
use common::{probe_command, Run, PROTOCOLS};

/// The longest a shim may run before the test kills it and fails.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Socket reads and writes towards the guest.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const IMAGE_LEN: usize = 1 << 20;
const SECTOR: usize = 512;

/// A fresh directory under /tmp, removed on drop. Kept short: a Unix socket path (sun_path)
/// holds at most 107 bytes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("bxv-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running shim whose console (stdout) is collected as it arrives, so a test can react to
/// the guest's lines. Killed on drop, so a failing assert never leaves a VM behind.
struct Shim {
    child: Option<Child>,
    console: Arc<Mutex<Vec<u8>>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl Shim {
    fn spawn(kernel: &str, scenario: &str, extra: &[&Path]) -> Shim {
        let mut child = probe_command(kernel, scenario)
            .args(extra)
            .spawn()
            .expect("spawning boxlite-shim");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let console = Arc::new(Mutex::new(Vec::new()));
        let sink = console.clone();
        let stdout_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut log = Vec::new();
            let _ = stderr.read_to_end(&mut log);
            log
        });
        Shim {
            child: Some(child),
            console,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
            started: Instant::now(),
        }
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&self.console.lock().unwrap()).into_owned()
    }

    /// Fails the test if the shim has exited or ran past [`TIMEOUT`]; `what` says what we were
    /// waiting for.
    fn check_alive(&mut self, what: &str) {
        let child = self.child.as_mut().expect("shim not finished yet");
        let status = child.try_wait().expect("polling the shim");
        let overdue = self.started.elapsed() > TIMEOUT;
        if status.is_some() || overdue {
            let run = self.finish();
            panic!(
                "{what}: shim {}\nconsole:\n{}\nlog:\n{}",
                if overdue { "timed out" } else { "exited" },
                run.console,
                run.log
            );
        }
    }

    /// Waits until the console shows `line`.
    fn wait_for_line(&mut self, line: &str) {
        while !self
            .console()
            .lines()
            .any(|l| l.trim_end_matches('\r') == line)
        {
            self.check_alive(&format!("waiting for console line {line:?}"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Accepts one connection on a non-blocking `listener` while the shim runs.
    fn accept(&mut self, listener: &UnixListener) -> UnixStream {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                    return stream;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.check_alive("waiting for the guest to connect");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Waits for the shim to exit (killing it after [`TIMEOUT`]) and collects its output.
    fn finish(&mut self) -> Run {
        let mut child = self.child.take().expect("shim already finished");
        let status = loop {
            if let Some(status) = child.try_wait().expect("polling the shim") {
                break Some(status);
            }
            if self.started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(reader) = self.stdout_reader.take() {
            reader.join().expect("stdout reader");
        }
        let log = self
            .stderr_reader
            .take()
            .map(|reader| reader.join().expect("stderr reader"))
            .unwrap_or_default();
        Run {
            outcome: status
                .and_then(|s| s.code())
                .and_then(|c| u8::try_from(c).ok())
                .and_then(VmOutcome::from_exit_code),
            console: self.console(),
            log: String::from_utf8_lossy(&log).into_owned(),
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Run {
    fn has_no_errors(&self, scenario: &str) -> &Run {
        assert!(
            !self.console.contains(&format!("PROBE: {scenario} error")),
            "console:\n{}\nlog:\n{}",
            self.console,
            self.log
        );
        self
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn block_devices_read_write_flush_and_refuse_read_only_writes() {
    for kernel in PROTOCOLS {
        let dir = Scratch::new(&format!("blk-{kernel}"));
        let rw = dir.path("rw.img");
        let ro = dir.path("ro.img");
        let mut rw_image = vec![0u8; IMAGE_LEN];
        rw_image[..16].copy_from_slice(b"hello-from-host\0");
        std::fs::write(&rw, &rw_image).unwrap();
        let ro_image: Vec<u8> = (0..IMAGE_LEN).map(|i| (i % 251) as u8).collect();
        std::fs::write(&ro, &ro_image).unwrap();

        let disks = [Path::new("--disk"), &rw, Path::new("--ro-disk"), &ro];
        let run = Shim::spawn(kernel, "blk", &disks).finish();
        run.expect(VmOutcome::GuestReset)
            .has_no_errors("blk")
            .has_line("PROBE: blk id=boxlite-disk0")
            .has_line(&format!("PROBE: blk capacity={}", IMAGE_LEN / SECTOR))
            .has_line("PROBE: blk sector0=hello-from-host")
            .has_line("PROBE: blk write+flush+readback ok")
            .has_line("PROBE: blk ro write refused status=1")
            // GET_ID, 2 reads, write and flush on disk 0, the refused write on disk 1.
            .has_line("PROBE: blk interrupt status acked=6")
            .has_line("PROBE: blk irq delivered")
            .has_line("PROBE: done");

        let after = std::fs::read(&rw).unwrap();
        let pattern = b"boxlite-probe-write";
        assert_eq!(&after[SECTOR..SECTOR + pattern.len()], pattern);
        assert!(
            after[SECTOR + pattern.len()..2 * SECTOR]
                .iter()
                .all(|&b| b == 0),
            "the rest of sector 1 is the zero padding the guest wrote"
        );
        assert_eq!(after[..SECTOR], rw_image[..SECTOR], "sector 0 untouched");
        assert_eq!(after[2 * SECTOR..], rw_image[2 * SECTOR..]);
        assert!(
            std::fs::read(&ro).unwrap() == ro_image,
            "the read-only image changed"
        );
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn vsock_streams_work_in_both_directions() {
    for kernel in PROTOCOLS {
        let dir = Scratch::new(&format!("vs-{kernel}"));
        let uds = dir.path("v.sock");
        // The guest connects to host port 5000 first thing: listen before the VM starts.
        let listener = UnixListener::bind(dir.path("v.sock_5000")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut shim = Shim::spawn(kernel, "vsock", &[Path::new("--vsock"), &uds]);

        // Guest-initiated: hello, our reply, then the guest closes (end of file here).
        let mut from_guest = shim.accept(&listener);
        let mut hello = [0u8; 16];
        from_guest.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"hello-from-guest");
        from_guest.write_all(b"hello-from-host").unwrap();
        let mut rest = Vec::new();
        from_guest.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "unexpected data after hello: {rest:?}");

        // Host-initiated, Firecracker's handshake: CONNECT, OK <host port>, then the stream.
        shim.wait_for_line("PROBE: vsock listening 1234");
        let mut to_guest = UnixStream::connect(&uds).unwrap();
        to_guest.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        to_guest.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        to_guest.write_all(b"CONNECT 1234\n").unwrap();
        let line = read_line(&mut to_guest);
        let port: u32 = line
            .strip_prefix("OK ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad handshake answer {line:?}"));
        assert!((1 << 30..1 << 31).contains(&port), "host port {port}");
        to_guest.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        to_guest.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");
        drop(to_guest);

        let run = shim.finish();
        run.expect(VmOutcome::GuestReset)
            .has_no_errors("vsock")
            .has_line("PROBE: vsock cid=3")
            .has_line("PROBE: vsock connected to host port 5000")
            .has_line("PROBE: vsock host said hello-from-host")
            .has_line("PROBE: vsock guest connection closed")
            .has_line(&format!("PROBE: vsock accepted host port {port}"))
            .has_line("PROBE: vsock echo done")
            .has_line("PROBE: done");
        assert!(!uds.exists(), "the shim removes its socket on exit");
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn vsock_connect_without_host_listener_is_refused() {
    let dir = Scratch::new("vs-refused");
    let uds = dir.path("v.sock");
    let run = Shim::spawn("probe-pvh", "vsock", &[Path::new("--vsock"), &uds]).finish();
    run.expect(VmOutcome::GuestReset)
        .has_line("PROBE: vsock cid=3")
        .has_line("PROBE: vsock error connect: refused (RST): no listener at <uds>_5000?")
        .has_line("PROBE: done");
}

/// One `\n`-terminated line (without it), read byte by byte so nothing after it is consumed.
fn read_line(stream: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        stream
            .read_exact(&mut byte)
            .expect("reading a handshake line");
        if byte[0] == b'\n' {
            return String::from_utf8_lossy(&line).into_owned();
        }
        line.push(byte[0]);
    }
    panic!("no newline in {:?}", String::from_utf8_lossy(&line));
}
