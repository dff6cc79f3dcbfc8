//! Tier 2: probe guests on the local /dev/kvm.
//!
//! Each test boots a tiny bare-metal guest from `guest/probe` with the real `boxlite-shim`
//! binary. The probe checks what the VMM handed it (command line, memory map, MP table, other
//! vCPUs) and reports on COM1; the test asserts on that report and on the shim's exit status.
//! Two probe builds cover both entry paths: `probe-pvh` (PVH note) and `probe-linux64` (ELF
//! without the note, entered through the Linux 64-bit boot protocol).
//!
//! Needs /dev/kvm and the probes built (`scripts/build-probes.sh`, or BOXLITE_PROBE_DIR).
//! `scripts/test.sh` runs this tier only where /dev/kvm is usable and says so otherwise.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use boxlite_proto::VmOutcome;

mod common;
use common::{probe, probe_command, Run, PROTOCOLS, SHIM};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Every VM has the virtio entropy device in the first virtio-mmio slot, announced on the
/// kernel command line after the configured part.
const RNG_ENTRY: &str = "virtio_mmio.device=4K@0xc0001000:5";

/// Waits for `child`, killing it after [`TIMEOUT`] so a hung guest fails the test instead of
/// hanging the suite.
fn wait(mut child: std::process::Child) -> Output {
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("waiting for the shim").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child
                .wait_with_output()
                .expect("collecting the shim's output");
            panic!(
                "shim timed out after {TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
        .wait_with_output()
        .expect("collecting the shim's output")
}

fn finish(output: Output) -> Run {
    Run {
        outcome: output
            .status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .and_then(VmOutcome::from_exit_code),
        console: String::from_utf8_lossy(&output.stdout).into_owned(),
        log: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn boot(kernel: &str, scenario: &str, extra: &[&str]) -> Run {
    let child = probe_command(kernel, scenario)
        .args(extra)
        .spawn()
        .expect("spawning boxlite-shim");
    finish(wait(child))
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn each_entry_path_starts_the_probe_with_its_command_line() {
    for (kernel, tag) in [("probe-pvh", "pvh"), ("probe-linux64", "linux64")] {
        boot(kernel, "hello", &[])
            .expect(VmOutcome::GuestReset)
            .has_line(&format!("PROBE: start {tag}"))
            .has_line(&format!("PROBE: cmdline=probe=hello {RNG_ENTRY}"))
            .has_line("PROBE: done");
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn memory_map_matches_the_layout_below_4g() {
    for kernel in PROTOCOLS {
        boot(kernel, "memmap", &[])
            .expect(VmOutcome::GuestReset)
            .has_line("PROBE: e820 0x0 0x9fc00 1")
            .has_line("PROBE: e820 0x9fc00 0xa0000 2")
            .has_line("PROBE: e820 0x100000 0x4000000 1");
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn memory_above_the_mmio_hole_is_mapped_past_4g() {
    // 4 GiB of guest RAM: 3 GiB below the hole, 1 GiB from 4 GiB up. Anonymous memory is only
    // touched where the guest writes, so this costs the host almost nothing.
    for kernel in PROTOCOLS {
        let run = boot(kernel, "memmap", &["--mem-mib", "4096"]);
        run.expect(VmOutcome::GuestReset)
            .has_line("PROBE: e820 0x100000 0xc0000000 1")
            .has_line("PROBE: e820 0x100000000 0x140000000 1");
        assert_eq!(
            run.lines()
                .iter()
                .filter(|l| l.starts_with("PROBE: e820"))
                .count(),
            4
        );
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn mp_table_lists_every_vcpu_and_the_ioapic() {
    for kernel in PROTOCOLS {
        boot(kernel, "mptable", &["--vcpus", "3"])
            .expect(VmOutcome::GuestReset)
            .has_line("PROBE: mptable cpus=3 ioapic=0xfec00000");
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn application_processors_come_up_through_init_sipi() {
    for kernel in PROTOCOLS {
        for vcpus in ["2", "4"] {
            boot(kernel, "smp", &["--vcpus", vcpus])
                .expect(VmOutcome::GuestReset)
                .has_line(&format!("PROBE: smp cpus_up={vcpus}"));
        }
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn boot_timer_write_is_logged() {
    let run = boot("probe-pvh", "boottimer", &[]);
    run.expect(VmOutcome::GuestReset)
        .has_line("PROBE: boot timer written");
    assert!(
        run.log.contains("boot-timer: guest boot time = "),
        "log:\n{}",
        run.log
    );
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn panic_banner_then_reset_is_a_guest_panic() {
    for kernel in PROTOCOLS {
        let run = boot(kernel, "panic", &[]);
        run.expect(VmOutcome::GuestPanic);
        assert!(
            run.log.contains("probe requested panic"),
            "the panic line is reported:\n{}",
            run.log
        );
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn triple_fault_is_its_own_outcome() {
    for kernel in PROTOCOLS {
        boot(kernel, "triplefault", &[]).expect(VmOutcome::TripleFault);
    }
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn sigterm_shuts_a_hung_guest_down() {
    let mut child = Command::new(SHIM)
        .arg("--kernel")
        .arg(probe("probe-pvh"))
        .args(["--cmdline", "probe=hang", "--mem-mib", "64", "--vcpus", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning boxlite-shim");
    // Wait until the guest says it is hanging, then ask the shim to stop.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains("PROBE: hanging") {
        assert!(Instant::now() < deadline, "probe never reported hanging");
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "shim exited early: {:?}", child.wait());
        seen.extend_from_slice(&buf[..n]);
    }
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let run = finish(wait(child));
    run.expect(VmOutcome::HostShutdown);
    assert!(run.log.contains("received SIGTERM"), "log:\n{}", run.log);
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn config_on_stdin_boots_like_flags() {
    let kernel = probe("probe-linux64");
    let encoded = Command::new(SHIM)
        .arg("encode-config")
        .arg("--kernel")
        .arg(&kernel)
        .args(["--cmdline", "probe=hello from=stdin", "--mem-mib", "32"])
        .output()
        .expect("running encode-config");
    assert!(encoded.status.success());
    let mut child = Command::new(SHIM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning boxlite-shim");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&encoded.stdout)
        .unwrap();
    finish(wait(child))
        .expect(VmOutcome::GuestReset)
        .has_line(&format!(
            "PROBE: cmdline=probe=hello from=stdin {RNG_ENTRY}"
        ));
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn console_can_go_to_a_file_only() {
    let path =
        std::env::temp_dir().join(format!("boxlite-probe-console-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let run = boot("probe-pvh", "hello", &["--console", path.to_str().unwrap()]);
    run.expect(VmOutcome::GuestReset);
    assert_eq!(
        run.console, "",
        "stdout stays quiet when only a file is asked for"
    );
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        file.contains("PROBE: cmdline=probe=hello"),
        "console file:\n{file}"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn unusable_kernels_and_configs_fail_with_a_reason() {
    let missing = boot_raw(&["--kernel", "/nonexistent/vmlinux"], None);
    assert_eq!(missing.outcome, Some(VmOutcome::VmmError));
    assert!(
        missing.log.contains("/nonexistent/vmlinux"),
        "{}",
        missing.log
    );

    let too_many = boot_raw(
        &[
            "--kernel",
            probe("probe-pvh").to_str().unwrap(),
            "--vcpus",
            "33",
        ],
        None,
    );
    assert_eq!(too_many.outcome, Some(VmOutcome::VmmError));
    assert!(too_many.log.contains("vCPUs"), "{}", too_many.log);

    let garbage = boot_raw(&[], Some(b"\x05\0\0\0garbage"));
    assert_eq!(garbage.status, Some(2));
    assert!(garbage.log.contains("config"), "{}", garbage.log);
}

struct RawRun {
    status: Option<i32>,
    outcome: Option<VmOutcome>,
    log: String,
}

fn boot_raw(args: &[&str], stdin: Option<&[u8]>) -> RawRun {
    let mut child = Command::new(SHIM)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning boxlite-shim");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let output = wait(child);
    let status = output.status.code();
    RawRun {
        status,
        outcome: status
            .and_then(|c| u8::try_from(c).ok())
            .and_then(VmOutcome::from_exit_code),
        log: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What a supervising runtime asks of the shim: the exit file for each way a shim ends, and
/// a refused watchdog.
mod supervision {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use boxlite_proto::{
        ConsoleConfig, ExitRecord, LogLevel, ShimConfig, ShimEnd, Supervision, VmConfig, VmOutcome,
    };

    use crate::common::{probe, SHIM};

    fn config(kernel: &str, cmdline: &str, exit_file: &std::path::Path) -> ShimConfig {
        let mut config = ShimConfig::new(
            VmConfig {
                kernel: kernel.to_string(),
                initrd: None,
                cmdline: cmdline.to_string(),
                mem_mib: 32,
                vcpus: 1,
                console: ConsoleConfig::default(),
                disks: Vec::new(),
                vsock: None,
            },
            LogLevel::Info,
        );
        config.supervision = Supervision {
            exit_file: Some(exit_file.to_string_lossy().into_owned()),
            ..Supervision::default()
        };
        config
    }

    /// Runs the shim on `config` (fd 3 = `fd3` when given); returns its status and exit record.
    fn run(config: &ShimConfig, fd3: Option<std::fs::File>) -> (Option<i32>, Option<ExitRecord>) {
        let mut command = Command::new(SHIM);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(file) = fd3 {
            use std::os::fd::IntoRawFd;
            let fd = file.into_raw_fd();
            // SAFETY: dup2 in the forked child before exec, on a descriptor the parent owns.
            unsafe {
                command.pre_exec(move || {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawning boxlite-shim");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&config.to_frame().unwrap())
            .unwrap();
        let status = child.wait().unwrap().code();
        let path = config.supervision.exit_file.as_deref().unwrap();
        let record = std::fs::read(path)
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).expect("the exit file is an ExitRecord"));
        (status, record)
    }

    fn exit_path(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("boxlite-exit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    #[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
    fn each_end_is_recorded_in_the_exit_file() {
        let pvh = probe("probe-pvh");
        let pvh = pvh.to_str().unwrap();
        for (scenario, outcome) in [
            ("hello", VmOutcome::GuestReset),
            ("panic", VmOutcome::GuestPanic),
        ] {
            let path = exit_path(scenario);
            let (status, record) = run(&config(pvh, &format!("probe={scenario}"), &path), None);
            assert_eq!(status, Some(i32::from(outcome.exit_code())));
            let record = record.expect("an exit file");
            assert_eq!(
                record.end,
                ShimEnd::Vm {
                    outcome,
                    exit_code: outcome.exit_code()
                }
            );
            assert!(record.pid > 0 && record.ended_unix_ms > 0);
            std::fs::remove_file(path).unwrap();
        }
        let path = exit_path("bad-kernel");
        let (status, record) = run(&config("/nonexistent/vmlinux", "", &path), None);
        assert_eq!(status, Some(1));
        match record.expect("an exit file").end {
            ShimEnd::Error { message, exit_code } => {
                assert!(message.contains("/nonexistent/vmlinux"), "{message}");
                assert_eq!(exit_code, 1);
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    #[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
    fn a_watchdog_that_is_not_a_pipe_is_a_usage_error() {
        let path = exit_path("watchdog");
        let mut config = config(probe("probe-pvh").to_str().unwrap(), "probe=hello", &path);
        config.supervision.watchdog = true;
        let not_a_pipe = std::fs::File::open("/dev/null").unwrap();
        let (status, record) = run(&config, Some(not_a_pipe));
        assert_eq!(status, Some(2));
        assert!(record.is_none(), "nothing was started: no exit file");
    }
}
