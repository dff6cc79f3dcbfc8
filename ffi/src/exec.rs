//! Executions: a command running in a box, its streamed output and a pollable descriptor.
//!
//! One reader thread per execution pulls the output from [`ExecHandle::next_output`] into a
//! bounded queue (1 MiB; past it the reader waits, which holds the command back) and keeps an
//! eventfd readable while output or the exit is pending, so epoll, Go's poller or libuv can
//! wait on it.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use boxlite_lifecycle::{ExecControl, ExecHandle, ExecRequest, ExitStatus, Output};

use crate::abi::{box_handle, boxlite_error, boxlite_status, call, put, texts};
use crate::error::{Error, Result};
use crate::registry::{self, Kind};

/// A command running in a box.
pub type boxlite_exec = u64;

/// Which stream a chunk of output came from.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum boxlite_stream {
    /// No chunk: the output has ended.
    BOXLITE_STREAM_NONE = 0,
    /// The command's stdout.
    BOXLITE_STREAM_STDOUT = 1,
    /// The command's stderr.
    BOXLITE_STREAM_STDERR = 2,
}

/// What to run. Zero it, set `struct_size = sizeof(boxlite_exec_options)`, then the fields; the
/// struct only grows at its end, and the library reads only the first `struct_size` bytes.
#[repr(C)]
#[derive(Debug)]
pub struct boxlite_exec_options {
    /// `sizeof(boxlite_exec_options)` as the caller was compiled.
    pub struct_size: usize,
    /// Program and arguments (`argc` strings; `argv[0]` is looked up in the guest's PATH).
    pub argv: *const *const c_char,
    /// How many strings `argv` holds (at least 1).
    pub argc: usize,
    /// `KEY=VALUE` strings added to the box's environment (NULL when `envc` is 0).
    pub env: *const *const c_char,
    /// How many strings `env` holds.
    pub envc: usize,
    /// Working directory (NULL: the box's, else `/`).
    pub cwd: *const c_char,
    /// User id to run as; negative: the agent's (root).
    pub uid: i64,
    /// Group id to run as; negative: the agent's.
    pub gid: i64,
    /// Wall-clock limit in ms after which the agent kills the command (0: none).
    pub timeout_ms: u64,
    /// Whether the caller will write stdin (else the command's stdin is /dev/null).
    pub stdin: bool,
}

/// Most output queued before the reader waits for the caller.
const QUEUE_LIMIT: usize = 1 << 20;

#[derive(Default)]
struct State {
    queue: VecDeque<(boxlite_stream, Vec<u8>)>,
    queued: usize,
    /// How the command ended (or why its output could not be read), once the output is queued.
    end: Option<std::result::Result<ExitStatus, (boxlite_status, String)>>,
    /// The eventfd holds a count.
    flagged: bool,
    /// The handle was freed: the reader stops.
    closed: bool,
}

/// One execution: its control side, its queue and its eventfd.
pub(crate) struct Exec {
    control: ExecControl,
    state: Mutex<State>,
    changed: Condvar,
    event: OwnedFd,
}

impl Exec {
    /// Takes over a running command: its reader thread and its eventfd.
    pub(crate) fn start(running: ExecHandle) -> Result<Arc<Exec>> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::Internal(format!(
                "eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        let exec = Arc::new(Exec {
            control: running.control(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            event,
        });
        let pump = Arc::clone(&exec);
        std::thread::Builder::new()
            .name("boxlite-exec".to_string())
            .spawn(move || {
                let exec = Arc::clone(&pump);
                let pumped =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pump.pump(running)));
                if pumped.is_err() {
                    // A bug in the reader: waiters get an error rather than wait forever.
                    let mut state = exec.lock();
                    state.end = Some(Err((
                        boxlite_status::BOXLITE_INTERNAL,
                        "the execution's reader thread panicked".to_string(),
                    )));
                    exec.flag(&mut state);
                }
            })
            .map_err(|e| Error::Internal(format!("cannot spawn the exec reader: {e}")))?;
        Ok(exec)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        boxlite_proto::sync::lock(&self.state)
    }

    /// Makes the eventfd readable (the caller holds the state lock).
    fn flag(&self, state: &mut State) {
        if !state.flagged {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a local buffer to our own eventfd.
            let n = unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), 8) };
            state.flagged = n == 8;
        }
        self.changed.notify_all();
    }

    /// Makes the eventfd unreadable once nothing is pending (the caller holds the state lock).
    fn unflag_if_idle(&self, state: &mut State) {
        if state.flagged && state.queue.is_empty() && state.end.is_none() {
            let mut count = [0u8; 8];
            // SAFETY: reads 8 bytes into a local buffer from our own non-blocking eventfd.
            unsafe { libc::read(self.event.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
            state.flagged = false;
        }
    }

    /// Stops the reader and the command (the connection is shut down; the agent kills it).
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
        self.control.abort();
    }

    fn pump(self: Arc<Exec>, mut handle: ExecHandle) {
        loop {
            let next = handle.next_output();
            let mut state = self.lock();
            let chunk = match next {
                Ok(Some(Output::Stdout(bytes))) => (boxlite_stream::BOXLITE_STREAM_STDOUT, bytes),
                Ok(Some(Output::Stderr(bytes))) => (boxlite_stream::BOXLITE_STREAM_STDERR, bytes),
                Ok(None) => {
                    state.end = Some(handle.status().ok_or((
                        boxlite_status::BOXLITE_GUEST_ERROR,
                        "the command's output ended without an exit status".to_string(),
                    )));
                    self.flag(&mut state);
                    return;
                }
                Err(e) => {
                    let e = Error::from(e);
                    state.end = Some(Err((e.status(), e.to_string())));
                    self.flag(&mut state);
                    return;
                }
            };
            while state.queued >= QUEUE_LIMIT && !state.closed {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.closed {
                return;
            }
            state.queued += chunk.1.len();
            state.queue.push_back(chunk);
            self.flag(&mut state);
        }
    }
}

/// Waits on `changed` until `ready` holds or `timeout_ms` passes (negative: forever).
fn wait_for<'a>(
    exec: &'a Exec,
    mut state: MutexGuard<'a, State>,
    timeout_ms: i64,
    mut ready: impl FnMut(&State) -> bool,
    what: &'static str,
) -> Result<MutexGuard<'a, State>> {
    let deadline = u64::try_from(timeout_ms)
        .ok()
        .map(|ms| (ms, Instant::now() + Duration::from_millis(ms)));
    while !ready(&state) {
        state = match deadline {
            None => exec
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some((ms, at)) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout(ms, what));
                }
                exec.changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
    Ok(state)
}

fn exec(id: boxlite_exec) -> Result<Arc<Exec>> {
    registry::get::<Exec>(id, Kind::Exec).map(|(e, _)| e)
}

fn request(options: *const boxlite_exec_options) -> Result<ExecRequest> {
    if options.is_null() {
        return Err(Error::InvalidArgument("options is NULL".to_string()));
    }
    // SAFETY: non-NULL; by the ABI contract it points at a boxlite_exec_options, of which at
    // least `struct_size` (checked next) bytes are readable.
    let size = unsafe { (*options).struct_size };
    if size < std::mem::size_of::<boxlite_exec_options>() {
        return Err(Error::InvalidArgument(format!(
            "options.struct_size is {size}; set it to sizeof(boxlite_exec_options)"
        )));
    }
    // SAFETY: the whole struct is readable (struct_size covers it).
    let o = unsafe { &*options };
    // SAFETY: the ABI contract covers the arrays and strings the struct points at.
    let (argv, env, cwd) = unsafe {
        (
            texts(o.argv, o.argc, "options.argv")?,
            texts(o.env, o.envc, "options.env")?,
            crate::abi::opt_text(o.cwd, "options.cwd")?,
        )
    };
    if argv.is_empty() {
        return Err(Error::InvalidArgument("options.argv is empty".to_string()));
    }
    let env = env
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::InvalidArgument(format!(
                "options.env entry {kv:?} is not KEY=VALUE"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let id = |v: i64, what| {
        if v < 0 {
            Ok(None)
        } else {
            u32::try_from(v)
                .map(Some)
                .map_err(|_| Error::InvalidArgument(format!("{what} {v} is out of range")))
        }
    };
    let mut request = ExecRequest::new(argv);
    request.env = env;
    request.cwd = cwd.map(str::to_string);
    request.uid = id(o.uid, "options.uid")?;
    request.gid = id(o.gid, "options.gid")?;
    request.timeout_ms = (o.timeout_ms > 0).then_some(o.timeout_ms);
    request.stdin = o.stdin;
    Ok(request)
}

/// Runs a command in box `b`, starting the box first when it is not running (then this blocks
/// for the boot, up to its ready timeout; else for the agent's answer, up to 5 s). Free the
/// handle with `boxlite_exec_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_exec(
    b: crate::abi::boxlite_box,
    options: *const boxlite_exec_options,
    out: *mut boxlite_exec,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let request = request(options)?;
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let (handle, rt) = box_handle(b)?;
        let exec = Exec::start(handle.exec(request)?)?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", registry::insert(Kind::Exec, rt, exec)) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `options`, `out` and `err`.
    unsafe { call(err, body) }
}

/// A descriptor that is readable while output or the end of the command is pending (it stays
/// readable after the end). Poll it; do not read or close it: it belongs to the execution and
/// is valid until `boxlite_exec_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_fd(
    e: boxlite_exec,
    fd: *mut i32,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `fd` and `err`.
    unsafe { call(err, || put(fd, "fd", exec(e)?.event.as_raw_fd())) }
}

/// Reads the next chunk of output, up to `len` bytes into `buf`: `*stream` says which stream it
/// came from and `*n` how many bytes. Once the output has ended, returns BOXLITE_OK with `*n`
/// 0 and `*stream` BOXLITE_STREAM_NONE. Blocks up to `timeout_ms` (0: do not wait; negative:
/// forever) and returns BOXLITE_TIMEOUT when nothing came.
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_read(
    e: boxlite_exec,
    stream: *mut boxlite_stream,
    buf: *mut u8,
    len: usize,
    timeout_ms: i64,
    n: *mut usize,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if stream.is_null() || n.is_null() || (buf.is_null() && len > 0) {
            return Err(Error::InvalidArgument(
                "stream, n or buf is NULL".to_string(),
            ));
        }
        if len == 0 {
            return Err(Error::InvalidArgument("len is 0".to_string()));
        }
        let exec = exec(e)?;
        let state = exec.lock();
        let ready = |s: &State| !s.queue.is_empty() || s.end.is_some();
        let mut state = wait_for(&exec, state, timeout_ms, ready, "waiting for output")?;
        if let Some((which, bytes)) = state.queue.front_mut() {
            let which = *which;
            let take = bytes.len().min(len);
            // SAFETY: `buf` is writable for `len` >= `take` bytes (ABI contract).
            // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, take) };
            bytes.drain(..take);
            if bytes.is_empty() {
                state.queue.pop_front();
            }
            state.queued -= take;
            exec.unflag_if_idle(&mut state);
            exec.changed.notify_all();
            // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
            unsafe { put(stream, "stream", which) }?;
            // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
            return unsafe { put(n, "n", take) };
        }
        match &state.end {
            Some(Err((status, message))) => Err(Error::Kept {
                status: *status,
                message: message.clone(),
            }),
            _ => {
                // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
                unsafe { put(stream, "stream", boxlite_stream::BOXLITE_STREAM_NONE) }?;
                // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
                unsafe { put(n, "n", 0) }
            }
        }
    };
    // SAFETY: the ABI contract (lib.rs) covers `stream`, `buf` (`len` bytes), `n` and `err`.
    unsafe { call(err, body) }
}

/// Waits for the command to end: `*exit_code` is its exit code (-1 when a signal killed it)
/// and `*signal` the signal (0 when it exited); either pointer may be NULL. Output not read is
/// kept (up to 1 MiB, beyond which the command is held back until it is read, so read it or
/// wait with a timeout). Blocks up to `timeout_ms` (0: do not wait; negative: forever).
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_wait(
    e: boxlite_exec,
    timeout_ms: i64,
    exit_code: *mut i32,
    signal: *mut i32,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let exec = exec(e)?;
        let state = exec.lock();
        let state = wait_for(
            &exec,
            state,
            timeout_ms,
            |s| s.end.is_some(),
            "waiting for the exit",
        )?;
        match &state.end {
            Some(Ok(status)) => {
                if !exit_code.is_null() {
                    // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
                    unsafe { put(exit_code, "exit_code", status.code().unwrap_or(-1)) }?;
                }
                if !signal.is_null() {
                    // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
                    unsafe { put(signal, "signal", status.signal().unwrap_or(0)) }?;
                }
                Ok(())
            }
            Some(Err((status, message))) => Err(Error::Kept {
                status: *status,
                message: message.clone(),
            }),
            None => Err(Error::Internal("no end after waiting for it".to_string())),
        }
    };
    // SAFETY: the ABI contract (lib.rs) covers `exit_code`, `signal` and `err`.
    unsafe { call(err, body) }
}

/// Writes `len` bytes to the command's stdin (it must have been started with `stdin` set).
/// Blocks while the guest holds a megabyte the command has not read.
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_write_stdin(
    e: boxlite_exec,
    data: *const u8,
    len: usize,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if data.is_null() && len > 0 {
            return Err(Error::InvalidArgument("data is NULL".to_string()));
        }
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: non-NULL and readable for `len` bytes by the ABI contract (lib.rs).
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        Ok(exec(e)?.control.write_stdin(bytes)?)
    };
    // SAFETY: the ABI contract (lib.rs) covers `data` (`len` bytes) and `err`.
    unsafe { call(err, body) }
}

/// Closes the command's stdin once what was written before is delivered.
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_close_stdin(
    e: boxlite_exec,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, || Ok(exec(e)?.control.close_stdin()?)) }
}

/// Sends `signal` (e.g. 9 for SIGKILL) to the command's process group.
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_kill(
    e: boxlite_exec,
    signal: i32,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if !(1..=64).contains(&signal) {
            return Err(Error::InvalidArgument(format!(
                "signal {signal} is out of range"
            )));
        }
        Ok(exec(e)?.control.kill(signal)?)
    };
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

/// Frees an execution handle; a command still running is killed (the connection to it is
/// shut down). Its descriptor is closed once the reader thread ends.
#[no_mangle]
pub unsafe extern "C" fn boxlite_exec_free(
    e: boxlite_exec,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        registry::remove::<Exec>(e, Kind::Exec)?.close();
        Ok(())
    };
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_exec_options_struct_is_refused() {
        let options = boxlite_exec_options {
            struct_size: 8,
            argv: std::ptr::null(),
            argc: 0,
            env: std::ptr::null(),
            envc: 0,
            cwd: std::ptr::null(),
            uid: -1,
            gid: -1,
            timeout_ms: 0,
            stdin: false,
        };
        let err = request(&options).unwrap_err();
        assert!(err.to_string().contains("struct_size"), "{err}");
        assert!(matches!(
            request(std::ptr::null()),
            Err(Error::InvalidArgument(_))
        ));
    }

    /// A fake agent on a Unix socket: sends `events` on the first connection, then holds it
    /// open until the host closes it.
    fn fake_agent(
        name: &str,
        events: Vec<boxlite_proto::agent::Event>,
    ) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let dir = std::env::temp_dir().join(format!("bl-ffi-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let agent = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            for event in events {
                let frame = boxlite_proto::encode_frame(&event).unwrap();
                conn.write_all(&frame).unwrap();
            }
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
            let _ = std::fs::remove_dir_all(dir);
        });
        (path, agent)
    }

    fn start(path: &std::path::Path) -> boxlite_exec {
        let session = boxlite_lifecycle::GuestSession::unix(path);
        let running = session.exec(ExecRequest::new(["x"])).unwrap();
        registry::insert(Kind::Exec, 0, Exec::start(running).unwrap())
    }

    fn readable(fd: i32, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 }
    }

    #[test]
    fn output_and_exit_come_through_the_fd_read_and_wait() {
        use boxlite_proto::agent::Event;
        use boxlite_status::*;
        let (path, agent) = fake_agent(
            "exec",
            vec![
                Event::Started { pid: 7 },
                Event::Stdout(b"hello\n".to_vec()),
                Event::Stderr(b"oops".to_vec()),
                Event::Exited {
                    code: 3,
                    timed_out: false,
                },
            ],
        );
        let id = start(&path);
        let null = std::ptr::null_mut();
        let mut fd = -1;
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        assert_eq!(unsafe { boxlite_exec_fd(id, &mut fd, null) }, BOXLITE_OK);
        assert!(readable(fd, 5000));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let mut buf = [0u8; 3];
            let (mut stream, mut n) = (boxlite_stream::BOXLITE_STREAM_NONE, 0);
            // SAFETY: valid handles, out pointers and buffers of the stated lengths.
            let status = unsafe {
                boxlite_exec_read(id, &mut stream, buf.as_mut_ptr(), 3, 5000, &mut n, null)
            };
            assert_eq!(status, BOXLITE_OK);
            match stream {
                boxlite_stream::BOXLITE_STREAM_STDOUT => stdout.extend(&buf[..n]),
                boxlite_stream::BOXLITE_STREAM_STDERR => stderr.extend(&buf[..n]),
                boxlite_stream::BOXLITE_STREAM_NONE => break,
            }
        }
        assert_eq!(
            (stdout.as_slice(), stderr.as_slice()),
            (&b"hello\n"[..], &b"oops"[..])
        );
        let (mut code, mut signal) = (0, -1);
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        let status = unsafe { boxlite_exec_wait(id, 5000, &mut code, &mut signal, null) };
        assert_eq!((status, code, signal), (BOXLITE_OK, 3, 0));
        assert!(readable(fd, 0), "the end stays pending");
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        assert_eq!(unsafe { boxlite_exec_free(id, null) }, BOXLITE_OK);
        assert_eq!(
            // SAFETY: valid handles, out pointers and buffers of the stated lengths.
            unsafe { boxlite_exec_wait(id, 0, std::ptr::null_mut(), std::ptr::null_mut(), null) },
            BOXLITE_INVALID_HANDLE
        );
        agent.join().unwrap();
    }

    #[test]
    fn a_quiet_command_times_out_and_leaves_the_fd_unreadable() {
        use boxlite_proto::agent::Event;
        use boxlite_status::*;
        let (path, agent) = fake_agent("quiet", vec![Event::Started { pid: 8 }]);
        let id = start(&path);
        let null = std::ptr::null_mut();
        let mut fd = -1;
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        assert_eq!(unsafe { boxlite_exec_fd(id, &mut fd, null) }, BOXLITE_OK);
        assert!(!readable(fd, 0));
        let mut buf = [0u8; 16];
        let (mut stream, mut n) = (boxlite_stream::BOXLITE_STREAM_NONE, 0);
        let status =
            // SAFETY: valid handles, out pointers and buffers of the stated lengths.
            unsafe { boxlite_exec_read(id, &mut stream, buf.as_mut_ptr(), 16, 0, &mut n, null) };
        assert_eq!(status, BOXLITE_TIMEOUT);
        let status =
            // SAFETY: valid handles, out pointers and buffers of the stated lengths.
            unsafe { boxlite_exec_wait(id, 20, std::ptr::null_mut(), std::ptr::null_mut(), null) };
        assert_eq!(status, BOXLITE_TIMEOUT);
        // Freeing shuts the connection: the agent sees it end.
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        assert_eq!(unsafe { boxlite_exec_free(id, null) }, BOXLITE_OK);
        agent.join().unwrap();
    }

    #[test]
    fn closing_the_runtime_ends_its_executions() {
        use boxlite_proto::agent::Event;
        use boxlite_status::*;
        let (path, agent) = fake_agent("close", vec![Event::Started { pid: 9 }]);
        let home = std::env::temp_dir().join(format!("bl-ffi-home-{}", std::process::id()));
        let home_c = std::ffi::CString::new(home.to_str().unwrap()).unwrap();
        let null = std::ptr::null_mut();
        let mut rt = 0;
        // SAFETY: valid NUL-terminated strings and out pointers.
        // SAFETY: valid handles, out pointers and buffers of the stated lengths.
        let status = unsafe { crate::abi::boxlite_runtime_open(home_c.as_ptr(), &mut rt, null) };
        assert_eq!(status, BOXLITE_OK);
        let session = boxlite_lifecycle::GuestSession::unix(&path);
        let running = session.exec(ExecRequest::new(["x"])).unwrap();
        let id = registry::insert(Kind::Exec, rt, Exec::start(running).unwrap());
        assert_eq!(
            // SAFETY: valid handles, out pointers and buffers of the stated lengths.
            unsafe { crate::abi::boxlite_runtime_close(rt, null) },
            BOXLITE_OK
        );
        let mut fd = -1;
        assert_eq!(
            // SAFETY: valid handles, out pointers and buffers of the stated lengths.
            unsafe { boxlite_exec_fd(id, &mut fd, null) },
            BOXLITE_INVALID_HANDLE
        );
        // The connection was shut down: the agent's read ends.
        agent.join().unwrap();
        let _ = std::fs::remove_dir_all(home);
    }
}
