//! The KVM VM: capability checks, in-kernel irqchip and PIT, guest memory slots.

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{Error, Result};
use crate::layout::KVM_TSS_ADDRESS;

/// Capabilities boxlite cannot run without, with what each is for.
const REQUIRED_CAPS: [(Cap, &str); 7] = [
    (Cap::Irqchip, "in-kernel interrupt controller"),
    (Cap::UserMemory, "guest memory slots"),
    (Cap::SetTssAddr, "TSS placement"),
    (Cap::Pit2, "in-kernel PIT"),
    (Cap::Irqfd, "eventfd interrupts"),
    (Cap::Ioeventfd, "eventfd notifications"),
    (Cap::ImmediateExit, "stopping vCPUs promptly"),
];

/// A KVM VM with its irqchip set up.
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
}

impl Vm {
    /// Opens /dev/kvm, checks the capabilities we need and creates a VM with an in-kernel
    /// irqchip and PIT.
    pub fn new() -> Result<Vm> {
        let kvm = Kvm::new().map_err(|e| {
            Error::KvmUnavailable(format!(
                "cannot open /dev/kvm ({e}); check that KVM is enabled on this host and that this \
                 user may open /dev/kvm (usually: member of the 'kvm' group)"
            ))
        })?;
        for (cap, purpose) in REQUIRED_CAPS {
            if !kvm.check_extension(cap) {
                return Err(Error::KvmUnavailable(format!(
                    "the host's KVM lacks {cap:?} ({purpose}), which boxlite requires"
                )));
            }
        }
        let fd = kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?;
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(Error::kvm("KVM_SET_TSS_ADDR"))?;
        fd.create_irq_chip()
            .map_err(Error::kvm("KVM_CREATE_IRQCHIP"))?;
        // The PIT drives Linux's early timer calibration; its speaker port is a dummy.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(Error::kvm("KVM_CREATE_PIT2"))?;
        Ok(Vm { kvm, fd })
    }

    /// The VM file descriptor.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// CPUID leaves KVM can virtualise on this host; the base for each vCPU's CPUID.
    pub fn supported_cpuid(&self) -> Result<CpuId> {
        let mut cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        if self.kvm.check_extension(Cap::TscDeadlineTimer) {
            crate::arch::cpuid::advertise_tsc_deadline(&mut cpuid);
        }
        Ok(cpuid)
    }

    /// Size of each vCPU's shared `kvm_run` area.
    pub fn vcpu_mmap_size(&self) -> Result<usize> {
        self.kvm
            .get_vcpu_mmap_size()
            .map_err(Error::kvm("KVM_GET_VCPU_MMAP_SIZE"))
    }

    /// Registers every region of `mem` as a KVM memory slot.
    ///
    /// The caller must keep `mem` mapped for as long as any vCPU of this VM may run: the slots
    /// point at its host mappings.
    pub fn register_memory(&self, mem: &GuestMemoryMmap) -> Result<()> {
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| Error::GuestMemory(e.to_string()))?;
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region describes a live anonymous mapping owned by `mem`, exactly
            // `memory_size` bytes long; the Vmm keeps `mem` alive until every vCPU has stopped.
            unsafe { self.fd.set_user_memory_region(region) }
                .map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }
}
