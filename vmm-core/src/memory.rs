//! Guest RAM: layout with the 32-bit MMIO hole, allocation, and the E820 map that describes it.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::layout::{EBDA_END, HIMEM_START, MMIO_HOLE_END, MMIO_HOLE_START, MPTABLE_START};

/// Smallest guest accepted: enough for the boot structures and a small kernel.
pub const MIN_MEM_MIB: u32 = 16;
/// Largest guest accepted (a sanity bound, not a host limit).
pub const MAX_MEM_MIB: u32 = 1 << 20;

/// E820 memory type: usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 memory type: reserved.
pub const E820_RESERVED: u32 = 2;

/// One entry of the guest's physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapEntry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// The RAM regions backing a guest of `mem_bytes`: one below the MMIO hole, and the rest above
/// 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(GuestAddress, u64)> {
    if mem_bytes <= MMIO_HOLE_START {
        vec![(GuestAddress(0), mem_bytes)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START),
            (GuestAddress(MMIO_HOLE_END), mem_bytes - MMIO_HOLE_START),
        ]
    }
}

/// The E820 map handed to the guest: base memory up to the MP table, the MP table reserved,
/// RAM from 1 MiB to the hole, and RAM above 4 GiB. The legacy 0xa0000–0xfffff window is left
/// out, as on a PC.
pub fn memory_map(mem_bytes: u64) -> Vec<MemoryMapEntry> {
    let mut map = vec![
        MemoryMapEntry {
            addr: 0,
            size: MPTABLE_START,
            kind: E820_RAM,
        },
        MemoryMapEntry {
            addr: MPTABLE_START,
            size: EBDA_END - MPTABLE_START,
            kind: E820_RESERVED,
        },
    ];
    let low_end = mem_bytes.min(MMIO_HOLE_START);
    if low_end > HIMEM_START {
        map.push(MemoryMapEntry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    if mem_bytes > MMIO_HOLE_START {
        map.push(MemoryMapEntry {
            addr: MMIO_HOLE_END,
            size: mem_bytes - MMIO_HOLE_START,
            kind: E820_RAM,
        });
    }
    map
}

/// End (exclusive) of the RAM below the MMIO hole: where the initrd goes.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_HOLE_START)
}

/// Validates `mem_mib` and allocates anonymous guest RAM for it.
pub fn create_guest_memory(mem_mib: u32) -> Result<GuestMemoryMmap> {
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mem_mib) {
        return Err(Error::InvalidConfig(format!(
            "memory size {mem_mib} MiB is outside the supported range {MIN_MEM_MIB}..={MAX_MEM_MIB} MiB"
        )));
    }
    let mem_bytes = u64::from(mem_mib) << 20;
    let ranges: Vec<(GuestAddress, usize)> = ram_regions(mem_bytes)
        .into_iter()
        .map(|(addr, len)| (addr, len as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::GuestMemory(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn small_guest_is_one_region_below_the_hole() {
        assert_eq!(ram_regions(256 * MIB), vec![(GuestAddress(0), 256 * MIB)]);
        assert_eq!(ram_regions(3 * GIB), vec![(GuestAddress(0), 3 * GIB)]);
    }

    #[test]
    fn large_guest_skips_the_mmio_hole() {
        assert_eq!(
            ram_regions(5 * GIB),
            vec![(GuestAddress(0), 3 * GIB), (GuestAddress(4 * GIB), 2 * GIB)]
        );
    }

    #[test]
    fn memory_map_of_a_small_guest() {
        assert_eq!(
            memory_map(64 * MIB),
            vec![
                MemoryMapEntry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820_RAM
                },
                MemoryMapEntry {
                    addr: 0x9fc00,
                    size: 0x400,
                    kind: E820_RESERVED
                },
                MemoryMapEntry {
                    addr: 0x10_0000,
                    size: 63 * MIB,
                    kind: E820_RAM
                },
            ]
        );
    }

    #[test]
    fn memory_map_of_a_large_guest_has_ram_above_4g() {
        let map = memory_map(6 * GIB);
        assert_eq!(
            map[2],
            MemoryMapEntry {
                addr: MIB,
                size: 3 * GIB - MIB,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[3],
            MemoryMapEntry {
                addr: 4 * GIB,
                size: 3 * GIB,
                kind: E820_RAM
            }
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        // Everything but the MP table slot and the legacy window is usable.
        assert_eq!(ram, 6 * GIB - 0x400 - (HIMEM_START - EBDA_END));
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        assert!(matches!(
            create_guest_memory(1),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            create_guest_memory(MAX_MEM_MIB + 1),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn guest_memory_matches_the_layout() {
        let mem = create_guest_memory(32).unwrap();
        assert_eq!(mem.num_regions(), 1);
        let region = mem.iter().next().unwrap();
        assert_eq!(region.start_addr(), GuestAddress(0));
        assert_eq!(region.len(), 32 * MIB);
    }
}
