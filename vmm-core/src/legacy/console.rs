//! Where the guest's serial output goes, and the watch for the kernel's panic banner.
//!
//! Linux has no way to tell a VMM without ACPI or PCI that it panicked: with `panic=-1` it simply
//! resets. The kernel does print `Kernel panic - not syncing` on the console first, so the console
//! path notes that line and the VM's outcome becomes a panic instead of a reset. A guest program
//! could print the banner itself; it can only misreport its own ending that way.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// The banner Linux prints when it panics.
pub const PANIC_BANNER: &str = "Kernel panic - not syncing";
/// Longest console line kept for the panic check; longer lines are truncated.
const MAX_LINE: usize = 512;

/// Records the first panic line seen on the console.
#[derive(Debug, Default)]
pub struct PanicWatch {
    line: Mutex<Option<String>>,
}

impl PanicWatch {
    /// The guest's panic line, if it printed one.
    pub fn panic_line(&self) -> Option<String> {
        self.line.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, line: &[u8]) {
        let mut slot = self.line.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(String::from_utf8_lossy(line).trim_end().to_string());
        }
    }
}

/// A named destination of console bytes.
pub struct ConsoleSink {
    name: String,
    out: Box<dyn Write + Send>,
}

impl ConsoleSink {
    /// Wraps `out`; `name` identifies it in logs.
    pub fn new(name: impl Into<String>, out: Box<dyn Write + Send>) -> ConsoleSink {
        ConsoleSink {
            name: name.into(),
            out,
        }
    }
}

/// Fans console bytes out to every sink and feeds the panic watch. A sink that fails (a closed
/// pipe, a full disk) is dropped with one warning; the guest keeps running.
pub struct ConsoleWriter {
    sinks: Vec<ConsoleSink>,
    line: Vec<u8>,
    watch: Arc<PanicWatch>,
}

impl ConsoleWriter {
    /// A writer to `sinks` reporting panics to `watch`.
    pub fn new(sinks: Vec<ConsoleSink>, watch: Arc<PanicWatch>) -> ConsoleWriter {
        ConsoleWriter {
            sinks,
            line: Vec::new(),
            watch,
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                if self
                    .line
                    .windows(PANIC_BANNER.len())
                    .any(|w| w == PANIC_BANNER.as_bytes())
                {
                    self.watch.record(&self.line);
                }
                self.line.clear();
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.scan(buf);
        self.sinks.retain_mut(|sink| {
            match sink.out.write_all(buf).and_then(|_| sink.out.flush()) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!(
                        "console sink {} failed ({e}); no more console output goes there",
                        sink.name
                    );
                    false
                }
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn copies_to_every_sink_and_survives_a_broken_one() {
        let (a, b) = (Shared::default(), Shared::default());
        let watch = Arc::new(PanicWatch::default());
        let mut writer = ConsoleWriter::new(
            vec![
                ConsoleSink::new("a", Box::new(a.clone())),
                ConsoleSink::new("broken", Box::new(Broken)),
                ConsoleSink::new("b", Box::new(b.clone())),
            ],
            watch,
        );
        writer.write_all(b"hello\n").unwrap();
        writer.write_all(b"again\n").unwrap();
        assert_eq!(&*a.0.lock().unwrap(), b"hello\nagain\n");
        assert_eq!(&*b.0.lock().unwrap(), b"hello\nagain\n");
        assert_eq!(writer.sinks.len(), 2);
    }

    #[test]
    fn notes_the_first_panic_line_even_split_across_writes() {
        let watch = Arc::new(PanicWatch::default());
        let mut writer = ConsoleWriter::new(vec![], watch.clone());
        writer.write_all(b"[    0.5] Kernel pa").unwrap();
        assert_eq!(watch.panic_line(), None);
        writer
            .write_all(b"nic - not syncing: Attempted to kill init!\r\n")
            .unwrap();
        writer
            .write_all(b"Kernel panic - not syncing: second\n")
            .unwrap();
        assert_eq!(
            watch.panic_line().as_deref(),
            Some("[    0.5] Kernel panic - not syncing: Attempted to kill init!")
        );
    }

    #[test]
    fn endless_lines_do_not_grow_without_bound() {
        let watch = Arc::new(PanicWatch::default());
        let mut writer = ConsoleWriter::new(vec![], watch.clone());
        writer.write_all(&vec![b'x'; 10 * MAX_LINE]).unwrap();
        assert_eq!(writer.line.len(), MAX_LINE);
        writer.write_all(b"\n").unwrap();
        assert_eq!(watch.panic_line(), None);
    }
}
