//! The connection server: accepts connections and serves each on its own thread.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use boxlite_proto::agent::{Event, Hello, Request, AGENT_PROTOCOL_VERSION};
use boxlite_proto::blocking::ReadFrameError;
use boxlite_proto::encode_frame;

use crate::reaper::Reaper;
use crate::{exec, init, sys, vsock, AGENT_NAME};

/// How long a new connection may take to send its [`Hello`].
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the agent waits, after answering a shutdown, for the host to close the connection
/// (so that the answer is not lost with the VM).
const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);

/// Where connections come from.
#[derive(Debug)]
pub enum Listener {
    /// vsock port (the guest).
    Vsock(OwnedFd),
    /// Unix socket (host-side tests).
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> io::Result<OwnedFd> {
        match self {
            Listener::Vsock(fd) => vsock::accept(fd.as_fd()),
            Listener::Unix(listener) => listener.accept().map(|(stream, _)| stream.into()),
        }
    }
}

/// How the agent runs, which decides what a shutdown does.
#[derive(Debug)]
pub enum Mode {
    /// PID 1 of the guest: a shutdown stops everything and reboots (ending the VM).
    Init,
    /// Serving a Unix socket at this path: a shutdown kills the running commands, removes the
    /// socket and exits.
    Unix(PathBuf),
}

/// What every connection thread shares.
#[derive(Debug)]
pub struct Agent {
    /// Starts and reaps the commands.
    pub reaper: Arc<Reaper>,
    /// How the agent runs.
    pub mode: Mode,
}

/// Accepts connections forever, serving each on its own thread.
pub fn serve_forever(listener: Listener, agent: Arc<Agent>) -> ! {
    loop {
        match listener.accept() {
            Ok(conn) => {
                let agent = Arc::clone(&agent);
                if let Err(e) = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || handle(conn, &agent))
                {
                    log::error!("cannot start a thread for a new connection: {e}");
                }
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                // Out of descriptors or memory: let running connections finish some work.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Writes one event on a blocking socket.
fn send(conn: &OwnedFd, event: &Event) {
    let result = encode_frame(event)
        .map_err(io::Error::other)
        .and_then(|frame| sys::write_all(conn.as_fd(), &frame));
    if let Err(e) = result {
        log::debug!("cannot send {event:?}: {e}");
    }
}

/// Serves one connection: its hello, then the request.
fn handle(conn: OwnedFd, agent: &Agent) {
    if let Err(e) = sys::set_socket_timeouts(conn.as_fd(), Some(HELLO_TIMEOUT)) {
        log::warn!("cannot set socket timeouts: {e}");
    }
    let hello = match read_hello(&conn) {
        Ok(Some(hello)) => {
            // Reading lowered the socket's timeouts; the request runs with the usual ones.
            if let Err(e) = sys::set_socket_timeouts(conn.as_fd(), Some(HELLO_TIMEOUT)) {
                log::warn!("cannot set socket timeouts: {e}");
            }
            hello
        }
        Ok(None) => return log::debug!("connection closed before any request"),
        Err(message) => {
            log::warn!("refused a connection: {message}");
            return send(&conn, &Event::Error { message });
        }
    };
    match hello.request {
        Request::Ping => send(
            &conn,
            &Event::Pong {
                version: AGENT_PROTOCOL_VERSION,
                agent: AGENT_NAME.to_string(),
            },
        ),
        Request::Exec(request) => exec::serve(conn, request, &agent.reaper),
        Request::Shutdown => shutdown(conn, agent),
    }
}

/// Reads the first frame of a connection; `Ok(None)` when the peer closed without sending one.
fn read_hello(conn: &OwnedFd) -> Result<Option<Hello>, String> {
    // One deadline for the whole frame, not one per read.
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let frame = match sys::read_frame_by(conn.as_fd(), deadline) {
        Ok(Some(frame)) => frame,
        Ok(None) => return Ok(None),
        Err(ReadFrameError::TimedOut) => {
            return Err(format!("no request within {HELLO_TIMEOUT:?}"))
        }
        Err(e) => return Err(format!("cannot read the request: {e}")),
    };
    Hello::from_frame(&frame)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Answers a shutdown request, then carries it out; never returns.
fn shutdown(conn: OwnedFd, agent: &Agent) -> ! {
    log::info!("shutdown requested by the host");
    send(&conn, &Event::ShuttingDown);
    // Wait for the host to read the answer and close, within reason.
    if sys::set_socket_timeouts(conn.as_fd(), Some(SHUTDOWN_LINGER)).is_ok() {
        let mut buf = [0u8; 64];
        while matches!(sys::read(conn.as_fd(), &mut buf), Ok(n) if n > 0) {}
    }
    drop(conn);
    match &agent.mode {
        Mode::Init => init::power_off(),
        Mode::Unix(path) => {
            for pid in agent.reaper.running() {
                if let Err(e) = sys::kill_group(pid, libc::SIGKILL) {
                    log::warn!("cannot kill pid {pid}: {e}");
                }
            }
            if let Err(e) = std::fs::remove_file(path) {
                log::warn!("cannot remove {}: {e}", path.display());
            }
            log::info!("exiting");
            std::process::exit(0)
        }
    }
}
