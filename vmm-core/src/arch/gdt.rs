//! Boot GDT entries and the segment descriptors KVM needs alongside them.

use kvm_bindings::kvm_segment;

/// Access/flags word of a 64-bit code segment (present, DPL0, exec/read, L=1).
pub const CODE64: u16 = 0xa09b;
/// Access/flags word of a 32-bit flat code segment (present, DPL0, exec/read, D=1, G=1).
pub const CODE32: u16 = 0xc09b;
/// Access/flags word of a flat data segment (present, DPL0, read/write, D=1, G=1).
pub const DATA: u16 = 0xc093;
/// Access/flags word of a 64-bit TSS (present, busy).
pub const TSS: u16 = 0x808b;

/// Selector of the code segment (GDT index 1).
pub const CODE_SELECTOR: u16 = 1 << 3;
/// Selector of the data segment (GDT index 2).
pub const DATA_SELECTOR: u16 = 2 << 3;
/// Selector of the TSS (GDT index 3).
pub const TSS_SELECTOR: u16 = 3 << 3;

/// Packs a legacy segment descriptor from its flags word, base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The GDT for a boot with the given code segment flags: null, code, data, TSS.
pub fn boot_gdt(code_flags: u16) -> [u64; 4] {
    [
        gdt_entry(0, 0, 0),
        gdt_entry(code_flags, 0, 0xfffff),
        gdt_entry(DATA, 0, 0xfffff),
        gdt_entry(TSS, 0, 0xfffff),
    ]
}

/// Expands a GDT entry into the `kvm_segment` KVM wants in `sregs`, so the hidden part of each
/// segment register matches the table in guest memory.
pub fn kvm_segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let granular = (entry >> 55) & 1 == 1;
    // With G=1 the limit counts 4 KiB pages; KVM takes it in bytes.
    let limit = if granular {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base,
        limit,
        selector: u16::from(table_index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: granular as u8,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: if present == 1 { 0 } else { 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_descriptors_like_the_sdm_says() {
        assert_eq!(gdt_entry(CODE64, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(CODE32, 0, 0xfffff), 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(TSS, 0, 0xfffff), 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn kvm_segments_decode_their_descriptor() {
        let code = kvm_segment_from_gdt(gdt_entry(CODE64, 0, 0xfffff), 1);
        assert_eq!(
            (code.selector, code.type_, code.l, code.db, code.g),
            (8, 0xb, 1, 0, 1)
        );
        assert_eq!(
            (code.present, code.s, code.limit, code.base),
            (1, 1, 0xffff_ffff, 0)
        );
        let data = kvm_segment_from_gdt(gdt_entry(DATA, 0, 0xfffff), 2);
        assert_eq!(
            (data.selector, data.type_, data.db, data.unusable),
            (16, 3, 1, 0)
        );
        // Byte granularity (G=0): the limit is taken as is.
        let tss = kvm_segment_from_gdt(gdt_entry(0x008b, 0x1234_5678, 0x67), 3);
        assert_eq!(
            (tss.base, tss.limit, tss.g, tss.s),
            (0x1234_5678, 0x67, 0, 0)
        );
        // Page granularity (the boot TSS): limit in 4 KiB units.
        let tss = kvm_segment_from_gdt(gdt_entry(TSS, 0, 0xfffff), 3);
        assert_eq!((tss.limit, tss.g, tss.type_), (0xffff_ffff, 1, 0xb));
        let null = kvm_segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }
}
