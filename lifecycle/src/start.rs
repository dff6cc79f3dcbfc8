//! Starting a box: ordered, named steps — layout, spawn, ready, connect.
//!
//! On any failure the shim is stopped, the diagnostic files are kept and the box becomes Failed
//! with a crash report; the record is never deleted.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use boxlite_proto::{
    BoxState, ConsoleConfig, DiskConfig, DiskFormat, ExitRecord, LogLevel, ShimConfig, ShimEnd,
    Supervision, VmConfig, VsockConfig, EXIT_FILE_NAME,
};

use crate::boxes::{BoxHandle, StartTimings, TIMINGS_FILE};
use crate::crash::{
    read_exit, retire_exit_file, write_exit, CrashReport, CONSOLE_LOG, SHIM_STDERR,
};
use crate::error::{Error, Result};
use crate::home::{write_atomic, BoxDir};
use crate::options::{BoxOptions, Root};
use crate::pidfile::{self, Identity, PID_FILE};
use crate::ready::{ready_listener_path, ReadyListener};
use crate::runtime::{lock, now_unix_ms};

/// The guest's vsock context id (the first one free for guests).
const GUEST_CID: u32 = 3;
/// The root overlay in `disks/`.
const ROOT_OVERLAY: &str = "root.qcow2";

/// A failed step: its name and the error.
struct StepError {
    step: &'static str,
    error: Error,
}

fn step<T>(name: &'static str, result: Result<T>) -> std::result::Result<T, StepError> {
    result.map_err(|error| StepError { step: name, error })
}

impl BoxHandle {
    /// Starts the box (Configured, Stopped or Failed) and returns once its guest agent answers.
    /// Blocks for the boot: up to the box's ready timeout.
    pub fn start(&self) -> Result<()> {
        let entry = self.rt.refresh(&self.id)?;
        if entry.state == BoxState::Running {
            return Err(Error::InvalidState {
                id: self.id.clone(),
                state: entry.state,
                action: "start",
                hint: Some("it is already running"),
            });
        }
        // A start that cannot begin (unreadable options, a missing asset) changes nothing.
        let options = self.options()?;
        self.rt.inner.assets.check_for(&options.root)?;
        let dir = self.dir();
        // The previous shim's pid file goes before the state says Starting: a Starting box
        // without a pid file is one being spawned.
        let _ = std::fs::remove_file(dir.file(PID_FILE));
        self.rt
            .set_state(&self.id, BoxState::Starting, None, None, "start")?;
        let mut timings = StartTimings::default();
        let mut spawned = None;
        match self.pipeline(&dir, &options, &mut timings, &mut spawned) {
            Ok(()) => {
                let _ = write_atomic(
                    &dir.file(TIMINGS_FILE),
                    &serde_json::to_vec(&timings).unwrap_or_default(),
                    0o644,
                );
                if let Err(e) = self.rt.set_state(
                    &self.id,
                    BoxState::Running,
                    spawned,
                    None,
                    "finish starting",
                ) {
                    // A stop or kill on another thread moved the state on before the shim was
                    // spawned: the shim this start made goes too.
                    return Err(self.fail("finish", e, spawned));
                }
                log::info!("box {} running ({:.0} ms)", self.id, timings.total_ms());
                Ok(())
            }
            Err(StepError { step, error }) => Err(self.fail(step, error, spawned)),
        }
    }

    fn pipeline(
        &self,
        dir: &BoxDir,
        options: &BoxOptions,
        timings: &mut StartTimings,
        spawned: &mut Option<u32>,
    ) -> std::result::Result<(), StepError> {
        let t = Instant::now();
        let (config, uds) = step("layout", self.lay_out(dir, options))?;
        timings.layout_ms = ms_since(t);

        let t = Instant::now();
        let ready = step("spawn", ReadyListener::bind(ready_listener_path(&uds)))?;
        let pid = step("spawn", self.spawn(dir, &config, options.detach))?;
        *spawned = Some(pid);
        timings.spawn_ms = ms_since(t);

        let t = Instant::now();
        let pid_file = dir.file(PID_FILE);
        let poll = self
            .rt
            .inner
            .timeouts
            .poll
            .max(std::time::Duration::from_millis(1));
        let alive = || pidfile::identity_at(&pid_file) != Identity::Absent;
        let waited = ready.wait_while(options.effective_ready_timeout(), poll, alive);
        drop(ready);
        match step("ready", waited)? {
            Some(_) => {}
            None => {
                return Err(StepError {
                    step: "ready",
                    error: Error::VmmExited,
                })
            }
        }
        timings.ready_ms = ms_since(t);

        let t = Instant::now();
        step("connect", self.session().and_then(|session| session.ping()))?;
        timings.connect_ms = ms_since(t);
        Ok(())
    }

    /// Creates the box's folders and disks and makes the shim config.
    fn lay_out(&self, dir: &BoxDir, options: &BoxOptions) -> Result<(ShimConfig, PathBuf)> {
        dir.lay_out()?;
        retire_exit_file(dir);
        let assets = &self.rt.inner.assets;
        let mut disks = Vec::new();
        let mut cmdline = String::from("console=ttyS0 reboot=k panic=-1 quiet");
        let (kernel, initrd) = match &options.root {
            Root::Default => (assets.kernel()?, Some(assets.initrd()?)),
            Root::Image(base) => {
                let overlay = dir.disks().join(ROOT_OVERLAY);
                if !overlay.exists() {
                    crate::overlay::create_overlay(base, &overlay)
                        .map_err(Error::file("make the root overlay", &overlay))?;
                }
                disks.push(DiskConfig {
                    path: path_string(&overlay),
                    read_only: false,
                    format: DiskFormat::Qcow2,
                });
                cmdline.push_str(" boxlite.root=/dev/vda boxlite.rootfstype=ext4");
                (assets.kernel()?, Some(assets.initrd()?))
            }
            Root::Kernel { kernel, initrd } => (kernel.clone(), initrd.clone()),
        };
        for word in &options.kernel_args {
            cmdline.push(' ');
            cmdline.push_str(word);
        }
        disks.extend(options.disks.iter().map(|disk| DiskConfig {
            path: path_string(&disk.path),
            read_only: disk.read_only,
            format: DiskFormat::Raw,
        }));
        let uds = dir.vsock_socket()?;
        let mut config = ShimConfig::new(
            VmConfig {
                kernel: path_string(&kernel),
                initrd: initrd.as_deref().map(path_string),
                cmdline,
                mem_mib: options.memory_mib,
                vcpus: options.cpus,
                console: ConsoleConfig {
                    file: Some(path_string(&dir.file(CONSOLE_LOG))),
                    stdout: false,
                    file_cap: None,
                },
                disks,
                vsock: Some(VsockConfig {
                    guest_cid: GUEST_CID,
                    uds_path: path_string(&uds),
                }),
            },
            LogLevel::Info,
        );
        config.supervision = Supervision {
            exit_file: Some(path_string(&dir.file(EXIT_FILE_NAME))),
            watchdog: !options.detach,
            detach: options.detach,
            stop_timeout_ms: u32::try_from(self.rt.inner.timeouts.guest_shutdown.as_millis())
                .unwrap_or(u32::MAX),
        };
        // Only to debug the shim's filters (the crash report of a seccomp kill says so).
        config.seccomp = std::env::var_os("BOXLITE_NO_SECCOMP").is_none();
        Ok((config, uds))
    }

    /// Spawns the shim with its config on stdin and records its pid; returns the pid.
    fn spawn(&self, dir: &BoxDir, config: &ShimConfig, detach: bool) -> Result<u32> {
        let shim = self.rt.inner.assets.shim()?;
        let frame = config
            .to_frame()
            .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        // Created before the spawn, so a shim that dies at once still leaves its words.
        let stderr_path = dir.file(SHIM_STDERR);
        let stderr = File::create(&stderr_path).map_err(Error::file("create", &stderr_path))?;
        let spawn_error = |source| Error::Spawn {
            shim: shim.clone(),
            source,
        };
        let mut command = Command::new(&shim);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let watchdog = if detach {
            None
        } else {
            // Its own process group: a terminal's Ctrl-C reaches the program, which then
            // stops the box in order, not the shim directly.
            command.process_group(0);
            let (read_end, write_end) = pipe().map_err(spawn_error)?;
            let read_fd = read_end.as_raw_fd();
            // SAFETY: the closure runs in the forked child before exec and only calls
            // async-signal-safe functions (dup2, fcntl) on a descriptor the parent owns.
            unsafe {
                command.pre_exec(move || {
                    if read_fd == 3 {
                        if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(read_fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            Some((read_end, write_end))
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let watchdog = watchdog.map(|(read_end, write_end)| {
            drop(read_end);
            write_end
        });
        let pid = child.id();
        let recorded = pidfile::write(&dir.file(PID_FILE), pid);
        if let Some(watchdog) = watchdog {
            lock(&self.rt.inner.watchdogs).insert(self.id.clone(), watchdog);
        }
        // The reaper: no zombie is left, and a shim killed by a signal (which cannot write its
        // exit file) gets one written for it before the box counts as ended.
        let reaping = self.rt.inner.reaping.clone();
        lock(&reaping).insert(self.id.clone());
        let (reaper_dir, id) = (dir.clone(), self.id.clone());
        let mut stdin = child.stdin.take();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let end = match (status.signal(), status.code()) {
                    (Some(signal), _) => Some(ShimEnd::Signal { signal }),
                    // It exited before it could write one (a config it refused).
                    (None, Some(code)) if code != 0 => Some(ShimEnd::Error {
                        message: format!("exited with status {code} without an exit record"),
                        exit_code: u8::try_from(code).unwrap_or(u8::MAX),
                    }),
                    _ => None,
                };
                if let Some(end) = end {
                    if read_exit(&reaper_dir.file(EXIT_FILE_NAME)).is_none() {
                        let ended_unix_ms = now_unix_ms();
                        write_exit(
                            &reaper_dir,
                            &ExitRecord {
                                pid,
                                ended_unix_ms,
                                end,
                            },
                        );
                    }
                }
            }
            lock(&reaping).remove(&id);
        });
        recorded?;
        if let Some(stdin) = stdin.as_mut() {
            // A shim that exits before reading its config is seen gone by the ready step,
            // whose report (exit status, log) says more than the broken pipe.
            if let Err(e) = stdin.write_all(&frame) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(spawn_error(e));
                }
            }
        }
        Ok(pid)
    }

    /// Stops whatever was spawned, records Failed with the crash report; returns the error.
    fn fail(&self, step: &'static str, error: Error, spawned: Option<u32>) -> Error {
        if let Some(pid) = spawned {
            self.kill_and_wait(pid);
        }
        let dir = self.dir();
        let report = CrashReport::gather(&dir);
        let reason = format!("{step}: {error}");
        let _ = std::fs::remove_file(dir.file(PID_FILE));
        lock(&self.rt.inner.watchdogs).remove(&self.id);
        if let Err(e) = self.rt.set_state(
            &self.id,
            BoxState::Failed,
            None,
            Some(reason),
            "record the failure of",
        ) {
            log::warn!("{e}");
        }
        let report = if spawned.is_some() {
            format!("{error}\n{report}")
        } else {
            error.to_string()
        };
        Error::StartFailed {
            id: self.id.clone(),
            step,
            report,
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A pipe whose both ends are close-on-exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
