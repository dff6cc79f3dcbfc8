//! A connection's bounded buffer of guest data that the host stream could not take yet.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Shrink the backing storage back to this size once the buffer drains, so that an idle
/// connection does not keep a burst's worth of memory.
const IDLE_CAPACITY: usize = 4096;

/// Guest bytes all of a device's connections may buffer together: without it, every
/// connection's full credit at once would be [`super::MAX_CONNECTIONS`] × 256 KiB = 256 MiB.
pub const MAX_TOTAL_BUFFERED: usize = 32 << 20;

/// The guest pushed more data than the buffer holds: it ignored the credit we advertised, or
/// the device's connections together already hold their shared budget.
#[derive(Debug, PartialEq, Eq)]
pub struct TxBufFull;

/// The byte budget a device's [`TxBuf`]s share (clones share it).
#[derive(Clone, Debug)]
pub struct TxBudget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl TxBudget {
    /// A budget of `limit` bytes, none in use.
    pub fn new(limit: usize) -> TxBudget {
        TxBudget {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Bytes held by all the buffers sharing this budget.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Guest-to-host bytes waiting for the host stream to become writable, at most `capacity`, and
/// only while the shared [`TxBudget`] has room.
#[derive(Debug)]
pub struct TxBuf {
    data: VecDeque<u8>,
    capacity: usize,
    budget: TxBudget,
}

impl TxBuf {
    /// An empty buffer that holds at most `capacity` bytes out of `budget`.
    pub fn new(capacity: usize, budget: TxBudget) -> TxBuf {
        TxBuf {
            data: VecDeque::new(),
            capacity,
            budget,
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
        if bytes.len() > self.capacity - self.data.len() || !self.budget.take(bytes.len()) {
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
                    self.budget.give(n);
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
        self.budget.give(self.data.len());
        self.data = VecDeque::new();
    }
}

impl Drop for TxBuf {
    fn drop(&mut self) {
        self.budget.give(self.data.len());
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
        let mut buf = TxBuf::new(8, TxBudget::new(MAX_TOTAL_BUFFERED));
        buf.push(b"hello").unwrap();
        assert_eq!(buf.push(b"world"), Err(TxBufFull));
        assert_eq!(buf.len(), 5);
        buf.push(b"abc").unwrap();
        assert_eq!(buf.len(), 8);
    }

    #[test]
    fn flush_stops_at_would_block_and_resumes_in_order() {
        let mut buf = TxBuf::new(64, TxBudget::new(MAX_TOTAL_BUFFERED));
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
        let mut buf = TxBuf::new(16, TxBudget::new(MAX_TOTAL_BUFFERED));
        buf.push(b"data").unwrap();
        let err = buf.flush_to(&mut Broken).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        assert_eq!(buf.len(), 4);
        buf.clear();
        assert!(buf.is_empty());
    }

    #[test]
    fn buffers_share_one_budget_and_give_it_back() {
        let budget = TxBudget::new(100);
        let mut a = TxBuf::new(80, budget.clone());
        let mut b = TxBuf::new(80, budget.clone());
        a.push(&[1; 70]).unwrap();
        // Within b's own capacity, but over what the two may hold together.
        assert_eq!(b.push(&[2; 40]), Err(TxBufFull));
        b.push(&[2; 30]).unwrap();
        assert_eq!(budget.used(), 100);
        let mut out = Vec::new();
        assert_eq!(a.flush_to(&mut out).unwrap(), 70);
        assert_eq!(budget.used(), 30);
        b.clear();
        assert_eq!(budget.used(), 0);
        a.push(&[3; 50]).unwrap();
        drop(a);
        assert_eq!(budget.used(), 0);
    }
}
