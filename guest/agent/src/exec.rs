//! One exec connection: start the command, then shuttle stdin, stdout, stderr, signals and the
//! exit status between it and the host until it has ended.
//!
//! The connection is served by one thread with one `poll(2)` loop over the socket, the command's
//! pipes and its exit pipe, everything non-blocking, so a host that stops reading or a command
//! that stops reading its stdin never keeps a signal, the timeout or the other direction waiting.
//! Output is read only while less than [`OUTBOUND_HIGH_WATER`] bytes wait for the host, and the
//! socket is read only while less than [`STDIN_HIGH_WATER`] bytes wait for the command: both
//! directions have backpressure and bounded memory.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boxlite_proto::agent::{Event, ExecInput, ExecRequest, FrameReader, OUTPUT_CHUNK_LEN};
use boxlite_proto::encode_frame;

use crate::reaper::{Reaper, STATUS_LEN};
use crate::sys;

/// `PATH` given to commands whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output waiting for the host above which the command's pipes are not read.
const OUTBOUND_HIGH_WATER: usize = 256 * 1024;

/// Stdin waiting for the command above which the socket is not read.
const STDIN_HIGH_WATER: usize = 1024 * 1024;

/// Bytes read from the socket at a time.
const SOCKET_READ_LEN: usize = 64 * 1024;

/// Once the command has exited, its output is drained until both pipes reach end of file or stay
/// silent this long (a background process that inherited them must not hold the exec open).
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// Longest part of a user-supplied string quoted in a message.
const QUOTE_LEN: usize = 200;

/// Serves one exec request on `sock` (blocking, already past the hello) until the command has
/// ended and its output has been delivered, or the host has gone away.
pub fn serve(sock: OwnedFd, request: ExecRequest, reaper: &Reaper) {
    let mut command = match build_command(&request) {
        Ok(command) => command,
        Err(message) => return send_final(&sock, &[Event::Error { message }]),
    };
    let program = quote(request.argv.first().map_or("", String::as_str));
    let (mut child, exit_pipe) = match reaper.spawn(&mut command) {
        Ok(spawned) => spawned,
        Err(e) => return send_final(&sock, &spawn_failure(&program, &e)),
    };
    let pid = child.id();
    log::debug!("started {program} as pid {pid}");
    let mut session = Session {
        pid,
        inbound: FrameReader::new(),
        outbound: Vec::new(),
        stdout: child.stdout.take().map(OwnedFd::from),
        stderr: child.stderr.take().map(OwnedFd::from),
        stdin: child.stdin.take().map(OwnedFd::from),
        stdin_pending: Vec::new(),
        stdin_close: false,
        exit_pipe: Some(exit_pipe),
        status: None,
        // A limit too far away to represent is no limit.
        deadline: request
            .timeout_ms
            .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms))),
        timed_out: false,
        drain_until: None,
        finished: false,
        sock,
    };
    session.queue(&Event::Started { pid });
    if let Err(e) = session.run() {
        log::debug!("exec connection of pid {pid} ended: {e}");
        if session.status.is_none() {
            // The host is gone: the command lives only as long as its connection.
            if let Err(e) = sys::kill_group(pid, libc::SIGKILL) {
                log::warn!("cannot kill pid {pid} after its connection closed: {e}");
            }
        }
    }
}

/// Quotes at most [`QUOTE_LEN`] characters of `s` for a message.
fn quote(s: &str) -> String {
    let mut quoted: String = s.chars().take(QUOTE_LEN).collect();
    if quoted.len() < s.len() {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

/// Checks the request and turns it into a `Command` with piped output.
fn build_command(request: &ExecRequest) -> Result<Command, String> {
    let Some((program, args)) = request.argv.split_first() else {
        return Err("exec request with an empty argv".to_string());
    };
    if program.is_empty() {
        return Err("exec request with an empty program name".to_string());
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(if request.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook runs in the child between fork and exec; it only calls sigemptyset and
    // pthread_sigmask, which are async-signal-safe, and allocates nothing.
    unsafe { command.pre_exec(sys::clear_signal_mask) };
    if !request.env.iter().any(|(k, _)| k == "PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    if let Some(cwd) = &request.cwd {
        // Checked here because a failed chdir in the child would look like "command not found".
        if !Path::new(cwd).is_dir() {
            return Err(format!(
                "working directory {} does not exist or is not a directory",
                quote(cwd)
            ));
        }
        command.current_dir(cwd);
    }
    if let Some(uid) = request.uid {
        command.uid(uid);
    }
    if let Some(gid) = request.gid {
        command.gid(gid);
    }
    Ok(command)
}

/// What the host is told when the command could not be started: like a shell, a message on
/// stderr and status 127 for a missing program, 126 for one that cannot be executed.
fn spawn_failure(program: &str, e: &io::Error) -> Vec<Event> {
    let code = match e.kind() {
        io::ErrorKind::NotFound => 127,
        io::ErrorKind::PermissionDenied => 126,
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => 126,
        _ => {
            return vec![Event::Error {
                message: format!("cannot start {program}: {e}"),
            }]
        }
    };
    let note = if code == 127 {
        format!("boxlite-agent: {program}: command not found\n")
    } else {
        format!("boxlite-agent: {program}: cannot execute: {e}\n")
    };
    vec![
        Event::Stderr(note.into_bytes()),
        Event::Exited {
            code,
            timed_out: false,
        },
    ]
}

/// Sends the events that end a connection on which no command runs (blocking socket).
fn send_final(sock: &OwnedFd, events: &[Event]) {
    let mut bytes = Vec::new();
    for event in events {
        match encode_frame(event) {
            Ok(frame) => bytes.extend(frame),
            Err(e) => log::error!("cannot encode {event:?}: {e}"),
        }
    }
    if let Err(e) = sys::write_all(sock.as_fd(), &bytes) {
        log::debug!("cannot send the end of an exec: {e}");
    }
}

/// Why the loop stopped before delivering everything.
#[derive(Debug)]
enum Stop {
    /// The host closed the connection.
    HostClosed,
    /// Reading or writing the socket or poll failed.
    Io(io::Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::HostClosed => f.write_str("the host closed the connection"),
            Stop::Io(e) => write!(f, "{e}"),
        }
    }
}

/// State of one running exec.
struct Session {
    sock: OwnedFd,
    pid: u32,
    inbound: FrameReader,
    /// Encoded events not yet written to the socket.
    outbound: Vec<u8>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    /// Bytes received for stdin, not yet written to the command.
    stdin_pending: Vec<u8>,
    /// The host asked to close stdin once `stdin_pending` is written.
    stdin_close: bool,
    exit_pipe: Option<OwnedFd>,
    /// Raw wait status, once the command has exited.
    status: Option<i32>,
    deadline: Option<Instant>,
    timed_out: bool,
    /// After the exit: when to stop waiting for the pipes to reach end of file.
    drain_until: Option<Instant>,
    /// The terminal event is queued; only flushing remains.
    finished: bool,
}

/// Slots of the poll set.
const SOCK: usize = 0;
const STDOUT: usize = 1;
const STDERR: usize = 2;
const STDIN: usize = 3;
const EXIT: usize = 4;

fn pollfd(fd: Option<&OwnedFd>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        // A negative descriptor is ignored by poll.
        fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
        events,
        revents: 0,
    }
}

impl Session {
    fn queue(&mut self, event: &Event) {
        match encode_frame(event) {
            Ok(frame) => self.outbound.extend(frame),
            Err(e) => log::error!("cannot encode an event for pid {}: {e}", self.pid),
        }
    }

    /// Queues the terminal event for a protocol violation and stops the command.
    fn fail(&mut self, message: String) {
        log::warn!("exec of pid {}: {message}", self.pid);
        if self.status.is_none() {
            if let Err(e) = sys::kill_group(self.pid, libc::SIGKILL) {
                log::warn!("cannot kill pid {}: {e}", self.pid);
            }
        }
        self.queue(&Event::Error { message });
        self.finish();
    }

    /// Stops serving the command: only the queued events remain to be sent.
    fn finish(&mut self) {
        self.finished = true;
        self.stdout = None;
        self.stderr = None;
        self.stdin = None;
        self.exit_pipe = None;
    }

    fn run(&mut self) -> Result<(), Stop> {
        for fd in [&self.stdout, &self.stderr, &self.stdin]
            .into_iter()
            .flatten()
            .chain([&self.sock])
            .chain(self.exit_pipe.as_ref())
        {
            sys::set_nonblocking(fd.as_fd()).map_err(Stop::Io)?;
        }
        let mut sock_buf = vec![0u8; SOCKET_READ_LEN];
        let mut out_buf = vec![0u8; OUTPUT_CHUNK_LEN];
        loop {
            self.check_clocks();
            if self.finished && self.outbound.is_empty() {
                return Ok(());
            }
            let want_input = !self.finished && self.stdin_pending.len() < STDIN_HIGH_WATER;
            let want_output = self.outbound.len() < OUTBOUND_HIGH_WATER;
            let mut sock_events = 0;
            if want_input {
                sock_events |= libc::POLLIN;
            }
            if !self.outbound.is_empty() {
                sock_events |= libc::POLLOUT;
            }
            // A pipe is left out of the set, not just given no events, when it is not to be
            // served now: poll reports hang-ups regardless, which would spin the loop.
            let stdout = self.stdout.as_ref().filter(|_| want_output);
            let stderr = self.stderr.as_ref().filter(|_| want_output);
            let stdin = self
                .stdin
                .as_ref()
                .filter(|_| !self.stdin_pending.is_empty());
            let mut fds = [
                pollfd(Some(&self.sock), sock_events),
                pollfd(stdout, libc::POLLIN),
                pollfd(stderr, libc::POLLIN),
                pollfd(stdin, libc::POLLOUT),
                pollfd(self.exit_pipe.as_ref(), libc::POLLIN),
            ];
            sys::poll(&mut fds, self.next_timeout()).map_err(Stop::Io)?;
            let ready = |slot: usize| fds[slot].revents != 0;

            if ready(SOCK) {
                if fds[SOCK].revents & libc::POLLOUT != 0 {
                    self.flush()?;
                }
                if want_input {
                    if fds[SOCK].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                        self.read_socket(&mut sock_buf)?;
                    }
                } else if fds[SOCK].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    return Err(Stop::HostClosed);
                }
            }
            if ready(EXIT) {
                self.read_exit_status();
            }
            if ready(STDOUT) {
                self.read_output(STDOUT, &mut out_buf);
            }
            if ready(STDERR) {
                self.read_output(STDERR, &mut out_buf);
            }
            if ready(STDIN) {
                self.write_stdin();
            }
        }
    }

    /// Applies the timeout and the end of the drain grace.
    fn check_clocks(&mut self) {
        if self.finished {
            return;
        }
        let now = Instant::now();
        match self.status {
            None => {
                if !self.timed_out && self.deadline.is_some_and(|d| now >= d) {
                    log::info!("pid {} timed out: killing its process group", self.pid);
                    self.timed_out = true;
                    if let Err(e) = sys::kill_group(self.pid, libc::SIGKILL) {
                        log::warn!("cannot kill timed-out pid {}: {e}", self.pid);
                    }
                }
            }
            Some(status) => {
                let drained = self.stdout.is_none() && self.stderr.is_none();
                // Silence counts only while the pipes are being read (the host keeps up).
                let silent = self.outbound.len() < OUTBOUND_HIGH_WATER
                    && self.drain_until.is_some_and(|d| now >= d);
                if drained || silent {
                    let event = self.terminal_event(status);
                    self.queue(&event);
                    self.finish();
                }
            }
        }
    }

    /// How long poll may sleep before a clock needs checking.
    fn next_timeout(&self) -> Option<Duration> {
        if self.finished {
            return None;
        }
        let until = match self.status {
            None if !self.timed_out => self.deadline,
            None => None,
            // Backpressured: the next event is the socket becoming writable.
            Some(_) if self.outbound.len() >= OUTBOUND_HIGH_WATER => None,
            Some(_) => self.drain_until,
        }?;
        Some(until.saturating_duration_since(Instant::now()))
    }

    fn terminal_event(&self, status: i32) -> Event {
        if libc::WIFSIGNALED(status) {
            Event::Signaled {
                signal: libc::WTERMSIG(status),
                timed_out: self.timed_out,
            }
        } else {
            Event::Exited {
                code: libc::WEXITSTATUS(status),
                timed_out: self.timed_out,
            }
        }
    }

    fn flush(&mut self) -> Result<(), Stop> {
        match sys::write(self.sock.as_fd(), &self.outbound) {
            Ok(n) => {
                self.outbound.drain(..n);
                if self.status.is_some() {
                    // The pipes were not read while the host lagged: the grace starts anew.
                    self.drain_until = Some(Instant::now() + DRAIN_GRACE);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(Stop::Io(e)),
        }
    }

    fn read_socket(&mut self, buf: &mut [u8]) -> Result<(), Stop> {
        match sys::read(self.sock.as_fd(), buf) {
            Ok(0) => return Err(Stop::HostClosed),
            Ok(n) => self.inbound.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(Stop::Io(e)),
        }
        while !self.finished {
            match self.inbound.next_frame::<ExecInput>() {
                Ok(Some(input)) => self.handle_input(input),
                Ok(None) => break,
                Err(e) => self.fail(format!("bad frame from the host: {e}")),
            }
        }
        Ok(())
    }

    fn handle_input(&mut self, input: ExecInput) {
        match input {
            ExecInput::Stdin(data) => {
                if self.stdin.is_some() && !self.stdin_close {
                    self.stdin_pending.extend(data);
                } else {
                    log::debug!(
                        "pid {}: dropped {} bytes of stdin (no stdin pipe, or closed)",
                        self.pid,
                        data.len()
                    );
                }
            }
            ExecInput::StdinClose => {
                self.stdin_close = true;
                if self.stdin_pending.is_empty() {
                    self.stdin = None;
                }
            }
            ExecInput::Kill { signal } => {
                if !(1..=64).contains(&signal) {
                    return self.fail(format!("cannot send signal {signal}: not a signal number"));
                }
                if self.status.is_none() {
                    log::debug!("sending signal {signal} to pid {}", self.pid);
                    if let Err(e) = sys::kill_group(self.pid, signal) {
                        self.fail(format!("cannot send signal {signal}: {e}"));
                    }
                }
            }
        }
    }

    fn read_exit_status(&mut self) {
        let Some(pipe) = &self.exit_pipe else { return };
        let mut raw = [0u8; STATUS_LEN];
        // The reaper writes the 4 bytes at once into an empty pipe: one read gets all or none.
        match sys::read(pipe.as_fd(), &mut raw) {
            Ok(STATUS_LEN) => {
                let status = i32::from_ne_bytes(raw);
                log::debug!("pid {} ended (wait status {status:#x})", self.pid);
                self.status = Some(status);
                self.exit_pipe = None;
                self.stdin = None;
                self.stdin_pending.clear();
                self.drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(n) => self.fail(format!(
                "lost the exit status of pid {} ({n} of {STATUS_LEN} bytes)",
                self.pid
            )),
            Err(e) => self.fail(format!("lost the exit status of pid {}: {e}", self.pid)),
        }
    }

    fn read_output(&mut self, slot: usize, buf: &mut [u8]) {
        let pipe = if slot == STDOUT {
            &mut self.stdout
        } else {
            &mut self.stderr
        };
        let Some(fd) = pipe else { return };
        match sys::read(fd.as_fd(), buf) {
            Ok(0) => *pipe = None,
            Ok(n) => {
                let chunk = buf[..n].to_vec();
                let event = if slot == STDOUT {
                    Event::Stdout(chunk)
                } else {
                    Event::Stderr(chunk)
                };
                self.queue(&event);
                if self.status.is_some() {
                    self.drain_until = Some(Instant::now() + DRAIN_GRACE);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::debug!("pid {}: output pipe failed: {e}", self.pid);
                *pipe = None;
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = &self.stdin else { return };
        match sys::write(fd.as_fd(), &self.stdin_pending) {
            Ok(n) => {
                self.stdin_pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // Typically EPIPE: the command closed its stdin. The rest is discarded.
                log::debug!("pid {}: stdin closed by the command: {e}", self.pid);
                self.stdin = None;
                self.stdin_pending.clear();
            }
        }
        if self.stdin_close && self.stdin_pending.is_empty() {
            self.stdin = None;
        }
    }
}
