//! `boxlite run`: one command in a fresh box.
//!
//! The box is one `boxlite-shim` process with its config on stdin. The host binds the readiness
//! listener before the VM starts, waits for the guest agent's signal while watching for the shim
//! dying and for a timeout, runs the command over vsock, then asks the agent to shut the guest
//! down and waits for the shim to exit.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boxlite_lifecycle::ExecRequest;
use boxlite_lifecycle::{ready_listener_path, ReadyListener};
use boxlite_lifecycle::{Error as GuestError, GuestSession};
use boxlite_proto::{
    ConsoleConfig, DiskConfig, DiskFormat, LogLevel, ShimConfig, VmConfig, VsockConfig,
};

use crate::args::{ExecOptions, RunArgs};
use crate::box_dir::BoxDir;
use crate::error::CliError;

/// The guest's vsock context id (the first one free for guests).
const GUEST_CID: u32 = 3;
/// How often the readiness wait looks at the shim.
const READY_POLL: Duration = Duration::from_millis(100);
/// How long past a command's timeout the host waits for the agent to report its end.
const HOST_TIMEOUT_GRACE: Duration = Duration::from_secs(10);
/// How long a guest may take to power off after the agent's shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Lines of log shown when the box fails to start.
const LOG_TAIL_LINES: usize = 20;

/// The kernel command line for a box: serial console, reset on reboot and panic, and the root
/// disk for the agent to switch to when there is one.
pub fn kernel_cmdline(root_disk: bool) -> String {
    let mut cmdline = String::from("console=ttyS0 reboot=k panic=-1 quiet");
    if root_disk {
        cmdline.push_str(" boxlite.root=/dev/vda boxlite.rootfstype=ext4");
    }
    cmdline
}

/// The shim config for `args`, with the vsock socket at `uds` and the console in `console`.
pub fn shim_config(args: &RunArgs, uds: &Path, console: &Path) -> ShimConfig {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut disks: Vec<DiskConfig> = args
        .root_disk
        .iter()
        .map(|root| DiskConfig {
            path: path(root),
            read_only: false,
            format: DiskFormat::Raw,
        })
        .collect();
    disks.extend(args.disks.iter().map(|(disk, read_only)| DiskConfig {
        path: path(disk),
        read_only: *read_only,
        format: DiskFormat::Raw,
    }));
    ShimConfig::new(
        VmConfig {
            kernel: path(&args.kernel),
            initrd: Some(path(&args.initrd)),
            cmdline: kernel_cmdline(args.root_disk.is_some()),
            mem_mib: args.mem_mib,
            vcpus: args.vcpus,
            console: ConsoleConfig {
                file: Some(path(console)),
                stdout: false,
                file_cap: None,
            },
            disks,
            vsock: Some(VsockConfig {
                guest_cid: GUEST_CID,
                uds_path: path(uds),
            }),
        },
        LogLevel::Info,
    )
}

/// The shim binary: the one asked for, else the one installed next to this program, else
/// `boxlite-shim` from PATH.
fn shim_path(args: &RunArgs) -> PathBuf {
    if let Some(shim) = &args.shim {
        return shim.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("boxlite-shim")))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("boxlite-shim"))
}

fn spawn_shim(args: &RunArgs, dir: &BoxDir, uds: &Path) -> Result<Child, CliError> {
    let shim = shim_path(args);
    let config = shim_config(args, uds, &dir.join("console.log"))
        .to_frame()
        .map_err(|e| CliError::Config(e.to_string()))?;
    // Created before the spawn so a shim that dies at once still leaves its words behind.
    let stderr_path = dir.join("shim.stderr");
    let stderr = File::create(&stderr_path).map_err(|source| CliError::File {
        action: "create",
        path: stderr_path,
        source,
    })?;
    let spawn_error = |source| CliError::Spawn {
        shim: shim.clone(),
        source,
    };
    let mut child = Command::new(&shim)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(spawn_error)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| spawn_error(std::io::Error::other("no stdin pipe")))?;
    match stdin.write_all(&config) {
        Ok(()) => Ok(child),
        // The shim exited before reading its config: the readiness wait sees it gone and
        // reports its exit status and log, which say more than the broken pipe.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(spawn_error(e))
        }
    }
}

/// The last lines of the box's logs, for an error message.
fn log_tail(dir: &BoxDir) -> String {
    let mut tail = String::new();
    for name in ["shim.stderr", "console.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        tail.push_str(&format!("--- {name}\n{}\n", lines[start..].join("\n")));
    }
    tail
}

/// Waits for the guest's readiness, failing early when the shim exits. The listener waits on
/// its own thread and is dropped (its socket removed) as soon as the guest has spoken, so a
/// guest cannot queue connections on it afterwards.
fn wait_ready(
    ready: ReadyListener,
    shim: &mut Child,
    dir: &BoxDir,
    timeout: Duration,
) -> Result<(), CliError> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(ready.wait(timeout));
    });
    loop {
        match result.recv_timeout(READY_POLL) {
            Ok(outcome) => return outcome.map(drop).map_err(CliError::from),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(CliError::Guest(GuestError::Closed {
                    context: "while waiting for readiness",
                }))
            }
        }
        if let Ok(Some(status)) = shim.try_wait() {
            return Err(CliError::ShimDied {
                status: status.to_string(),
                log_tail: log_tail(dir),
            });
        }
    }
}

/// Aborts the exec connection if it is still open after `after`; dropping the returned sender
/// disarms it.
fn host_deadline(control: boxlite_lifecycle::ExecControl, after: Duration) -> mpsc::Sender<()> {
    let (disarm, disarmed) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(after) {
            log::warn!("the guest did not end the command within {after:?}; giving up on it");
            control.abort();
        }
    });
    disarm
}

/// Copies this process's stdin to the command until EOF, then closes the command's stdin.
fn forward_stdin(control: boxlite_lifecycle::ExecControl) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if control.write_stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = control.close_stdin();
    });
}

/// Stops the box: the agent powers the guest off; if the shim is still there after the grace
/// period it gets SIGTERM, then SIGKILL.
fn stop_box(session: &GuestSession, shim: &mut Child) {
    if let Err(e) = session.shutdown() {
        log::warn!("the guest agent did not take the shutdown request: {e}");
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = shim.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log::warn!("the box did not stop within {SHUTDOWN_GRACE:?}; terminating its VMM");
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    unsafe { libc::kill(shim.id() as libc::pid_t, libc::SIGTERM) };
    std::thread::sleep(Duration::from_secs(2));
    let _ = shim.kill();
    let _ = shim.wait();
}

/// Runs `exec` through `session`, streaming its output here; returns the exit status to leave
/// with.
pub fn exec_in(session: &GuestSession, exec: &ExecOptions) -> Result<i32, CliError> {
    exec_with_grace(session, exec, HOST_TIMEOUT_GRACE)
}

/// [`exec_in`] with the host's grace period past the command's timeout given.
fn exec_with_grace(
    session: &GuestSession,
    exec: &ExecOptions,
    grace: Duration,
) -> Result<i32, CliError> {
    let request = ExecRequest {
        env: exec.env.clone(),
        cwd: exec.cwd.clone(),
        uid: exec.uid,
        gid: exec.gid,
        stdin: exec.interactive,
        timeout_ms: exec.timeout.map(|t| t.as_millis() as u64),
        ..ExecRequest::new(exec.argv.clone())
    };
    let handle = session.exec(request)?;
    if exec.interactive {
        forward_stdin(handle.control());
    }
    // The agent enforces the timeout; this deadline covers an agent that stops answering.
    let armed = exec
        .timeout
        .map(|timeout| host_deadline(handle.control(), timeout + grace));
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let status = handle.stream(
        |bytes| {
            let _ = out.write_all(bytes).and_then(|_| out.flush());
        },
        |bytes| {
            let _ = err.write_all(bytes).and_then(|_| err.flush());
        },
    );
    drop(armed);
    let status = status.map_err(|e| match exec.timeout {
        Some(timeout) => CliError::Unresponsive {
            after: timeout + grace,
            source: e,
        },
        None => e.into(),
    })?;
    if status.timed_out {
        eprintln!("boxlite: the command timed out and was killed");
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128i32.saturating_add(signal),
        (None, None) => 1,
    })
}

/// Waits for the agent of a box whose vsock socket is `uds` to signal readiness.
pub fn wait_ready_at(uds: &Path, timeout: Duration) -> Result<(), CliError> {
    ReadyListener::bind(ready_listener_path(uds))?.wait(timeout)?;
    Ok(())
}

/// Runs `args.exec` in a fresh box; returns the exit status to leave with.
pub fn run(args: &RunArgs) -> Result<i32, CliError> {
    let dir = BoxDir::create(args.box_dir.as_deref())?;
    let uds = dir.join("vsock.sock");
    let ready = ReadyListener::bind(ready_listener_path(&uds))?;
    let mut shim = spawn_shim(args, &dir, &uds)?;
    if let Err(e) = wait_ready(ready, &mut shim, &dir, args.boot_timeout) {
        let _ = shim.kill();
        let _ = shim.wait();
        return Err(e);
    }
    let session = GuestSession::vsock(&uds);
    let result = exec_in(&session, &args.exec);
    stop_box(&session, &mut shim);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args() -> RunArgs {
        RunArgs {
            kernel: "/k".into(),
            initrd: "/i".into(),
            root_disk: Some("/root.ext4".into()),
            disks: vec![("/data".into(), false), ("/ro".into(), true)],
            shim: None,
            mem_mib: 128,
            vcpus: 2,
            boot_timeout: Duration::from_secs(1),
            box_dir: None,
            exec: ExecOptions {
                argv: vec!["true".into()],
                ..ExecOptions::default()
            },
        }
    }

    #[test]
    fn root_disk_comes_first_and_is_announced_to_the_agent() {
        let config = shim_config(
            &args(),
            Path::new("/b/vsock.sock"),
            Path::new("/b/console.log"),
        );
        let disks: Vec<(&str, bool)> = config
            .vm
            .disks
            .iter()
            .map(|d| (d.path.as_str(), d.read_only))
            .collect();
        assert_eq!(
            disks,
            [("/root.ext4", false), ("/data", false), ("/ro", true)]
        );
        assert!(config.vm.cmdline.contains("boxlite.root=/dev/vda"));
        assert_eq!(
            config.vm.vsock,
            Some(VsockConfig {
                guest_cid: 3,
                uds_path: "/b/vsock.sock".into()
            })
        );
        assert_eq!(config.vm.console.file.as_deref(), Some("/b/console.log"));
        assert!(!config.vm.console.stdout);
        assert_eq!((config.vm.mem_mib, config.vm.vcpus), (128, 2));
    }

    #[test]
    fn without_a_root_disk_the_guest_stays_on_the_initramfs() {
        assert!(!kernel_cmdline(false).contains("boxlite.root"));
        assert!(kernel_cmdline(false).contains("reboot=k panic=-1"));
    }

    #[test]
    fn a_shim_that_dies_at_once_is_reported_with_its_log() {
        let dir = BoxDir::create(None).unwrap();
        let uds = dir.join("vsock.sock");
        let ready = ReadyListener::bind(ready_listener_path(&uds)).unwrap();
        let run = RunArgs {
            shim: Some("/bin/false".into()),
            ..args()
        };
        let mut shim = spawn_shim(&run, &dir, &uds).unwrap();
        let err = wait_ready(ready, &mut shim, &dir, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, CliError::ShimDied { .. }), "{err}");
        assert!(err.to_string().contains("shim.stderr"), "{err}");
    }

    #[test]
    fn a_missing_shim_is_named() {
        let dir = BoxDir::create(None).unwrap();
        let run = RunArgs {
            shim: Some("/nonexistent/boxlite-shim".into()),
            ..args()
        };
        let err = spawn_shim(&run, &dir, &dir.join("vsock.sock")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/boxlite-shim"),
            "{err}"
        );
    }

    #[test]
    fn a_silent_agent_is_given_up_on_after_the_timeout() {
        use boxlite_proto::agent::Event;
        use std::io::Read;
        use std::os::unix::net::UnixListener;

        let dir = BoxDir::create(None).unwrap();
        let path = dir.join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // A fake agent: takes the request, says the command started, then says nothing more.
        let agent = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut header = [0u8; 4];
            conn.read_exact(&mut header).unwrap();
            let mut request = vec![0u8; u32::from_le_bytes(header) as usize];
            conn.read_exact(&mut request).unwrap();
            let started = boxlite_proto::encode_frame(&Event::Started { pid: 42 }).unwrap();
            conn.write_all(&started).unwrap();
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest); // until the host gives up
        });
        let exec = ExecOptions {
            timeout: Some(Duration::from_millis(100)),
            ..args().exec
        };
        let start = Instant::now();
        let err = exec_with_grace(
            &GuestSession::unix(&path),
            &exec,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, CliError::Unresponsive { .. }), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        agent.join().unwrap();
    }
}
