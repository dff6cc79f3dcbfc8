//! Where the guest's serial output goes, and the watch for the kernel's panic banner.
//!
//! Linux has no way to tell a VMM without ACPI or PCI that it panicked: with `panic=-1` it simply
//! resets. The kernel does print `Kernel panic - not syncing` on the console first, so the console
//! path notes that line and the VM's outcome becomes a panic instead of a reset. A guest program
//! could print the banner itself; it can only misreport its own ending that way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
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
        boxlite_proto::sync::lock(&self.line).clone()
    }

    fn record(&self, line: &[u8]) {
        let mut slot = boxlite_proto::sync::lock(&self.line);
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

/// Smallest cap a [`CappedFile`] accepts: room for the marker line and a useful tail.
const MIN_CAP: u64 = 4096;

/// The console file, kept at or under a byte cap so a guest cannot fill the host disk.
///
/// When a write would take the file past the cap, the file is renamed to `<path>.1` (replacing
/// the previous one, whose bytes are then counted as dropped) and a new file starts with a marker
/// line giving the dropped count, then a copy of the last quarter of the old file, then the
/// write. So the file is never over the cap and its end is always the guest's latest output,
/// which is what a crash report reads.
pub struct CappedFile {
    path: PathBuf,
    previous: PathBuf,
    file: File,
    len: u64,
    cap: u64,
    /// Bytes of the current file copied from the previous one when it started.
    seeded: u64,
    /// Guest bytes no longer in either file.
    dropped: u64,
}

impl CappedFile {
    /// Opens `path` for append (created if missing), capped at `cap` bytes (at least 4 KiB).
    pub fn open(path: &Path, cap: u64) -> io::Result<CappedFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let mut previous = path.as_os_str().to_owned();
        previous.push(".1");
        Ok(CappedFile {
            path: path.to_path_buf(),
            previous: PathBuf::from(previous),
            file,
            len,
            cap: cap.max(MIN_CAP),
            seeded: 0,
            dropped: 0,
        })
    }

    /// Guest bytes dropped so far (in neither the file nor `<path>.1`).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Moves the file to `<path>.1` and starts a new one: marker, then the old file's tail.
    fn rotate(&mut self) -> io::Result<()> {
        let old_previous = fs::metadata(&self.previous).map_or(0, |m| m.len());
        // What the current file copied from the old `.1` survives the rename; the rest of the
        // old `.1` is gone.
        self.dropped += old_previous.saturating_sub(self.seeded);
        fs::rename(&self.path, &self.previous)?;
        let marker = format!(
            "\n[boxlite: console.log reached its {}-byte cap; earlier output is in console.log.1; \
             {} bytes dropped before that]\n",
            self.cap, self.dropped
        );
        let keep = (self.cap / 4).min(self.len);
        let mut tail = Vec::new();
        let mut old = File::open(&self.previous)?;
        old.seek(SeekFrom::End(-i64::try_from(keep).unwrap_or(0)))?;
        old.take(keep).read_to_end(&mut tail)?;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.file.write_all(marker.as_bytes())?;
        self.file.write_all(&tail)?;
        self.seeded = tail.len() as u64;
        self.len = (marker.len() + tail.len()) as u64;
        Ok(())
    }
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = buf;
        if self.len + bytes.len() as u64 > self.cap {
            self.rotate()?;
            // A single write larger than the room left keeps only its end.
            let room = usize::try_from(self.cap - self.len).unwrap_or(usize::MAX);
            if bytes.len() > room {
                self.dropped += (bytes.len() - room) as u64;
                bytes = &bytes[bytes.len() - room..];
            }
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
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

    #[test]
    fn a_flooding_guest_leaves_a_capped_file_that_ends_with_its_last_bytes() {
        let dir = vmm_sys_util::tempdir::TempDir::new().unwrap();
        let path = dir.as_path().join("console.log");
        let cap = 64 * 1024;
        let mut file = CappedFile::open(&path, cap).unwrap();
        let mut total = 0u64;
        let mut last = String::new();
        for i in 0..100_000 {
            last = format!("[{i:8}] guest line that keeps coming\n");
            file.write_all(last.as_bytes()).unwrap();
            total += last.len() as u64;
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.len() as u64 <= cap,
            "console.log is {} bytes",
            text.len()
        );
        assert!(text.ends_with(&last));
        // The marker is the file's first line and counts the dropped bytes.
        let dropped = file.dropped();
        assert!(text.starts_with(&format!(
            "\n[boxlite: console.log reached its {cap}-byte cap; earlier output is in \
             console.log.1; {dropped} bytes dropped before that]\n"
        )));
        let previous = fs::read(dir.as_path().join("console.log.1")).unwrap();
        assert!(previous.len() as u64 <= cap);
        // Everything the guest wrote is either on disk or counted.
        assert!(dropped + previous.len() as u64 + text.len() as u64 >= total);
        assert!(dropped > total - 2 * cap && dropped < total);
    }

    #[test]
    fn one_write_bigger_than_the_cap_keeps_its_end() {
        let dir = vmm_sys_util::tempdir::TempDir::new().unwrap();
        let path = dir.as_path().join("console.log");
        let mut file = CappedFile::open(&path, MIN_CAP).unwrap();
        file.write_all(b"start\n").unwrap();
        let big: Vec<u8> = (0..3 * MIN_CAP).map(|i| b'a' + (i % 26) as u8).collect();
        file.write_all(&big).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, MIN_CAP);
        assert!(big.ends_with(&bytes[bytes.len() - 1000..]));
        assert!(file.dropped() > 2 * MIN_CAP);
    }
}
