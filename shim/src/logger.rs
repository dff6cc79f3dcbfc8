//! A minimal `log` backend: one line per record on stderr, timestamped from process start.
//!
//! Many messages are triggered by the guest (a malformed descriptor, a write to a read-only
//! register, a failing disk), and a hostile guest can trigger them in a loop. So every call
//! site, errors included, has a token bucket: [`BURST`] lines at once, then one per
//! [`REFILL`]. Lines over that are dropped and counted, and the site's next line says how many
//! were suppressed: the log keeps its diagnostic value and cannot fill the host's disk. Each
//! line is formatted first and written with one write(2), so lines from different threads
//! never interleave.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use boxlite_proto::LogLevel;

/// Lines one call site may log in a burst.
pub const BURST: u32 = 20;
/// After a burst, a call site earns one more line per this long.
pub const REFILL: Duration = Duration::from_secs(1);

struct StderrLogger {
    start: Instant,
    per_site: Mutex<Sites>,
}

/// One call site's token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: u32,
    /// When the bucket last earned a token (time since the logger started).
    refilled: Duration,
    /// Lines dropped since the site last wrote one.
    suppressed: u64,
}

/// The buckets of every call site (file, line) that has logged.
#[derive(Default)]
struct Sites(HashMap<(String, u32), Bucket>);

/// Whether a record may be written.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Write it, noting how many of the site's lines were dropped before it.
    Write {
        suppressed: u64,
    },
    Drop,
}

impl Sites {
    /// The verdict for a line from `file`:`line` at `now` (time since the logger started).
    fn verdict(&mut self, file: &str, line: u32, now: Duration) -> Verdict {
        let bucket = self.0.entry((file.to_string(), line)).or_insert(Bucket {
            tokens: BURST,
            refilled: now,
            suppressed: 0,
        });
        let earned = now.saturating_sub(bucket.refilled).as_nanos() / REFILL.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            bucket.tokens = bucket.tokens.saturating_add(earned).min(BURST);
            bucket.refilled = now;
        }
        if bucket.tokens == 0 {
            bucket.suppressed = bucket.suppressed.saturating_add(1);
            return Verdict::Drop;
        }
        bucket.tokens -= 1;
        Verdict::Write {
            suppressed: std::mem::take(&mut bucket.suppressed),
        }
    }
}

/// One log line, newline included.
fn format_line(
    elapsed: Duration,
    level: log::Level,
    args: &std::fmt::Arguments<'_>,
    site: (&str, u32),
    suppressed: u64,
) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(
        line,
        "[boxlite-shim {:>4}.{:06}] {:<5} {args}",
        elapsed.as_secs(),
        elapsed.subsec_micros(),
        level,
    );
    if suppressed > 0 {
        let _ = write!(
            line,
            " ({suppressed} earlier messages from {}:{} suppressed)",
            site.0, site.1
        );
    }
    line.push('\n');
    line
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (file, line) = (record.file().unwrap_or("?"), record.line().unwrap_or(0));
        let elapsed = self.start.elapsed();
        let verdict = boxlite_proto::sync::lock(&self.per_site).verdict(file, line, elapsed);
        let Verdict::Write { suppressed } = verdict else {
            return;
        };
        let text = format_line(
            elapsed,
            record.level(),
            record.args(),
            (file, line),
            suppressed,
        );
        // One write(2) for the whole line; a closed stderr must not take the VM down.
        let _ = std::io::stderr().write_all(text.as_bytes());
    }

    fn flush(&self) {}
}

fn filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Installs the logger at `level`. Timestamps count from `start`.
pub fn init(level: LogLevel, start: Instant) {
    let logger = LOGGER.get_or_init(|| StderrLogger {
        start,
        per_site: Mutex::default(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(filter(level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_call_site_gets_a_burst_then_a_steady_rate_and_hears_what_it_lost() {
        let mut sites = Sites::default();
        let t0 = Duration::ZERO;
        for _ in 0..BURST {
            assert_eq!(
                sites.verdict("mmio.rs", 7, t0),
                Verdict::Write { suppressed: 0 }
            );
        }
        for _ in 0..1000 {
            assert_eq!(sites.verdict("mmio.rs", 7, t0), Verdict::Drop);
        }
        assert_eq!(
            sites.verdict("mmio.rs", 8, t0),
            Verdict::Write { suppressed: 0 },
            "other sites unaffected"
        );
        // One refill period later the site speaks again and reports the lines it lost.
        let t1 = t0 + REFILL;
        assert_eq!(
            sites.verdict("mmio.rs", 7, t1),
            Verdict::Write { suppressed: 1000 }
        );
        assert_eq!(sites.verdict("mmio.rs", 7, t1), Verdict::Drop);
        // A long silence refills the burst, never more.
        let t2 = t1 + 1000 * SECOND;
        for _ in 0..BURST {
            assert!(matches!(
                sites.verdict("mmio.rs", 7, t2),
                Verdict::Write { .. }
            ));
        }
        assert_eq!(sites.verdict("mmio.rs", 7, t2), Verdict::Drop);
    }

    #[test]
    fn errors_are_limited_too() {
        // The limiter does not look at the level: a guest that makes the disk fail in a loop
        // (an error per request) is bounded like any other site.
        let mut sites = Sites::default();
        let writes = (0..10 * BURST)
            .filter(|_| sites.verdict("block.rs", 3, Duration::ZERO) != Verdict::Drop)
            .count();
        assert_eq!(writes, BURST as usize);
    }

    #[test]
    fn a_line_is_formatted_whole_with_its_suppressed_count() {
        let line = format_line(
            Duration::from_micros(1_500_002),
            log::Level::Warn,
            &format_args!("bad descriptor {}", 3),
            ("mmio.rs", 7),
            42,
        );
        assert_eq!(
            line,
            "[boxlite-shim    1.500002] WARN  bad descriptor 3 (42 earlier messages from mmio.rs:7 suppressed)\n"
        );
    }
}
