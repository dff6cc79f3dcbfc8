//! virtio-vsock (socket device, type 19) with a Unix-socket backend speaking Firecracker's
//! protocol (virtio 1.2, section 5.10):
//!
//! - Host to guest: a host program connects to the Unix socket `<uds>` and sends
//!   `CONNECT <port>\n`; once the guest accepts, it receives `OK <host_port>\n` (host ports come
//!   from [2^30, 2^31)) and the stream carries the connection. If the guest refuses, the stream
//!   is closed.
//! - Guest to host: a guest connection to host port `P` is bridged to a Unix listener at
//!   `<uds>_P`; with no listener there, the guest gets `RST` (connection refused).
//!
//! Layout:
//! - `packet`: the 44-byte header and the checks on guest descriptor chains;
//! - `connection`: one connection's state machine and credit-based flow control;
//! - `txbuf`: the per-connection buffer of guest data the host stream could not take yet;
//! - `connect_line`: the `CONNECT <port>` handshake;
//! - `muxer`: routing, the Unix listener and streams (in its own epoll set), the RX schedule;
//! - `device` / `event_handler`: [`Vsock`], the [`VirtioDevice`](super::VirtioDevice) and its
//!   event-loop subscriber.
//!
//! Limits: [`MAX_CONNECTIONS`] host streams; [`CONN_BUF_SIZE`] of buffered guest data per
//! connection (the credit the device advertises), and 32 MiB across all connections (a guest
//! that pushes past either has its connection reset); [`MAX_PAYLOAD`] per packet.

mod connect_line;
mod connection;
mod device;
mod event_handler;
mod muxer;
mod packet;
mod txbuf;
mod unix_connect;

#[cfg(test)]
mod test_utils;
#[cfg(test)]
mod tests;

pub use connection::{CONN_BUF_SIZE, REQUEST_TIMEOUT, SHUTDOWN_TIMEOUT};
pub use device::Vsock;
pub use muxer::MAX_CONNECTIONS;
pub use packet::MAX_PAYLOAD;

/// The host's context ID: the source of every packet the device sends.
pub const HOST_CID: u64 = 2;

/// Why a vsock device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The guest CID is reserved (0, 1, 2, or `VMADDR_CID_ANY`) or does not fit 32 bits.
    #[error("guest CID {0} is reserved or out of range; pick one in 3..=4294967294")]
    InvalidCid(u64),
    /// The host Unix socket could not be created.
    #[error("cannot listen on {path}: {source}; remove a stale socket there, or shorten the path (sun_path holds 107 bytes)")]
    Bind {
        /// The socket path.
        path: String,
        /// The error from bind/listen.
        source: std::io::Error,
    },
}
