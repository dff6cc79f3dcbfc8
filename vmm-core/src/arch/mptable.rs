//! The Intel MultiProcessor Specification 1.4 table: how a Linux guest without ACPI learns its
//! CPUs, its I/O APIC and how ISA interrupts are routed.
//!
//! Layout at [`MPTABLE_START`]: the 16-byte floating pointer structure, then the configuration
//! table header and its entries (processors, the ISA bus, the I/O APIC, one I/O interrupt entry
//! per I/O APIC pin, and the two local interrupt entries).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::layout::{EBDA_END, IOAPIC_ADDR, IOAPIC_PINS, LAPIC_ADDR, MAX_VCPUS, MPTABLE_START};

const SPEC_REV_1_4: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
/// Family 6 signature and the FPU + APIC feature bits, as firmware reports them.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const FLOATING_POINTER_LEN: usize = 16;
const CONFIG_HEADER_LEN: usize = 44;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// Builds the MP table bytes for `cpus` vCPUs, placed at `base`.
pub fn build(cpus: u8, base: u64) -> Result<Vec<u8>> {
    if cpus == 0 || cpus > MAX_VCPUS {
        return Err(Error::InvalidConfig(format!(
            "{cpus} vCPUs requested; the MP table supports 1..={MAX_VCPUS}"
        )));
    }
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    for cpu in 0..cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for pin in 0..IOAPIC_PINS {
        // Conforming polarity/trigger (flags 0): ISA defaults, edge-triggered active high.
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            pin,
            ioapic_id,
            pin,
        ]);
    }
    // LINT0 of every LAPIC is the 8259 ExtINT path, LINT1 is NMI (destination 0xff = all).
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    let entry_count = u16::from(cpus) + 2 + u16::from(IOAPIC_PINS) + 2;

    let table_len = CONFIG_HEADER_LEN + entries.len();
    let mut header = Vec::with_capacity(CONFIG_HEADER_LEN);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&(table_len as u16).to_le_bytes());
    header.push(SPEC_REV_1_4);
    header.push(0); // checksum, filled below
    header.extend_from_slice(b"BOXLITE ");
    header.extend_from_slice(b"MICROVM     ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&entry_count.to_le_bytes());
    header.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    header.extend_from_slice(&[0, 0]); // extended checksum, reserved
    debug_assert_eq!(header.len(), CONFIG_HEADER_LEN);

    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let config_addr = base + FLOATING_POINTER_LEN as u64;
    let mut out = Vec::with_capacity(FLOATING_POINTER_LEN + table.len());
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&(config_addr as u32).to_le_bytes());
    out.extend_from_slice(&[1, SPEC_REV_1_4, 0, 0, 0, 0, 0, 0]); // length in 16-byte units
    out[10] = checksum(&out);
    out.extend_from_slice(&table);
    Ok(out)
}

/// Writes the MP table for `cpus` vCPUs at [`MPTABLE_START`].
pub fn setup(mem: &GuestMemoryMmap, cpus: u8) -> Result<()> {
    let bytes = build(cpus, MPTABLE_START)?;
    if MPTABLE_START + bytes.len() as u64 > EBDA_END {
        return Err(Error::BootSetup {
            what: "MP table",
            reason: format!("{} bytes do not fit below {EBDA_END:#x}", bytes.len()),
        });
    }
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(|e| Error::BootSetup {
            what: "MP table",
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn floating_pointer_and_table_checksum_to_zero() {
        let bytes = build(2, MPTABLE_START).unwrap();
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(sum(&bytes[..16]), 0);
        let config = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as u64;
        assert_eq!(config, MPTABLE_START + 16);
        let table = &bytes[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(sum(table), 0);
    }

    #[test]
    fn describes_each_cpu_the_ioapic_and_every_pin() {
        let bytes = build(3, MPTABLE_START).unwrap();
        let table = &bytes[16..];
        let count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(count, 3 + 2 + 24 + 2);
        let lapic = u32::from_le_bytes(table[36..40].try_into().unwrap());
        assert_eq!(lapic, LAPIC_ADDR);
        // Walk the entries like a guest does.
        let mut at = CONFIG_HEADER_LEN;
        let (mut cpus, mut bsp, mut pins, mut ioapic) = (0, 0, 0, None);
        while at < table.len() {
            match table[at] {
                ENTRY_PROCESSOR => {
                    assert_eq!(table[at + 1], cpus);
                    if table[at + 3] & CPU_BOOTSTRAP != 0 {
                        bsp += 1;
                    }
                    cpus += 1;
                    at += 20;
                }
                ENTRY_IOAPIC => {
                    ioapic = Some(u32::from_le_bytes(
                        table[at + 4..at + 8].try_into().unwrap(),
                    ));
                    assert_eq!(table[at + 1], 3);
                    at += 8;
                }
                ENTRY_IO_INTERRUPT => {
                    assert_eq!(table[at + 5], table[at + 7], "ISA irq n goes to pin n");
                    pins += 1;
                    at += 8;
                }
                ENTRY_BUS | ENTRY_LOCAL_INTERRUPT => at += 8,
                other => panic!("unknown entry type {other}"),
            }
        }
        assert_eq!((cpus, bsp, pins, ioapic), (3, 1, 24, Some(IOAPIC_ADDR)));
    }

    #[test]
    fn largest_table_fits_its_slot_and_bad_counts_are_refused() {
        let bytes = build(MAX_VCPUS, MPTABLE_START).unwrap();
        assert!(MPTABLE_START + bytes.len() as u64 <= EBDA_END);
        assert!(build(0, MPTABLE_START).is_err());
        assert!(build(MAX_VCPUS + 1, MPTABLE_START).is_err());
    }
}
