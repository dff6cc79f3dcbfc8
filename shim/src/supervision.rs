//! What a supervising runtime asks of the shim ([`Supervision`]): a detached session, no
//! inherited descriptors, an exit file, and a watchdog pipe whose hang-up stops the VM.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boxlite_proto::agent::{Hello, Request, AGENT_PORT};
use boxlite_proto::{encode_frame, ExitRecord, ShimEnd, Supervision};
use boxlite_vmm_core::ShutdownHandle;

/// The watchdog pipe's read end, as the runtime hands it over.
const WATCHDOG_FD: RawFd = 3;
/// How long the shim outlives its own shutdown request before it kills itself.
const LAST_RESORT_GRACE: Duration = Duration::from_secs(5);
/// How long the agent may take to take the shutdown request.
const AGENT_DEADLINE: Duration = Duration::from_secs(2);

/// Prepares the process before any thread exists: a new session when detached, only the
/// standard descriptors (and the watchdog's) kept, the watchdog checked.
pub fn prepare(supervision: &Supervision) -> Result<(), String> {
    if supervision.detach {
        // SAFETY: setsid has no preconditions; it fails only for a group leader.
        if unsafe { libc::setsid() } < 0 {
            return Err(format!(
                "cannot detach (setsid): {}",
                io::Error::last_os_error()
            ));
        }
    }
    let first_to_close = if supervision.watchdog {
        WATCHDOG_FD + 1
    } else {
        WATCHDOG_FD
    };
    close_from(first_to_close);
    if supervision.watchdog {
        // SAFETY: all zeroes is a valid stat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes into the stat we own; fd 3 is only inspected.
        if unsafe { libc::fstat(WATCHDOG_FD, &mut stat) } != 0
            || stat.st_mode & libc::S_IFMT != libc::S_IFIFO
        {
            return Err("the config asks for a watchdog, but fd 3 is not a pipe".to_string());
        }
        // SAFETY: fcntl on fd 3, which was just checked to be open.
        unsafe { libc::fcntl(WATCHDOG_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Closes every descriptor from `first` on.
fn close_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors; nothing in this process uses them (no
    // thread exists yet).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: closing a descriptor nothing in this process uses (see above).
        unsafe { libc::close(fd) };
    }
}

/// Watches the watchdog pipe on its own thread. On hang-up (the runtime died) it asks the
/// guest agent to shut down, after `stop_timeout` stops the VM itself (HostShutdown), and
/// after a further grace kills the process. The VM's end ends the process, and this thread
/// with it.
pub fn watch(
    shutdown: ShutdownHandle,
    vsock_uds: Option<String>,
    stop_timeout: Duration,
    confine: Option<crate::seccomp::ThreadKind>,
) -> io::Result<()> {
    // SAFETY: fd 3 was checked by `prepare` and is owned by this thread from now on.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(WATCHDOG_FD) };
    crate::seccomp::spawn("watchdog", confine, move || {
        let mut byte = [0u8; 64];
        // The runtime never writes: any read that returns is the hang-up (or garbage, which
        // is read past).
        loop {
            match pipe.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("watchdog pipe: {e}; treating it as a hang-up");
                    break;
                }
            }
        }
        log::warn!("the runtime that started this box is gone: shutting the box down");
        if let Some(uds) = vsock_uds {
            match ask_agent_to_shut_down(&PathBuf::from(uds)) {
                Ok(()) => log::info!("the guest agent is shutting the guest down"),
                Err(e) => log::warn!("cannot reach the guest agent ({e}); stopping the VM"),
            }
            std::thread::sleep(stop_timeout);
        }
        if let Err(e) = shutdown.request() {
            log::error!("cannot request the VM shutdown: {e}");
        }
        std::thread::sleep(LAST_RESORT_GRACE);
        log::error!("the VM did not stop; killing the shim");
        // SAFETY: SIGKILL to this very process: the documented last resort.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    })?;
    Ok(())
}

/// `CONNECT 2695` on the VM's own vsock socket, then the agent's shutdown request.
fn ask_agent_to_shut_down(uds: &std::path::Path) -> io::Result<()> {
    let mut stream = UnixStream::connect(uds)?;
    stream.set_read_timeout(Some(AGENT_DEADLINE))?;
    stream.set_write_timeout(Some(AGENT_DEADLINE))?;
    stream.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while reply.len() < 64 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        reply.push(byte[0]);
    }
    if !reply.starts_with(b"OK ") {
        return Err(io::Error::other(format!(
            "the vsock device answered {:?}",
            String::from_utf8_lossy(&reply)
        )));
    }
    let frame = encode_frame(&Hello::new(Request::Shutdown)).map_err(io::Error::other)?;
    stream.write_all(&frame)
}

/// The exit file, written once.
static EXIT_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Arms the exit file: [`record_end`] and a panic write it there.
pub fn arm_exit_file(path: Option<String>) {
    let Some(path) = path else { return };
    *boxlite_proto::sync::lock(&EXIT_FILE) = Some(PathBuf::from(path));
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        record_end(ShimEnd::Panic { message, location });
        previous(info);
    }));
}

/// Writes the exit record once (the first end wins: a panic while writing a normal end
/// leaves the normal one).
pub fn record_end(end: ShimEnd) {
    // The lock is taken once and never released to a second writer: `take` disarms it.
    let Some(path) = boxlite_proto::sync::lock(&EXIT_FILE).take() else {
        return;
    };
    let record = ExitRecord {
        pid: std::process::id(),
        ended_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        end,
    };
    if let Err(e) = write_atomic(&path, &record) {
        log::error!("cannot write the exit file {}: {e}", path.display());
    }
}

fn write_atomic(path: &std::path::Path, record: &ExitRecord) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&json)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxlite_proto::VmOutcome;

    #[test]
    fn the_exit_file_is_written_once_atomically_as_json() {
        let dir = std::env::temp_dir().join(format!("shim-exit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exit");
        arm_exit_file(Some(path.to_string_lossy().into_owned()));
        record_end(ShimEnd::Vm {
            outcome: VmOutcome::GuestReset,
            exit_code: 0,
        });
        // A second end (say a panic during teardown) does not replace the first.
        record_end(ShimEnd::Error {
            message: "late".into(),
            exit_code: 1,
        });
        let record: ExitRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(record.pid, std::process::id());
        assert_eq!(
            record.end,
            ShimEnd::Vm {
                outcome: VmOutcome::GuestReset,
                exit_code: 0
            }
        );
        assert!(!dir.join("exit.tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
