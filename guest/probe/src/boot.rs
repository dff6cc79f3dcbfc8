//! What the VMM handed the probe: the PVH `hvm_start_info` or the Linux
//! `boot_params` zero page. Only the fields the scenarios need.

use crate::phys;

/// `hvm_start_info.magic` ("xEn3" with bit 7 of the last byte set).
const PVH_MAGIC: u32 = 0x336e_c578;
/// Sanity caps, so garbage counts cannot make the probe loop for long.
const MAX_CMDLINE: usize = 4096;
const MAX_MEMMAP: u32 = 128;

/// The boot protocol the probe was entered through, with the physical
/// address of its boot structure.
#[derive(Clone, Copy)]
pub enum Boot {
    /// PVH: physical address of `struct hvm_start_info` (from %ebx).
    Pvh(u64),
    /// Linux 64-bit boot protocol: physical address of `struct boot_params` (from %rsi).
    Linux64(u64),
}

/// One memory map entry: `[start, end)` and its E820 type.
pub struct MemRange {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

impl Boot {
    pub fn name(self) -> &'static str {
        match self {
            Boot::Pvh(_) => "pvh",
            Boot::Linux64(_) => "linux64",
        }
    }

    /// Check that the boot structure is where the VMM said and looks right.
    pub fn validate(self) -> Result<(), &'static str> {
        match self {
            Boot::Pvh(si) => {
                if !phys::ok(si, 56) {
                    return Err("start_info pointer outside low 1 GiB");
                }
                if phys::read::<u32>(si) != PVH_MAGIC {
                    return Err("bad start_info magic");
                }
                Ok(())
            }
            Boot::Linux64(bp) => {
                if !phys::ok(bp, 4096) {
                    return Err("boot_params pointer outside low 1 GiB");
                }
                Ok(())
            }
        }
    }

    /// The kernel command line (without its NUL); empty when none was given.
    pub fn cmdline(self) -> Result<&'static [u8], &'static str> {
        let addr = match self {
            // hvm_start_info.cmdline_paddr (u64 at 24).
            Boot::Pvh(si) => phys::read::<u64>(si + 24),
            // hdr.cmd_line_ptr (u32 at 0x228) | ext_cmd_line_ptr (u32 at 0xc8) << 32.
            Boot::Linux64(bp) => {
                u64::from(phys::read::<u32>(bp + 0x228))
                    | u64::from(phys::read::<u32>(bp + 0xc8)) << 32
            }
        };
        if addr == 0 {
            return Ok(&[]);
        }
        if !phys::ok(addr, 1) {
            return Err("cmdline pointer outside low 1 GiB");
        }
        let max = MAX_CMDLINE.min((phys::MAPPED_END - addr) as usize);
        let window = phys::bytes(addr, max);
        match window.iter().position(|&b| b == 0) {
            Some(len) => Ok(&window[..len]),
            None => Err("cmdline not NUL-terminated within 4 KiB"),
        }
    }

    /// Call `f` for every memory map entry, in table order.
    pub fn memmap(self, mut f: impl FnMut(MemRange)) -> Result<(), &'static str> {
        match self {
            Boot::Pvh(si) => {
                // The memmap fields exist from start_info version 1 on.
                if phys::read::<u32>(si + 4) < 1 {
                    return Err("start_info version 0 has no memmap");
                }
                let table = phys::read::<u64>(si + 40);
                let count = phys::read::<u32>(si + 48);
                if count > MAX_MEMMAP {
                    return Err("memmap_entries too large");
                }
                // struct hvm_memmap_table_entry { u64 addr; u64 size; u32 type; u32 reserved; }
                if count > 0 && !phys::ok(table, u64::from(count) * 24) {
                    return Err("memmap_paddr outside low 1 GiB");
                }
                for i in 0..u64::from(count) {
                    let e = table + i * 24;
                    let start = phys::read::<u64>(e);
                    let size = phys::read::<u64>(e + 8);
                    let kind = phys::read::<u32>(e + 16);
                    f(MemRange {
                        start,
                        end: start.wrapping_add(size),
                        kind,
                    });
                }
                Ok(())
            }
            Boot::Linux64(bp) => {
                // e820_entries (u8 at 0x1e8); e820_table at 0x2d0 holds up to
                // 128 packed entries { u64 addr; u64 size; u32 type; }.
                let count = phys::read::<u8>(bp + 0x1e8);
                if u32::from(count) > MAX_MEMMAP {
                    return Err("e820_entries too large");
                }
                for i in 0..u64::from(count) {
                    let e = bp + 0x2d0 + i * 20;
                    let start = phys::read::<u64>(e);
                    let size = phys::read::<u64>(e + 8);
                    let kind = phys::read::<u32>(e + 16);
                    f(MemRange {
                        start,
                        end: start.wrapping_add(size),
                        kind,
                    });
                }
                Ok(())
            }
        }
    }
}
