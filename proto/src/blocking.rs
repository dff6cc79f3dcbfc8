//! Blocking frame reads with one deadline for the whole frame (the `std` feature).
//!
//! The host runtime, the shim and the guest agent all read single frames from blocking
//! streams. [`read_frame`] is the one implementation: it reads the length prefix, refuses an
//! oversized announcement before allocating for it, then reads the payload; with a deadline,
//! every read waits only for the time left, so a peer that trickles one byte at a time cannot
//! stretch it.

extern crate std;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::frame::{frame_payload_len, FrameError, FRAME_HEADER_LEN};

/// Why [`read_frame`] returned no frame.
#[derive(Debug)]
pub enum ReadFrameError {
    /// The deadline passed before the frame was complete.
    TimedOut,
    /// The stream ended inside the frame.
    Closed {
        /// Bytes of the frame (header included) read before the end.
        read: usize,
    },
    /// The header announces a payload over [`crate::MAX_FRAME_LEN`].
    Frame(FrameError),
    /// Reading (or setting the timeout) failed.
    Io(io::Error),
}

impl fmt::Display for ReadFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFrameError::TimedOut => f.write_str("the frame did not arrive in time"),
            ReadFrameError::Closed { read } => {
                write!(f, "the stream ended {read} bytes into a frame")
            }
            ReadFrameError::Frame(e) => e.fmt(f),
            ReadFrameError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadFrameError {}

/// When a frame must be complete, and how to make the reader's next read wait no longer than
/// the time left (for a socket: `set_read_timeout`).
pub struct Deadline<'a, R> {
    /// When the whole frame must be in.
    pub at: Instant,
    /// Limits the next read on the reader to the given time.
    pub set_timeout: &'a mut dyn FnMut(&mut R, Duration) -> io::Result<()>,
}

/// Reads one whole frame (header included) from `reader`; `Ok(None)` when the stream ends
/// before its first byte. Without a `deadline` the reads block as long as the reader does.
pub fn read_frame<R: Read>(
    reader: &mut R,
    mut deadline: Option<Deadline<'_, R>>,
) -> Result<Option<Vec<u8>>, ReadFrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let got = read_full(reader, &mut header, &mut deadline, 0)?;
    if got == 0 {
        return Ok(None);
    }
    let len = frame_payload_len(header).map_err(ReadFrameError::Frame)?;
    let mut frame = vec![0u8; FRAME_HEADER_LEN + len];
    frame[..FRAME_HEADER_LEN].copy_from_slice(&header);
    read_full(
        reader,
        &mut frame[FRAME_HEADER_LEN..],
        &mut deadline,
        FRAME_HEADER_LEN,
    )?;
    Ok(Some(frame))
}

/// Fills `buf`; returns 0 when the stream ends before the first byte of a frame (`before` is
/// how many bytes of the frame came earlier), and the length when full.
fn read_full<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    deadline: &mut Option<Deadline<'_, R>>,
    before: usize,
) -> Result<usize, ReadFrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        if let Some(deadline) = deadline {
            let left = deadline.at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadFrameError::TimedOut);
            }
            (deadline.set_timeout)(reader, left).map_err(ReadFrameError::Io)?;
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled + before == 0 => return Ok(0),
            Ok(0) => {
                return Err(ReadFrameError::Closed {
                    read: before + filled,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if deadline.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(ReadFrameError::TimedOut)
            }
            Err(e) => return Err(ReadFrameError::Io(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_FRAME_LEN;
    use std::io::Cursor;

    /// A reader that yields one byte per read and advances a fake clock each time, recording
    /// the timeouts it was given.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        timeouts: Vec<Duration>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(&b) = self.bytes.get(self.at) else {
                return Ok(0);
            };
            self.at += 1;
            buf[0] = b;
            Ok(1)
        }
    }

    #[test]
    fn a_frame_is_read_whole_and_the_end_of_stream_is_none() {
        let mut input = Cursor::new(vec![2, 0, 0, 0, 7, 8]);
        assert_eq!(
            read_frame(&mut input, None).unwrap(),
            Some(vec![2, 0, 0, 0, 7, 8])
        );
        assert_eq!(read_frame(&mut input, None).unwrap(), None);
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload() {
        let mut input = Cursor::new(((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec());
        let err = read_frame(&mut input, None).unwrap_err();
        assert!(
            matches!(err, ReadFrameError::Frame(FrameError::TooLarge(_))),
            "{err}"
        );
        // Nothing past the header was asked for.
        assert_eq!(input.position(), 4);
    }

    #[test]
    fn a_stream_ending_inside_a_frame_says_where() {
        let err = read_frame(&mut Cursor::new(vec![5, 0, 0, 0, 1]), None).unwrap_err();
        assert!(matches!(err, ReadFrameError::Closed { read: 5 }), "{err}");
        let err = read_frame(&mut Cursor::new(vec![5, 0]), None).unwrap_err();
        assert!(matches!(err, ReadFrameError::Closed { read: 2 }), "{err}");
    }

    #[test]
    fn one_deadline_covers_the_whole_frame_however_the_peer_trickles() {
        let mut frame = 100u32.to_le_bytes().to_vec();
        frame.extend([9u8; 100]);
        let mut peer = Trickle {
            bytes: frame,
            at: 0,
            timeouts: Vec::new(),
        };
        // Each read is given the time left; a reader whose reads all finish "in time" still
        // hits the deadline once the whole frame is late. The deadline is already close, so
        // the reads see ever smaller limits and the frame times out.
        let at = Instant::now() + Duration::from_millis(20);
        let mut set = |p: &mut Trickle, left: Duration| {
            p.timeouts.push(left);
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        };
        let err = read_frame(
            &mut peer,
            Some(Deadline {
                at,
                set_timeout: &mut set,
            }),
        )
        .unwrap_err();
        assert!(matches!(err, ReadFrameError::TimedOut), "{err}");
        assert!(peer.at < 104, "the frame must not complete");
        assert!(
            peer.timeouts.windows(2).all(|w| w[1] <= w[0]),
            "timeouts only shrink"
        );
    }
}
