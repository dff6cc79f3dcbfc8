//! Intel MultiProcessor Specification 1.4 table discovery and validation.

use crate::phys;

const FLOATING_SIG: u32 = u32::from_le_bytes(*b"_MP_");
const CONFIG_SIG: u32 = u32::from_le_bytes(*b"PCMP");
/// Size of the configuration table header; entries follow it.
const CONFIG_HEADER_LEN: u64 = 0x2c;

/// A validated MP configuration table.
pub struct MpTable {
    /// Physical address of the "PCMP" header.
    config: u64,
    /// Number of base-table entries (all checked to be in bounds and of a
    /// known type).
    entry_count: u16,
}

/// One base-table entry, reduced to what the probe uses.
pub enum Entry {
    Processor { apic_id: u8, enabled: bool },
    IoApic { addr: u32 },
    Other,
}

/// Find and validate the MP floating pointer and configuration table:
/// first KiB of the EBDA, last KiB of base memory, then the BIOS ROM area.
pub fn find() -> Result<MpTable, &'static str> {
    // BDA word at 0x40e: EBDA segment (0 when there is none, as with a VMM
    // that leaves low memory zeroed).
    let ebda = u64::from(phys::read::<u16>(0x40e)) << 4;
    let mut error = "no floating pointer";
    for (start, len) in [(ebda, 1024), (0x9fc00, 1024), (0xf0000, 0x10000)] {
        if start == 0 {
            continue;
        }
        let mut addr = start;
        while addr + 16 <= start + len {
            if phys::read::<u32>(addr) == FLOATING_SIG {
                match check_floating(addr) {
                    Ok(table) => return Ok(table),
                    // Keep scanning: a stray signature is not the table.
                    Err(e) => error = e,
                }
            }
            addr += 16;
        }
    }
    Err(error)
}

fn check_floating(fp: u64) -> Result<MpTable, &'static str> {
    // Length (offset 8) in 16-byte paragraphs; 1 for spec 1.4.
    let paragraphs = phys::read::<u8>(fp + 8);
    if paragraphs == 0 {
        return Err("floating pointer length 0");
    }
    if phys::checksum(fp, usize::from(paragraphs) * 16) != 0 {
        return Err("floating pointer checksum");
    }
    // Physical address of the configuration table (offset 4); 0 means one
    // of the spec's default configurations, which has no table to check.
    let config = u64::from(phys::read::<u32>(fp + 4));
    if config == 0 {
        return Err("no configuration table (default configuration)");
    }
    if !phys::ok(config, CONFIG_HEADER_LEN) {
        return Err("configuration table outside low 1 GiB");
    }
    if phys::read::<u32>(config) != CONFIG_SIG {
        return Err("configuration table signature");
    }
    let base_len = u64::from(phys::read::<u16>(config + 4));
    if base_len < CONFIG_HEADER_LEN || !phys::ok(config, base_len) {
        return Err("configuration table length");
    }
    if phys::checksum(config, base_len as usize) != 0 {
        return Err("configuration table checksum");
    }
    let entry_count = phys::read::<u16>(config + 0x22);
    // Walk the entries once so that iteration later cannot run off the table.
    let mut off = CONFIG_HEADER_LEN;
    for _ in 0..entry_count {
        if off >= base_len {
            return Err("entries overrun table");
        }
        let size = entry_size(phys::read::<u8>(config + off)).ok_or("unknown entry type")?;
        off += size;
        if off > base_len {
            return Err("entries overrun table");
        }
    }
    Ok(MpTable {
        config,
        entry_count,
    })
}

/// Size of a base-table entry by type: processor 20 bytes, bus / IOAPIC /
/// I/O interrupt / local interrupt 8 bytes.
fn entry_size(kind: u8) -> Option<u64> {
    match kind {
        0 => Some(20),
        1..=4 => Some(8),
        _ => None,
    }
}

impl MpTable {
    /// Iterate over the base-table entries.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut off = CONFIG_HEADER_LEN;
        (0..self.entry_count).map(move |_| {
            let e = self.config + off;
            let kind = phys::read::<u8>(e);
            // Validated in check_floating: every type is known.
            off += entry_size(kind).unwrap_or(8);
            match kind {
                // Processor: APIC id at 1, CPU flags at 3 (bit 0 = enabled).
                0 => Entry::Processor {
                    apic_id: phys::read::<u8>(e + 1),
                    enabled: phys::read::<u8>(e + 3) & 1 != 0,
                },
                // I/O APIC: address at 4.
                2 => Entry::IoApic {
                    addr: phys::read::<u32>(e + 4),
                },
                _ => Entry::Other,
            }
        })
    }

    /// Enabled processor entries.
    pub fn cpus(&self) -> usize {
        self.entries()
            .filter(|e| matches!(e, Entry::Processor { enabled: true, .. }))
            .count()
    }

    /// Address of the first I/O APIC entry.
    pub fn ioapic(&self) -> Option<u32> {
        self.entries().find_map(|e| match e {
            Entry::IoApic { addr } => Some(addr),
            _ => None,
        })
    }
}
