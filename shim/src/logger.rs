//! A minimal `log` backend: one line per record on stderr, timestamped from process start.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

use boxlite_proto::LogLevel;

struct StderrLogger {
    start: Instant,
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let elapsed = self.start.elapsed();
            // A closed stderr must not take the VM down: drop the line.
            let _ = writeln!(
                std::io::stderr().lock(),
                "[boxlite-shim {:>4}.{:06}] {:<5} {}",
                elapsed.as_secs(),
                elapsed.subsec_micros(),
                record.level(),
                record.args()
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
    let logger = LOGGER.get_or_init(|| StderrLogger { start });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(filter(level));
    }
}
