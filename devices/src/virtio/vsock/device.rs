//! The vsock device proper: config space, activation, and moving packets between the
//! virtqueues and the [`Muxer`].

use std::path::Path;
use std::sync::{Arc, Mutex};

use log::{error, warn};
use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::muxer::Muxer;
use super::packet::{read_tx_packet, RxBuffer, MAX_PAYLOAD};
use super::VsockError;
use crate::virtio::drain::drain_queue;
use crate::virtio::{Activation, ActiveQueue, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::{Error, Result};

/// Index of the RX queue (device to driver).
pub(super) const RX: usize = 0;
/// Index of the TX queue (driver to device).
pub(super) const TX: usize = 1;
/// Size offered for each of the three queues (RX, TX, event).
const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];

/// A virtio-vsock device bridged to Unix sockets. Share it as `Arc<Mutex<Vsock>>`: it is both
/// the transport's [`VirtioDevice`] and an `event_manager::MutEventSubscriber` that serves the
/// queues and the host sockets.
pub struct Vsock {
    guest_cid: u64,
    muxer: Muxer,
    /// Guest memory, interrupt and queues while the driver runs the device.
    pub(super) state: Activation<Vec<Queue>>,
    /// Payload staging buffers between guest memory and the host streams.
    tx_payload: Vec<u8>,
    rx_payload: Vec<u8>,
}

impl Vsock {
    /// A device for the guest with CID `guest_cid` (3..=2^32-2), listening for host programs
    /// on the Unix socket `uds_path`, which must not exist yet (the device removes it when
    /// dropped); guest connections to host port `P` go to `<uds_path>_P`.
    pub fn new(guest_cid: u64, uds_path: impl AsRef<Path>) -> Result<Arc<Mutex<Vsock>>> {
        if !(3..u64::from(u32::MAX)).contains(&guest_cid) {
            return Err(VsockError::InvalidCid(guest_cid).into());
        }
        let muxer = Muxer::new(guest_cid, uds_path.as_ref())?;
        Ok(Arc::new(Mutex::new(Vsock {
            guest_cid,
            muxer,
            state: Activation::new()?,
            tx_payload: Vec::with_capacity(MAX_PAYLOAD),
            rx_payload: vec![0; MAX_PAYLOAD],
        })))
    }

    /// The guest's context ID.
    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// The backend's epoll set, which the event handler watches.
    pub(super) fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// The backend, for tests that tune it.
    #[cfg(test)]
    pub(super) fn muxer_mut(&mut self) -> &mut Muxer {
        &mut self.muxer
    }

    /// Host sockets have events: handle them, then deliver what they produced.
    pub(super) fn handle_backend_event(&mut self) {
        self.muxer.process_events();
        self.process_rx();
    }

    /// The driver notified the TX queue: send up to a queue's worth of its packets (the TX
    /// event is re-armed when more may wait), then deliver the replies.
    pub(super) fn handle_tx_notify(&mut self) {
        let Some(active) = self.state.active_mut() else {
            return;
        };
        let (mem, muxer, payload) = (&active.mem, &mut self.muxer, &mut self.tx_payload);
        let budget = usize::from(QUEUE_SIZE);
        let pass = drain_queue(
            &mut active.queues[TX],
            mem,
            &active.interrupt,
            budget,
            |chain| {
                let head = chain.head_index();
                match read_tx_packet(mem, chain, payload) {
                    Ok(header) => muxer.send_pkt(&header, payload),
                    Err(e) => warn!("vsock: dropping TX chain {head}: {e}"),
                }
                0
            },
        );
        if pass.more {
            self.state.events.rearm(TX);
        }
        self.process_rx();
    }

    /// Fills the guest's RX buffers with pending packets (also run when the driver adds RX
    /// buffers).
    pub(super) fn process_rx(&mut self) {
        let Some(active) = self.state.active_mut() else {
            return;
        };
        let queue = &mut active.queues[RX];
        if !queue.ready() {
            return;
        }
        let mem = &active.mem;
        let mut used = false;
        while self.muxer.has_pending_rx() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let len = match RxBuffer::new(mem, chain) {
                Ok(buffer) => {
                    let room = &mut self.rx_payload[..buffer.payload_capacity()];
                    let Some(header) = self.muxer.recv_pkt(room) else {
                        // Nothing to send after all: leave the buffer for later.
                        queue.go_to_previous_position();
                        break;
                    };
                    let payload = &self.rx_payload[..header.len as usize];
                    buffer.write(&header, payload).unwrap_or_else(|e| {
                        warn!("vsock: packet {header:?} lost: {e}");
                        0
                    })
                }
                Err(e) => {
                    warn!("vsock: returning unusable RX chain {head}: {e}");
                    0
                }
            };
            match queue.add_used(mem, head, len) {
                Ok(()) => used = true,
                Err(e) => warn!("vsock: RX chain {head} not returned: {e}"),
            }
        }
        // If the driver's suppression hint cannot be read, interrupting is the safe choice.
        if used && queue.needs_notification(mem).unwrap_or(true) {
            if let Err(e) = active.interrupt.signal_used_queue() {
                error!("{e}");
            }
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {
        // VERSION_1 is all there is to agree on (no SEQPACKET, no event index).
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_vsock_config { le64 guest_cid; }
        let config = self.guest_cid.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.checked_add(i as u64);
            *byte = at
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| config.get(at).copied())
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        warn!(
            "vsock: {}-byte config write at {offset:#x} ignored (read-only config space)",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
    ) -> Result<()> {
        if queues.len() != QUEUE_SIZES.len() {
            return Err(Error::Activate {
                device: "vsock",
                reason: format!("it needs 3 queues (RX, TX, event), got {}", queues.len()),
            });
        }
        let (queues, notify): (Vec<Queue>, Vec<_>) =
            queues.into_iter().map(|q| (q.queue, q.notify)).unzip();
        self.state.activate(mem, interrupt, queues, notify)
    }

    fn reset(&mut self) {
        self.state.reset("vsock");
        self.muxer.reset();
    }
}
