//! Port-I/O and MMIO buses: route a vCPU's access to the device that owns the address.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// A device reachable through a [`Bus`]. `offset` is relative to the base it was inserted at.
pub trait BusDevice: Send {
    /// Fills `data` with the device's answer to a read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the vCPU threads.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

struct Slot {
    len: u64,
    device: SharedDevice,
}

/// Address ranges mapped to devices; ranges never overlap.
#[derive(Default)]
pub struct Bus {
    slots: BTreeMap<u64, Slot>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Maps `device` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<()> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(Error::BusRangeInvalid { base, len })?;
        let overlaps_previous = self
            .slots
            .range(..end)
            .next_back()
            .is_some_and(|(start, slot)| start + slot.len > base);
        if overlaps_previous {
            return Err(Error::BusRangeOverlap { base, end });
        }
        self.slots.insert(base, Slot { len, device });
        Ok(())
    }

    fn resolve(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (base, slot) = self.slots.range(..=addr).next_back()?;
        (addr - base < slot.len).then_some((addr - base, &slot.device))
    }

    /// Reads from the device at `addr`. Returns false, with `data` set to all ones like an
    /// undriven bus, when nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, device)) => {
                lock(device).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes to the device at `addr`. Returns false when nothing is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, device)) => {
                lock(device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock: a vCPU thread that panicked while holding it
/// must not take every other vCPU down with it.
fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    boxlite_proto::sync::lock(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_offset_within_the_range() {
        let device = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, device.clone()).unwrap();
        let mut data = [0u8; 1];
        assert!(bus.read(0x3fd, &mut data));
        assert_eq!(data, [5]);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(device.lock().unwrap().writes, vec![(0, vec![b'x'])]);
    }

    #[test]
    fn unmapped_addresses_read_all_ones() {
        let mut bus = Bus::new();
        bus.insert(0x60, 5, Arc::new(Mutex::new(Recorder::default())))
            .unwrap();
        let mut data = [0u8; 2];
        assert!(!bus.read(0x65, &mut data));
        assert_eq!(data, [0xff, 0xff]);
        assert!(!bus.read(0x5f, &mut data));
        assert!(!bus.write(0x1000, &[1]));
    }

    #[test]
    fn overlapping_or_empty_ranges_are_refused() {
        let mut bus = Bus::new();
        let dev = || -> SharedDevice { Arc::new(Mutex::new(Recorder::default())) };
        bus.insert(0x100, 0x10, dev()).unwrap();
        assert!(bus.insert(0x108, 0x10, dev()).is_err());
        assert!(bus.insert(0xf8, 0x10, dev()).is_err());
        assert!(bus.insert(0x200, 0, dev()).is_err());
        assert!(bus.insert(u64::MAX, 2, dev()).is_err());
        bus.insert(0x110, 0x10, dev()).unwrap();
    }
}
