//! Split virtqueues (virtio 1.2, 2.7) in static memory, and the volatile
//! cells the device shares with the driver.
//!
//! The probe runs on an identity map, so the address of a static is also
//! its guest-physical address, which is what the device is told.

use core::cell::UnsafeCell;
use core::sync::atomic::{compiler_fence, Ordering};

use crate::deadline::Deadline;
use crate::phys::Pod;

/// Entries per queue (a power of two; the transport checks QueueNumMax).
pub const QUEUE_SIZE: u16 = 8;
const N: usize = QUEUE_SIZE as usize;

/// Descriptor flags.
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;

/// Memory the device reads or writes behind the compiler's back: every
/// access is volatile, so none is cached in a register or elided.
#[repr(transparent)]
pub struct Vol<T>(UnsafeCell<T>);

// SAFETY: the probe runs on one CPU (APs are never started in the virtio
// scenarios); the only other writer is the device, which the volatile
// accesses account for.
unsafe impl<T: Pod> Sync for Vol<T> {}

impl<T: Pod> Vol<T> {
    pub const fn new(value: T) -> Vol<T> {
        Vol(UnsafeCell::new(value))
    }

    pub fn get(&self) -> T {
        // SAFETY: the pointer comes from a live UnsafeCell and is aligned;
        // T is a plain integer, valid for whatever the device wrote.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }

    pub fn set(&self, value: T) {
        // SAFETY: as for `get`; nothing holds a reference into the cell.
        unsafe { core::ptr::write_volatile(self.0.get(), value) }
    }

    /// Guest-physical address (identity map).
    pub fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

/// A byte buffer shared with the device.
#[repr(C)]
pub struct DmaBytes<const LEN: usize>([Vol<u8>; LEN]);

impl<const LEN: usize> DmaBytes<LEN> {
    pub const fn zeroed() -> DmaBytes<LEN> {
        DmaBytes([const { Vol::new(0) }; LEN])
    }

    pub fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }

    /// Copy `src` in, zero-filling the rest.
    pub fn fill(&self, src: &[u8]) {
        for (i, cell) in self.0.iter().enumerate() {
            cell.set(src.get(i).copied().unwrap_or(0));
        }
    }

    /// Copy out as much as fits in `dst`.
    pub fn read_into(&self, dst: &mut [u8]) {
        for (d, cell) in dst.iter_mut().zip(self.0.iter()) {
            *d = cell.get();
        }
    }
}

#[repr(C)]
struct Desc {
    addr: Vol<u64>,
    len: Vol<u32>,
    flags: Vol<u16>,
    next: Vol<u16>,
}

#[repr(C)]
struct UsedElem {
    id: Vol<u32>,
    len: Vol<u32>,
}

/// The used ring needs 4-byte alignment; the descriptor table 16 and the
/// available ring 2, which the page alignment of [`RingMem`] covers.
#[repr(C, align(4))]
struct UsedRing {
    flags: Vol<u16>,
    idx: Vol<u16>,
    ring: [UsedElem; N],
    avail_event: Vol<u16>,
}

/// The three parts of one split virtqueue, page-aligned; meant for
/// `static`s (all-zero, so they land in .bss).
#[repr(C, align(4096))]
pub struct RingMem {
    desc: [Desc; N],
    avail_flags: Vol<u16>,
    avail_idx: Vol<u16>,
    avail_ring: [Vol<u16>; N],
    used_event: Vol<u16>,
    used: UsedRing,
}

impl RingMem {
    pub const fn zeroed() -> RingMem {
        RingMem {
            desc: [const {
                Desc {
                    addr: Vol::new(0),
                    len: Vol::new(0),
                    flags: Vol::new(0),
                    next: Vol::new(0),
                }
            }; N],
            avail_flags: Vol::new(0),
            avail_idx: Vol::new(0),
            avail_ring: [const { Vol::new(0) }; N],
            used_event: Vol::new(0),
            used: UsedRing {
                flags: Vol::new(0),
                idx: Vol::new(0),
                ring: [const {
                    UsedElem {
                        id: Vol::new(0),
                        len: Vol::new(0),
                    }
                }; N],
                avail_event: Vol::new(0),
            },
        }
    }
}

/// The driver side of one split virtqueue. Each [`RingMem`] must back at
/// most one `Virtq` at a time (the scenarios give every queue its own).
pub struct Virtq {
    mem: &'static RingMem,
    size: u16,
    /// Our copy of avail.idx (free-running, wraps at 2^16).
    avail_idx: u16,
    /// used.idx as far as we have consumed it.
    last_used: u16,
}

/// One entry taken from the used ring: the chain's head and the bytes the
/// device wrote into it.
pub struct Used {
    pub id: u32,
    pub len: u32,
}

impl Virtq {
    /// A queue of `size` entries (power of two, at most [`QUEUE_SIZE`]) in
    /// `mem`, which is cleared: a ring left from an earlier use (or RAM the
    /// loader did not zero) must not look like posted work.
    pub fn new(mem: &'static RingMem, size: u16) -> Virtq {
        for d in &mem.desc {
            d.addr.set(0);
            d.len.set(0);
            d.flags.set(0);
            d.next.set(0);
        }
        mem.avail_flags.set(0);
        mem.avail_idx.set(0);
        mem.used.flags.set(0);
        mem.used.idx.set(0);
        Virtq {
            mem,
            size,
            avail_idx: 0,
            last_used: 0,
        }
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest-physical addresses of the descriptor table, available ring
    /// and used ring, for the transport's queue registers.
    pub fn addrs(&self) -> (u64, u64, u64) {
        (
            self.mem.desc[0].addr.addr(),
            self.mem.avail_flags.addr(),
            self.mem.used.flags.addr(),
        )
    }

    /// Fill descriptor `i`; `next` is only followed with [`DESC_NEXT`].
    pub fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = &self.mem.desc[usize::from(i % self.size)];
        d.addr.set(addr);
        d.len.set(len);
        d.flags.set(flags);
        d.next.set(next);
    }

    /// Offer the chain starting at descriptor `head` to the device (the
    /// caller notifies afterwards).
    pub fn publish(&mut self, head: u16) {
        let slot = usize::from(self.avail_idx % self.size);
        self.mem.avail_ring[slot].set(head);
        // The descriptors and the ring slot must be visible before the
        // index that hands them over. x86 keeps stores in order, so a
        // compiler barrier is all that is needed (no mfence: SSE2).
        compiler_fence(Ordering::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.avail_idx.set(self.avail_idx);
    }

    /// The next used entry, if the device returned one.
    pub fn poll_used(&mut self) -> Option<Used> {
        if self.mem.used.idx.get() == self.last_used {
            return None;
        }
        // Read the element (and, later, the buffers) only after seeing
        // the index that covers it; x86 keeps loads in order.
        compiler_fence(Ordering::Acquire);
        let elem = &self.mem.used.ring[usize::from(self.last_used % self.size)];
        self.last_used = self.last_used.wrapping_add(1);
        Some(Used {
            id: elem.id.get(),
            len: elem.len.get(),
        })
    }

    /// Poll until the device returns a chain or `deadline` expires.
    pub fn wait_used(&mut self, deadline: &mut Deadline) -> Option<Used> {
        loop {
            if let Some(used) = self.poll_used() {
                return Some(used);
            }
            if deadline.expired() {
                return None;
            }
        }
    }
}
