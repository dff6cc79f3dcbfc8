//! Tier 2: what a supervising runtime asks of the shim, with probe guests on the local
//! /dev/kvm: the exit file for each way a shim ends, and a refused watchdog.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use boxlite_proto::{
    ConsoleConfig, ExitRecord, LogLevel, ShimConfig, ShimEnd, Supervision, VmConfig, VmOutcome,
};

mod common;
use common::{probe, SHIM};

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
fn each_end_is_recorded_in_the_exit_file() {
    let pvh = probe("probe-pvh");
    let pvh = pvh.to_str().unwrap();
    for (scenario, outcome) in [("hello", VmOutcome::GuestReset), ("panic", VmOutcome::GuestPanic)] {
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
fn a_watchdog_that_is_not_a_pipe_is_a_usage_error() {
    let path = exit_path("watchdog");
    let mut config = config(probe("probe-pvh").to_str().unwrap(), "probe=hello", &path);
    config.supervision.watchdog = true;
    let not_a_pipe = std::fs::File::open("/dev/null").unwrap();
    let (status, record) = run(&config, Some(not_a_pipe));
    assert_eq!(status, Some(2));
    assert!(record.is_none(), "nothing was started: no exit file");
}
