//! The harness's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can stop the harness before or while it runs cases.
///
/// Messages name the file or flag involved and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The command line could not be understood.
    #[error("{0}\nrun `boxlite-harness help` for the usage")]
    Usage(String),

    /// A required input file (kernel, shim, busybox, case directory) is absent.
    #[error("{what} not found at {}: {hint}", path.display())]
    MissingInput {
        /// What the file is for ("host kernel", "shim", ...).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to produce it.
        hint: &'static str,
    },

    /// An input file exists but is not what the harness needs.
    #[error("{what} at {} is unusable: {reason}", path.display())]
    BadInput {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it and how to fix it.
        reason: String,
    },

    /// A program the harness runs (QEMU) is not installed.
    #[error("{program} not found in PATH: {hint}")]
    MissingProgram {
        /// The program name.
        program: String,
        /// How to install it.
        hint: &'static str,
    },

    /// The TSC frequency for `tsc_early_khz=` could not be determined.
    #[error(
        "cannot determine the TSC frequency for tsc_early_khz= ({0}); \
         pass --tsc-khz <kHz> (the test host's KVM livelocks without it)"
    )]
    TscUnknown(String),

    /// A case file's header is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    CaseHeader {
        /// The case file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// A case file name cannot be used as a test name.
    #[error("{}: {reason}", path.display())]
    CaseName {
        /// The case file.
        path: PathBuf,
        /// What is wrong with the name.
        reason: String,
    },

    /// No case matched `--filter`.
    #[error("no case in {} matches the filter {filter:?}; see `boxlite-harness list`", dir.display())]
    NoCaseSelected {
        /// The cases directory.
        dir: PathBuf,
        /// The filter(s) given.
        filter: String,
    },

    /// A path cannot be stored in a cpio archive.
    #[error("cpio entry {path:?}: {reason}")]
    CpioEntry {
        /// The entry's path.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// "read", "write", "create directory", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Any other I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl HarnessError {
    /// Shorthand for [`HarnessError::File`].
    pub fn file(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::File {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`HarnessError::Io`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias used throughout the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
