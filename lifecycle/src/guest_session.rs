//! The host side of the guest agent protocol ([`boxlite_proto::agent`]).
//!
//! A [`GuestSession`] names where the agent is reached: the VM's vsock device socket (the
//! session asks the device for guest port 2695 with Firecracker's `CONNECT 2695\n` →
//! `OK <host port>\n` handshake) or, in tests, the agent's own Unix socket
//! (`boxlite-agent --listen-unix PATH`). Each request opens its own connection, so any number of
//! commands can run at once from any number of threads.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxlite_proto::agent::{
    Event, ExecInput, ExecRequest, Hello, Request, AGENT_PORT, AGENT_PROTOCOL_VERSION,
    STDIN_CHUNK_LEN,
};

use crate::error::{Error, Result};
use crate::wire::{self, describe, io_error};

/// Default for [`GuestSession::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest reply line accepted from the vsock device (`OK 2147483647\n` is 14 bytes).
const MAX_HANDSHAKE_REPLY: usize = 64;

/// Bytes a Unix socket address holds for the path, NUL included.
const SUN_PATH_LEN: usize = 108;

/// Where the guest agent is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The agent's own Unix socket.
    Unix(PathBuf),
    /// A guest vsock port behind the vsock device's Unix socket.
    Vsock { uds: PathBuf, port: u32 },
}

/// A way to reach one guest's agent; cheap to clone, each request opens its own connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSession {
    target: Target,
    timeout: Duration,
}

/// What the agent says about itself in answer to a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Its protocol version (equal to this host's, or the ping fails).
    pub version: u32,
    /// Its name and release, e.g. `boxlite-agent 0.1.0`.
    pub agent: String,
}

impl GuestSession {
    /// Reaches the agent directly on its Unix socket (`boxlite-agent --listen-unix PATH`).
    pub fn unix(path: impl Into<PathBuf>) -> GuestSession {
        GuestSession {
            target: Target::Unix(path.into()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reaches the agent on guest port 2695 through the VM's vsock device socket `uds`.
    pub fn vsock(uds: impl Into<PathBuf>) -> GuestSession {
        GuestSession {
            target: Target::Vsock {
                uds: uds.into(),
                port: AGENT_PORT,
            },
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets how long the vsock handshake and the agent's first answer to a request may take
    /// (a running command's output is waited for without limit).
    pub fn with_timeout(mut self, timeout: Duration) -> GuestSession {
        self.timeout = timeout;
        self
    }

    /// Connects, with the vsock handshake when needed.
    fn connect(&self) -> Result<UnixStream> {
        let (path, port) = match &self.target {
            Target::Unix(path) => (path, None),
            Target::Vsock { uds, port } => (uds, Some(*port)),
        };
        if path.as_os_str().len() >= SUN_PATH_LEN {
            return Err(Error::PathTooLong { path: path.clone() });
        }
        let mut stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.clone(),
            source,
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(io_error("cannot set a socket timeout", None))?;
        if let Some(port) = port {
            vsock_handshake(&mut stream, path, port, self.timeout)?;
        }
        Ok(stream)
    }

    /// Connects and sends the hello carrying `request`.
    fn open(&self, request: Request) -> Result<UnixStream> {
        let mut stream = self.connect()?;
        wire::write_frame(
            &mut stream,
            &Hello::new(request),
            "cannot send the request to the guest agent",
        )?;
        Ok(stream)
    }

    /// Reads the agent's first answer on a fresh connection.
    fn first_event(&self, stream: &mut UnixStream) -> Result<Event> {
        const CONTEXT: &str = "waiting for the guest agent's answer";
        match wire::read_event(stream, CONTEXT, Some(self.timeout))? {
            Some(Event::Error { message }) => Err(Error::Agent { message }),
            Some(event) => Ok(event),
            None => Err(Error::Closed {
                context: "before answering",
            }),
        }
    }

    /// Checks that the agent answers, and learns its version.
    pub fn ping(&self) -> Result<AgentInfo> {
        let mut stream = self.open(Request::Ping)?;
        match self.first_event(&mut stream)? {
            Event::Pong { version, agent } if version == AGENT_PROTOCOL_VERSION => {
                Ok(AgentInfo { version, agent })
            }
            Event::Pong { version, .. } => Err(Error::Version {
                found: version,
                expected: AGENT_PROTOCOL_VERSION,
            }),
            other => Err(Error::Unexpected {
                context: "in answer to a ping",
                event: describe(&other),
            }),
        }
    }

    /// Starts a command. Returns once the agent has answered: with the process started, or
    /// with a command that could not be found (status 127, no pid). A request the agent refuses
    /// (bad working directory, empty argv...) is an [`Error::Agent`].
    pub fn exec(&self, request: ExecRequest) -> Result<ExecHandle> {
        let mut stream = self.open(Request::Exec(request))?;
        let first = self.first_event(&mut stream)?;
        let (pid, pending) = match first {
            Event::Started { pid } => (Some(pid), None),
            event @ (Event::Stdout(_)
            | Event::Stderr(_)
            | Event::Exited { .. }
            | Event::Signaled { .. }) => (None, Some(event)),
            other => {
                return Err(Error::Unexpected {
                    context: "in answer to an exec request",
                    event: describe(&other),
                })
            }
        };
        // From now on output may take any time to come.
        stream
            .set_read_timeout(None)
            .map_err(io_error("cannot clear a socket timeout", None))?;
        let duplicate = || {
            stream
                .try_clone()
                .map_err(io_error("cannot duplicate the exec connection", None))
        };
        let (writer, socket) = (duplicate()?, duplicate()?);
        Ok(ExecHandle {
            reader: stream,
            control: ExecControl {
                writer: Arc::new(Mutex::new(writer)),
                socket: Arc::new(socket),
            },
            pid,
            pending,
            status: None,
        })
    }

    /// Asks the guest to stop every process, sync, unmount and reboot, which ends the VM.
    /// Returns once the agent has acknowledged; wait for the VM to exit to know it is down.
    pub fn shutdown(&self) -> Result<()> {
        let mut stream = self.open(Request::Shutdown)?;
        match self.first_event(&mut stream)? {
            Event::ShuttingDown => Ok(()),
            other => Err(Error::Unexpected {
                context: "in answer to a shutdown request",
                event: describe(&other),
            }),
        }
    }
}

/// Firecracker's host-initiated vsock handshake: `CONNECT <port>\n`, answered `OK <n>\n`.
fn vsock_handshake(
    stream: &mut UnixStream,
    path: &Path,
    port: u32,
    timeout: Duration,
) -> Result<()> {
    const CONTEXT: &str = "waiting for the vsock device's answer to CONNECT";
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(io_error("cannot send CONNECT to the vsock device", None))?;
    // Byte by byte: what follows the line belongs to the agent.
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while reply.len() < MAX_HANDSHAKE_REPLY {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => {
                let line = String::from_utf8_lossy(&reply);
                let accepted = line
                    .strip_prefix("OK ")
                    .is_some_and(|n| n.trim().parse::<u32>().is_ok());
                if accepted {
                    return Ok(());
                }
                break;
            }
            Ok(_) => reply.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(CONTEXT, Some(timeout))(e)),
        }
    }
    Err(Error::VsockRefused {
        path: path.to_path_buf(),
        port,
        reply: String::from_utf8_lossy(&reply).into_owned(),
    })
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

/// The end of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// How it ended.
    pub termination: Termination,
    /// Whether the agent had killed it for exceeding its timeout.
    pub timed_out: bool,
}

impl ExitStatus {
    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self.termination {
            Termination::Exited(code) => Some(code),
            Termination::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.termination {
            Termination::Exited(_) => None,
            Termination::Signaled(signal) => Some(signal),
        }
    }

    /// Whether it exited with code 0 in time.
    pub fn success(&self) -> bool {
        self.code() == Some(0) && !self.timed_out
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.termination {
            Termination::Exited(code) => write!(f, "exit code {code}")?,
            Termination::Signaled(signal) => write!(f, "killed by signal {signal}")?,
        }
        if self.timed_out {
            f.write_str(" (timed out)")?;
        }
        Ok(())
    }
}

/// A chunk of a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// From its stdout.
    Stdout(Vec<u8>),
    /// From its stderr.
    Stderr(Vec<u8>),
}

/// How much output [`ExecHandle::output`] collects (stdout and stderr together): 64 MiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 << 20;

/// Everything a command wrote, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// All of its stdout.
    pub stdout: Vec<u8>,
    /// All of its stderr.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

/// Feeds a running command: stdin and signals. Cloneable and usable from any thread while
/// another reads the output from the [`ExecHandle`].
#[derive(Debug, Clone)]
pub struct ExecControl {
    writer: Arc<Mutex<UnixStream>>,
    /// The same connection again, for [`ExecControl::abort`]: it must work while a writer
    /// holds the lock, blocked on a full socket.
    socket: Arc<UnixStream>,
}

impl ExecControl {
    fn send(&self, input: &ExecInput, context: &'static str) -> Result<()> {
        let mut writer = boxlite_proto::sync::lock(&self.writer);
        wire::write_frame(&mut *writer, input, context)
    }

    /// Gives up on the command from the host side: shuts the connection down, so a blocked
    /// [`ExecHandle::stream`] or [`ExecHandle::wait`] returns an error at once and the agent
    /// kills the command. For when the guest stops answering, e.g. past a host-side deadline.
    pub fn abort(&self) {
        if let Err(e) = self.socket.shutdown(Shutdown::Both) {
            log::debug!("cannot shut down an exec connection: {e}");
        }
    }

    /// Writes `data` to the command's stdin (the request must have asked for stdin). Blocks
    /// while the agent holds a megabyte the command has not read yet.
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(STDIN_CHUNK_LEN) {
            self.send(
                &ExecInput::Stdin(chunk.to_vec()),
                "cannot send stdin to the guest agent",
            )?;
        }
        Ok(())
    }

    /// Closes the command's stdin once everything written before has been delivered.
    pub fn close_stdin(&self) -> Result<()> {
        self.send(
            &ExecInput::StdinClose,
            "cannot send stdin close to the guest agent",
        )
    }

    /// Sends `signal` to the command's process group. A SIGKILL never waits behind a stdin
    /// write that the guest is not taking (frames cannot interleave on the connection): then
    /// it aborts the connection instead, which makes the agent kill the command.
    pub fn kill(&self, signal: i32) -> Result<()> {
        let request = ExecInput::Kill { signal };
        let context = "cannot send a signal request to the guest agent";
        if signal != libc::SIGKILL {
            return self.send(&request, context);
        }
        match self.writer.try_lock() {
            Ok(mut writer) => wire::write_frame(&mut *writer, &request, context),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                wire::write_frame(&mut *poisoned.into_inner(), &request, context)
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                self.abort();
                Ok(())
            }
        }
    }
}

/// A running command: its output, in order, then its exit status. Dropping the handle shuts
/// the connection down (even while [`ExecControl`] clones live), which makes the agent kill the
/// command's process group if it still runs.
#[derive(Debug)]
pub struct ExecHandle {
    reader: UnixStream,
    control: ExecControl,
    pid: Option<u32>,
    /// An event read while starting, not yet returned.
    pending: Option<Event>,
    status: Option<ExitStatus>,
}

impl ExecHandle {
    /// The command's pid in the guest (`None` when it could not be started).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// A handle for stdin and signals, for use from another thread.
    pub fn control(&self) -> ExecControl {
        self.control.clone()
    }

    /// See [`ExecControl::write_stdin`].
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        self.control.write_stdin(data)
    }

    /// See [`ExecControl::close_stdin`].
    pub fn close_stdin(&self) -> Result<()> {
        self.control.close_stdin()
    }

    /// See [`ExecControl::kill`].
    pub fn kill(&self, signal: i32) -> Result<()> {
        self.control.kill(signal)
    }

    /// The exit status, once [`ExecHandle::next_output`] has returned `None`.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// The next chunk of output; `None` once the command has ended and all its output has been
    /// returned ([`ExecHandle::status`] then has the exit status).
    pub fn next_output(&mut self) -> Result<Option<Output>> {
        const CONTEXT: &str = "reading a command's output from the guest agent";
        if self.status.is_some() {
            return Ok(None);
        }
        let event = match self.pending.take() {
            Some(event) => event,
            None => wire::read_event(&mut self.reader, CONTEXT, None)?.ok_or(Error::Closed {
                context: "before the command ended",
            })?,
        };
        let (termination, timed_out) = match event {
            Event::Stdout(bytes) => return Ok(Some(Output::Stdout(bytes))),
            Event::Stderr(bytes) => return Ok(Some(Output::Stderr(bytes))),
            Event::Exited { code, timed_out } => (Termination::Exited(code), timed_out),
            Event::Signaled { signal, timed_out } => (Termination::Signaled(signal), timed_out),
            Event::Error { message } => return Err(Error::Agent { message }),
            other => {
                return Err(Error::Unexpected {
                    context: "while a command runs",
                    event: describe(&other),
                })
            }
        };
        self.status = Some(ExitStatus {
            termination,
            timed_out,
        });
        Ok(None)
    }

    /// Hands every chunk of output to `on_stdout` or `on_stderr` as it arrives, and returns the
    /// exit status.
    pub fn stream(
        mut self,
        mut on_stdout: impl FnMut(&[u8]),
        mut on_stderr: impl FnMut(&[u8]),
    ) -> Result<ExitStatus> {
        while let Some(output) = self.next_output()? {
            match output {
                Output::Stdout(bytes) => on_stdout(&bytes),
                Output::Stderr(bytes) => on_stderr(&bytes),
            }
        }
        self.status.ok_or(Error::Closed {
            context: "before the command ended",
        })
    }

    /// Waits for the command to end, discarding its output.
    pub fn wait(self) -> Result<ExitStatus> {
        self.stream(|_| {}, |_| {})
    }

    /// Waits for the command to end, collecting its output, up to 64 MiB (`DEFAULT_OUTPUT_LIMIT`)
    /// of stdout and stderr together; see [`ExecHandle::output_limited`].
    pub fn output(self) -> Result<ExecOutput> {
        self.output_limited(DEFAULT_OUTPUT_LIMIT)
    }

    /// Waits for the command to end, collecting at most `limit` bytes of stdout and stderr
    /// together. A guest that writes more gets [`Error::OutputTooLarge`]: the connection is
    /// then closed (the command is not waited for) and the collected bytes are dropped, so the
    /// host never holds more than `limit` bytes. For output of any size, use
    /// [`ExecHandle::stream`] or [`ExecHandle::next_output`].
    pub fn output_limited(mut self, limit: usize) -> Result<ExecOutput> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut collected = 0usize;
        while let Some(output) = self.next_output()? {
            let (sink, bytes) = match output {
                Output::Stdout(bytes) => (&mut stdout, bytes),
                Output::Stderr(bytes) => (&mut stderr, bytes),
            };
            collected = collected.saturating_add(bytes.len());
            if collected > limit {
                return Err(Error::OutputTooLarge { limit });
            }
            sink.extend_from_slice(&bytes);
        }
        let status = self.status.ok_or(Error::Closed {
            context: "before the command ended",
        })?;
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
        })
    }
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        // Shuts the socket itself down, not just this descriptor: the writer shares it.
        if let Err(e) = self.reader.shutdown(Shutdown::Both) {
            log::debug!("cannot shut down an exec connection: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    use boxlite_proto::{decode_frame, encode_frame};

    use crate::wire::read_raw_frame;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("bl-gs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake vsock device: answers the handshake with `reply`, then (if it said OK) plays a
    /// one-ping agent. Returns the request line it got.
    fn fake_device(listener: UnixListener, reply: &'static str) -> thread::JoinHandle<String> {
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while conn.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            conn.write_all(reply.as_bytes()).unwrap();
            if reply.starts_with("OK") {
                let frame = read_raw_frame(&mut conn, "test", None).unwrap().unwrap();
                let hello = Hello::from_frame(&frame).unwrap();
                assert_eq!(hello.request, Request::Ping);
                let pong = Event::Pong {
                    version: AGENT_PROTOCOL_VERSION,
                    agent: "fake".to_string(),
                };
                conn.write_all(&encode_frame(&pong).unwrap()).unwrap();
            }
            String::from_utf8(line).unwrap()
        })
    }

    #[test]
    fn vsock_handshake_then_ping() {
        let dir = TempDir::new("ok");
        let uds = dir.0.join("vsock.sock");
        let device = fake_device(UnixListener::bind(&uds).unwrap(), "OK 1073741824\n");
        let info = GuestSession::vsock(&uds).ping().unwrap();
        assert_eq!(
            info,
            AgentInfo {
                version: AGENT_PROTOCOL_VERSION,
                agent: "fake".to_string()
            }
        );
        assert_eq!(device.join().unwrap(), "CONNECT 2695");
    }

    #[test]
    fn vsock_refusal_names_the_port_and_the_reply() {
        let dir = TempDir::new("refused");
        let uds = dir.0.join("vsock.sock");
        let device = fake_device(UnixListener::bind(&uds).unwrap(), "NOPE\n");
        let err = GuestSession::vsock(&uds).ping().unwrap_err();
        assert!(
            matches!(&err, Error::VsockRefused { port: 2695, reply, .. } if reply == "NOPE"),
            "{err}"
        );
        assert!(err.to_string().contains("guest port 2695"));
        device.join().unwrap();
    }

    #[test]
    fn silent_agent_times_out() {
        let dir = TempDir::new("silent");
        let path = dir.0.join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let session = GuestSession::unix(&path).with_timeout(Duration::from_millis(100));
        let err = session.ping().unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        drop(listener);
    }

    #[test]
    fn missing_socket_and_long_paths_are_explained() {
        let err = GuestSession::unix("/nonexistent/boxlite.sock")
            .ping()
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/boxlite.sock"));
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        let err = GuestSession::unix(long).ping().unwrap_err();
        assert!(matches!(err, Error::PathTooLong { .. }), "{err}");
    }

    #[test]
    fn agent_of_another_version_is_named() {
        let dir = TempDir::new("version");
        let path = dir.0.join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let agent = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let frame = read_raw_frame(&mut conn, "test", None).unwrap().unwrap();
            assert!(Hello::from_frame(&frame).is_ok());
            let pong = Event::Pong {
                version: AGENT_PROTOCOL_VERSION + 1,
                agent: "future".to_string(),
            };
            conn.write_all(&encode_frame(&pong).unwrap()).unwrap();
        });
        let err = GuestSession::unix(&path).ping().unwrap_err();
        assert!(
            matches!(err, Error::Version { found, expected: AGENT_PROTOCOL_VERSION } if found == AGENT_PROTOCOL_VERSION + 1),
            "{err}"
        );
        agent.join().unwrap();
    }

    #[test]
    fn exit_statuses_describe_themselves() {
        let ok = ExitStatus {
            termination: Termination::Exited(0),
            timed_out: false,
        };
        assert!(ok.success());
        assert_eq!((ok.code(), ok.signal()), (Some(0), None));
        let killed = ExitStatus {
            termination: Termination::Signaled(9),
            timed_out: true,
        };
        assert!(!killed.success());
        assert_eq!((killed.code(), killed.signal()), (None, Some(9)));
        assert_eq!(killed.to_string(), "killed by signal 9 (timed out)");
    }

    #[test]
    fn stdin_is_sent_in_chunks() {
        let (mut host, agent) = UnixStream::pair().unwrap();
        let control = ExecControl {
            socket: Arc::new(agent.try_clone().unwrap()),
            writer: Arc::new(Mutex::new(agent)),
        };
        let data = vec![5u8; STDIN_CHUNK_LEN * 2 + 10];
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let frame = read_raw_frame(&mut host, "test", None).unwrap().unwrap();
                match decode_frame::<ExecInput>(&frame).unwrap() {
                    ExecInput::Stdin(chunk) => {
                        assert!(chunk.len() <= STDIN_CHUNK_LEN);
                        got.extend(chunk);
                    }
                    ExecInput::StdinClose => return got,
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        control.write_stdin(&data).unwrap();
        control.close_stdin().unwrap();
        assert_eq!(reader.join().unwrap(), data);
    }

    #[test]
    fn abort_unblocks_a_reader_waiting_on_a_silent_agent() {
        let (host, mut agent) = UnixStream::pair().unwrap();
        let control = ExecControl {
            socket: Arc::new(host.try_clone().unwrap()),
            writer: Arc::new(Mutex::new(host.try_clone().unwrap())),
        };
        let mut handle = ExecHandle {
            reader: host,
            control: control.clone(),
            pid: Some(1),
            pending: None,
            status: None,
        };
        let aborter = thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(50));
            control.abort();
        });
        // The agent says nothing; without the abort this read would block forever.
        assert!(handle.next_output().is_err());
        aborter.join().unwrap();
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut agent, &mut rest).unwrap();
        assert!(rest.is_empty(), "the agent side sees the connection closed");
    }

    #[test]
    fn sigkill_does_not_wait_behind_a_blocked_stdin_write() {
        let (host, mut agent) = UnixStream::pair().unwrap();
        let control = ExecControl {
            socket: Arc::new(host.try_clone().unwrap()),
            writer: Arc::new(Mutex::new(host)),
        };
        // The agent reads nothing: the write fills the socket and blocks holding the writer.
        let writer = {
            let control = control.clone();
            thread::spawn(move || control.write_stdin(&vec![0u8; 16 << 20]))
        };
        while control.writer.try_lock().is_ok() {
            thread::yield_now();
        }
        control.kill(libc::SIGKILL).unwrap();
        // The connection was shut down: the blocked write fails, the agent sees the end.
        assert!(writer.join().unwrap().is_err());
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut agent, &mut rest).unwrap();
        assert!(rest.len() < 16 << 20, "the stdin write was cut short");
    }

    /// An exec handle whose agent sends `chunks` stdout frames of `chunk` bytes, then exits 0.
    fn chatty_command(chunks: usize, chunk: usize) -> (ExecHandle, thread::JoinHandle<()>) {
        let (host, mut agent) = UnixStream::pair().unwrap();
        let control = ExecControl {
            socket: Arc::new(host.try_clone().unwrap()),
            writer: Arc::new(Mutex::new(host.try_clone().unwrap())),
        };
        let handle = ExecHandle {
            reader: host,
            control,
            pid: Some(1),
            pending: None,
            status: None,
        };
        let agent = thread::spawn(move || {
            let frame = encode_frame(&Event::Stdout(vec![b'x'; chunk])).unwrap();
            for _ in 0..chunks {
                // The host hangs up once it has had enough.
                if agent.write_all(&frame).is_err() {
                    return;
                }
            }
            let exit = Event::Exited {
                code: 0,
                timed_out: false,
            };
            let _ = agent.write_all(&encode_frame(&exit).unwrap());
        });
        (handle, agent)
    }

    #[test]
    fn output_past_the_limit_is_refused_not_collected() {
        let (handle, agent) = chatty_command(1000, 4096);
        let err = handle.output_limited(64 * 1024).unwrap_err();
        assert!(
            matches!(err, Error::OutputTooLarge { limit: 65536 }),
            "{err}"
        );
        assert!(err.to_string().contains("65536"), "{err}");
        agent.join().unwrap();

        let (handle, agent) = chatty_command(16, 4096);
        let out = handle.output_limited(64 * 1024).unwrap();
        assert_eq!(out.stdout.len(), 64 * 1024);
        assert!(out.status.success());
        agent.join().unwrap();
    }
}
