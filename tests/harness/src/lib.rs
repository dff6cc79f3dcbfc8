//! The harness e2e tier of boxlite: real Linux guests booted by `boxlite-shim` on a nested
//! `/dev/kvm`, inside a QEMU (TCG, emulated AMD-V) "test host", one fresh QEMU per case.
//!
//! Cases are shell scripts in `cases/` (see [`case`]); the test host's `/init` runs one with the
//! helper library sourced and reports over the serial console (see [`console`]); the runner
//! ([`runner`]) times every console line and writes the report ([`report`]).

pub mod case;
pub mod cli;
pub mod console;
pub mod cpio;
pub mod error;
pub mod initramfs;
pub mod inputs;
pub mod interrupt;
pub mod qemu;
pub mod report;
pub mod runner;
pub mod tier;
