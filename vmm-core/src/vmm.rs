//! A built VM and its lifetime: start the vCPU threads, run the event loop until something ends
//! the VM, then stop every vCPU before returning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::error::{Error, Result};
use crate::exit_monitor::{ExitMonitor, VmEnd};
use crate::vstate::vcpu::{StopReporter, Vcpu};
use crate::vstate::vm::Vm;
use boxlite_devices::legacy::boot_timer::BootTime;

/// The event loop's subscribers: the exit monitor now, devices later.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// How long the VMM waits for a kicked vCPU thread to leave KVM_RUN before giving up on it.
const VCPU_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Offset from SIGRTMIN of the signal that kicks vCPU threads out of KVM_RUN.
fn vcpu_kick_signal() -> i32 {
    SIGRTMIN()
}

/// Installs the kick handler once per process ([`crate::vstate::vcpu::kick`]): it makes
/// KVM_RUN return EINTR so the vCPU loop re-checks its stop flag.
fn install_kick_handler() -> Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result =
            register_signal_handler(vcpu_kick_signal(), crate::vstate::vcpu::kick).map_err(|e| {
                Error::Io {
                    what: "installing the vCPU kick signal handler",
                    source: std::io::Error::from_raw_os_error(e.errno()),
                }
            });
    });
    result
}

/// Asks a running VM to shut down, from any thread.
#[derive(Debug)]
pub struct ShutdownHandle(EventFd);

impl ShutdownHandle {
    /// Requests a shutdown; the VM ends with [`boxlite_proto::VmOutcome::HostShutdown`].
    pub fn request(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct VmExit {
    /// Outcome and details.
    pub end: VmEnd,
    /// The guest's boot-timer report, if it sent one.
    pub boot_time: Option<BootTime>,
}

/// A set-up step on one of the VM's threads.
pub type ThreadHook = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// Work the caller runs on the VM's own threads before they start (the shim installs its
/// seccomp filters here, each thread being the only one that can filter itself).
#[derive(Default, Clone)]
pub struct ThreadHooks {
    /// Runs first on each vCPU thread, before its first KVM_RUN; an error stops the VM.
    pub vcpu: Option<ThreadHook>,
    /// Runs on the calling thread once every vCPU thread exists (so they do not inherit what it
    /// installs), before the event loop; an error stops the VM.
    pub event_loop: Option<ThreadHook>,
}

/// A VM ready to run. Built by [`crate::builder::build_vm`].
pub struct Vmm {
    // Field order is drop order: vCPU fds before the VM fd, guest memory last.
    pub(crate) vcpus: Vec<Vcpu>,
    pub(crate) event_manager: EventManager<Subscriber>,
    pub(crate) monitor: Arc<Mutex<ExitMonitor>>,
    pub(crate) vcpu_stopped: EventFd,
    pub(crate) vcpu_reports: std::sync::mpsc::Sender<crate::vstate::vcpu::VcpuStopped>,
    pub(crate) shutdown: EventFd,
    pub(crate) boot_time: Arc<Mutex<Option<BootTime>>>,
    pub(crate) vm: Vm,
    pub(crate) memory: Arc<GuestMemoryMmap>,
}

impl Vmm {
    /// A handle that asks this VM to shut down.
    pub fn shutdown_handle(&self) -> Result<ShutdownHandle> {
        self.shutdown
            .try_clone()
            .map(ShutdownHandle)
            .map_err(Error::io("cloning the shutdown eventfd"))
    }

    /// Registers another event-loop subscriber (a device backend).
    pub fn add_subscriber(&mut self, subscriber: Subscriber) {
        self.event_manager.add_subscriber(subscriber);
    }

    /// The VM's KVM state.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Starts the vCPUs and runs until the VM ends, then stops every vCPU.
    pub fn run(self) -> Result<VmExit> {
        self.run_with(&ThreadHooks::default())
    }

    /// [`Vmm::run`], with `hooks` run on the vCPU threads and on this thread first.
    pub fn run_with(mut self, hooks: &ThreadHooks) -> Result<VmExit> {
        install_kick_handler()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(self.vcpus.len());
        // Each vCPU thread says when it is done, so stopping waits without polling.
        let (exited_tx, exited) = std::sync::mpsc::channel::<()>();
        for (index, vcpu) in self.vcpus.drain(..).enumerate() {
            let reporter = StopReporter {
                sender: self.vcpu_reports.clone(),
                event: self
                    .vcpu_stopped
                    .try_clone()
                    .map_err(Error::io("cloning the vCPU eventfd"))?,
            };
            let thread_stop = stop.clone();
            // The thread holds the guest memory so the mapping outlives its KVM_RUN calls.
            let memory = self.memory.clone();
            let hook = hooks.vcpu.clone();
            let exited_tx = exited_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    let _done = ExitNotice(exited_tx);
                    match hook.map_or(Ok(()), |hook| hook()) {
                        Ok(()) => vcpu.run(&thread_stop, &reporter),
                        Err(reason) => vcpu.refuse_to_run(&reporter, &reason),
                    }
                    drop(memory);
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    stop_vcpus(&stop, threads, &exited);
                    return Err(Error::Io {
                        what: "spawning a vCPU thread",
                        source: e,
                    });
                }
            }
        }

        if let Some(hook) = &hooks.event_loop {
            if let Err(reason) = hook() {
                stop_vcpus(&stop, threads, &exited);
                return Err(Error::ThreadSetup {
                    thread: "event loop".to_string(),
                    reason,
                });
            }
        }
        let end = loop {
            if let Some(end) = boxlite_proto::sync::lock(&self.monitor).end().cloned() {
                break end;
            }
            if let Err(e) = self.event_manager.run() {
                stop_vcpus(&stop, threads, &exited);
                return Err(Error::Io {
                    what: "waiting for VM events",
                    source: std::io::Error::other(format!("{e:?}")),
                });
            }
        };
        stop_vcpus(&stop, threads, &exited);
        let boot_time = *boxlite_proto::sync::lock(&self.boot_time);
        Ok(VmExit { end, boot_time })
    }
}

/// Tells the VMM, when dropped at the end of a vCPU thread, that the thread is done.
struct ExitNotice(std::sync::mpsc::Sender<()>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        // The receiver only goes when the VMM is done with the threads.
        let _ = self.0.send(());
    }
}

/// Sets the stop flag, kicks each vCPU thread once (the kick sets `immediate_exit`, so it
/// cannot be lost however close to KVM_RUN it lands) and waits for the threads to end.
fn stop_vcpus(stop: &AtomicBool, threads: Vec<JoinHandle<()>>, exited: &Receiver<()>) {
    stop.store(true, Ordering::Release);
    for thread in &threads {
        if !thread.is_finished() {
            if let Err(e) = thread.kill(vcpu_kick_signal()) {
                log::warn!("cannot signal {}: {e}", thread_name(thread));
            }
        }
    }
    // Every thread sends exactly one notice as it ends, whenever that was.
    let deadline = Instant::now() + VCPU_STOP_TIMEOUT;
    let mut ended = 0;
    while ended < threads.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if exited.recv_timeout(left).is_err() {
            break;
        }
        ended += 1;
    }
    let all_ended = ended == threads.len();
    for thread in threads {
        let name = thread_name(&thread);
        // After its notice a thread only returns: joining it does not wait.
        if !all_ended && !thread.is_finished() {
            log::error!("{name} did not leave KVM_RUN within {VCPU_STOP_TIMEOUT:?}; abandoning it");
        } else if thread.join().is_err() {
            log::error!("{name} panicked");
        }
    }
}

fn thread_name(thread: &JoinHandle<()>) -> String {
    thread.thread().name().unwrap_or("vcpu").to_string()
}
