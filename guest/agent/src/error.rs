//! The agent's error type.

use std::io;

/// Why the agent could not set itself up.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A system call failed; `what` says what the agent was doing.
    #[error("{what}: {source}")]
    Os {
        /// What the agent was doing, e.g. "cannot mount /dev/vda on /sysroot".
        what: String,
        /// The error of the system call.
        source: io::Error,
    },
    /// The command line is not understood.
    #[error("{0}\nRun 'boxlite-agent --help' for usage.")]
    Usage(String),
}

impl AgentError {
    /// A closure that wraps an `io::Error` with what the agent was doing.
    pub fn os(what: impl Into<String>) -> impl FnOnce(io::Error) -> AgentError {
        let what = what.into();
        move |source| AgentError::Os { what, source }
    }
}
