//! The virtio-mmio transport, version 2 ("modern") only (virtio 1.2, section 4.2).
//!
//! One [`MmioTransport`] per device, mapped on the MMIO bus over a [`MMIO_WINDOW_SIZE`] window
//! and announced to Linux as `virtio_mmio.device=4K@<base>:<irq>`. The guest configures the
//! device through the registers below; queue notifications normally bypass this code (KVM's
//! ioeventfd at `base + QUEUE_NOTIFY_OFFSET` writes the queue's event directly), and when one
//! does arrive as an MMIO exit the transport writes the same event, so devices only ever see
//! eventfds.
//!
//! Every register value comes from the guest and is checked: refused values leave the state
//! unchanged (with a warning in the log) or set DEVICE_NEEDS_RESET, never panic.

use std::sync::{Arc, Mutex, MutexGuard};

use log::{debug, error, warn};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

mod queue_registers;
#[cfg(test)]
mod tests;

use self::queue_registers::{QueueRegisters, Refusal};
use super::{ActiveQueue, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::bus::BusDevice;
use crate::{Error, Result};

/// Size of one device's MMIO window (the `4K` of `virtio_mmio.device=4K@base:irq`).
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;

/// Offset of QueueNotify in the window: where the VMM registers each queue's ioeventfd, with
/// the queue index as datamatch (Linux writes the index as a 32-bit value).
pub const QUEUE_NOTIFY_OFFSET: u64 = reg::VIRTIO_MMIO_QUEUE_NOTIFY as u64;

/// "virt" in little endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
/// The register layout version: 2 is virtio 1.x; 1 (legacy) is not offered.
const MMIO_VERSION: u32 = 2;
/// No PCI-style vendor: the field only lets drivers quirk around specific implementations.
const VENDOR_ID: u32 = 0;
/// The spec's limit on queue sizes (virtio 1.2, 2.7: "Queue Size ... max 32768").
const MAX_QUEUE_SIZE: u16 = 32768;

/// Register offsets as `u64`, the bus's offset type.
mod offset {
    use super::reg;

    pub const MAGIC_VALUE: u64 = reg::VIRTIO_MMIO_MAGIC_VALUE as u64;
    pub const VERSION: u64 = reg::VIRTIO_MMIO_VERSION as u64;
    pub const DEVICE_ID: u64 = reg::VIRTIO_MMIO_DEVICE_ID as u64;
    pub const VENDOR_ID: u64 = reg::VIRTIO_MMIO_VENDOR_ID as u64;
    pub const DEVICE_FEATURES: u64 = reg::VIRTIO_MMIO_DEVICE_FEATURES as u64;
    pub const DEVICE_FEATURES_SEL: u64 = reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL as u64;
    pub const DRIVER_FEATURES: u64 = reg::VIRTIO_MMIO_DRIVER_FEATURES as u64;
    pub const DRIVER_FEATURES_SEL: u64 = reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL as u64;
    pub const QUEUE_SEL: u64 = reg::VIRTIO_MMIO_QUEUE_SEL as u64;
    pub const QUEUE_NUM_MAX: u64 = reg::VIRTIO_MMIO_QUEUE_NUM_MAX as u64;
    pub const QUEUE_NUM: u64 = reg::VIRTIO_MMIO_QUEUE_NUM as u64;
    pub const QUEUE_READY: u64 = reg::VIRTIO_MMIO_QUEUE_READY as u64;
    pub const QUEUE_NOTIFY: u64 = reg::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
    pub const INTERRUPT_STATUS: u64 = reg::VIRTIO_MMIO_INTERRUPT_STATUS as u64;
    pub const INTERRUPT_ACK: u64 = reg::VIRTIO_MMIO_INTERRUPT_ACK as u64;
    pub const STATUS: u64 = reg::VIRTIO_MMIO_STATUS as u64;
    pub const QUEUE_DESC_LOW: u64 = reg::VIRTIO_MMIO_QUEUE_DESC_LOW as u64;
    pub const QUEUE_DESC_HIGH: u64 = reg::VIRTIO_MMIO_QUEUE_DESC_HIGH as u64;
    pub const QUEUE_AVAIL_LOW: u64 = reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW as u64;
    pub const QUEUE_AVAIL_HIGH: u64 = reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH as u64;
    pub const QUEUE_USED_LOW: u64 = reg::VIRTIO_MMIO_QUEUE_USED_LOW as u64;
    pub const QUEUE_USED_HIGH: u64 = reg::VIRTIO_MMIO_QUEUE_USED_HIGH as u64;
    pub const SHM_SEL: u64 = reg::VIRTIO_MMIO_SHM_SEL as u64;
    pub const SHM_LEN_LOW: u64 = reg::VIRTIO_MMIO_SHM_LEN_LOW as u64;
    pub const SHM_BASE_HIGH: u64 = reg::VIRTIO_MMIO_SHM_BASE_HIGH as u64;
    pub const CONFIG_GENERATION: u64 = reg::VIRTIO_MMIO_CONFIG_GENERATION as u64;
    pub const CONFIG: u64 = reg::VIRTIO_MMIO_CONFIG as u64;
}

/// The status bits a driver sets, in the order it must set them (virtio 1.2, 3.1.1).
const STATUS_SEQUENCE: [u32; 4] = [
    VIRTIO_CONFIG_S_ACKNOWLEDGE,
    VIRTIO_CONFIG_S_DRIVER,
    VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_DRIVER_OK,
];

/// A virtio device behind a virtio-mmio register window; put it on the MMIO bus as a
/// [`BusDevice`].
///
/// Wiring, for a device at `base` with interrupt `gsi`:
/// 1. create an `EventFd`, register it with `VmFd::register_irqfd(&fd, gsi)`, and wrap it in a
///    [`VirtioInterrupt`];
/// 2. `MmioTransport::new(device, mem, interrupt)`;
/// 3. for each `(addr, datamatch, event)` in [`ioevents(base)`](Self::ioevents), register
///    `VmFd::register_ioevent(event, &IoEventAddress::Mmio(addr), datamatch)`;
/// 4. insert the transport on the MMIO bus at `[base, base + MMIO_WINDOW_SIZE)`, add the device
///    to the event manager if it is a subscriber, and append
///    `virtio_mmio.device=4K@<base>:<gsi>` to the kernel command line.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<VirtioInterrupt>,
    /// Read once: a device's identity does not change while it is on the bus.
    device_type: u32,
    avail_features: u64,
    queue_events: Vec<EventFd>,
    queues: Vec<QueueRegisters>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
}

impl MmioTransport {
    /// Puts `device` behind a new transport that gives it queues in `mem` and raises
    /// `interrupt`. Fails when the device declares an impossible queue size or lacks
    /// `VIRTIO_F_VERSION_1` (host bugs), or when the queue eventfds cannot be created.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<MmioTransport> {
        let (device_type, avail_features, max_sizes) = {
            let device = lock(&device);
            (
                device.device_type(),
                device.avail_features(),
                device.queue_max_sizes().to_vec(),
            )
        };
        if avail_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(Error::InvalidDevice {
                device_type,
                reason: "it does not offer VIRTIO_F_VERSION_1, and virtio-mmio v2 requires it"
                    .into(),
            });
        }
        if let Some(bad) = max_sizes
            .iter()
            .find(|&&size| size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two())
        {
            return Err(Error::InvalidDevice {
                device_type,
                reason: format!(
                    "queue maximum size {bad} is not a power of two from 1 to {MAX_QUEUE_SIZE}"
                ),
            });
        }
        let queue_events = max_sizes
            .iter()
            .map(|_| {
                EventFd::new(EFD_NONBLOCK).map_err(Error::io("creating a virtio queue eventfd"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MmioTransport {
            device,
            mem,
            interrupt,
            device_type,
            avail_features,
            queue_events,
            queues: max_sizes.into_iter().map(QueueRegisters::new).collect(),
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
        })
    }

    /// The device's interrupt (its irqfd is what the VMM registers with `KVM_IRQFD`).
    pub fn interrupt(&self) -> &Arc<VirtioInterrupt> {
        &self.interrupt
    }

    /// Each queue's notification event, index = queue index. They live as long as the
    /// transport, across device resets.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// The ioeventfds to register for a window at `base`: `(address, datamatch, event)`, with
    /// the address `base + QUEUE_NOTIFY_OFFSET` and the queue index as a 32-bit datamatch.
    pub fn ioevents(&self, base: u64) -> impl Iterator<Item = (u64, u32, &EventFd)> {
        (0u32..)
            .zip(&self.queue_events)
            .map(move |(index, event)| (base + QUEUE_NOTIFY_OFFSET, index, event))
    }

    fn selected_queue(&self) -> Option<&QueueRegisters> {
        let index = usize::try_from(self.queue_sel).ok()?;
        self.queues.get(index)
    }

    fn read_register(&self, offset: u64) -> u32 {
        match offset {
            offset::MAGIC_VALUE => MAGIC_VALUE,
            offset::VERSION => MMIO_VERSION,
            offset::DEVICE_ID => self.device_type,
            offset::VENDOR_ID => VENDOR_ID,
            offset::DEVICE_FEATURES => feature_page(self.avail_features, self.device_features_sel),
            // Spec: QueueNumMax reads zero for a queue that does not exist.
            offset::QUEUE_NUM_MAX => self
                .selected_queue()
                .map_or(0, |queue| u32::from(queue.max_size)),
            offset::QUEUE_READY => self
                .selected_queue()
                .map_or(0, |queue| u32::from(queue.ready)),
            offset::INTERRUPT_STATUS => self.interrupt.status(),
            offset::STATUS => self.status,
            // No shared memory regions: their length and base read as all ones (virtio 1.2,
            // 4.2.2: "a length of -1" means the region does not exist).
            offset::SHM_LEN_LOW..=offset::SHM_BASE_HIGH => u32::MAX,
            offset::CONFIG_GENERATION => self.interrupt.config_generation(),
            _ => {
                debug!("virtio-mmio: read of write-only or unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            offset::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            offset::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            offset::DRIVER_FEATURES => self.write_driver_features(value),
            offset::QUEUE_SEL => self.queue_sel = value,
            offset::QUEUE_NUM
            | offset::QUEUE_READY
            | offset::QUEUE_DESC_LOW
            | offset::QUEUE_DESC_HIGH
            | offset::QUEUE_AVAIL_LOW
            | offset::QUEUE_AVAIL_HIGH
            | offset::QUEUE_USED_LOW
            | offset::QUEUE_USED_HIGH => self.write_queue_register(offset, value),
            offset::QUEUE_NOTIFY => self.notify(value),
            offset::INTERRUPT_ACK => self.interrupt.acknowledge(value),
            offset::STATUS => self.write_status(value),
            offset::SHM_SEL => {}
            _ => warn!(
                "virtio-mmio (device type {}): write of {value:#x} to read-only or unknown register {offset:#x} ignored",
                self.device_type
            ),
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        // Features are only negotiable between DRIVER and FEATURES_OK.
        if !self.status_is(VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_FEATURES_OK) {
            warn!(
                "virtio-mmio (device type {}): driver features written in status {:#x}, ignored",
                self.device_type, self.status
            );
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
            }
            // No feature bits exist above 63; accepting nothing there is all a driver can ask.
            page if value != 0 => warn!(
                "virtio-mmio (device type {}): driver features {value:#x} on page {page} ignored",
                self.device_type
            ),
            _ => {}
        }
    }

    fn write_queue_register(&mut self, offset: u64, value: u32) {
        // Queues are set up between FEATURES_OK and DRIVER_OK (virtio 1.2, 3.1.1 step 7).
        if !self.status_is(
            VIRTIO_CONFIG_S_FEATURES_OK,
            VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FAILED,
        ) {
            warn!(
                "virtio-mmio (device type {}): queue register {offset:#x} written in status {:#x}, ignored",
                self.device_type, self.status
            );
            return;
        }
        let event_idx = self.event_idx();
        let (device_type, queue_sel) = (self.device_type, self.queue_sel);
        let selected = usize::try_from(queue_sel)
            .ok()
            .and_then(|index| self.queues.get_mut(index));
        let Some(queue) = selected else {
            warn!("virtio-mmio (device type {device_type}): queue {queue_sel} does not exist; write to {offset:#x} ignored");
            return;
        };
        match queue.write(offset, value, &self.mem, event_idx) {
            Ok(()) => {}
            Err(Refusal::Ignored(reason)) => warn!(
                "virtio-mmio (device type {device_type}): queue {queue_sel}: write of {value:#x} to {offset:#x} ignored: {reason}"
            ),
            Err(Refusal::NeedsReset(reason)) => {
                warn!("virtio-mmio (device type {device_type}): queue {queue_sel} refused: {reason}");
                self.needs_reset();
            }
        }
    }

    /// A queue notification that reached us as an MMIO exit: forward it like the ioeventfd
    /// would have.
    fn notify(&mut self, value: u32) {
        let event = usize::try_from(value)
            .ok()
            .and_then(|index| self.queue_events.get(index));
        match event {
            Some(event) => {
                if let Err(e) = event.write(1) {
                    error!(
                        "virtio-mmio (device type {}): cannot signal queue {value}: {e}",
                        self.device_type
                    );
                }
            }
            None => warn!(
                "virtio-mmio (device type {}): notify for queue {value}, which does not exist",
                self.device_type
            ),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // Drivers only add bits (they write `read | new_bit`); anything that clears one is a
        // driver bug we refuse rather than guess at.
        if value & self.status != self.status {
            warn!(
                "virtio-mmio (device type {}): status {value:#x} clears bits of {:#x}; ignored",
                self.device_type, self.status
            );
            return;
        }
        // DEVICE_NEEDS_RESET is the device's to set; a driver echoing it back changes nothing.
        let mut new_bits = value & !self.status & !VIRTIO_CONFIG_S_NEEDS_RESET;
        if new_bits & VIRTIO_CONFIG_S_FAILED != 0 {
            // The driver gave up on the device; record it, and accept nothing else.
            warn!(
                "virtio-mmio (device type {}): the driver marked the device FAILED",
                self.device_type
            );
            self.status |= VIRTIO_CONFIG_S_FAILED;
            new_bits &= !VIRTIO_CONFIG_S_FAILED;
        }
        for bit in STATUS_SEQUENCE {
            if new_bits & bit != 0 && !self.advance_status(bit) {
                return;
            }
            new_bits &= !bit;
        }
        if new_bits != 0 {
            warn!(
                "virtio-mmio (device type {}): unknown status bits {new_bits:#x} ignored",
                self.device_type
            );
        }
    }

    /// Applies one step of the status state machine; false when it is refused.
    fn advance_status(&mut self, bit: u32) -> bool {
        let blocked = VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET;
        // Each bit requires all the ones before it in STATUS_SEQUENCE.
        let required = STATUS_SEQUENCE
            .iter()
            .take_while(|&&b| b != bit)
            .fold(0, |acc, b| acc | b);
        if self.status & blocked != 0 || self.status & required != required {
            warn!(
                "virtio-mmio (device type {}): status bit {bit:#x} refused in status {:#x}",
                self.device_type, self.status
            );
            return false;
        }
        match bit {
            VIRTIO_CONFIG_S_FEATURES_OK => self.accept_features(),
            VIRTIO_CONFIG_S_DRIVER_OK => self.activate(),
            _ => {
                self.status |= bit;
                true
            }
        }
    }

    /// FEATURES_OK: accept the driver's features if they are ours and modern; otherwise leave
    /// FEATURES_OK clear, which the driver reads back as "device refuses features".
    fn accept_features(&mut self) -> bool {
        let unknown = self.driver_features & !self.avail_features;
        if unknown != 0 || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            warn!(
                "virtio-mmio (device type {}): driver features {:#x} refused (offered {:#x}; VIRTIO_F_VERSION_1 is required, legacy drivers are not supported)",
                self.device_type, self.driver_features, self.avail_features
            );
            return false;
        }
        lock(&self.device).ack_features(self.driver_features);
        self.status |= VIRTIO_CONFIG_S_FEATURES_OK;
        true
    }

    /// DRIVER_OK: hand the queues to the device.
    fn activate(&mut self) -> bool {
        let event_idx = self.event_idx();
        let mut queues = Vec::with_capacity(self.queues.len());
        for (registers, event) in self.queues.iter().zip(&self.queue_events) {
            let queue = if registers.ready {
                // Validated when QueueReady was written, and nothing it depends on has changed
                // since: registers of a ready queue and the driver features are frozen.
                registers.build(&self.mem, event_idx)
            } else {
                // Unused queue: not ready, so the device pops nothing from it.
                Queue::new(registers.max_size).map_err(|e| format!("{e:?}"))
            };
            let queue = match queue {
                Ok(queue) => queue,
                Err(reason) => {
                    error!(
                        "virtio-mmio (device type {}): queue cannot be activated: {reason}",
                        self.device_type
                    );
                    self.needs_reset();
                    return false;
                }
            };
            let notify = match event.try_clone() {
                Ok(notify) => notify,
                Err(e) => {
                    error!(
                        "virtio-mmio (device type {}): cannot duplicate a queue eventfd: {e}",
                        self.device_type
                    );
                    self.needs_reset();
                    return false;
                }
            };
            queues.push(ActiveQueue { queue, notify });
        }
        let result = lock(&self.device).activate(self.mem.clone(), self.interrupt.clone(), queues);
        match result {
            Ok(()) => {
                self.status |= VIRTIO_CONFIG_S_DRIVER_OK;
                true
            }
            Err(e) => {
                error!("{e}");
                self.needs_reset();
                false
            }
        }
    }

    /// Flags an unrecoverable setup error to the driver. The config-change interrupt that the
    /// spec asks for only applies once DRIVER_OK is set, and this transport never sets
    /// DEVICE_NEEDS_RESET after it, so none is sent.
    fn needs_reset(&mut self) {
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    }

    /// Status 0: back to the initial state, ready for a fresh negotiation.
    fn reset(&mut self) {
        if self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            debug!("virtio-mmio (device type {}): reset", self.device_type);
        }
        // Always reset the device: it may have acked features without being activated.
        lock(&self.device).reset();
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for queue in &mut self.queues {
            *queue = QueueRegisters::new(queue.max_size);
        }
        for event in &self.queue_events {
            // Drop notifications meant for the old queues; EAGAIN just means there were none.
            let _ = event.read();
        }
        self.interrupt.reset();
    }

    /// Whether the driver accepted `VIRTIO_RING_F_EVENT_IDX` (only if the device offered it).
    fn event_idx(&self) -> bool {
        self.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0
    }

    /// Whether all of `set` and none of `clear` are in the status register.
    fn status_is(&self, set: u32, clear: u32) -> bool {
        self.status & set == set && self.status & clear == 0
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= offset::CONFIG {
            lock(&self.device).read_config(offset - offset::CONFIG, data);
            return;
        }
        // Registers are 32 bits wide and must be accessed as such (virtio 1.2, 4.2.2.2).
        match <&mut [u8; 4]>::try_from(&mut *data) {
            Ok(bytes) if offset % 4 == 0 => *bytes = self.read_register(offset).to_le_bytes(),
            _ => {
                warn!(
                    "virtio-mmio (device type {}): {}-byte read at {offset:#x} is not a register access",
                    self.device_type,
                    data.len()
                );
                data.fill(0);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= offset::CONFIG {
            lock(&self.device).write_config(offset - offset::CONFIG, data);
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(bytes) if offset % 4 == 0 => {
                self.write_register(offset, u32::from_le_bytes(bytes))
            }
            _ => warn!(
                "virtio-mmio (device type {}): {}-byte write at {offset:#x} is not a register access",
                self.device_type,
                data.len()
            ),
        }
    }
}

/// The 32 feature bits on `page` (0: bits 0-31, 1: bits 32-63, others: none).
fn feature_page(features: u64, page: u32) -> u32 {
    match page {
        // Truncation to the selected half is the point.
        #[expect(clippy::cast_possible_truncation, reason = "the low half is wanted")]
        0 => features as u32,
        1 => (features >> 32) as u32,
        _ => 0,
    }
}

/// Locks the device, recovering from a poisoned lock: the device's state is still the best
/// description of what the guest set up, and one panicked thread must not stop the others.
fn lock(device: &Arc<Mutex<dyn VirtioDevice>>) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
    boxlite_proto::sync::lock(device)
}
