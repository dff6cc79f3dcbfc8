//! The interrupt a virtio device raises towards the guest.

use std::sync::atomic::{AtomicU32, Ordering};

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use vmm_sys_util::eventfd::EventFd;

use crate::{Error, Result};

/// Why the device interrupts the guest; each kind is one bit of the transport's
/// InterruptStatus register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptKind {
    /// The device put buffers in a used ring.
    UsedRing,
    /// The device configuration space changed (or the device needs a reset).
    ConfigChange,
}

impl InterruptKind {
    /// The InterruptStatus bit for this kind.
    pub fn status_bit(self) -> u32 {
        match self {
            InterruptKind::UsedRing => VIRTIO_MMIO_INT_VRING,
            InterruptKind::ConfigChange => VIRTIO_MMIO_INT_CONFIG,
        }
    }
}

/// A device's interrupt line and the transport state that goes with it, shared (in an `Arc`)
/// by the device, which raises it, and the transport, which shows and clears it.
///
/// The line is an eventfd that the VMM registers with KVM as an irqfd (`KVM_IRQFD` on the
/// device's GSI), so raising it never leaves the host kernel. Linux's virtio-mmio interrupt
/// handler reads InterruptStatus, acknowledges those bits, then handles them, so a pulse that
/// arrives while it runs is never lost. All state is atomic: no lock is needed to raise it from
/// the event loop while a vCPU reads the registers.
#[derive(Debug)]
pub struct VirtioInterrupt {
    irqfd: EventFd,
    status: AtomicU32,
    config_generation: AtomicU32,
}

impl VirtioInterrupt {
    /// Wraps `irqfd`, which the VMM has registered (or will register) as the device's irqfd.
    pub fn new(irqfd: EventFd) -> VirtioInterrupt {
        VirtioInterrupt {
            irqfd,
            status: AtomicU32::new(0),
            config_generation: AtomicU32::new(0),
        }
    }

    /// The eventfd to register with `KVM_IRQFD`.
    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }

    /// Sets `kind`'s status bit and pulses the interrupt line.
    pub fn trigger(&self, kind: InterruptKind) -> Result<()> {
        self.status.fetch_or(kind.status_bit(), Ordering::SeqCst);
        self.irqfd
            .write(1)
            .map_err(Error::io("raising a virtio interrupt (irqfd write)"))
    }

    /// Tells the driver it has used buffers to collect.
    pub fn signal_used_queue(&self) -> Result<()> {
        self.trigger(InterruptKind::UsedRing)
    }

    /// Tells the driver the config space changed: bumps the config generation first, so that
    /// a driver reading the space across the change sees a different generation and retries.
    pub fn signal_config_change(&self) -> Result<()> {
        self.config_generation.fetch_add(1, Ordering::SeqCst);
        self.trigger(InterruptKind::ConfigChange)
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Clears the `bits` the driver wrote to InterruptACK.
    pub fn acknowledge(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The ConfigGeneration register.
    pub fn config_generation(&self) -> u32 {
        self.config_generation.load(Ordering::SeqCst)
    }

    /// Clears pending status on a device reset (the generation keeps counting: it only has to
    /// differ across a change).
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn interrupt() -> VirtioInterrupt {
        VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap())
    }

    #[test]
    fn used_ring_sets_its_bit_and_pulses_the_irqfd() {
        let irq = interrupt();
        irq.signal_used_queue().unwrap();
        assert_eq!(irq.status(), VIRTIO_MMIO_INT_VRING);
        assert_eq!(irq.irqfd().read().unwrap(), 1);
        assert_eq!(irq.config_generation(), 0);
    }

    #[test]
    fn config_change_bumps_the_generation() {
        let irq = interrupt();
        irq.signal_config_change().unwrap();
        irq.signal_used_queue().unwrap();
        assert_eq!(irq.status(), VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
        assert_eq!(irq.config_generation(), 1);
        assert_eq!(irq.irqfd().read().unwrap(), 2);
    }

    #[test]
    fn acknowledge_clears_only_the_written_bits_and_reset_clears_all() {
        let irq = interrupt();
        irq.signal_config_change().unwrap();
        irq.signal_used_queue().unwrap();
        irq.acknowledge(VIRTIO_MMIO_INT_VRING);
        assert_eq!(irq.status(), VIRTIO_MMIO_INT_CONFIG);
        irq.signal_used_queue().unwrap();
        irq.reset();
        assert_eq!(irq.status(), 0);
        assert_eq!(irq.config_generation(), 1);
    }
}
