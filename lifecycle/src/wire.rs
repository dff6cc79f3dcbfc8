//! Blocking frame I/O on a connection to the guest agent.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use boxlite_proto::agent::Event;
use boxlite_proto::{decode_frame, encode_frame, frame_payload_len, FRAME_HEADER_LEN};
use serde::Serialize;

use crate::error::{Error, Result};

/// Wraps an I/O error of `context`; a read timeout (`timeout` is the one set on the socket)
/// becomes [`Error::Timeout`].
pub fn io_error(
    context: &'static str,
    timeout: Option<Duration>,
) -> impl FnOnce(io::Error) -> Error {
    move |source| match (source.kind(), timeout) {
        (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(after)) => Error::Timeout {
            what: context,
            after,
        },
        _ => Error::Io { context, source },
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read. With a `deadline` the
/// whole read must finish by then: each read waits only for the time left, so a peer that
/// trickles one byte at a time cannot stretch it.
fn read_full(
    stream: &mut UnixStream,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            stream.set_read_timeout(Some(left))?;
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one whole frame (header included) within `timeout`, if given; `None` when the stream
/// ends before a header.
pub fn read_raw_frame(
    stream: &mut UnixStream,
    context: &'static str,
    timeout: Option<Duration>,
) -> Result<Option<Vec<u8>>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut header = [0u8; FRAME_HEADER_LEN];
    match read_full(stream, &mut header, deadline).map_err(io_error(context, timeout))? {
        0 => return Ok(None),
        FRAME_HEADER_LEN => {}
        _ => return Err(Error::Closed { context }),
    }
    let len = frame_payload_len(header).map_err(Error::Frame)?;
    let mut frame = vec![0u8; FRAME_HEADER_LEN + len];
    frame[..FRAME_HEADER_LEN].copy_from_slice(&header);
    if read_full(stream, &mut frame[FRAME_HEADER_LEN..], deadline)
        .map_err(io_error(context, timeout))?
        < len
    {
        return Err(Error::Closed { context });
    }
    Ok(Some(frame))
}

/// Reads one [`Event`]; `None` when the stream ends before a header.
pub fn read_event(
    stream: &mut UnixStream,
    context: &'static str,
    timeout: Option<Duration>,
) -> Result<Option<Event>> {
    read_raw_frame(stream, context, timeout)?
        .map(|frame| decode_frame(&frame).map_err(Error::Frame))
        .transpose()
}

/// Writes `value` as one frame.
pub fn write_frame<T: Serialize>(
    stream: &mut impl Write,
    value: &T,
    context: &'static str,
) -> Result<()> {
    let frame = encode_frame(value).map_err(Error::Request)?;
    stream
        .write_all(&frame)
        .map_err(|source| Error::Io { context, source })
}

/// A short description of an event for error messages (output chunks by size only).
pub fn describe(event: &Event) -> String {
    match event {
        Event::Stdout(bytes) => format!("Stdout({} bytes)", bytes.len()),
        Event::Stderr(bytes) => format!("Stderr({} bytes)", bytes.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn a_peer_trickling_bytes_cannot_stretch_the_timeout() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        let trickler = std::thread::spawn(move || {
            // A header announcing 100 bytes, then one byte every 50 ms: each read alone would
            // finish well within the timeout.
            let _ = theirs.write_all(&100u32.to_le_bytes());
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(50));
                if theirs.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        let start = Instant::now();
        let err = read_raw_frame(&mut ours, "test", Some(Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        drop(ours);
        trickler.join().unwrap();
    }

    #[test]
    fn a_whole_frame_within_the_timeout_is_read() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&[2, 0, 0, 0, 7, 8]).unwrap();
        let frame = read_raw_frame(&mut ours, "test", Some(Duration::from_secs(5))).unwrap();
        assert_eq!(frame, Some(vec![2, 0, 0, 0, 7, 8]));
    }
}
