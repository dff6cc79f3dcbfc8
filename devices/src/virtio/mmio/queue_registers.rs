//! One queue's registers in the virtio-mmio transport, and their validation.

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::offset;

/// Why a queue register write was not applied.
pub(super) enum Refusal {
    /// Out of place but harmless (the queue is already live): the write is dropped.
    Ignored(&'static str),
    /// A value the queue cannot work with: the device needs a reset.
    NeedsReset(String),
}

/// One queue's registers as the driver wrote them. They only become a [`Queue`] when the
/// driver sets QueueReady and every value checks out.
pub(super) struct QueueRegisters {
    pub(super) max_size: u16,
    pub(super) size: u16,
    /// The driver wrote a QueueNum this queue cannot take; QueueReady is refused until a
    /// valid size is written or the device is reset.
    pub(super) size_refused: bool,
    pub(super) desc: u64,
    pub(super) avail: u64,
    pub(super) used: u64,
    /// QueueReady, set only once `build` accepted the registers.
    pub(super) ready: bool,
}

impl QueueRegisters {
    pub(super) fn new(max_size: u16) -> QueueRegisters {
        QueueRegisters {
            max_size,
            size: max_size,
            size_refused: false,
            desc: 0,
            avail: 0,
            used: 0,
            ready: false,
        }
    }

    /// Applies a driver write to one of the queue registers at `offset`.
    pub(super) fn write(
        &mut self,
        offset: u64,
        value: u32,
        mem: &GuestMemoryMmap,
        event_idx: bool,
    ) -> Result<(), Refusal> {
        if offset == offset::QUEUE_READY {
            self.ready = false;
            if value != 0 {
                self.build(mem, event_idx).map_err(Refusal::NeedsReset)?;
                self.ready = true;
            }
            return Ok(());
        }
        // Spec 4.2.2.2: the driver must not change a ready queue's setup.
        if self.ready {
            return Err(Refusal::Ignored("the queue is ready"));
        }
        match offset {
            offset::QUEUE_NUM => self.set_size(value)?,
            offset::QUEUE_DESC_LOW => set_low(&mut self.desc, value),
            offset::QUEUE_DESC_HIGH => set_high(&mut self.desc, value),
            offset::QUEUE_AVAIL_LOW => set_low(&mut self.avail, value),
            offset::QUEUE_AVAIL_HIGH => set_high(&mut self.avail, value),
            offset::QUEUE_USED_LOW => set_low(&mut self.used, value),
            offset::QUEUE_USED_HIGH => set_high(&mut self.used, value),
            _ => return Err(Refusal::Ignored("not a queue register")),
        }
        Ok(())
    }

    /// QueueNum: a power of two from 1 to the maximum. A refused size sticks until a valid
    /// one is written, so QueueReady cannot go ahead with the previous value.
    fn set_size(&mut self, value: u32) -> Result<(), Refusal> {
        match u16::try_from(value) {
            Ok(size) if size != 0 && size <= self.max_size && size.is_power_of_two() => {
                self.size = size;
                self.size_refused = false;
                Ok(())
            }
            _ => {
                self.size_refused = true;
                Err(Refusal::NeedsReset(format!(
                    "size {value} is not a power of two from 1 to {}",
                    self.max_size
                )))
            }
        }
    }

    /// Builds the queue the registers describe, or says why it cannot be used.
    pub(super) fn build(&self, mem: &GuestMemoryMmap, event_idx: bool) -> Result<Queue, String> {
        if self.size_refused {
            return Err(format!(
                "QueueReady with a refused size (must be a power of two from 1 to {})",
                self.max_size
            ));
        }
        let mut queue = Queue::new(self.max_size).map_err(|e| format!("{e:?}"))?;
        queue
            .try_set_size(self.size)
            .map_err(|e| format!("size {}: {e:?}", self.size))?;
        queue
            .try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| format!("descriptor table {:#x}: {e:?}", self.desc))?;
        queue
            .try_set_avail_ring_address(GuestAddress(self.avail))
            .map_err(|e| format!("available ring {:#x}: {e:?}", self.avail))?;
        queue
            .try_set_used_ring_address(GuestAddress(self.used))
            .map_err(|e| format!("used ring {:#x}: {e:?}", self.used))?;
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        if !queue.is_valid(mem) {
            return Err(format!(
                "its rings (descriptors {:#x}, available {:#x}, used {:#x}, size {}) are not all in guest RAM",
                self.desc, self.avail, self.used, self.size
            ));
        }
        Ok(queue)
    }
}

fn set_low(address: &mut u64, value: u32) {
    *address = (*address & !0xffff_ffff) | u64::from(value);
}

fn set_high(address: &mut u64, value: u32) {
    *address = (*address & 0xffff_ffff) | (u64::from(value) << 32);
}
