//! boxlite devices: the I/O bus that routes vCPU exits, the virtio-mmio transport and the virtio
//! devices behind it.
//!
//! Layout, one folder per concern:
//! - [`bus`]: port-I/O and MMIO buses ([`bus::Bus`], [`bus::BusDevice`]).
//! - [`legacy`]: the PC devices every VM has (COM1 with its console file, the CMOS RTC, the
//!   i8042 reset line, the boot timer); the VMM wires them to its buses.
//! - [`virtio`]: the [`virtio::VirtioDevice`] trait every device implements, the
//!   [`virtio::VirtioInterrupt`] shared between a device and its transport, the
//!   [`virtio::mmio::MmioTransport`] that exposes a device as a `virtio,mmio` window, and the
//!   devices themselves ([`virtio::rng`], [`virtio::block`], [`virtio::vsock`]).
//!
//! Everything a guest can write (MMIO registers, descriptors, request headers) is untrusted: the
//! code refuses or reports bad values, it never panics on them.

#![deny(missing_docs)]
// Guest-controlled sizes flow through this crate: every narrowing cast is checked or argued.
#![cfg_attr(not(test), warn(clippy::cast_possible_truncation))]

pub mod bus;
pub mod error;
pub mod legacy;
pub mod virtio;

pub use error::{Error, Result};
