//! Per-vCPU CPUID, derived from what KVM supports on this host.
//!
//! KVM_GET_SUPPORTED_CPUID describes the host CPU as a whole; a guest needs it rewritten so each
//! vCPU reports its own APIC id and a topology consistent with the number of vCPUs (one socket,
//! one thread per core), knows it runs on a hypervisor, and does not see a PMU we do not
//! virtualise.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// Leaf 1 ECX bit 31: "running under a hypervisor".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 24: the local APIC timer has TSC-deadline mode.
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX bit 28: HTT, "more than one logical processor per package" fields are valid.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// CLFLUSH line size in 8-byte units, reported in leaf 1 EBX[15:8].
const CLFLUSH_LINE_QWORDS: u32 = 8;
/// Extended topology level types (leaf 0xb / 0x1f ECX[15:8]).
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits needed to number `count` cores (the APIC-id shift of the core level).
fn core_id_bits(count: u8) -> u32 {
    u32::from(count.max(1)).next_power_of_two().trailing_zeros()
}

/// Advertises the TSC-deadline timer in leaf 1, which KVM emulates (it says so through
/// `KVM_CAP_TSC_DEADLINE_TIMER`) but leaves out of `KVM_GET_SUPPORTED_CPUID`. Without it a Linux
/// guest calibrates its APIC timer against the PIT and runs the IO-APIC timer check: hundreds
/// of milliseconds of every boot.
pub fn advertise_tsc_deadline(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        if entry.function == 0x1 {
            entry.ecx |= LEAF1_ECX_TSC_DEADLINE;
        }
    }
}

/// Rewrites `cpuid` for vCPU `index` of a `count`-vCPU VM.
pub fn normalize(cpuid: &mut CpuId, index: u8, count: u8) {
    for entry in cpuid.as_mut_slice() {
        normalize_entry(entry, index, count);
    }
}

fn normalize_entry(entry: &mut kvm_cpuid_entry2, index: u8, count: u8) {
    let apic_id = u32::from(index);
    let count32 = u32::from(count.max(1));
    match entry.function {
        0x1 => {
            // EBX: [31:24] initial APIC id, [23:16] logical processors, [15:8] CLFLUSH size.
            entry.ebx = (apic_id << 24) | (count32 << 16) | (CLFLUSH_LINE_QWORDS << 8);
            entry.ecx |= LEAF1_ECX_HYPERVISOR;
            if count > 1 {
                entry.edx |= LEAF1_EDX_HTT;
            } else {
                entry.edx &= !LEAF1_EDX_HTT;
            }
        }
        0x4 => {
            // Deterministic cache parameters: EAX[31:26] = cores per package - 1, EAX[25:14] =
            // logical processors sharing this cache - 1. Caches up to L2 are private to a core;
            // the last level is shared by the whole package.
            let level = (entry.eax >> 5) & 0x7;
            let sharing = if level >= 3 { count32 - 1 } else { 0 };
            entry.eax = (entry.eax & 0x3fff) | ((count32 - 1) << 26) | (sharing << 14);
        }
        0x6 => {
            // No power-management features are emulated beyond what KVM handles; hide the
            // energy-performance hints that would have the guest poke MSRs we do not serve.
            entry.ecx &= !(1 << 3);
        }
        0xa => {
            // No virtual PMU: report architectural perfmon version 0.
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = 0;
            entry.edx = 0;
        }
        0xb | 0x1f => {
            // Extended topology: level 0 = SMT (one thread per core), level 1 = core.
            entry.edx = apic_id;
            match entry.index {
                0 => {
                    entry.eax = 0;
                    entry.ebx = 1;
                    entry.ecx = (LEVEL_TYPE_SMT << 8) | entry.index;
                }
                1 => {
                    entry.eax = core_id_bits(count);
                    entry.ebx = count32;
                    entry.ecx = (LEVEL_TYPE_CORE << 8) | entry.index;
                }
                _ => {
                    entry.eax = 0;
                    entry.ebx = 0;
                    entry.ecx = entry.index;
                }
            }
        }
        0x8000_0008 => {
            // AMD: ECX[7:0] = number of cores - 1, ECX[15:12] = APIC id bits for cores.
            entry.ecx = (entry.ecx & !0xf0ff) | (core_id_bits(count) << 12) | (count32 - 1);
        }
        0x8000_001e => {
            // AMD extended APIC id: one core per compute unit, one node.
            entry.eax = apic_id;
            entry.ebx = apic_id & 0xff;
            entry.ecx = 0;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn tsc_deadline_is_advertised_in_leaf_1_only() {
        let mut cpuid = CpuId::from_entries(&[entry(0, 0), entry(1, 0), entry(7, 0)]).unwrap();
        advertise_tsc_deadline(&mut cpuid);
        for e in cpuid.as_slice() {
            let set = e.ecx & LEAF1_ECX_TSC_DEADLINE != 0;
            assert_eq!(set, e.function == 1, "leaf {:#x}", e.function);
        }
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let mut e = entry(1, 0);
        e.ebx = 0xffff_ffff;
        normalize_entry(&mut e, 3, 4);
        assert_eq!(e.ebx >> 24, 3);
        assert_eq!((e.ebx >> 16) & 0xff, 4);
        assert_ne!(e.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(e.edx & LEAF1_EDX_HTT, 0);

        let mut single = entry(1, 0);
        single.edx = LEAF1_EDX_HTT;
        normalize_entry(&mut single, 0, 1);
        assert_eq!(single.edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn extended_topology_describes_one_thread_per_core() {
        let mut smt = entry(0xb, 0);
        let mut core = entry(0xb, 1);
        let mut end = entry(0xb, 2);
        for e in [&mut smt, &mut core, &mut end] {
            normalize_entry(e, 2, 3);
        }
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 2));
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 3, 0x201, 2));
        assert_eq!((end.ebx, end.ecx), (0, 2));
    }

    #[test]
    fn pmu_is_hidden_and_amd_core_count_set() {
        let mut pmu = entry(0xa, 0);
        pmu.eax = 0x0803_0804;
        normalize_entry(&mut pmu, 0, 2);
        assert_eq!(pmu.eax, 0);
        let mut amd = entry(0x8000_0008, 0);
        amd.ecx = 0xffff_ffff;
        normalize_entry(&mut amd, 0, 8);
        assert_eq!(amd.ecx & 0xff, 7);
        assert_eq!((amd.ecx >> 12) & 0xf, 3);
    }

    #[test]
    fn cache_sharing_follows_level() {
        let mut l1 = entry(4, 0);
        l1.eax = 1 << 5 | 0x1;
        let mut l3 = entry(4, 3);
        l3.eax = 3 << 5 | 0x3;
        normalize_entry(&mut l1, 0, 4);
        normalize_entry(&mut l3, 0, 4);
        assert_eq!((l1.eax >> 26, (l1.eax >> 14) & 0xfff), (3, 0));
        assert_eq!((l3.eax >> 26, (l3.eax >> 14) & 0xfff), (3, 3));
        assert_eq!(l3.eax & 0x3fff, 3 << 5 | 0x3);
    }

    #[test]
    fn core_bits() {
        assert_eq!([1, 2, 3, 4, 5, 32].map(core_id_bits), [0, 1, 2, 2, 3, 5]);
    }
}
