//! vCPUs: configuration for a Linux guest, and the run loop that dispatches exits to the buses.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use kvm_bindings::{
    kvm_run, CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use boxlite_proto::VmOutcome;

use crate::arch::{cpuid, lapic, msr, regs};
use crate::error::{Error, Result};
use crate::vstate::vm::Vm;
use boxlite_devices::bus::Bus;

/// What a vCPU thread reports when it stops on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuStopped {
    /// Which vCPU.
    pub index: u8,
    /// How the VM should be considered ended.
    pub outcome: VmOutcome,
    /// Human-readable details (exit reason, registers, errno).
    pub detail: String,
}

/// A configured vCPU, ready to run on its own thread.
pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
}

/// Where a vCPU sends its stop report, and how it wakes the VMM's event loop.
pub struct StopReporter {
    /// The report channel.
    pub sender: Sender<VcpuStopped>,
    /// Signalled after each report.
    pub event: EventFd,
}

thread_local! {
    /// The `kvm_run` of the vCPU this thread runs (null elsewhere), for [`kick`].
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// Publishes this thread's `kvm_run` to [`kick`] while the vCPU runs; unpublishes it on drop,
/// before the vCPU's mapping goes.
struct KickTarget;

impl KickTarget {
    fn set(run: &mut kvm_run) -> KickTarget {
        KVM_RUN.with(|slot| slot.set(run));
        KickTarget
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        KVM_RUN.with(|slot| slot.set(std::ptr::null_mut()));
    }
}

/// The handler of the VMM's kick signal: sets `immediate_exit` on this thread's vCPU. A kick
/// that lands just before KVM_RUN then makes it return at once with EINTR instead of being
/// lost, so the VMM kicks each vCPU once and never polls.
pub(crate) extern "C" fn kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: a non-null pointer is this thread's live kvm_run mapping (KickTarget clears
        // it before the mapping is dropped), and only this thread writes immediate_exit.
        unsafe { (*run).immediate_exit = 1 };
    }
}

impl StopReporter {
    /// Sends `stopped` and wakes the event loop.
    fn report(&self, stopped: VcpuStopped) {
        let index = stopped.index;
        log::debug!(
            "vCPU {index} stopping: {}: {}",
            stopped.outcome,
            stopped.detail
        );
        // A send error means the VMM is already tearing down; nothing is left to tell.
        if self.sender.send(stopped).is_ok() {
            if let Err(e) = self.event.write(1) {
                log::error!("vCPU {index} cannot wake the event loop: {e}");
            }
        }
    }
}

/// What to do after an exit was handled.
enum Next {
    Continue,
    Stop(VmOutcome, String),
    InternalError,
}

impl Vcpu {
    /// Creates vCPU `index` of `vm`, dispatching port I/O to `pio` and MMIO to `mmio`.
    pub fn new(vm: &Vm, index: u8, pio: Arc<Bus>, mmio: Arc<Bus>) -> Result<Vcpu> {
        let fd = vm
            .fd()
            .create_vcpu(u64::from(index))
            .map_err(Error::kvm("KVM_CREATE_VCPU"))?;
        Ok(Vcpu {
            index,
            fd,
            pio,
            mmio,
        })
    }

    /// Sets CPUID, MSRs and LAPIC as a Linux guest on KVM expects, and, on the boot vCPU, the
    /// registers for `entry`. Application processors keep KVM's reset state: they wait for the
    /// INIT/SIPI sequence the guest sends them.
    pub fn configure(
        &self,
        base_cpuid: &CpuId,
        count: u8,
        mem: &GuestMemoryMmap,
        entry: regs::EntryPoint,
    ) -> Result<()> {
        let mut cpuid = base_cpuid.clone();
        cpuid::normalize(&mut cpuid, self.index, count);
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(Error::kvm("KVM_SET_CPUID2"))?;
        msr::set_boot_msrs(&self.fd)?;
        lapic::set_lint(&self.fd)?;
        if self.index == 0 {
            regs::setup_boot_registers(&self.fd, mem, entry)?;
        } else {
            regs::setup_fpu(&self.fd)?;
        }
        Ok(())
    }

    /// Runs the vCPU until the guest stops it, an error occurs, or `stop` is set (the VMM then
    /// kicks the thread once; its signal handler sets `immediate_exit`). A stop caused by the guest or an error is reported.
    pub fn run(mut self, stop: &AtomicBool, reporter: &StopReporter) {
        let index = self.index;
        let _kickable = KickTarget::set(self.fd.get_kvm_run());
        while !stop.load(Ordering::Acquire) {
            let mut interrupted = false;
            let next = match self.fd.run() {
                Ok(exit) => handle_exit(index, &self.pio, &self.mmio, exit),
                // EINTR: the VMM kicked us (or another signal arrived): re-check `stop`.
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    interrupted = true;
                    Next::Continue
                }
                Err(e) => Next::Stop(
                    VmOutcome::VmmError,
                    format!("KVM_RUN failed on vCPU {index}: {e}"),
                ),
            };
            if interrupted {
                // A kick may have set it (see `kick`); the next KVM_RUN must enter the guest.
                self.fd.set_kvm_immediate_exit(0);
            }
            let (outcome, detail) = match next {
                Next::Continue => continue,
                Next::Stop(outcome, detail) => (outcome, detail),
                Next::InternalError => (VmOutcome::KvmInternalError, self.internal_error_detail()),
            };
            reporter.report(VcpuStopped {
                index,
                outcome,
                detail,
            });
            return;
        }
    }

    /// Reports that this vCPU cannot run at all: its thread's set-up failed.
    pub fn refuse_to_run(self, reporter: &StopReporter, reason: &str) {
        reporter.report(VcpuStopped {
            index: self.index,
            outcome: VmOutcome::VmmError,
            detail: format!("setting up the vCPU {} thread: {reason}", self.index),
        });
    }

    /// Describes a KVM_EXIT_INTERNAL_ERROR: KVM's suberror code and data words, plus where the
    /// guest was.
    fn internal_error_detail(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: KVM filled the `internal` member of the exit union for KVM_EXIT_INTERNAL_ERROR,
        // which is the exit this vCPU just returned with.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let ndata = (internal.ndata as usize).min(internal.data.len());
        let data: Vec<String> = internal.data[..ndata]
            .iter()
            .map(|d| format!("{d:#x}"))
            .collect();
        let location = match self.fd.get_regs() {
            Ok(regs) => format!("rip {:#x}", regs.rip),
            Err(e) => format!("registers unavailable: {e}"),
        };
        format!(
            "KVM internal error on vCPU {}: suberror {} ({}), data [{}], {location}",
            self.index,
            internal.suberror,
            internal_suberror_name(internal.suberror),
            data.join(", ")
        )
    }
}

/// Dispatches one exit of vCPU `index`.
fn handle_exit(index: u8, pio: &Bus, mmio: &Bus, exit: VcpuExit<'_>) -> Next {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !pio.read(u64::from(port), data) {
                log::trace!("vCPU {}: read of unmapped port {port:#x}", index);
            }
            Next::Continue
        }
        VcpuExit::IoOut(port, data) => {
            if !pio.write(u64::from(port), data) {
                log::trace!("vCPU {}: write to unmapped port {port:#x}", index);
            }
            Next::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                log::debug!("vCPU {}: read of unmapped MMIO {addr:#x}", index);
            }
            Next::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !mmio.write(addr, data) {
                log::debug!("vCPU {}: write to unmapped MMIO {addr:#x}", index);
            }
            Next::Continue
        }
        VcpuExit::Shutdown => Next::Stop(
            VmOutcome::TripleFault,
            format!("vCPU {} triple-faulted (KVM shutdown exit)", index),
        ),
        VcpuExit::SystemEvent(kind, data) => system_event(index, kind, data),
        VcpuExit::InternalError => Next::InternalError,
        VcpuExit::FailEntry(reason, cpu) => Next::Stop(
            VmOutcome::KvmInternalError,
            format!(
                "VM entry failed on vCPU {} (hardware reason {reason:#x}, host cpu {cpu})",
                index
            ),
        ),
        other => Next::Stop(
            VmOutcome::KvmInternalError,
            format!("unexpected KVM exit on vCPU {}: {other:?}", index),
        ),
    }
}

fn system_event(index: u8, kind: u32, data: &[u64]) -> Next {
    let (outcome, what) = match kind {
        KVM_SYSTEM_EVENT_SHUTDOWN => (VmOutcome::GuestReset, "power-off"),
        KVM_SYSTEM_EVENT_RESET => (VmOutcome::GuestReset, "reset"),
        KVM_SYSTEM_EVENT_CRASH => (VmOutcome::GuestPanic, "crash"),
        _ => (VmOutcome::KvmInternalError, "unknown system event"),
    };
    Next::Stop(
        outcome,
        format!("vCPU {index}: guest {what} (KVM system event {kind}, data {data:x?})"),
    )
}

/// Names of KVM_INTERNAL_ERROR_* suberrors.
fn internal_suberror_name(code: u32) -> &'static str {
    match code {
        1 => "emulation failure",
        2 => "simultaneous exception",
        3 => "delivery event",
        4 => "unexpected exit reason",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(next: Next) -> (VmOutcome, String) {
        match next {
            Next::Stop(outcome, detail) => (outcome, detail),
            _ => panic!("expected a stop"),
        }
    }

    #[test]
    fn system_events_map_to_distinct_outcomes() {
        assert_eq!(
            stopped(system_event(0, KVM_SYSTEM_EVENT_RESET, &[])).0,
            VmOutcome::GuestReset
        );
        assert_eq!(
            stopped(system_event(0, KVM_SYSTEM_EVENT_SHUTDOWN, &[])).0,
            VmOutcome::GuestReset
        );
        assert_eq!(
            stopped(system_event(1, KVM_SYSTEM_EVENT_CRASH, &[7])).0,
            VmOutcome::GuestPanic
        );
        let (outcome, detail) = stopped(system_event(2, 99, &[]));
        assert_eq!(outcome, VmOutcome::KvmInternalError);
        assert!(
            detail.contains("vCPU 2") && detail.contains("99"),
            "{detail}"
        );
    }

    #[test]
    fn suberrors_are_named() {
        assert_eq!(internal_suberror_name(1), "emulation failure");
        assert_eq!(internal_suberror_name(42), "unknown");
    }
}
