//! KVM state: the VM file descriptor with its irqchip and memory, and the vCPUs.

pub mod vcpu;
pub mod vm;
