//! Child reaping for PID 1 (or a child subreaper).
//!
//! Orphans are re-parented to the agent and must be reaped, so one thread collects every exited
//! child with `waitpid(-1)` whenever `SIGCHLD` arrives. That would steal the exit status of the
//! agent's own commands from anyone waiting for them with `waitpid(pid)`, so nobody else waits:
//! commands are started through [`Reaper::spawn`], which registers each pid with a pipe, and the
//! reaper writes the raw wait status of a registered pid into its pipe. Statuses of unregistered
//! pids (orphans) are dropped.
//!
//! `std`'s `Command::spawn` itself waits for the child when `exec` fails. Spawning and reaping
//! take the same lock, so the reaper never runs while a spawn is in progress and cannot collect a
//! child that `std` is about to wait for; it also makes registering the new pid atomic with its
//! creation, so an exit that comes at once still finds its pipe.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use crate::sys;

/// Bytes of a raw wait status written into an exit pipe.
pub const STATUS_LEN: usize = 4;

/// Registry of the agent's commands, shared with the reaper thread.
#[derive(Debug, Default)]
pub struct Reaper {
    /// Pid of each running command → write end of its exit pipe.
    children: Mutex<HashMap<u32, OwnedFd>>,
}

impl Reaper {
    /// Starts the reaper thread. `SIGCHLD` must already be blocked in every thread
    /// ([`sys::block_sigchld`] before any thread exists).
    pub fn start() -> io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper::default());
        let worker = Arc::clone(&reaper);
        thread::Builder::new()
            .name("reaper".into())
            .spawn(move || loop {
                sys::wait_sigchld();
                worker.reap();
            })?;
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, OwnedFd>> {
        // The map stays consistent whatever a panicking holder was doing.
        boxlite_proto::sync::lock(&self.children)
    }

    /// Collects every exited child, handing the statuses of registered ones to their pipes.
    fn reap(&self) {
        let mut children = self.lock();
        while let Some((pid, status)) = sys::reap_one() {
            match children.remove(&pid) {
                Some(pipe) => {
                    // An empty pipe takes 4 bytes at once; a closed read end (the connection is
                    // gone) just discards them.
                    if let Err(e) = sys::write_all(pipe.as_fd(), &status.to_ne_bytes()) {
                        log::debug!("exit status of pid {pid} not delivered: {e}");
                    }
                }
                None => log::debug!("reaped orphan pid {pid} (wait status {status:#x})"),
            }
        }
    }

    /// Spawns `command` and registers it: returns the child and the read end of its exit pipe,
    /// which yields the [`STATUS_LEN`]-byte native-endian wait status once the child has exited.
    /// Never wait for the returned child yourself.
    pub fn spawn(&self, command: &mut Command) -> io::Result<(Child, OwnedFd)> {
        let (exit_read, exit_write) = sys::pipe()?;
        let mut children = self.lock();
        let child = command.spawn()?;
        children.insert(child.id(), exit_write);
        Ok((child, exit_read))
    }

    /// Pids of the commands still running.
    pub fn running(&self) -> Vec<u32> {
        self.lock().keys().copied().collect()
    }
}
