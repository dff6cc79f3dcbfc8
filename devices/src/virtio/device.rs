//! The contract between a virtio device and its transport.

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use std::sync::Arc;

use super::VirtioInterrupt;
use crate::Result;

/// One virtqueue handed to a device at activation.
#[derive(Debug)]
pub struct ActiveQueue {
    /// The queue as the driver configured it: size, ring addresses, `ready()`, and event-index
    /// mode when `VIRTIO_RING_F_EVENT_IDX` was negotiated. A queue the driver left unused
    /// has `ready() == false`; popping from it yields nothing.
    pub queue: Queue,
    /// The queue's notification event: written each time the driver notifies the queue (by
    /// KVM through an ioeventfd, or by the transport when the write arrives as an MMIO exit).
    /// It is a duplicate of the transport's event, so it stays valid across resets; the device
    /// registers it with its event loop (see [`super::QueueEvents`]) and drops it on reset.
    pub notify: EventFd,
}

impl ActiveQueue {
    /// Takes the only queue of a single-queue device (`device` names it in the error), refusing
    /// any other number of queues.
    pub fn take_single(queues: Vec<ActiveQueue>, device: &'static str) -> Result<ActiveQueue> {
        let count = queues.len();
        <[ActiveQueue; 1]>::try_from(queues)
            .map(|[queue]| queue)
            .map_err(|_| crate::Error::Activate {
                device,
                reason: format!("it needs exactly one queue, got {count}"),
            })
    }
}

/// A virtio device as its transport sees it (virtio 1.2, section 2 "Basic facilities").
///
/// Lifecycle, driven by the transport from the driver's status writes:
/// 1. The transport reads [`device_type`](Self::device_type),
///    [`queue_max_sizes`](Self::queue_max_sizes) and [`avail_features`](Self::avail_features)
///    and serves config-space accesses through [`read_config`](Self::read_config) /
///    [`write_config`](Self::write_config).
/// 2. On FEATURES_OK the transport checks the driver's features (a subset of the offered ones,
///    with `VIRTIO_F_VERSION_1`) and passes them to [`ack_features`](Self::ack_features).
/// 3. On DRIVER_OK it calls [`activate`](Self::activate) once, with every queue (ready or not).
/// 4. When the driver writes 0 to the status register it calls [`reset`](Self::reset); the
///    device can then be negotiated and activated again.
///
/// Calls come from vCPU threads with the device's mutex held; the device's event handler runs
/// on the event-loop thread under the same mutex, so the two never race. No method may panic on
/// anything the guest controls.
pub trait VirtioDevice: Send {
    /// The virtio device ID (virtio 1.2, section 5): 2 block, 4 entropy, 19 vsock.
    fn device_type(&self) -> u32;

    /// The maximum size of each queue, in queue-index order; its length is the number of
    /// queues. Each entry must be a power of two no larger than 32768.
    fn queue_max_sizes(&self) -> &[u16];

    /// The feature bits the device offers. Must include [`super::VIRTIO_F_VERSION_1`]: the
    /// transport refuses drivers that do not accept it.
    fn avail_features(&self) -> u64;

    /// Records the features the driver accepted, already checked by the transport to be a
    /// subset of [`avail_features`](Self::avail_features). Called once per negotiation, before
    /// [`activate`](Self::activate).
    fn ack_features(&mut self, features: u64);

    /// Fills `data` from the device-specific configuration space at `offset` (relative to the
    /// start of the config space). Bytes past the end of the space read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Handles a driver write to the configuration space at `offset`. Devices whose config
    /// space is read-only ignore it (and may log it).
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// Starts the device: from now on it serves `queues` (one per entry of
    /// [`queue_max_sizes`](Self::queue_max_sizes), in order) in `mem`, and raises `interrupt`
    /// when it has used buffers or its config changed.
    ///
    /// An error leaves the device inactive; the transport then sets DEVICE_NEEDS_RESET so the
    /// driver resets it. A device with an event handler must wake it here so that it starts
    /// watching the queue events (see [`super::QueueEvents`]).
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
    ) -> Result<()>;

    /// Returns the device to its pre-negotiation state: drops the queues, the memory and the
    /// interrupt given to [`activate`](Self::activate), forgets the acked features, and stops
    /// processing. Must be harmless when the device was never activated.
    fn reset(&mut self);
}
