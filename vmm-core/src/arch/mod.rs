//! x86_64 specifics: CPUID, MSRs, LAPIC, segment/paging setup and the MP table.

pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod mptable;
pub mod msr;
pub mod regs;
