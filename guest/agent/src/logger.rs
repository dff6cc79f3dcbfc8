//! A minimal `log` backend: one line per record on stderr (the guest console when PID 1),
//! timestamped from the start of the agent.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

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
            // A closed console must not take the agent down: drop the line.
            let _ = writeln!(
                std::io::stderr().lock(),
                "[boxlite-agent {:>4}.{:06}] {:<5} {}",
                elapsed.as_secs(),
                elapsed.subsec_micros(),
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the logger at `level`. Timestamps count from `start`.
pub fn init(level: log::LevelFilter, start: Instant) {
    let logger = LOGGER.get_or_init(|| StderrLogger { start });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Parses `error`, `warn`, `info`, `debug`, `trace` or `off`.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    s.parse().ok()
}
