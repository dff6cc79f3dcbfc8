//! Stopping a box: the agent's shutdown, then SIGTERM, then SIGKILL, each with its timeout.
//! Each wait polls for the shim's end; nothing sleeps for a fixed time.

use std::time::{Duration, Instant};

use boxlite_proto::BoxState;

use crate::boxes::BoxHandle;
use crate::error::Result;
use crate::pidfile::{self, Identity, PID_FILE};

impl BoxHandle {
    /// Stops the box: asks the guest agent to shut the guest down, then SIGTERM, then SIGKILL
    /// to the shim, each after its timeout ([`crate::Timeouts`]). A box that is not running is
    /// left as it is. Removes the box afterwards if it was created with `auto_remove`.
    pub fn stop(&self) -> Result<()> {
        self.stop_with(true)
    }

    /// Kills the box's shim at once (SIGKILL), without asking the guest.
    pub fn kill(&self) -> Result<()> {
        self.stop_with(false)
    }

    fn stop_with(&self, graceful: bool) -> Result<()> {
        let entry = self.rt.refresh(&self.id)?;
        if !entry.state.is_active() {
            return Ok(());
        }
        if entry.state != BoxState::Stopping {
            self.rt
                .set_state(&self.id, BoxState::Stopping, entry.pid, None, "stop")?;
        }
        let pid = pidfile::identity_at(&self.dir().file(PID_FILE)).pid();
        if let Some(pid) = pid {
            if graceful {
                self.shut_down(pid);
            } else {
                self.kill_and_wait(pid);
            }
        }
        // Settles the state from the exit file now that the shim is gone.
        self.rt.refresh(&self.id)?;
        let state = self.rt.entry(&self.id)?.state;
        if state == BoxState::Stopping {
            // No pid file at all (a start that never spawned): nothing runs.
            self.rt
                .set_state(&self.id, BoxState::Stopped, None, None, "finish stopping")?;
        }
        self.dir().remove_socket_link();
        if self.options().is_ok_and(|o| o.auto_remove) {
            self.rt.remove(&self.id, false)?;
        }
        Ok(())
    }

    /// The graceful sequence for the live shim `pid`.
    fn shut_down(&self, pid: u32) {
        let t = self.rt.inner.timeouts;
        match self.session().and_then(|s| s.shutdown()) {
            Ok(()) => {
                if self.wait_gone(t.guest_shutdown) {
                    return;
                }
                log::warn!(
                    "box {}: the guest did not power off within {:?}",
                    self.id,
                    t.guest_shutdown
                );
            }
            Err(e) => log::info!(
                "box {}: the agent did not take the shutdown ({e}); terminating",
                self.id
            ),
        }
        signal(pid, libc::SIGTERM);
        if self.wait_gone(t.terminate) {
            return;
        }
        log::warn!(
            "box {}: the VMM ignored SIGTERM for {:?}; killing it",
            self.id,
            t.terminate
        );
        self.kill_and_wait(pid);
    }

    /// SIGKILL to the shim `pid`, then waits for it to be gone.
    pub(crate) fn kill_and_wait(&self, pid: u32) {
        if pidfile::identity_at(&self.dir().file(PID_FILE)) != Identity::Absent {
            signal(pid, libc::SIGKILL);
        }
        if !self.wait_gone(self.rt.inner.timeouts.kill) {
            log::error!("box {}: the VMM (pid {pid}) survived SIGKILL", self.id);
        }
    }

    /// Polls until the shim named by the pid file is gone; `false` after `timeout`.
    fn wait_gone(&self, timeout: Duration) -> bool {
        let pid_file = self.dir().file(PID_FILE);
        let deadline = Instant::now() + timeout;
        let poll = self.rt.inner.timeouts.poll;
        loop {
            let reaped = !crate::runtime::lock(&self.rt.inner.reaping).contains(&self.id);
            if reaped && pidfile::identity_at(&pid_file) == Identity::Absent {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(poll);
        }
    }
}

/// Sends `signal` to the shim `pid` (whose identity was just verified).
fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid was checked against the
    // shim's start time just before.
    if unsafe { libc::kill(pid, signal) } != 0 {
        log::debug!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }
}
