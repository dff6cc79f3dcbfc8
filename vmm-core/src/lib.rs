//! The boxlite VMM core: a KVM virtual machine built from the rust-vmm crates.
//!
//! [`build_vm`] turns a [`boxlite_proto::VmConfig`] into a [`Vmm`]: guest memory with the 32-bit
//! MMIO hole, an in-kernel irqchip and PIT, the kernel loaded through its PVH entry (or the Linux
//! 64-bit boot protocol for ELFs without the PVH note and bzImages), the MP table, the COM1
//! console, the i8042 reset line and the Firecracker-compatible boot timer. [`Vmm::run`] starts
//! one thread per vCPU and an event loop (rust-vmm's `event-manager`, which later device backends
//! join as subscribers) and returns how the VM ended as a [`boxlite_proto::VmOutcome`].

#![deny(missing_docs)]

pub mod arch;
pub mod boot;
pub mod builder;
pub mod error;
pub mod exit_monitor;
pub mod layout;
pub mod memory;
pub mod virtio;
pub mod vmm;
pub mod vstate;

pub use boxlite_devices::legacy::boot_timer::BootTime;
pub use builder::build_vm;
pub use error::{Error, Result};
pub use exit_monitor::VmEnd;
pub use vmm::{ShutdownHandle, ThreadHook, ThreadHooks, VmExit, Vmm};
