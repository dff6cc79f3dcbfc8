//! Thin, safe wrappers over the libc calls the agent needs beyond `std`.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use boxlite_proto::blocking::{read_frame, Deadline, ReadFrameError};

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A path as a C string; paths with a NUL byte are refused.
pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Switches `O_NONBLOCK` on for `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor we borrow; no memory is passed.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL with an integer argument on a descriptor we borrow.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Sets both the receive and the send timeout of a socket (`None`: block forever).
pub fn set_socket_timeouts(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let timeout = timeout.unwrap_or_default();
    // The field types are left to inference: musl deprecates naming its time_t alias.
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i32::MAX.into()),
        tv_usec: timeout.subsec_micros().into(),
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: `tv` is a valid timeval that outlives the call, and its size is passed.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
    }
    Ok(())
}

/// Runs a system call returning a count (negative on failure) until it is not interrupted.
fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        match usize::try_from(call()) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// `read(2)`, retried on `EINTR`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    retry_eintr(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)`, retried on `EINTR`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    retry_eintr(|| unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// Writes all of `buf` to a blocking descriptor.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// A borrowed descriptor as an [`io::Read`] (for `boxlite_proto::blocking::read_frame`); its
/// read timeout is set with [`set_socket_timeouts`].
pub struct FdReader<'a>(pub BorrowedFd<'a>);

impl io::Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read(self.0, buf)
    }
}

/// Reads one frame from the socket `fd`, all of it by `deadline`: each read waits only for the
/// time left, so a peer sending one byte at a time cannot stretch it. `Ok(None)` when the peer
/// closed before the first byte.
pub fn read_frame_by(
    fd: BorrowedFd<'_>,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, ReadFrameError> {
    let mut set_timeout =
        |r: &mut FdReader<'_>, left: Duration| set_socket_timeouts(r.0, Some(left));
    read_frame(
        &mut FdReader(fd),
        Some(Deadline {
            at: deadline,
            set_timeout: &mut set_timeout,
        }),
    )
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `poll(2)` with an optional timeout; an interrupted poll reports no ready descriptor.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout_ms = timeout.map_or(-1, |t| {
        // Round up so a deadline is never polled past in a busy loop of zero timeouts.
        libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd entries.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match usize::try_from(n) {
        Ok(n) => Ok(n),
        Err(_) => {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            }
        }
    }
}

/// Sends `signal` to the process group led by `pid`, or to `pid` alone when it has left its
/// group. A process that is already gone is not an error.
pub fn kill_group(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    for target in [-pid, pid] {
        // SAFETY: kill takes no memory; `target` names our own child or its group.
        if unsafe { libc::kill(target, signal) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Sends `signal` to every process but the caller (and, for PID 1, itself); `Ok(false)` when
/// there is no such process left.
pub fn kill_all(signal: i32) -> io::Result<bool> {
    // SAFETY: kill takes no memory.
    match check(unsafe { libc::kill(-1, signal) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The signal set holding only `SIGCHLD`.
fn sigchld_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset then adds a valid signal.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGCHLD);
        set.assume_init()
    }
}

/// Blocks `SIGCHLD` in the calling thread, and so in every thread it creates afterwards: the
/// reaper collects it with [`wait_sigchld`]. Commands must start with
/// [`clear_signal_mask`], or they would inherit the block.
pub fn block_sigchld() -> io::Result<()> {
    let set = sigchld_set();
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Unblocks every signal in the calling thread. Async-signal-safe and allocation-free, for use
/// between `fork` and `exec`.
pub fn clear_signal_mask() -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set, which then outlives the sigmask call; the old
    // mask is not asked for.
    let ret = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut())
    };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Waits until a `SIGCHLD` is pending and consumes it (returns early on other interruptions).
pub fn wait_sigchld() {
    let set = sigchld_set();
    let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
    // SAFETY: `set` is initialised and `info` has room for the siginfo the kernel writes. An
    // error (EINTR) only means the caller looks for exited children once more.
    unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) };
}

/// Collects one exited child without blocking: `Some((pid, raw wait status))`, or `None` when
/// no child has exited (or there are no children).
pub fn reap_one() -> Option<(u32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid place for waitpid to store the wait status.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match u32::try_from(pid) {
            Ok(0) => return None,
            Ok(pid) => return Some((pid, status)),
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Makes orphaned descendants of this process its children (so it reaps them like PID 1).
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and no memory.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) })?;
    Ok(())
}

#[cfg(test)]
mod deadline_tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_trickling_peer_cannot_stretch_the_deadline() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let trickler = std::thread::spawn(move || {
            let _ = theirs.write_all(&64u32.to_le_bytes());
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(50));
                if theirs.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_millis(300);
        let err = read_frame_by(ours.as_fd(), deadline).unwrap_err();
        assert!(matches!(err, ReadFrameError::TimedOut), "{err}");
        drop(ours);
        trickler.join().unwrap();
    }

    #[test]
    fn whole_frames_and_clean_ends_are_reported() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs
            .write_all(&[4, 0, 0, 0, b'a', b'b', b'c', b'd'])
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let frame = read_frame_by(ours.as_fd(), deadline).unwrap();
        assert_eq!(
            frame.as_deref(),
            Some(&[4, 0, 0, 0, b'a', b'b', b'c', b'd'][..])
        );
        drop(theirs);
        assert!(read_frame_by(ours.as_fd(), deadline).unwrap().is_none());
    }
}
