//! The shim's seccomp filters: one allow-list per kind of thread, installed by each thread on
//! itself before the guest runs (a filter binds only the thread that installs it and the
//! threads it creates afterwards). A system call outside the list kills the whole shim with
//! SIGSYS, which the runtime's crash report names as a seccomp kill.
//!
//! The lists are what the VMM does once the VM is built: guest memory, KVM and the devices'
//! files and sockets already exist, so no thread may create processes, change credentials,
//! mount, trace, load BPF, or open sockets other than Unix ones. What remains allowed and why
//! is in the README (`boxlite-shim`, "Seccomp").

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The kinds of thread, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread once the VM runs: the event loop and every device backend.
    EventLoop,
    /// A vCPU thread: KVM_RUN and the exits it handles (port and MMIO devices, the console).
    Vcpu,
    /// The signal and watchdog threads: waiting, logging, asking the guest agent to stop.
    Worker,
}

/// `ioctl` requests (argument 1) a thread kind may make.
const FIONBIO: u64 = 0x5421;
/// `_IO(KVMIO, 0x80)`.
const KVM_RUN: u64 = 0xae80;
/// `_IOR(KVMIO, 0x81, struct kvm_regs)`: where the guest was, for a KVM internal error.
const KVM_GET_REGS: u64 = ioc_read(0x81, std::mem::size_of::<kvm_bindings::kvm_regs>());

/// `_IOR(KVMIO, nr, size)` of the kernel's ioctl encoding.
const fn ioc_read(nr: u64, size: usize) -> u64 {
    const READ: u64 = 2;
    const KVMIO: u64 = 0xae;
    (READ << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}

/// What every thread does: memory, locks, time, signals, its own exit, and the file I/O of
/// logging, the console file (with its rotation) and the exit file.
const COMMON: &[i64] = &[
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    // The console's rotation and the exit file open and rename files by path (see the module
    // docs for this remaining gap).
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getpid,
    libc::SYS_gettid,
    // pthread_kill (the vCPU kick) and abort: glibc uses tgkill, musl tkill.
    libc::SYS_tgkill,
    libc::SYS_tkill,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The event loop beyond [`COMMON`]: epoll, the block devices' file I/O, the vsock device's
/// Unix sockets, timers.
const EVENT_LOOP: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_eventfd2,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    // The vsock listener's socket file, removed at teardown.
    libc::SYS_unlink,
];

/// The signal and watchdog threads beyond [`COMMON`].
const WORKER: &[i64] = &[
    libc::SYS_rt_sigtimedwait,
    libc::SYS_connect,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_setsockopt,
    libc::SYS_poll,
    // The watchdog's last resort: SIGKILL of its own process.
    libc::SYS_kill,
];

/// Builds the filter of `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let extra = match kind {
        ThreadKind::EventLoop => EVENT_LOOP,
        ThreadKind::Vcpu => &[],
        ThreadKind::Worker => WORKER,
    };
    for &syscall in COMMON.iter().chain(extra) {
        rules.insert(syscall, Vec::new());
    }
    let ioctls: &[u64] = match kind {
        ThreadKind::EventLoop => &[FIONBIO],
        ThreadKind::Vcpu => &[KVM_RUN, KVM_GET_REGS],
        ThreadKind::Worker => &[],
    };
    if !ioctls.is_empty() {
        rules.insert(
            libc::SYS_ioctl,
            ioctls
                .iter()
                .map(|&request| rule(1, SeccompCmpArgLen::Dword, request))
                .collect::<Result<_, _>>()?,
        );
    }
    if kind != ThreadKind::Vcpu {
        // Unix sockets only: the vsock bridge and the agent's shutdown request.
        let unix = u64::try_from(libc::AF_UNIX).map_err(|e| e.to_string())?;
        rules.insert(
            libc::SYS_socket,
            vec![rule(0, SeccompCmpArgLen::Dword, unix)?],
        );
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| format!("building the {kind:?} seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e| format!("compiling the {kind:?} seccomp filter: {e}"))
}

/// A rule that argument `index` equals `value`.
fn rule(index: u8, len: SeccompCmpArgLen, value: u64) -> Result<SeccompRule, String> {
    SeccompCondition::new(index, len, SeccompCmpOp::Eq, value)
        .and_then(|condition| SeccompRule::new(vec![condition]))
        .map_err(|e| format!("a seccomp rule on argument {index}: {e}"))
}

/// Installs the SIGSYS handler that reports a refused system call: it writes the call's number
/// to stderr, then lets SIGSYS kill the process (its default action), so the runtime sees a
/// seccomp kill and the crash report holds the line. Call it before any filter.
pub fn report_refused_calls() -> Result<(), String> {
    // SAFETY: a zeroed sigaction is valid; the handler only makes async-signal-safe calls.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: installs a handler for SIGSYS; `action` is a valid sigaction.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(format!(
            "cannot install the SIGSYS handler: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Where `siginfo_t` holds the refused call's number for SIGSYS (`si_syscall`, after the
/// three ints, the padding and `si_call_addr`).
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SIGSYS, whose `si_syscall` is an int at
    // SI_SYSCALL_OFFSET.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned()
    };
    let mut line = *b"boxlite-shim: seccomp refused system call          \n";
    let mut at = line.len() - 2;
    let mut rest = nr.unsigned_abs();
    loop {
        line[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 || at == 40 {
            break;
        }
        at -= 1;
    }
    // SAFETY: write, signal and raise are async-signal-safe and on every allow-list; the
    // raised SIGSYS, now with its default action, ends the process once the handler returns.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        libc::raise(libc::SIGSYS);
    }
}

/// Installs `kind`'s filter on the calling thread (and sets no_new_privs, which seccomp
/// requires of an unprivileged process).
pub fn confine(kind: ThreadKind) -> Result<(), String> {
    let program = filter(kind)?;
    seccompiler::apply_filter(&program)
        .map_err(|e| format!("installing the {kind:?} seccomp filter: {e}"))
}

/// Spawns thread `name`, confined as `kind` first when `confine` is set; returns once the
/// thread is confined, or the error that kept it from being (then the thread has ended
/// without running `body`).
pub fn spawn(
    name: &str,
    kind: Option<ThreadKind>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (confined, outcome) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = kind.map_or(Ok(()), confine);
            let ok = result.is_ok();
            // The spawner waits for this answer; it cannot have gone away.
            let _ = confined.send(result);
            if ok {
                body();
            }
        })?;
    match outcome.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => Err(std::io::Error::other(format!(
            "the {name} thread ended before it was confined"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles_and_kvm_ioctls_are_encoded_as_the_kernel_does() {
        for kind in [ThreadKind::EventLoop, ThreadKind::Vcpu, ThreadKind::Worker] {
            let program = filter(kind).unwrap();
            assert!(
                program.len() > COMMON.len(),
                "{kind:?}: {} instructions",
                program.len()
            );
        }
        // linux/kvm.h: KVM_GET_REGS is _IOR(KVMIO, 0x81, struct kvm_regs) = 0x8090ae81.
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
    }

    /// Runs `body` in a forked child confined as `kind`; returns the signal that killed it
    /// (0 when it exited normally with status 0).
    fn in_confined_child(kind: ThreadKind, body: fn()) -> i32 {
        let program = filter(kind).unwrap();
        // SAFETY: the child only makes raw system calls (no allocation, no locks), which is
        // what is allowed between fork and exit in a multithreaded parent.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = match seccompiler::apply_filter(&program) {
                Ok(()) => {
                    body();
                    0
                }
                Err(_) => 99,
            };
            // SAFETY: ends the forked child at once, without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we just forked, writing its status into our local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFSIGNALED(status) {
            libc::WTERMSIG(status)
        } else {
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "the child exited with an error"
            );
            0
        }
    }

    #[test]
    fn a_forbidden_system_call_kills_with_sigsys_and_an_allowed_one_does_not() {
        // SAFETY: a raw system call with integer arguments only.
        let allowed = in_confined_child(ThreadKind::Vcpu, || unsafe {
            libc::syscall(libc::SYS_getpid);
        });
        assert_eq!(allowed, 0, "getpid is on every list");
        // SAFETY: a raw system call with integer arguments only.
        let forbidden = in_confined_child(ThreadKind::Vcpu, || unsafe {
            libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0);
        });
        assert_eq!(
            forbidden,
            libc::SIGSYS,
            "a vCPU thread may not open sockets"
        );
        // SAFETY: a raw system call with integer arguments only.
        let inet = in_confined_child(ThreadKind::EventLoop, || unsafe {
            libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
        });
        assert_eq!(
            inet,
            libc::SIGSYS,
            "the event loop may open Unix sockets only"
        );
        // SAFETY: a raw system call with integer arguments only.
        let exec = in_confined_child(ThreadKind::Worker, || unsafe {
            libc::syscall(libc::SYS_execve, 0, 0, 0);
        });
        assert_eq!(exec, libc::SIGSYS, "no thread may run a program");
    }
}
