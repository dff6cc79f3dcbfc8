//! A minimal `log` backend: one line per record on stderr, timestamped from process start.
//!
//! Many warnings are triggered by the guest (a malformed descriptor, a write to a read-only
//! register), and a hostile guest can trigger them in a loop. So every call site below error
//! level is limited to [`PER_SITE_LIMIT`] lines, after which one notice says it went quiet:
//! the log keeps its diagnostic value and cannot fill the host's disk.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use boxlite_proto::LogLevel;

/// Lines one call site may log (errors excepted) before it is silenced.
pub const PER_SITE_LIMIT: u32 = 20;

struct StderrLogger {
    start: Instant,
    per_site: Mutex<SiteCounts>,
}

/// How many lines each call site (file, line) has logged.
#[derive(Default)]
struct SiteCounts(HashMap<(String, u32), u32>);

/// Whether a record may be written.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Write,
    /// Write it, then say the site is silenced from now on.
    WriteLast,
    Drop,
}

impl SiteCounts {
    fn verdict(&mut self, level: log::Level, file: &str, line: u32) -> Verdict {
        if level == log::Level::Error {
            return Verdict::Write;
        }
        let count = self.0.entry((file.to_string(), line)).or_insert(0);
        *count = count.saturating_add(1);
        match (*count).cmp(&PER_SITE_LIMIT) {
            std::cmp::Ordering::Less => Verdict::Write,
            std::cmp::Ordering::Equal => Verdict::WriteLast,
            std::cmp::Ordering::Greater => Verdict::Drop,
        }
    }
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
        let verdict = self
            .per_site
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .verdict(record.level(), file, line);
        if verdict == Verdict::Drop {
            return;
        }
        let elapsed = self.start.elapsed();
        let mut stderr = std::io::stderr().lock();
        // A closed stderr must not take the VM down: drop the line.
        let _ = writeln!(
            stderr,
            "[boxlite-shim {:>4}.{:06}] {:<5} {}",
            elapsed.as_secs(),
            elapsed.subsec_micros(),
            record.level(),
            record.args()
        );
        if verdict == Verdict::WriteLast {
            let _ = writeln!(
                stderr,
                "[boxlite-shim {:>4}.{:06}] {:<5} (further messages from {file}:{line} are suppressed)",
                elapsed.as_secs(),
                elapsed.subsec_micros(),
                record.level()
            );
        }
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

    #[test]
    fn a_call_site_goes_quiet_after_its_limit_but_errors_never_do() {
        let mut counts = SiteCounts::default();
        for _ in 1..PER_SITE_LIMIT {
            assert_eq!(
                counts.verdict(log::Level::Warn, "mmio.rs", 7),
                Verdict::Write
            );
        }
        assert_eq!(
            counts.verdict(log::Level::Warn, "mmio.rs", 7),
            Verdict::WriteLast
        );
        assert_eq!(
            counts.verdict(log::Level::Warn, "mmio.rs", 7),
            Verdict::Drop
        );
        assert_eq!(
            counts.verdict(log::Level::Warn, "mmio.rs", 8),
            Verdict::Write,
            "other sites unaffected"
        );
        for _ in 0..PER_SITE_LIMIT * 2 {
            assert_eq!(
                counts.verdict(log::Level::Error, "vcpu.rs", 1),
                Verdict::Write
            );
        }
    }
}
