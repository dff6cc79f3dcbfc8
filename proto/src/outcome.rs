//! How a VM ended, and the shim exit status that carries it to the host runtime.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Every way a boxlite VM can end. Each maps to a distinct shim exit status
/// ([`VmOutcome::exit_code`]), so the parent learns what happened even if nothing else survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmOutcome {
    /// The guest asked for a reset or reboot (i8042 reset, KVM system-event reset/shutdown):
    /// the clean way for a guest to stop.
    GuestReset,
    /// The guest kernel panicked (its panic banner was seen on the console before the reset).
    GuestPanic,
    /// The guest triple-faulted without having reported a panic (KVM shutdown exit).
    TripleFault,
    /// KVM could not continue running the guest (internal error or failed VM entry).
    KvmInternalError,
    /// The host asked the shim to stop the VM (SIGTERM/SIGINT, or a runtime request).
    HostShutdown,
    /// The VMM itself failed: bad configuration, an unreadable kernel, an ioctl error.
    VmmError,
}

/// Shim exit status for a malformed command line or configuration (nothing was started).
pub const EXIT_USAGE: u8 = 2;

impl VmOutcome {
    /// All outcomes, in exit-code order.
    pub const ALL: [VmOutcome; 6] = [
        VmOutcome::GuestReset,
        VmOutcome::VmmError,
        VmOutcome::GuestPanic,
        VmOutcome::TripleFault,
        VmOutcome::KvmInternalError,
        VmOutcome::HostShutdown,
    ];

    /// The shim's exit status for this outcome. Status 2 ([`EXIT_USAGE`]) is reserved for usage
    /// errors and 101 is what a Rust panic in the shim would produce, so neither is used here.
    pub const fn exit_code(self) -> u8 {
        match self {
            VmOutcome::GuestReset => 0,
            VmOutcome::VmmError => 1,
            VmOutcome::GuestPanic => 3,
            VmOutcome::TripleFault => 4,
            VmOutcome::KvmInternalError => 5,
            VmOutcome::HostShutdown => 6,
        }
    }

    /// The outcome a shim exit status stands for, if any.
    pub fn from_exit_code(code: u8) -> Option<VmOutcome> {
        VmOutcome::ALL.into_iter().find(|o| o.exit_code() == code)
    }

    /// A short, stable, machine-friendly name (`guest-reset`, `guest-panic`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            VmOutcome::GuestReset => "guest-reset",
            VmOutcome::GuestPanic => "guest-panic",
            VmOutcome::TripleFault => "triple-fault",
            VmOutcome::KvmInternalError => "kvm-internal-error",
            VmOutcome::HostShutdown => "host-shutdown",
            VmOutcome::VmmError => "vmm-error",
        }
    }
}

impl fmt::Display for VmOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_round_trip() {
        for outcome in VmOutcome::ALL {
            assert_ne!(outcome.exit_code(), EXIT_USAGE);
            assert_eq!(
                VmOutcome::from_exit_code(outcome.exit_code()),
                Some(outcome)
            );
        }
        let mut codes = VmOutcome::ALL.map(VmOutcome::exit_code);
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] != w[1]));
        assert_eq!(VmOutcome::from_exit_code(EXIT_USAGE), None);
        assert_eq!(VmOutcome::from_exit_code(101), None);
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(VmOutcome::GuestPanic.name(), "guest-panic");
        assert_eq!(
            alloc::format!("{}", VmOutcome::HostShutdown),
            "host-shutdown"
        );
    }
}
