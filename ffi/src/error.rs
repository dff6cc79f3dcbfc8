//! The crate's error type and its mapping onto `boxlite_status`.

use boxlite_lifecycle::Error as Lifecycle;

use crate::boxlite_status;

/// Result of the ABI's internals.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A NULL pointer, invalid UTF-8 or an out-of-range value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A NULL, freed or foreign handle.
    #[error("invalid handle: {0}")]
    InvalidHandle(String),
    /// Nothing happened within the caller's timeout.
    #[error("timed out after {0} ms {1}")]
    Timeout(u64, &'static str),
    /// The runtime's own error.
    #[error(transparent)]
    Lifecycle(#[from] Lifecycle),
    /// An error kept for later calls (an execution's reader saw it).
    #[error("{message}")]
    Kept {
        /// Its status.
        status: boxlite_status,
        /// Its message.
        message: String,
    },
    /// A bug: a panic caught at the boundary, or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The status code that stands for this error.
    pub(crate) fn status(&self) -> boxlite_status {
        use boxlite_status as S;
        match self {
            Error::InvalidArgument(_) => S::BOXLITE_INVALID_ARGUMENT,
            Error::InvalidHandle(_) => S::BOXLITE_INVALID_HANDLE,
            Error::Timeout(..) => S::BOXLITE_TIMEOUT,
            Error::Kept { status, .. } => *status,
            Error::Internal(_) => S::BOXLITE_INTERNAL,
            Error::Lifecycle(e) => match e {
                Lifecycle::NotFound { .. } => S::BOXLITE_NOT_FOUND,
                Lifecycle::Ambiguous { .. } | Lifecycle::InvalidOptions(_) => {
                    S::BOXLITE_INVALID_ARGUMENT
                }
                Lifecycle::NameTaken { .. } => S::BOXLITE_ALREADY_EXISTS,
                Lifecycle::InvalidState { .. } => S::BOXLITE_INVALID_STATE,
                Lifecycle::Timeout { .. } => S::BOXLITE_TIMEOUT,
                Lifecycle::AssetMissing { .. } => S::BOXLITE_ASSET_MISSING,
                Lifecycle::StartFailed { .. } | Lifecycle::VmmExited | Lifecycle::Spawn { .. } => {
                    S::BOXLITE_START_FAILED
                }
                Lifecycle::VsockRefused { .. }
                | Lifecycle::Frame(_)
                | Lifecycle::Request(_)
                | Lifecycle::Version { .. }
                | Lifecycle::Agent { .. }
                | Lifecycle::Closed { .. }
                | Lifecycle::Unexpected { .. }
                | Lifecycle::OutputTooLarge { .. } => S::BOXLITE_GUEST_ERROR,
                _ => S::BOXLITE_IO,
            },
        }
    }
}
