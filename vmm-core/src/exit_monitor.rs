//! Decides how the VM ended: an event-manager subscriber watching the three things that can end
//! a VM — a vCPU stopping on its own, the guest's i8042 reset, and a shutdown request from the
//! host.

use std::os::fd::AsRawFd;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use boxlite_proto::VmOutcome;

use crate::vstate::vcpu::VcpuStopped;
use boxlite_devices::legacy::console::PanicWatch;

/// How the VM ended, with details for logs and crash reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEnd {
    /// The outcome.
    pub outcome: VmOutcome,
    /// What happened, in words.
    pub detail: String,
}

/// A guest that printed the kernel panic banner and then reset or triple-faulted has panicked.
pub fn refine_with_panic(end: VmEnd, panic_line: Option<String>) -> VmEnd {
    match (end.outcome, panic_line) {
        (VmOutcome::GuestReset | VmOutcome::TripleFault, Some(line)) => VmEnd {
            outcome: VmOutcome::GuestPanic,
            detail: format!("{line} (then: {})", end.detail),
        },
        (_, _) => end,
    }
}

/// The subscriber. `end` is set once; later events are ignored.
pub struct ExitMonitor {
    vcpu_stopped: EventFd,
    vcpu_reports: Receiver<VcpuStopped>,
    reset: EventFd,
    shutdown: EventFd,
    panic_watch: Arc<PanicWatch>,
    end: Option<VmEnd>,
}

impl ExitMonitor {
    /// Watches `vcpu_stopped` (with its report channel), `reset` and `shutdown`.
    pub fn new(
        vcpu_stopped: EventFd,
        vcpu_reports: Receiver<VcpuStopped>,
        reset: EventFd,
        shutdown: EventFd,
        panic_watch: Arc<PanicWatch>,
    ) -> ExitMonitor {
        ExitMonitor {
            vcpu_stopped,
            vcpu_reports,
            reset,
            shutdown,
            panic_watch,
            end: None,
        }
    }

    /// How the VM ended, once it has.
    pub fn end(&self) -> Option<&VmEnd> {
        self.end.as_ref()
    }

    fn conclude(&mut self, end: VmEnd) {
        if self.end.is_none() {
            let end = refine_with_panic(end, self.panic_watch.panic_line());
            log::info!("VM ended: {}: {}", end.outcome, end.detail);
            self.end = Some(end);
        }
    }

    fn drain(fd: &EventFd) {
        // The counter only says "something happened"; its value does not matter.
        let _ = fd.read();
    }
}

impl MutEventSubscriber for ExitMonitor {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.vcpu_stopped.as_raw_fd() {
            Self::drain(&self.vcpu_stopped);
            if let Ok(stopped) = self.vcpu_reports.try_recv() {
                self.conclude(VmEnd {
                    outcome: stopped.outcome,
                    detail: stopped.detail,
                });
            }
        } else if fd == self.reset.as_raw_fd() {
            Self::drain(&self.reset);
            self.conclude(VmEnd {
                outcome: VmOutcome::GuestReset,
                detail: "guest reset through the i8042 controller".to_string(),
            });
        } else if fd == self.shutdown.as_raw_fd() {
            Self::drain(&self.shutdown);
            self.conclude(VmEnd {
                outcome: VmOutcome::HostShutdown,
                detail: "the host requested a shutdown".to_string(),
            });
        } else {
            log::warn!("exit monitor: event on unknown fd {fd}; unregistering it");
            let _ = ops.remove(events);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in [&self.vcpu_stopped, &self.reset, &self.shutdown] {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                log::error!("exit monitor: cannot watch fd {}: {e:?}", fd.as_raw_fd());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_manager::{EventManager, SubscriberOps};
    use std::sync::mpsc::channel;
    use std::sync::Mutex;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    struct Fixture {
        manager: EventManager<Arc<Mutex<ExitMonitor>>>,
        monitor: Arc<Mutex<ExitMonitor>>,
        vcpu: EventFd,
        sender: std::sync::mpsc::Sender<VcpuStopped>,
        reset: EventFd,
        shutdown: EventFd,
    }

    fn fixture(panic_watch: Arc<PanicWatch>) -> Fixture {
        let fd = || EventFd::new(EFD_NONBLOCK).unwrap();
        let (vcpu, reset, shutdown) = (fd(), fd(), fd());
        let (sender, receiver) = channel();
        let monitor = Arc::new(Mutex::new(ExitMonitor::new(
            vcpu.try_clone().unwrap(),
            receiver,
            reset.try_clone().unwrap(),
            shutdown.try_clone().unwrap(),
            panic_watch,
        )));
        let mut manager = EventManager::new().unwrap();
        manager.add_subscriber(monitor.clone());
        Fixture {
            manager,
            monitor,
            vcpu,
            sender,
            reset,
            shutdown,
        }
    }

    #[test]
    fn i8042_reset_ends_the_vm_as_a_reset() {
        let mut f = fixture(Arc::default());
        f.reset.write(1).unwrap();
        f.manager.run_with_timeout(1000).unwrap();
        let end = f.monitor.lock().unwrap().end().cloned().unwrap();
        assert_eq!(end.outcome, VmOutcome::GuestReset);
    }

    #[test]
    fn host_shutdown_is_its_own_outcome_and_the_first_end_wins() {
        let mut f = fixture(Arc::default());
        f.shutdown.write(1).unwrap();
        f.manager.run_with_timeout(1000).unwrap();
        f.reset.write(1).unwrap();
        f.manager.run_with_timeout(1000).unwrap();
        assert_eq!(
            f.monitor.lock().unwrap().end().unwrap().outcome,
            VmOutcome::HostShutdown
        );
    }

    #[test]
    fn vcpu_reports_carry_their_outcome() {
        let mut f = fixture(Arc::default());
        f.sender
            .send(VcpuStopped {
                index: 1,
                outcome: VmOutcome::KvmInternalError,
                detail: "x".into(),
            })
            .unwrap();
        f.vcpu.write(1).unwrap();
        f.manager.run_with_timeout(1000).unwrap();
        let end = f.monitor.lock().unwrap().end().cloned().unwrap();
        assert_eq!(
            (end.outcome, end.detail.as_str()),
            (VmOutcome::KvmInternalError, "x")
        );
    }

    #[test]
    fn a_reset_after_the_panic_banner_is_a_panic() {
        let reset = VmEnd {
            outcome: VmOutcome::GuestReset,
            detail: "reset".into(),
        };
        let refined = refine_with_panic(
            reset.clone(),
            Some("Kernel panic - not syncing: boom".into()),
        );
        assert_eq!(refined.outcome, VmOutcome::GuestPanic);
        assert!(refined
            .detail
            .starts_with("Kernel panic - not syncing: boom"));
        let triple = VmEnd {
            outcome: VmOutcome::TripleFault,
            detail: "tf".into(),
        };
        assert_eq!(
            refine_with_panic(triple, Some("p".into())).outcome,
            VmOutcome::GuestPanic
        );
        let shutdown = VmEnd {
            outcome: VmOutcome::HostShutdown,
            detail: "s".into(),
        };
        assert_eq!(
            refine_with_panic(shutdown, Some("p".into())).outcome,
            VmOutcome::HostShutdown
        );
        assert_eq!(refine_with_panic(reset.clone(), None), reset);
    }
}
