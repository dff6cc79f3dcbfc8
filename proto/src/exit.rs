//! The shim's exit file: how a shim process ended, written once as JSON when it ends.
//!
//! The shim writes it atomically (a temporary file renamed into place), so a reader sees either
//! nothing or a whole record. A shim killed by a signal cannot write it; the runtime that reaps
//! the process writes [`ShimEnd::Signal`] instead. Readers ignore fields they do not know, so a
//! newer shim's file still reads.

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::outcome::VmOutcome;

/// Name of the exit file in a box's folder.
pub const EXIT_FILE_NAME: &str = "exit";

/// One shim's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The shim's pid.
    pub pid: u32,
    /// When it ended, in milliseconds since the Unix epoch.
    pub ended_unix_ms: u64,
    /// How it ended.
    pub end: ShimEnd,
}

/// How a shim ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ShimEnd {
    /// The VM ran and ended this way; `exit_code` is the shim's status for it.
    Vm {
        /// How the VM ended.
        outcome: VmOutcome,
        /// The shim's exit status ([`VmOutcome::exit_code`]).
        exit_code: u8,
    },
    /// The shim could not run the VM (bad config, unreadable kernel, KVM failure, ...).
    Error {
        /// What went wrong, as the shim logged it.
        message: String,
        /// The shim's exit status.
        exit_code: u8,
    },
    /// The shim panicked.
    Panic {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// A signal killed the shim (recorded by the runtime that reaped it).
    Signal {
        /// The signal number.
        signal: i32,
    },
}

impl ShimEnd {
    /// Whether the box stopped the way it should: the guest reset or the host asked it to stop.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            ShimEnd::Vm {
                outcome: VmOutcome::GuestReset | VmOutcome::HostShutdown,
                ..
            }
        )
    }
}

impl core::fmt::Display for ShimEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShimEnd::Vm { outcome, exit_code } => {
                write!(f, "the VM ended: {outcome} (shim status {exit_code})")
            }
            ShimEnd::Error { message, exit_code } => {
                write!(f, "the VMM failed (shim status {exit_code}): {message}")
            }
            ShimEnd::Panic {
                message,
                location: Some(location),
            } => write!(f, "the VMM panicked at {location}: {message}"),
            ShimEnd::Panic {
                message,
                location: None,
            } => write!(f, "the VMM panicked: {message}"),
            ShimEnd::Signal { signal: SIGSYS } => write!(
                f,
                "the VMM was killed by SIGSYS: its seccomp filter refused a system call (a \
                 boxlite bug: please report it; BOXLITE_NO_SECCOMP=1 runs boxes without the \
                 filter to find the call)"
            ),
            ShimEnd::Signal { signal } => write!(f, "the VMM was killed by signal {signal}"),
        }
    }
}

/// The signal of a seccomp kill on Linux.
const SIGSYS: i32 = 31;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn clean_ends_are_resets_and_host_shutdowns() {
        let vm = |outcome: VmOutcome| ShimEnd::Vm {
            outcome,
            exit_code: outcome.exit_code(),
        };
        assert!(vm(VmOutcome::GuestReset).is_clean());
        assert!(vm(VmOutcome::HostShutdown).is_clean());
        assert!(!vm(VmOutcome::GuestPanic).is_clean());
        assert!(!ShimEnd::Signal { signal: 9 }.is_clean());
        let panic = ShimEnd::Panic {
            message: "boom".to_string(),
            location: Some("src/x.rs:1:2".to_string()),
        };
        assert_eq!(panic.to_string(), "the VMM panicked at src/x.rs:1:2: boom");
    }

    #[test]
    fn a_sigsys_end_is_named_a_seccomp_kill() {
        let sigsys = ShimEnd::Signal { signal: 31 }.to_string();
        assert!(
            sigsys.contains("seccomp") && sigsys.contains("BOXLITE_NO_SECCOMP=1"),
            "{sigsys}"
        );
        assert_eq!(
            ShimEnd::Signal { signal: 9 }.to_string(),
            "the VMM was killed by signal 9"
        );
    }
}
