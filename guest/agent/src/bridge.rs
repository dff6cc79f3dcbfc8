//! `boxlite-agent vsock-connect PORT` and `boxlite-agent vsock-listen PORT`: one vsock stream
//! bridged to stdin and stdout, for scripts and tests inside the guest (busybox has no
//! `AF_VSOCK`). Data read from stdin goes to the peer (its end is a write shutdown); data from
//! the peer goes to stdout until the peer closes. After that, like `socat -t`, what stdin still
//! has ready is given [`WRITE_GRACE`] to reach the peer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use boxlite_proto::agent::HOST_CID;

use crate::error::AgentError;
use crate::vsock;

/// How long the stdin-to-peer copy may go on once the peer has closed its side.
pub const WRITE_GRACE: Duration = Duration::from_secs(1);

/// Which side opens the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Connect to the host's port.
    Connect,
    /// Wait for one connection from the host on a guest port.
    Listen,
}

fn open(side: Side, port: u32) -> Result<OwnedFd, AgentError> {
    match side {
        Side::Connect => vsock::connect(HOST_CID, port).map_err(AgentError::os(format!(
            "cannot connect to host vsock port {port}"
        ))),
        Side::Listen => {
            let listener = vsock::listen(port).map_err(AgentError::os(format!(
                "cannot listen on vsock port {port}"
            )))?;
            eprintln!("boxlite-agent: listening on vsock port {port}");
            vsock::accept(listener.as_fd()).map_err(AgentError::os(format!(
                "cannot accept on vsock port {port}"
            )))
        }
    }
}

/// Bridges the stream on `port` to stdin/stdout; returns once the peer has closed its side.
pub fn run(side: Side, port: u32) -> Result<(), AgentError> {
    let stream = File::from(open(side, port)?);
    let mut to_peer = stream
        .try_clone()
        .map_err(AgentError::os("cannot duplicate the vsock descriptor"))?;
    let (copied, stdin_done) = mpsc::channel();
    std::thread::spawn(move || {
        // Errors end the copy; the peer then sees our write side shut down either way.
        let _ = io::copy(&mut io::stdin().lock(), &mut to_peer);
        // SAFETY: shutdown on a descriptor this thread owns; it takes no memory.
        unsafe { libc::shutdown(to_peer.as_raw_fd(), libc::SHUT_WR) };
        let _ = copied.send(());
    });
    let mut from_peer = stream;
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from_peer
            .read(&mut buf)
            .map_err(AgentError::os("cannot read from the vsock stream"))?;
        if n == 0 {
            // The peer is done sending; let our side finish (an endless stdin is cut off).
            let _ = stdin_done.recv_timeout(WRITE_GRACE);
            return Ok(());
        }
        stdout
            .write_all(&buf[..n])
            .and_then(|()| stdout.flush())
            .map_err(AgentError::os("cannot write to stdout"))?;
    }
}
