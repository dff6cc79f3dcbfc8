//! The guest's readiness signal.
//!
//! Once it serves its port, the agent connects to host vsock port 2696 and writes one
//! [`Ready`] frame. The vsock device bridges a guest connection to port P to the Unix listener
//! `<uds>_P` ([`ready_listener_path`]), which the host must have bound (the agent retries for a
//! while when nothing listens yet).

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boxlite_proto::agent::{AgentWireError, Ready, READY_PORT};

use crate::error::{Error, Result};
use crate::wire::{self, io_error};

/// The Unix listener path at which the vsock device with socket `uds` delivers the guest's
/// readiness connection: `<uds>_2696`.
pub fn ready_listener_path(uds: &Path) -> PathBuf {
    let mut path = OsString::from(uds.as_os_str());
    path.push(format!("_{READY_PORT}"));
    PathBuf::from(path)
}

/// A bound readiness listener. Bind it before the guest boots; the socket file is removed when
/// it is dropped.
#[derive(Debug)]
pub struct ReadyListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ReadyListener {
    /// Listens at `path`, replacing a stale socket left there by an earlier VM (any other kind
    /// of file is an error).
    pub fn bind(path: impl Into<PathBuf>) -> Result<ReadyListener> {
        let path = path.into();
        let listen_error = |source| Error::Listen {
            path: path.clone(),
            source,
        };
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(&path).map_err(listen_error)?;
        }
        let listener = UnixListener::bind(&path).map_err(listen_error)?;
        Ok(ReadyListener { listener, path })
    }

    /// The listener's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for the guest's readiness connection and returns what it said.
    pub fn wait(&self, timeout: Duration) -> Result<Ready> {
        self.wait_while(timeout, timeout, || true)?
            .ok_or(Error::Closed {
                context: "while waiting for readiness",
            })
    }

    /// Like [`ReadyListener::wait`], but every `poll` asks `alive` whether the guest can still
    /// become ready (its VMM still runs); `Ok(None)` as soon as it says no.
    pub fn wait_while(
        &self,
        timeout: Duration,
        poll: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<Option<Ready>> {
        const WHAT: &str = "waiting for the guest agent to signal readiness";
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: WHAT,
                    after: timeout,
                });
            }
            if wait_readable(&self.listener, left.min(poll)).map_err(io_error(WHAT, None))? {
                break;
            }
            if !alive() {
                return Ok(None);
            }
        }
        let (mut conn, _) = self.listener.accept().map_err(io_error(
            "cannot accept the guest's readiness connection",
            None,
        ))?;
        let left = deadline.saturating_duration_since(Instant::now());
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(io_error("cannot set a socket timeout", None))?;
        let frame = wire::read_raw_frame(&mut conn, WHAT, Some(timeout))?.ok_or(Error::Closed {
            context: "before saying it is ready",
        })?;
        let ready = Ready::from_frame(&frame).map_err(|e| match e {
            AgentWireError::Frame(e) => Error::Frame(e),
            AgentWireError::Version { found, expected } => Error::Version { found, expected },
        })?;
        log::debug!("guest ready: {}", ready.agent);
        Ok(Some(ready))
    }
}

impl Drop for ReadyListener {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::debug!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Waits until `listener` has a connection to accept; `false` on timeout.
fn wait_readable(listener: &UnixListener, timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        let mut pollfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, exclusively borrowed for the call.
        match unsafe { libc::poll(&mut pollfd, 1, ms) } {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Binds a [`ReadyListener`] at `path` and waits up to `timeout` for the guest's readiness
/// (the agent retries for 30 s, so binding shortly after starting the VM is fine).
pub fn wait_ready(path: impl Into<PathBuf>, timeout: Duration) -> Result<Ready> {
    ReadyListener::bind(path)?.wait(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::thread;

    use boxlite_proto::agent::AGENT_PROTOCOL_VERSION;
    use boxlite_proto::encode_frame;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("bl-ready-{name}-{}", std::process::id()))
    }

    #[test]
    fn listener_path_appends_the_port() {
        assert_eq!(
            ready_listener_path(Path::new("/run/box/vsock.sock")),
            PathBuf::from("/run/box/vsock.sock_2696")
        );
    }

    #[test]
    fn accepts_the_ready_frame_and_cleans_up() {
        let path = temp_path("ok");
        let listener = ReadyListener::bind(&path).unwrap();
        let guest_path = path.clone();
        let guest = thread::spawn(move || {
            let mut conn = UnixStream::connect(guest_path).unwrap();
            conn.write_all(&Ready::new("boxlite-agent test").to_frame().unwrap())
                .unwrap();
        });
        let ready = listener.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(ready, Ready::new("boxlite-agent test"));
        guest.join().unwrap();
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn stale_sockets_are_replaced_and_silence_times_out() {
        let path = temp_path("stale");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let err = wait_ready(&path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("readiness"));
    }

    #[test]
    fn ready_of_another_version_is_refused() {
        let path = temp_path("version");
        let listener = ReadyListener::bind(&path).unwrap();
        let guest_path = path.clone();
        let guest = thread::spawn(move || {
            let mut conn = UnixStream::connect(guest_path).unwrap();
            let future = (AGENT_PROTOCOL_VERSION + 1, "boxlite-agent 9.0.0");
            conn.write_all(&encode_frame(&future).unwrap()).unwrap();
        });
        let err = listener.wait(Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, Error::Version { .. }), "{err}");
        guest.join().unwrap();
    }
}
