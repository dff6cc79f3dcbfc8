//! One vsock stream connection between a guest socket and a host Unix stream: the protocol
//! state machine and the credit-based flow control (virtio 1.2, section 5.10.6.3).
//!
//! Credit, in both directions: each side advertises `buf_alloc` (its receive buffer) and
//! `fwd_cnt` (bytes it has consumed) in every packet; a sender may have at most
//! `buf_alloc - (sent - fwd_cnt)` bytes outstanding.
//! - Host to guest: [`Connection::recv_pkt`] never reads more from the host stream than the
//!   guest's current credit, and asks for credit (`CREDIT_REQUEST`) when it has none.
//! - Guest to host: the device advertises [`CONN_BUF_SIZE`]; guest data the host stream cannot
//!   take yet waits in a [`TxBuf`] of that size, and `fwd_cnt` only counts bytes the host
//!   stream accepted. A guest that overruns its credit gets its connection reset.
//!
//! Closing: a host stream that reaches end-of-file becomes `SHUTDOWN(SEND)` towards the guest
//! (`SHUTDOWN(RCV|SEND)` once the host closed the stream entirely); a guest `SHUTDOWN(SEND)`
//! shuts down the writing side of the host stream once the buffered data is out; a guest
//! `SHUTDOWN(RCV|SEND)` ends the connection with an `RST` once the buffered data is out.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::num::Wrapping;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::{debug, warn};
use vmm_sys_util::epoll::EventSet;

use super::packet::{
    PacketHeader, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::txbuf::{TxBudget, TxBuf};
use super::HOST_CID;

/// The receive buffer the device advertises (`buf_alloc`) for each connection; also the most
/// guest data one connection buffers while its host stream is not reading.
pub const CONN_BUF_SIZE: u32 = 256 * 1024;

/// Once the host stream has taken this many bytes more than the guest has been told about,
/// the device sends an unsolicited `CREDIT_UPDATE` (Linux never asks for credit).
const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_SIZE / 2;

/// How long the guest has to answer a host-initiated `REQUEST`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection may take (to drain guest data into a slow host stream, or
/// for the guest to acknowledge a full shutdown with `RST`) before it is reset.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Identifies a connection: the host-side (local) and guest-side (peer) ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Host port: `P` for a guest connection to `<uds>_P`, an allocated port in [2^30, 2^31)
    /// for a host-initiated one.
    pub local_port: u32,
    /// Guest port.
    pub peer_port: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Host-initiated: the `REQUEST` is queued or sent; waiting for the guest's `RESPONSE`.
    HostInit,
    /// Guest-initiated: the host stream is connected, our `RESPONSE` not yet delivered.
    GuestInit,
    /// Data flows (possibly half-closed).
    Established,
    /// An `RST` is queued; the connection is gone once it is delivered.
    Reset,
}

/// What the connection has to tell the guest, highest priority first.
#[derive(Debug, Default)]
struct Pending {
    rst: bool,
    response: bool,
    request: bool,
    /// The host stream may have data (or end-of-file) to read.
    rw: bool,
    /// `SHUTDOWN` flags to send.
    shutdown: u32,
    credit_update: bool,
}

/// A vsock stream connection bridged to a host Unix stream (non-blocking).
#[derive(Debug)]
pub struct Connection {
    key: ConnKey,
    guest_cid: u64,
    stream: UnixStream,
    phase: Phase,
    pending: Pending,
    tx_buf: TxBuf,
    /// Guest bytes the host stream has accepted.
    fwd_cnt: Wrapping<u32>,
    /// `fwd_cnt` as last sent to the guest.
    fwd_cnt_sent: Wrapping<u32>,
    /// The guest's receive buffer for this connection.
    peer_buf_alloc: u32,
    /// Bytes the guest has consumed from it.
    peer_fwd_cnt: Wrapping<u32>,
    /// Bytes sent to the guest.
    rx_cnt: Wrapping<u32>,
    /// `SHUTDOWN` flags received from the guest.
    guest_shutdown: u32,
    /// `SHUTDOWN` flags sent (or queued) to the guest.
    shutdown_sent: u32,
    /// The host stream reached end-of-file.
    host_eof: bool,
    /// The host closed its stream entirely (EPOLLHUP).
    host_hup: bool,
    /// We shut down the writing side of the host stream.
    host_write_shut: bool,
    /// When the connection is reset unless it progressed.
    deadline: Option<Instant>,
    /// How long a shutdown may wait for the peer's RST ([`SHUTDOWN_TIMEOUT`]).
    shutdown_timeout: Duration,
}

impl Connection {
    /// A host-initiated connection to guest port `key.peer_port`: queues a `REQUEST`.
    pub fn new_host_initiated(
        stream: UnixStream,
        key: ConnKey,
        guest_cid: u64,
        budget: TxBudget,
    ) -> Connection {
        let mut conn = Connection::new(stream, key, guest_cid, Phase::HostInit, budget);
        conn.pending.request = true;
        conn
    }

    /// A guest-initiated connection, already connected to its host listener: queues the
    /// `RESPONSE`. `request` is the guest's `REQUEST` (it carries the guest's credit). Both
    /// constructors take the device's shared [`TxBudget`] for buffered guest data.
    pub fn new_guest_initiated(
        stream: UnixStream,
        key: ConnKey,
        guest_cid: u64,
        request: &PacketHeader,
        budget: TxBudget,
    ) -> Connection {
        let mut conn = Connection::new(stream, key, guest_cid, Phase::GuestInit, budget);
        conn.peer_buf_alloc = request.buf_alloc;
        conn.peer_fwd_cnt = Wrapping(request.fwd_cnt);
        conn.pending.response = true;
        conn
    }

    fn new(
        stream: UnixStream,
        key: ConnKey,
        guest_cid: u64,
        phase: Phase,
        budget: TxBudget,
    ) -> Connection {
        Connection {
            key,
            guest_cid,
            stream,
            phase,
            pending: Pending::default(),
            tx_buf: TxBuf::new(CONN_BUF_SIZE as usize, budget),
            fwd_cnt: Wrapping(0),
            fwd_cnt_sent: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            guest_shutdown: 0,
            shutdown_sent: 0,
            host_eof: false,
            host_hup: false,
            host_write_shut: false,
            deadline: None,
            shutdown_timeout: SHUTDOWN_TIMEOUT,
        }
    }

    /// Replaces [`SHUTDOWN_TIMEOUT`] for this connection (tests reach the deadline with it).
    pub(crate) fn set_shutdown_timeout(&mut self, timeout: Duration) {
        self.shutdown_timeout = timeout;
    }

    /// The connection's ports.
    pub fn key(&self) -> ConnKey {
        self.key
    }

    /// When the connection must be reset (see [`expire`](Self::expire)), if it is waiting on
    /// something.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the guest has heard of this connection (a host-initiated one is unknown to it
    /// until its `REQUEST` is delivered).
    pub fn guest_knows(&self) -> bool {
        !(self.phase == Phase::HostInit && self.pending.request)
    }

    /// Whether the connection has a packet for the guest.
    pub fn has_pending_rx(&self) -> bool {
        let p = &self.pending;
        p.rst || p.response || p.request || p.rw || p.shutdown != 0 || p.credit_update
    }

    /// The host-stream events the connection wants: `None` when the stream must not be
    /// polled at all (the connection is resetting, or the host hung up, which epoll would
    /// report over and over). An empty set still gets hang-ups and errors.
    pub fn interest(&self) -> Option<EventSet> {
        if self.phase == Phase::Reset || self.host_hup {
            return None;
        }
        let mut set = EventSet::empty();
        if !self.tx_buf.is_empty() {
            set |= EventSet::OUT;
        }
        let may_read = matches!(self.phase, Phase::GuestInit | Phase::Established)
            && !self.host_eof
            && self.guest_shutdown & SHUTDOWN_RCV == 0;
        // Not while a read is already pending (the data waits for a guest RX buffer), nor
        // without credit (it waits for the guest): level-triggered IN would spin.
        if may_read && !self.pending.rw && self.peer_credit() > 0 {
            set |= EventSet::IN;
        }
        Some(set)
    }

    /// Resets the connection: an `RST` goes to the guest next, and buffered guest data is
    /// dropped.
    pub fn reset(&mut self) {
        self.phase = Phase::Reset;
        self.pending = Pending {
            rst: true,
            ..Pending::default()
        };
        self.tx_buf.clear();
        self.deadline = None;
    }

    /// Resets the connection if its deadline has passed; returns whether it did.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.deadline.is_some_and(|d| d <= now) {
            warn!("vsock: connection {:?} timed out, resetting it", self.key);
            self.reset();
            return true;
        }
        false
    }

    fn header(&self, op: u16) -> PacketHeader {
        PacketHeader {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.key.local_port,
            dst_port: self.key.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: CONN_BUF_SIZE,
            fwd_cnt: self.fwd_cnt.0,
        }
    }

    /// Bytes the guest can take right now.
    fn peer_credit(&self) -> u32 {
        // A guest that reports more consumed than sent gets a huge `in_flight`, hence no credit.
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Produces the next packet for the guest, its payload (if any) read into `buf`, at most
    /// `buf.len()` bytes. An `RST` means the connection is finished: drop it.
    pub fn recv_pkt(&mut self, buf: &mut [u8]) -> Option<PacketHeader> {
        let header = self.next_packet(buf)?;
        // Every packet carries our credit, so no separate update is due after it.
        self.fwd_cnt_sent = self.fwd_cnt;
        self.pending.credit_update = false;
        Some(header)
    }

    fn next_packet(&mut self, buf: &mut [u8]) -> Option<PacketHeader> {
        if let Some(rst) = self.take_rst() {
            return Some(rst);
        }
        if self.pending.response {
            self.pending.response = false;
            self.phase = Phase::Established;
            return Some(self.header(OP_RESPONSE));
        }
        if self.pending.request {
            self.pending.request = false;
            self.deadline = Some(Instant::now() + REQUEST_TIMEOUT);
            return Some(self.header(OP_REQUEST));
        }
        if self.pending.rw {
            self.pending.rw = false;
            if let Some(header) = self.read_host(buf) {
                return Some(header);
            }
            if let Some(rst) = self.take_rst() {
                return Some(rst);
            }
        }
        if self.pending.shutdown != 0 {
            let mut header = self.header(OP_SHUTDOWN);
            header.flags = std::mem::take(&mut self.pending.shutdown);
            return Some(header);
        }
        if self.pending.credit_update {
            return Some(self.header(OP_CREDIT_UPDATE));
        }
        None
    }

    fn take_rst(&mut self) -> Option<PacketHeader> {
        if !self.pending.rst {
            return None;
        }
        self.pending = Pending::default();
        Some(self.header(OP_RST))
    }

    /// Reads host data for an `RW` packet, within the guest's credit.
    fn read_host(&mut self, buf: &mut [u8]) -> Option<PacketHeader> {
        if self.phase != Phase::Established
            || self.host_eof
            || self.guest_shutdown & SHUTDOWN_RCV != 0
        {
            return None;
        }
        let credit = self.peer_credit();
        if credit == 0 {
            // IN stays off until the guest's next packet brings credit.
            return Some(self.header(OP_CREDIT_REQUEST));
        }
        let max = buf.len().min(credit as usize);
        if max == 0 {
            // A header-only RX buffer: keep the data for a bigger one.
            self.pending.rw = true;
            return None;
        }
        match self.stream.read(&mut buf[..max]) {
            Ok(0) => {
                self.host_eof = true;
                self.queue_host_shutdown();
                None
            }
            Ok(n) => {
                // n <= credit <= u32::MAX.
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                self.rx_cnt += Wrapping(n);
                self.pending.rw = true;
                let mut header = self.header(OP_RW);
                header.len = n;
                Some(header)
            }
            // Interrupted: IN stays armed, so epoll reports the data again.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => None,
            Err(e) => {
                warn!("vsock: reading host stream of {:?} failed: {e}", self.key);
                self.reset();
                None
            }
        }
    }

    /// Tells the guest the host will send no more (and receive no more once it hung up).
    fn queue_host_shutdown(&mut self) {
        let mut flags = SHUTDOWN_SEND;
        if self.host_hup {
            flags |= SHUTDOWN_RCV;
            // The guest answers a full shutdown with RST; don't wait forever.
            self.deadline = Some(Instant::now() + self.shutdown_timeout);
        }
        let new = flags & !self.shutdown_sent;
        self.shutdown_sent |= new;
        self.pending.shutdown |= new;
    }

    /// Handles events on the host stream.
    pub fn notify(&mut self, events: EventSet) {
        if self.phase == Phase::Reset {
            return;
        }
        if events.contains(EventSet::ERROR) {
            warn!("vsock: host stream of {:?} reported an error", self.key);
            self.reset();
            return;
        }
        if events.contains(EventSet::HANG_UP) {
            self.host_hanged_up();
            return;
        }
        if events.contains(EventSet::IN) {
            self.pending.rw = true;
        }
        if events.contains(EventSet::OUT) && !self.tx_buf.is_empty() {
            match self.tx_buf.flush_to(&mut self.stream) {
                Ok(n) => {
                    // A flush is at most the buffer (CONN_BUF_SIZE), far below u32::MAX.
                    self.fwd_cnt += Wrapping(u32::try_from(n).unwrap_or(u32::MAX));
                    self.after_forward();
                }
                Err(e) => {
                    warn!("vsock: writing host stream of {:?} failed: {e}", self.key);
                    self.reset();
                }
            }
        }
    }

    /// The host closed its stream entirely.
    fn host_hanged_up(&mut self) {
        if self.phase == Phase::HostInit {
            debug!(
                "vsock: host left {:?} before the guest accepted it",
                self.key
            );
            self.reset();
            return;
        }
        self.host_hup = true;
        // Guest data can no longer be delivered.
        self.tx_buf.clear();
        if !self.host_eof && self.guest_shutdown & SHUTDOWN_RCV == 0 {
            // Deliver what is left; end-of-file then becomes SHUTDOWN(RCV|SEND).
            self.pending.rw = true;
        } else {
            self.host_eof = true;
            self.queue_host_shutdown();
        }
    }

    /// Handles a packet from the guest addressed to this connection (anything but `RST` and
    /// `REQUEST`, which the muxer handles).
    pub fn send_pkt(&mut self, header: &PacketHeader, payload: &[u8]) {
        if self.phase == Phase::Reset {
            return;
        }
        self.peer_buf_alloc = header.buf_alloc;
        self.peer_fwd_cnt = Wrapping(header.fwd_cnt);
        if self.host_hup && !self.host_eof {
            // No IN events after a hang-up: new credit is the cue to read on.
            self.pending.rw = true;
        }
        match (header.op, self.phase) {
            (OP_RW, Phase::Established) => self.forward(payload),
            (OP_RESPONSE, Phase::HostInit) => self.accept_response(),
            (OP_SHUTDOWN, Phase::Established) => {
                self.guest_shutdown |= header.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                self.after_forward();
                if self.guest_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND && !self.tx_buf.is_empty() {
                    self.deadline = Some(Instant::now() + self.shutdown_timeout);
                }
            }
            (OP_CREDIT_UPDATE, _) => {}
            (OP_CREDIT_REQUEST, _) => self.pending.credit_update = true,
            (op, phase) => {
                debug!("vsock: dropping op {op} for {:?} in {phase:?}", self.key);
            }
        }
    }

    fn accept_response(&mut self) {
        self.phase = Phase::Established;
        self.deadline = None;
        // The stream is fresh (nothing written yet), so this short line fits its buffer.
        let line = format!("OK {}\n", self.key.local_port);
        if let Err(e) = self.stream.write_all(line.as_bytes()) {
            warn!("vsock: cannot confirm {:?} to the host: {e}", self.key);
            self.reset();
        }
    }

    /// Sends guest data to the host stream, buffering what it cannot take now.
    fn forward(&mut self, payload: &[u8]) {
        if self.guest_shutdown & SHUTDOWN_SEND != 0 {
            debug!(
                "vsock: dropping data sent after SHUTDOWN(SEND) on {:?}",
                self.key
            );
            return;
        }
        if payload.is_empty() {
            return;
        }
        let mut written = 0;
        if self.tx_buf.is_empty() {
            match self.stream.write(payload) {
                Ok(n) => written = n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => {
                    warn!("vsock: writing host stream of {:?} failed: {e}", self.key);
                    self.reset();
                    return;
                }
            }
        }
        // written <= payload.len() <= MAX_PAYLOAD.
        self.fwd_cnt += Wrapping(u32::try_from(written).unwrap_or(u32::MAX));
        if self.tx_buf.push(&payload[written..]).is_err() {
            warn!(
                "vsock: guest overran its credit on {:?} ({} bytes buffered), resetting",
                self.key,
                self.tx_buf.len()
            );
            self.reset();
            return;
        }
        self.after_forward();
    }

    /// After guest data moved (or a guest shutdown): finish closing, or refresh credit.
    fn after_forward(&mut self) {
        if !self.tx_buf.is_empty() {
            if self.credit_update_due() {
                self.pending.credit_update = true;
            }
            return;
        }
        if self.guest_shutdown & SHUTDOWN_SEND != 0 && !self.host_write_shut {
            self.host_write_shut = true;
            if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                debug!("vsock: shutting down host stream of {:?}: {e}", self.key);
            }
        }
        if self.guest_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND {
            // The guest closed and all its data is out: confirm with RST.
            self.reset();
        } else if self.credit_update_due() {
            self.pending.credit_update = true;
        }
    }

    fn credit_update_due(&self) -> bool {
        (self.fwd_cnt - self.fwd_cnt_sent).0 >= CREDIT_UPDATE_THRESHOLD
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(test)]
mod tests;
