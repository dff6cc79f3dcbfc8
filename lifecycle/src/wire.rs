//! Blocking frame I/O on a connection to the guest agent.

use std::io::{self, Read, Write};
use std::time::Duration;

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

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one whole frame (header included); `None` when the stream ends before a header.
pub fn read_raw_frame(
    stream: &mut impl Read,
    context: &'static str,
    timeout: Option<Duration>,
) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match read_full(stream, &mut header).map_err(io_error(context, timeout))? {
        0 => return Ok(None),
        FRAME_HEADER_LEN => {}
        _ => return Err(Error::Closed { context }),
    }
    let len = frame_payload_len(header).map_err(Error::Frame)?;
    let mut frame = vec![0u8; FRAME_HEADER_LEN + len];
    frame[..FRAME_HEADER_LEN].copy_from_slice(&header);
    if read_full(stream, &mut frame[FRAME_HEADER_LEN..]).map_err(io_error(context, timeout))? < len
    {
        return Err(Error::Closed { context });
    }
    Ok(Some(frame))
}

/// Reads one [`Event`]; `None` when the stream ends before a header.
pub fn read_event(
    stream: &mut impl Read,
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
