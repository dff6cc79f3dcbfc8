//! Connecting to a host Unix listener from the event-loop thread without ever blocking.
//!
//! `std`'s `UnixStream::connect` blocks while the listener's backlog is full, and a guest can
//! fill that backlog (REQUEST then RST, thousands of times, against a listener that stops
//! accepting), which would freeze every device on the event loop. A non-blocking `AF_UNIX`
//! connect instead fails at once with `EAGAIN`; the guest then gets an RST like any refused
//! connection.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connects to the Unix stream listener at `path` without blocking; the returned stream is
/// non-blocking. A full backlog is reported as `WouldBlock`.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is a valid (empty) address we fill in below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long for sun_path or contains a NUL byte",
        ));
    }
    #[expect(clippy::cast_possible_truncation, reason = "AF_UNIX is 1")]
    let family = libc::AF_UNIX as libc::sa_family_t;
    addr.sun_family = family;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // The path was checked to fit sun_path (108 bytes).
    #[expect(clippy::cast_possible_truncation, reason = "at most 111 bytes")]
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un that outlives the call and `len` does not exceed it.
    let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("bx-uc-{}-{name}", std::process::id()))
    }

    #[test]
    fn connects_and_the_stream_is_nonblocking() {
        let path = temp_path("ok");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut stream = connect_nonblocking(&path).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            stream.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        peer.write_all(b"ping").unwrap();
        stream.set_nonblocking(false).unwrap();
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_full_backlog_fails_at_once_instead_of_blocking() {
        let path = temp_path("full");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        // A backlog of one keeps the test to a handful of descriptors.
        assert_eq!(
            // SAFETY: listen on a socket we own; it takes no pointers.
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 1) },
            0
        );
        // Never accepted: the backlog fills, then connects must fail, not hang.
        let mut held = Vec::new();
        let err = loop {
            match connect_nonblocking(&path) {
                Ok(stream) => held.push(stream),
                Err(e) => break e,
            }
            assert!(held.len() < 64, "the backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn missing_listeners_and_bad_paths_are_errors() {
        assert!(connect_nonblocking(&temp_path("nobody")).is_err());
        let long = std::path::PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        assert_eq!(
            connect_nonblocking(&long).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
