//! The driver side of split virtqueues in guest memory, built from fuzz input.
//!
//! Layout of the guest RAM the targets use ([`MEM_SIZE`] bytes at address 0): queue `q`'s
//! descriptor table, available ring and used ring sit in `[q * RING_STRIDE, (q + 1) *
//! RING_STRIDE)`, sized for 256 entries; chain buffers are bump-allocated from [`DATA_START`]
//! on. Everything past the layout is the fuzzer's: raw descriptors, forged indices, and
//! buffers at any address, inside guest RAM or not.

use std::collections::HashMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use boxlite_devices::virtio::{ActiveQueue, VirtioInterrupt};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest RAM size: large enough that the buffers a queue holds at once never overlap (256
/// chains of 64 KiB), cheap because only the pages written are ever touched.
pub const MEM_SIZE: u64 = 0x100_0000;
/// Room for one queue's rings (256 entries: 4 KiB table, 518-byte avail, 2054-byte used ring).
const RING_STRIDE: u64 = 0x4000;
const AVAIL_OFFSET: u64 = 0x1000;
const USED_OFFSET: u64 = 0x2000;
/// Where chain buffers start, after the rings of up to four queues.
pub const DATA_START: u64 = 4 * RING_STRIDE;
/// Entries the ring layout holds: the largest queue a target sets up.
const MAX_ENTRIES: u16 = 256;

/// Fresh guest RAM, all zeroes.
pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
        .expect("a few MiB of anonymous memory can be mapped")
}

/// An interrupt the device can raise (nobody reads it: raising must simply never fail).
pub fn interrupt() -> Arc<VirtioInterrupt> {
    let irqfd = EventFd::new(EFD_NONBLOCK).expect("an eventfd can be created");
    Arc::new(VirtioInterrupt::new(irqfd))
}

/// A queue size from a fuzz byte: a power of two from 1 to 256, as a driver may pick.
pub fn queue_size(log2: u8) -> u16 {
    1 << (log2 % 9)
}

/// A guest-physical address: mostly inside guest RAM (so buffers are reachable), sometimes
/// anything at all (past the end, wrapping around the address space).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    /// An offset into guest RAM, taken modulo its size.
    InRam(u32),
    /// Any 64-bit address.
    Raw(u64),
}

impl Addr {
    /// The address itself.
    pub fn get(self) -> u64 {
        match self {
            Addr::InRam(offset) => u64::from(offset) % MEM_SIZE,
            Addr::Raw(addr) => addr,
        }
    }
}

/// One buffer of a chain as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
pub struct Segment {
    /// Device-writable (else device-readable).
    pub write: bool,
    /// The descriptor's length; it may be shorter or longer than `data`.
    pub len: u16,
    /// What the driver puts in the buffer (up to `len` bytes of it).
    pub data: Vec<u8>,
    /// Where the buffer is; `None` allocates it in the data area.
    pub at: Option<Addr>,
}

impl Segment {
    /// A device-readable buffer holding exactly `data`, in the data area.
    pub fn readable(data: Vec<u8>) -> Segment {
        Segment {
            write: false,
            len: u16::try_from(data.len()).unwrap_or(u16::MAX),
            data,
            at: None,
        }
    }

    /// A device-writable buffer of `len` bytes, in the data area.
    pub fn writable(len: u16) -> Segment {
        Segment {
            write: true,
            len,
            data: Vec::new(),
            at: None,
        }
    }
}

/// One descriptor written as given, for tables no well-behaved driver writes: loops, `next`
/// past the queue size, INDIRECT flags, zero lengths, addresses anywhere.
#[derive(Arbitrary, Debug)]
pub struct RawDesc {
    /// Table slot, modulo the layout's 256 entries (so it may lie past the queue size).
    pub index: u8,
    /// Buffer address.
    pub addr: Addr,
    /// Buffer length.
    pub len: u32,
    /// Raw flags.
    pub flags: u16,
    /// Raw next index.
    pub next: u16,
}

/// Hands out chain buffers from the data area, starting over at the beginning when it is used
/// up (overlapping buffers are fine: it is the guest's memory to mess up).
pub struct Arena {
    next: u64,
    /// How many times it started over: a buffer handed out before the last start-over may
    /// share its memory with a newer one.
    pub wraps: u64,
}

impl Default for Arena {
    fn default() -> Arena {
        Arena {
            next: DATA_START,
            wraps: 0,
        }
    }
}

impl Arena {
    /// The address of a fresh `len`-byte buffer.
    pub fn alloc(&mut self, len: u64) -> u64 {
        if self.next + len > MEM_SIZE {
            self.next = DATA_START;
            self.wraps += 1;
        }
        let at = self.next;
        // 16-byte aligned, like a driver's allocations.
        self.next = (at + len + 15) & !15;
        at
    }
}

/// The driver's view of queue number `queue` (its place in the layout).
pub struct Ring {
    base: u64,
    size: u16,
    next_desc: u16,
    /// Chains made available since the ring was laid out; `None` once the fuzzer forged the
    /// available index (the count then says nothing about what the device may pop).
    published: Option<u32>,
}

impl Ring {
    /// Lays out queue `queue` with `size` entries (at most 256) in `mem`, zeroing its rings.
    pub fn new(mem: &GuestMemoryMmap, queue: u8, size: u16) -> Ring {
        assert!(queue < 4 && size <= MAX_ENTRIES, "outside the ring layout");
        let base = u64::from(queue) * RING_STRIDE;
        mem.write_slice(&[0u8; RING_STRIDE as usize], GuestAddress(base))
            .expect("the ring layout is inside guest RAM");
        Ring {
            base,
            size,
            next_desc: 0,
            published: Some(0),
        }
    }

    /// The number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The device-side queue as a transport hands it over at activation, and a duplicate of
    /// its notification event (writing it is what the guest's queue notify does).
    pub fn active_queue(&self, event_idx: bool) -> (ActiveQueue, EventFd) {
        let mut queue = Queue::new(MAX_ENTRIES).expect("256 is a valid queue size");
        queue.set_size(self.size);
        let layout = "the ring layout is aligned";
        let desc_table = GuestAddress(self.base);
        queue.try_set_desc_table_address(desc_table).expect(layout);
        let avail = GuestAddress(self.base + AVAIL_OFFSET);
        queue.try_set_avail_ring_address(avail).expect(layout);
        let used = GuestAddress(self.base + USED_OFFSET);
        queue.try_set_used_ring_address(used).expect(layout);
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        let notify = EventFd::new(EFD_NONBLOCK).expect("an eventfd can be created");
        let guest_side = notify.try_clone().expect("an eventfd can be duplicated");
        (ActiveQueue { queue, notify }, guest_side)
    }

    /// Writes `segments` as one chain of consecutive descriptors and makes it available;
    /// returns its head and the address of each buffer (nothing for an empty chain). A chain
    /// longer than the queue wraps onto its own first descriptors, which makes it a loop.
    pub fn add_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        arena: &mut Arena,
        segments: &[Segment],
    ) -> Option<(u16, Vec<u64>)> {
        if segments.is_empty() {
            return None;
        }
        let head = self.next_desc;
        let mut addrs = Vec::with_capacity(segments.len());
        for (i, segment) in segments.iter().enumerate() {
            let index = (usize::from(head) + i) % usize::from(self.size);
            let len = u64::from(segment.len);
            let addr = segment.at.map_or_else(|| arena.alloc(len), Addr::get);
            let data = &segment.data[..segment.data.len().min(segment.len.into())];
            // A buffer outside guest RAM stays unwritten: the device must refuse it anyway.
            let _ = mem.write_slice(data, GuestAddress(addr));
            let mut flags = if segment.write { VRING_DESC_F_WRITE } else { 0 } as u16;
            let last = i + 1 == segments.len();
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let next = (index + 1) % usize::from(self.size);
            self.write_desc(index as u16, addr, len as u32, flags, next as u16, mem);
            addrs.push(addr);
        }
        self.next_desc = ((usize::from(head) + segments.len()) % usize::from(self.size)) as u16;
        self.publish(mem, head);
        Some((head, addrs))
    }

    /// Writes one descriptor as given.
    pub fn store_raw(&self, mem: &GuestMemoryMmap, desc: &RawDesc) {
        let (addr, index) = (desc.addr.get(), u16::from(desc.index));
        self.write_desc(index, addr, desc.len, desc.flags, desc.next, mem);
    }

    fn write_desc(
        &self,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
        mem: &GuestMemoryMmap,
    ) {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        let at = self.base + 16 * u64::from(index);
        mem.write_slice(&raw, GuestAddress(at))
            .expect("the descriptor table is inside guest RAM");
    }

    /// Puts `head` in the next available slot and bumps the available index, whatever the
    /// descriptor table holds there.
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let idx = self.avail_idx(mem);
        let slot = self.base + AVAIL_OFFSET + 4 + 2 * u64::from(idx % self.size);
        self.store(mem, slot, head);
        self.store(mem, self.base + AVAIL_OFFSET + 2, idx.wrapping_add(1));
        self.published = self.published.map(|n| n + 1);
    }

    /// Overwrites the available index: the device may now see more chains than the driver
    /// ever wrote, or an index that moved backwards.
    pub fn forge_avail_idx(&mut self, mem: &GuestMemoryMmap, idx: u16) {
        self.store(mem, self.base + AVAIL_OFFSET + 2, idx);
        self.published = None;
    }

    /// Overwrites the available ring's flags (NO_INTERRUPT and garbage bits).
    pub fn set_avail_flags(&self, mem: &GuestMemoryMmap, flags: u16) {
        self.store(mem, self.base + AVAIL_OFFSET, flags);
    }

    /// Sets `used_event`, which the device reads in event-index mode.
    pub fn set_used_event(&self, mem: &GuestMemoryMmap, index: u16) {
        let at = self.base + AVAIL_OFFSET + 4 + 2 * u64::from(self.size);
        self.store(mem, at, index);
    }

    /// Records that the fuzzer wrote guest memory in `[at, at + len)`: when that overlaps this
    /// ring, the published count no longer bounds what the device may pop.
    pub fn note_poke(&mut self, at: u64, len: usize) {
        let end = at.saturating_add(len as u64);
        if at < self.base + RING_STRIDE && end > self.base {
            self.published = None;
        }
    }

    /// The used ring's index, as the device last wrote it.
    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        self.load(mem, self.base + USED_OFFSET + 2)
    }

    /// Used element `n` (0 = the first the device returned): (head, length).
    pub fn used_elem(&self, mem: &GuestMemoryMmap, n: u16) -> (u32, u32) {
        let at = self.base + USED_OFFSET + 4 + 8 * u64::from(n % self.size);
        let load = |at: u64| -> u32 {
            u32::from_le(mem.read_obj(GuestAddress(at)).expect("inside guest RAM"))
        };
        (load(at), load(at + 4))
    }

    /// The used-ring oracle: a device returns each chain it popped exactly once, so it can
    /// never have returned more chains than the driver made available. Panics (a finding)
    /// otherwise; says nothing once the fuzzer forged the ring's indices.
    pub fn check_used_bound(&self, mem: &GuestMemoryMmap) {
        if let Some(published) = self.published {
            let used = u32::from(self.used_idx(mem));
            assert!(
                published >= 65536 || used <= published,
                "the device returned {used} chains but only {published} were made available"
            );
        }
    }

    fn avail_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        self.load(mem, self.base + AVAIL_OFFSET + 2)
    }

    fn store(&self, mem: &GuestMemoryMmap, at: u64, value: u16) {
        mem.write_obj(value.to_le(), GuestAddress(at))
            .expect("the rings are inside guest RAM");
    }

    fn load(&self, mem: &GuestMemoryMmap, at: u64) -> u16 {
        u16::from_le(mem.read_obj(GuestAddress(at)).expect("inside guest RAM"))
    }
}

/// What the harness knows about the chains it built, by head, for oracles on the used ring.
///
/// A chain that reuses descriptor slots of an earlier one makes the earlier record stale (the
/// device would now walk different descriptors from that head), so it is dropped; a chain
/// longer than the queue loops onto itself and is not recorded.
pub struct Chains<T> {
    by_head: HashMap<u16, T>,
    owner: Vec<Option<u16>>,
}

impl<T> Default for Chains<T> {
    fn default() -> Chains<T> {
        Chains {
            by_head: HashMap::new(),
            owner: vec![None; usize::from(MAX_ENTRIES)],
        }
    }
}

impl<T> Chains<T> {
    /// Records `info` for the chain of `len` descriptors at `head` in a queue of `size`.
    pub fn record(&mut self, head: u16, len: usize, size: u16, info: T) {
        let size = usize::from(size);
        for i in 0..len.min(size) {
            let slot = (usize::from(head) + i) % size;
            if let Some(old) = self.owner[slot].replace(head) {
                self.by_head.remove(&old);
            }
        }
        if len <= size {
            self.by_head.insert(head, info);
        }
    }

    /// What was recorded for the chain the device returned with id `head`.
    pub fn get(&self, head: u32) -> Option<&T> {
        self.by_head.get(&u16::try_from(head).ok()?)
    }

    /// Forgets everything (the table was written by hand, or the queue was set up again).
    pub fn clear(&mut self) {
        self.by_head.clear();
        self.owner.fill(None);
    }
}
