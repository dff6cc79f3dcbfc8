//! Reads of guest-physical memory through the identity map.
//!
//! Every address the probe reads comes from the VMM (boot structures,
//! pointers inside them, the MP table), so each read is range-checked
//! against the write-back identity-mapped window first: a bad pointer
//! becomes a reported error instead of a page fault (which, with no IDT,
//! would be a triple fault and say nothing about what went wrong).

/// End (exclusive) of the RAM window the probe's page tables map: 1 GiB.
pub const MAPPED_END: u64 = 1 << 30;

/// True when `[addr, addr + len)` is non-null and inside the mapped window.
pub fn ok(addr: u64, len: u64) -> bool {
    addr != 0 && addr.checked_add(len).is_some_and(|end| end <= MAPPED_END)
}

/// Plain integer types that any bit pattern is valid for.
pub trait Pod: Copy {}
impl Pod for u8 {}
impl Pod for u16 {}
impl Pod for u32 {}
impl Pod for u64 {}

/// Read a little-endian integer at a physical address (no alignment needed).
/// Panics (→ `PROBE: rust panic ...`, reset) outside the mapped window;
/// callers check with [`ok`] first where a bad pointer is a normal outcome.
pub fn read<T: Pod>(addr: u64) -> T {
    assert!(ok(addr, core::mem::size_of::<T>() as u64), "bad phys read");
    // SAFETY: the range is non-null and inside the identity-mapped RAM window
    // (checked above); T is a plain integer, valid for any bit pattern; the
    // read is unaligned-safe. Nothing else writes this memory concurrently in
    // a way Rust could observe (the VMM filled it before the vCPU started).
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// Borrow `len` bytes of physical memory.
pub fn bytes(addr: u64, len: usize) -> &'static [u8] {
    if len == 0 {
        return &[];
    }
    assert!(ok(addr, len as u64), "bad phys range");
    // SAFETY: non-null, inside the identity-mapped RAM window (checked
    // above); u8 is valid for any bit pattern; the probe never writes these
    // boot structures, so the shared borrow stays valid for 'static.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// Byte-wise sum (mod 256) of a physical range, for table checksums.
pub fn checksum(addr: u64, len: usize) -> u8 {
    bytes(addr, len)
        .iter()
        .fold(0u8, |acc, &b| acc.wrapping_add(b))
}
