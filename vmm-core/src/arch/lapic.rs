//! Local APIC setup: LINT0 as ExtINT (the legacy PIC path) and LINT1 as NMI, as on a PC.

use kvm_bindings::kvm_lapic_state;
use kvm_ioctls::VcpuFd;

use crate::error::{Error, Result};

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn get_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| state.regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

fn set_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        state.regs[offset + i] = byte as _;
    }
}

/// Replaces the delivery-mode field (bits 8..=10) of an LVT entry.
fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Programs LINT0/LINT1 of a vCPU's in-kernel LAPIC.
pub fn set_lint(vcpu: &VcpuFd) -> Result<()> {
    let mut state = vcpu.get_lapic().map_err(Error::kvm("KVM_GET_LAPIC"))?;
    let lvt0 = get_reg(&state, APIC_LVT0);
    set_reg(
        &mut state,
        APIC_LVT0,
        with_delivery_mode(lvt0, APIC_MODE_EXTINT),
    );
    let lvt1 = get_reg(&state, APIC_LVT1);
    set_reg(
        &mut state,
        APIC_LVT1,
        with_delivery_mode(lvt1, APIC_MODE_NMI),
    );
    vcpu.set_lapic(&state).map_err(Error::kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_replaces_only_its_bits() {
        assert_eq!(
            with_delivery_mode(0x0001_0000, APIC_MODE_EXTINT),
            0x0001_0700
        );
        assert_eq!(with_delivery_mode(0x0001_07ff, APIC_MODE_NMI), 0x0001_04ff);
    }

    #[test]
    fn registers_are_little_endian_words() {
        let mut state = kvm_lapic_state::default();
        set_reg(&mut state, APIC_LVT1, 0x1234_5678);
        assert_eq!(get_reg(&state, APIC_LVT1), 0x1234_5678);
        assert_eq!(state.regs[APIC_LVT1] as u8, 0x78);
    }
}
