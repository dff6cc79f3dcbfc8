//! Blocking frame I/O on a connection to the guest agent.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use boxlite_proto::agent::Event;
use boxlite_proto::blocking::{read_frame, Deadline, ReadFrameError};
use boxlite_proto::{decode_frame, encode_frame};
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

/// Reads one whole frame (header included) within `timeout`, if given; `None` when the stream
/// ends before a header. The timeout covers the whole frame, however the peer trickles it.
pub fn read_raw_frame(
    stream: &mut UnixStream,
    context: &'static str,
    timeout: Option<Duration>,
) -> Result<Option<Vec<u8>>> {
    let mut set_timeout = |s: &mut UnixStream, left: Duration| s.set_read_timeout(Some(left));
    let deadline = timeout.map(|t| Deadline {
        at: Instant::now() + t,
        set_timeout: &mut set_timeout,
    });
    read_frame(stream, deadline).map_err(|e| match e {
        ReadFrameError::TimedOut => Error::Timeout {
            what: context,
            after: timeout.unwrap_or_default(),
        },
        ReadFrameError::Closed { .. } => Error::Closed { context },
        ReadFrameError::Frame(e) => Error::Frame(e),
        ReadFrameError::Io(source) => Error::Io { context, source },
    })
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
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        let sent = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let trickler = std::thread::spawn(move || {
            // A header announcing 100 bytes, then one byte every 50 ms: each read alone would
            // finish well within the timeout.
            let _ = theirs.write_all(&100u32.to_le_bytes());
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(50));
                if theirs.write_all(b"x").is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let err = read_raw_frame(&mut ours, "test", Some(Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        // The reader gave up while the frame was still coming: the deadline covers the whole
        // frame, not each read.
        let at_timeout = sent.load(Ordering::SeqCst);
        assert!(
            at_timeout < 100,
            "the reader waited for all {at_timeout} bytes"
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
