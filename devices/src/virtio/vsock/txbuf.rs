//! A connection's bounded buffer of guest data that the host stream could not take yet.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};

/// Shrink the backing storage back to this size once the buffer drains, so that an idle
/// connection does not keep a burst's worth of memory.
const IDLE_CAPACITY: usize = 4096;

/// The guest pushed more data than the buffer holds: it ignored the credit we advertised.
#[derive(Debug, PartialEq, Eq)]
pub struct TxBufFull;

/// Guest-to-host bytes waiting for the host stream to become writable, at most `capacity`.
#[derive(Debug)]
pub struct TxBuf {
    data: VecDeque<u8>,
    capacity: usize,
}

impl TxBuf {
    /// An empty buffer that holds at most `capacity` bytes.
    pub fn new(capacity: usize) -> TxBuf {
        TxBuf {
            data: VecDeque::new(),
            capacity,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Appends all of `bytes`, or nothing when they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), TxBufFull> {
        if bytes.len() > self.capacity - self.data.len() {
            return Err(TxBufFull);
        }
        self.data.extend(bytes);
        Ok(())
    }

    /// Writes as much as `out` takes without blocking and returns how many bytes left the
    /// buffer. `WouldBlock` ends the flush without an error; any other write error is returned
    /// (the bytes written before it stay counted as gone).
    pub fn flush_to<W: Write>(&mut self, out: &mut W) -> std::io::Result<usize> {
        let mut flushed = 0;
        while !self.data.is_empty() {
            let (front, _) = self.data.as_slices();
            match out.write(front) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.data.drain(..n);
                    flushed += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.data.is_empty() {
            self.data.shrink_to(IDLE_CAPACITY);
        }
        Ok(flushed)
    }

    /// Drops everything waiting (the connection is being reset).
    pub fn clear(&mut self) {
        self.data = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes, then says WouldBlock.
    struct Limited {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(3);
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn push_is_all_or_nothing_at_capacity() {
        let mut buf = TxBuf::new(8);
        buf.push(b"hello").unwrap();
        assert_eq!(buf.push(b"world"), Err(TxBufFull));
        assert_eq!(buf.len(), 5);
        buf.push(b"abc").unwrap();
        assert_eq!(buf.len(), 8);
    }

    #[test]
    fn flush_stops_at_would_block_and_resumes_in_order() {
        let mut buf = TxBuf::new(64);
        buf.push(b"hello ").unwrap();
        buf.push(b"world").unwrap();
        let mut out = Limited {
            taken: Vec::new(),
            room: 7,
        };
        assert_eq!(buf.flush_to(&mut out).unwrap(), 7);
        assert_eq!(buf.len(), 4);
        out.room = 100;
        assert_eq!(buf.flush_to(&mut out).unwrap(), 4);
        assert!(buf.is_empty());
        assert_eq!(out.taken, b"hello world");
    }

    #[test]
    fn flush_reports_hard_errors_and_clear_empties() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut buf = TxBuf::new(16);
        buf.push(b"data").unwrap();
        let err = buf.flush_to(&mut Broken).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        assert_eq!(buf.len(), 4);
        buf.clear();
        assert!(buf.is_empty());
    }
}
