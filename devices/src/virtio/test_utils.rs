//! Test helpers: guest memory, a driver-side view of a split queue, and device activation.

use std::sync::Arc;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueT};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{ActiveQueue, VirtioInterrupt};

/// Where test data buffers start, well past the rings.
pub const DATA_BASE: u64 = 0x10_0000;
/// Guest RAM size for tests.
pub const MEM_SIZE: usize = 0x100_0000;

/// 16 MiB of guest RAM at 0.
pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// An interrupt whose irqfd tests can read.
pub fn interrupt() -> Arc<VirtioInterrupt> {
    Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()))
}

/// One descriptor as a test describes it.
#[derive(Clone, Copy)]
pub struct Desc {
    /// Buffer address.
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A device-readable buffer.
pub fn readable(addr: u64, len: u32) -> Desc {
    Desc {
        addr,
        len,
        write: false,
    }
}

/// A device-writable buffer.
pub fn writable(addr: u64, len: u32) -> Desc {
    Desc {
        addr,
        len,
        write: true,
    }
}

/// Where the test driver puts its rings. `virtio_queue::mock::MockSplitQueue` is not used: it
/// sizes the available ring in entries instead of bytes, so its used ring overlaps the end of
/// the available ring (and `used_event`).
const DESC_TABLE: u64 = 0;
const AVAIL_RING: u64 = 0x4000;
const USED_RING: u64 = 0x6000;

/// Makes chain `head` available again in the `size`-entry queue a [`Driver`] laid out in `mem`
/// (what a driver does when it re-posts a buffer as soon as the device returns it).
pub fn repost(mem: &GuestMemoryMmap, size: u16, head: u16) {
    let idx: u16 = mem.read_obj(GuestAddress(AVAIL_RING + 2)).unwrap();
    let slot = u64::from(idx % size);
    mem.write_obj(head, GuestAddress(AVAIL_RING + 4 + 2 * slot))
        .unwrap();
    mem.write_obj(idx.wrapping_add(1), GuestAddress(AVAIL_RING + 2))
        .unwrap();
}

/// The driver side of a split queue (at most 256 entries) at the bottom of `mem`.
pub struct Driver<'a> {
    mem: &'a GuestMemoryMmap,
    size: u16,
    next_desc: u16,
}

impl<'a> Driver<'a> {
    /// An empty queue of `size` entries.
    pub fn new(mem: &'a GuestMemoryMmap, size: u16) -> Driver<'a> {
        assert!(size <= 256, "the test ring layout holds 256 entries");
        let driver = Driver {
            mem,
            size,
            next_desc: 0,
        };
        driver.store(AVAIL_RING, 0u16); // flags
        driver.store(AVAIL_RING + 2, 0u16); // idx
        driver.store(USED_RING, 0u16);
        driver.store(USED_RING + 2, 0u16);
        driver.set_used_event(0);
        driver
    }

    fn store<T: ByteValued>(&self, addr: u64, value: T) {
        self.mem.write_obj(value, GuestAddress(addr)).unwrap();
    }

    fn load<T: ByteValued>(&self, addr: u64) -> T {
        self.mem.read_obj(GuestAddress(addr)).unwrap()
    }

    /// Makes a chain of `descs` available; returns its head index.
    pub fn add_chain(&mut self, descs: &[Desc]) -> u16 {
        let head = self.next_desc;
        for (i, d) in descs.iter().enumerate() {
            let index = head + i as u16;
            let last = i + 1 == descs.len();
            let mut flags = if d.write { VRING_DESC_F_WRITE } else { 0 } as u16;
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            self.store_desc(
                index,
                d.addr,
                d.len,
                flags,
                if last { 0 } else { index + 1 },
            );
        }
        self.next_desc += descs.len() as u16;
        self.publish_head(head);
        head
    }

    /// Writes descriptor `index` as given (for chains a test corrupts by hand).
    pub fn store_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let base = DESC_TABLE + 16 * u64::from(index);
        self.store(base, addr);
        self.store(base + 8, len);
        self.store(base + 12, flags);
        self.store(base + 14, next);
    }

    /// Makes `head` available without writing any descriptor.
    pub fn publish_head(&self, head: u16) {
        repost(self.mem, self.size, head);
    }

    /// Overwrites the available ring's index.
    pub fn set_avail_idx(&self, idx: u16) {
        self.store(AVAIL_RING + 2, idx);
    }

    /// Sets `used_event` (read by the device when VIRTIO_RING_F_EVENT_IDX is on).
    pub fn set_used_event(&self, index: u16) {
        self.store(AVAIL_RING + 4 + 2 * u64::from(self.size), index);
    }

    /// The device-side queue, configured and ready.
    pub fn queue(&self) -> Queue {
        let mut queue = Queue::new(self.size).unwrap();
        queue
            .try_set_desc_table_address(GuestAddress(DESC_TABLE))
            .unwrap();
        queue
            .try_set_avail_ring_address(GuestAddress(AVAIL_RING))
            .unwrap();
        queue
            .try_set_used_ring_address(GuestAddress(USED_RING))
            .unwrap();
        queue.set_ready(true);
        assert!(queue.is_valid(self.mem));
        queue
    }

    /// The queue with a fresh notification event, as the transport hands it over.
    pub fn active_queue(&self) -> ActiveQueue {
        ActiveQueue {
            queue: self.queue(),
            notify: EventFd::new(EFD_NONBLOCK).unwrap(),
        }
    }

    /// The used ring's index.
    pub fn used_idx(&self) -> u16 {
        self.load(USED_RING + 2)
    }

    /// Used element `slot`: (head id, length).
    pub fn used(&self, slot: u16) -> (u32, u32) {
        let base = USED_RING + 4 + 8 * u64::from(slot % self.size);
        (self.load(base), self.load(base + 4))
    }
}
