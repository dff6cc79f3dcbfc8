//! Wire and configuration types shared by the boxlite host runtime, the per-box shim and the guest.
//!
//! The crate is `#![no_std]` + `alloc` so the same types can be used by any component, including
//! ones that cannot link the standard library. Everything that crosses a process or VM boundary is
//! encoded with postcard inside a length-prefixed [`frame`].
//!
//! The `std` feature adds [`blocking`]: the one blocking frame reader with a deadline, for the
//! host runtime, the shim and the agent.

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

pub mod agent;
#[cfg(feature = "std")]
pub mod blocking;
pub mod exit;
pub mod frame;
pub mod journal;
pub mod outcome;
pub mod shim;
#[cfg(feature = "std")]
pub mod sync;

pub use exit::{ExitRecord, ShimEnd, EXIT_FILE_NAME};
pub use frame::{
    decode_frame, encode_frame, frame_payload_len, FrameError, FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
pub use journal::{BoxState, JournalRecord};
pub use outcome::{VmOutcome, EXIT_USAGE};
pub use shim::{
    ConfigError, ConsoleConfig, DiskConfig, DiskFormat, LogLevel, ShimConfig, Supervision,
    VmConfig, VsockConfig, DEFAULT_CONSOLE_FILE_CAP, SHIM_CONFIG_VERSION,
};
