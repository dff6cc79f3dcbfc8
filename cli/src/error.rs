//! The CLI's error type.

use std::path::PathBuf;

/// What can stop `boxlite run`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file or directory of the box could not be prepared.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shim could not be started or fed its config.
    #[error("cannot start the box's VMM ({}): {source}; pass --shim or set BOXLITE_SHIM", shim.display())]
    Spawn {
        /// The shim path.
        shim: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config could not be encoded.
    #[error("cannot encode the box's config: {0}")]
    Config(String),
    /// The shim exited before the guest was ready.
    #[error("the box's VMM exited ({status}) before the guest was ready; its log ends with:\n{log_tail}")]
    ShimDied {
        /// How it exited.
        status: String,
        /// The end of shim.stderr and console.log.
        log_tail: String,
    },
    /// The guest stopped answering about a command past its timeout.
    #[error("the guest did not report the command's end within {after:?} (its timeout plus a grace period): {source}")]
    Unresponsive {
        /// How long the host waited.
        after: std::time::Duration,
        /// What the abandoned read reported.
        source: boxlite_lifecycle::Error,
    },
    /// Talking to the guest failed.
    #[error("{0}")]
    Guest(#[from] boxlite_lifecycle::Error),
}
