//! SIGTERM/SIGINT become a clean VM shutdown. The signals are blocked in every thread (the mask
//! is set before any thread starts, so all inherit it) and one thread waits for them with
//! sigwait, which is free of async-signal-safety constraints.

use std::io;

use crate::seccomp::ThreadKind;

use boxlite_vmm_core::ShutdownHandle;

const SHUTDOWN_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

fn shutdown_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set we own; sigaddset adds valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in SHUTDOWN_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards.
pub fn block_shutdown_signals() -> io::Result<()> {
    let set = shutdown_set();
    // SAFETY: pthread_sigmask reads the valid set; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Starts the thread that turns the first SIGTERM/SIGINT into a shutdown request.
pub fn forward_to(handle: ShutdownHandle, confine: Option<ThreadKind>) -> io::Result<()> {
    crate::seccomp::spawn("signals", confine, move || loop {
        let set = shutdown_set();
        let mut signal: libc::c_int = 0;
        // SAFETY: sigwait reads the valid set and writes the signal number into our local.
        let rc = unsafe { libc::sigwait(&set, &mut signal) };
        if rc != 0 {
            log::error!("sigwait failed: {}", io::Error::from_raw_os_error(rc));
            return;
        }
        let name = if signal == libc::SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        log::info!("received {name}: shutting the VM down");
        if let Err(e) = handle.request() {
            log::error!("cannot request the VM shutdown: {e}");
        }
    })?;
    Ok(())
}
