//! Virtio: the device-side contract ([`VirtioDevice`]), the interrupt a device raises
//! ([`VirtioInterrupt`]), the virtio-mmio transport ([`mmio`]) and the devices.
//!
//! A device is split in two, as in Firecracker: the device proper (`device.rs` in each folder:
//! features, config space, request handling) and its event handler (`event_handler.rs`: an
//! `event_manager::MutEventSubscriber` that runs the queues when the guest notifies them). Both
//! are implemented on the same type, shared as `Arc<Mutex<..>>`: the transport drives it from the
//! vCPU threads, the event loop from its own thread.

pub mod activation;
pub mod block;
pub mod device;
pub mod drain;
pub mod interrupt;
pub mod mmio;
pub mod queue_events;
pub mod rng;
#[cfg(test)]
pub(crate) mod test_utils;
pub mod vsock;

pub use activation::{Activation, Active};
pub use device::{ActiveQueue, VirtioDevice};
pub use interrupt::{InterruptKind, VirtioInterrupt};
pub use queue_events::QueueEvents;

/// `VIRTIO_F_VERSION_1` as a feature mask: the modern interface, the only one boxlite speaks.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
