//! Attaching virtio-mmio devices to a VM: each gets a 4 KiB MMIO window and an IRQ line, its
//! queue notifications become KVM ioeventfds (a guest notify then wakes the device's event
//! handler without a VM exit), its interrupt an irqfd, and the kernel learns about it from a
//! `virtio_mmio.device=` command-line entry.

use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use kvm_ioctls::IoEventAddress;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use boxlite_devices::bus::Bus;
use boxlite_devices::virtio::block::{Block, BlockOptions};
use boxlite_devices::virtio::mmio::{MmioTransport, MMIO_WINDOW_SIZE};
use boxlite_devices::virtio::rng::Rng;
use boxlite_devices::virtio::vsock::Vsock;
use boxlite_devices::virtio::{VirtioDevice, VirtioInterrupt};
use boxlite_proto::VmConfig;

use crate::error::{Error, Result};
use crate::layout::{IOAPIC_PINS, VIRTIO_IRQ_START, VIRTIO_MMIO_START};
use crate::vmm::Subscriber;
use crate::vstate::vm::Vm;

/// Most virtio devices a VM can have: one IRQ line each, from [`VIRTIO_IRQ_START`] to the last
/// I/O APIC pin.
pub const MAX_VIRTIO_DEVICES: usize = (IOAPIC_PINS as usize) - (VIRTIO_IRQ_START as usize);

/// Where device number `index` lives: its MMIO base and its IRQ line.
pub fn slot(index: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_START + index as u64 * MMIO_WINDOW_SIZE,
        VIRTIO_IRQ_START + index as u32,
    )
}

/// The command-line entry that makes Linux probe a virtio-mmio device.
pub fn cmdline_entry(base: u64, irq: u32) -> String {
    format!("virtio_mmio.device=4K@{base:#x}:{irq}")
}

/// Devices being attached, in slot order.
pub struct VirtioAttacher<'a> {
    vm: &'a Vm,
    memory: &'a GuestMemoryMmap,
    mmio: &'a mut Bus,
    cmdline: Vec<String>,
    subscribers: Vec<Subscriber>,
}

impl<'a> VirtioAttacher<'a> {
    /// Attaches to `vm`, whose guest RAM is `memory`, on the MMIO bus `mmio`.
    pub fn new(vm: &'a Vm, memory: &'a GuestMemoryMmap, mmio: &'a mut Bus) -> VirtioAttacher<'a> {
        VirtioAttacher {
            vm,
            memory,
            mmio,
            cmdline: Vec::new(),
            subscribers: Vec::new(),
        }
    }

    /// Attaches `device` in the next free slot.
    pub fn attach<D>(&mut self, name: &str, device: Arc<Mutex<D>>) -> Result<()>
    where
        D: VirtioDevice + MutEventSubscriber + Send + 'static,
    {
        let index = self.cmdline.len();
        if index >= MAX_VIRTIO_DEVICES {
            return Err(Error::InvalidConfig(format!(
                "too many virtio devices: at most {MAX_VIRTIO_DEVICES} fit the interrupt lines"
            )));
        }
        let (base, irq) = slot(index);
        let irqfd = EventFd::new(EFD_NONBLOCK).map_err(Error::io("creating a virtio irqfd"))?;
        self.vm
            .fd()
            .register_irqfd(&irqfd, irq)
            .map_err(Error::kvm("KVM_IRQFD (virtio)"))?;
        let interrupt = Arc::new(VirtioInterrupt::new(irqfd));
        let transport = MmioTransport::new(device.clone(), self.memory.clone(), interrupt)?;
        for (addr, datamatch, event) in transport.ioevents(base) {
            self.vm
                .fd()
                .register_ioevent(event, &IoEventAddress::Mmio(addr), datamatch)
                .map_err(Error::kvm("KVM_IOEVENTFD (virtio queue notify)"))?;
        }
        self.mmio
            .insert(base, MMIO_WINDOW_SIZE, Arc::new(Mutex::new(transport)))?;
        self.subscribers.push(device);
        self.cmdline.push(cmdline_entry(base, irq));
        log::debug!("virtio {name} at {base:#x}, irq {irq}");
        Ok(())
    }

    /// The command-line entries and event-loop subscribers of everything attached.
    pub fn finish(self) -> (Vec<String>, Vec<Subscriber>) {
        (self.cmdline, self.subscribers)
    }
}

/// Attaches the devices `config` asks for: the entropy device (always: without it programs in
/// the guest block on getrandom at boot), the disks in order (the first is /dev/vda), then the
/// vsock device.
pub fn attach_configured(attacher: &mut VirtioAttacher<'_>, config: &VmConfig) -> Result<()> {
    attacher.attach("rng", Arc::new(Mutex::new(Rng::new()?)))?;
    for (index, disk) in config.disks.iter().enumerate() {
        let options = BlockOptions {
            format: disk.format,
            path: disk.path.clone().into(),
            read_only: disk.read_only,
            serial: format!("boxlite-disk{index}"),
        };
        attacher.attach(
            &format!("block {}", disk.path),
            Arc::new(Mutex::new(Block::new(&options)?)),
        )?;
    }
    if let Some(vsock) = &config.vsock {
        let device = Vsock::new(u64::from(vsock.guest_cid), &vsock.uds_path)?;
        attacher.attach("vsock", device)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_boot_timer_page_and_com1() {
        assert_eq!(slot(0), (0xc000_1000, 5));
        assert_eq!(slot(2), (0xc000_3000, 7));
        let (last_base, last_irq) = slot(MAX_VIRTIO_DEVICES - 1);
        assert_eq!(last_irq, u32::from(IOAPIC_PINS) - 1);
        assert!(last_base + MMIO_WINDOW_SIZE <= crate::layout::MMIO_HOLE_END);
    }

    #[test]
    fn command_line_entries_use_linux_syntax() {
        assert_eq!(
            cmdline_entry(0xc000_1000, 5),
            "virtio_mmio.device=4K@0xc0001000:5"
        );
    }
}
