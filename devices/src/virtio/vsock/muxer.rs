//! The Unix-socket backend: routes guest packets to connections, accepts host programs on
//! `<uds>` (Firecracker's `CONNECT <port>` handshake), connects guest requests for port `P` to
//! `<uds>_P`, and schedules the packets going to the guest.
//!
//! The listener, the handshaking streams, every connection's stream and a timer live in the
//! muxer's own epoll set; that set's fd is what the device registers with the event loop. This
//! way the muxer can add and drop streams at any time, including from a device reset on a vCPU
//! thread, without the event manager's `EventOps`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::ErrorKind;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::timerfd::TimerFd;

use super::connect_line::LineReader;
use super::connection::{ConnKey, Connection};
use super::packet::{PacketHeader, OP_CREDIT_REQUEST, OP_REQUEST, OP_RST, TYPE_STREAM};
use super::txbuf::{TxBudget, MAX_TOTAL_BUFFERED};
use super::unix_connect::connect_nonblocking;
use super::{VsockError, HOST_CID};
use crate::{Error, Result};

/// The most host streams the device holds at once: connections plus host programs that have
/// not finished their `CONNECT` line. Beyond it, new host programs are closed at once and
/// guest requests are refused with `RST`.
pub const MAX_CONNECTIONS: usize = 1024;

/// The most `RST`s for unknown connections waiting for guest RX buffers; more are dropped
/// (the guest then sees its connect time out instead of fail).
const MAX_PENDING_RST: usize = 4096;

/// Host-initiated connections get local ports from [2^30, 2^31), like Firecracker.
const HOST_PORT_FIRST: u32 = 1 << 30;
const HOST_PORT_END: u32 = 1 << 31;

/// Epoll events handled per wake-up; more stay ready and wake the loop again.
const EVENTS_PER_WAKE: usize = 64;

/// What the next guest RX buffer is for.
#[derive(Clone, Copy, Debug)]
enum RxItem {
    /// Whatever this connection has to say.
    Conn(ConnKey),
    /// An `RST` for a connection the device does not have.
    Rst(ConnKey),
}

struct Slot {
    conn: Connection,
    /// The events registered in the epoll set (`None`: not registered).
    polled: Option<EventSet>,
    /// The local port was allocated by [`Muxer::alloc_host_port`].
    host_initiated: bool,
}

struct Handshake {
    stream: UnixStream,
    line: LineReader,
    /// A host program that has not sent its `CONNECT` line by then is closed: it would hold a
    /// stream slot for nothing.
    deadline: Instant,
}

/// How long a host program may take to send its `CONNECT <port>` line.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The vsock connection multiplexer behind the device.
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    listener_paused: bool,
    epoll: Epoll,
    timer: TimerFd,
    timer_deadline: Option<Instant>,
    handshakes: HashMap<RawFd, Handshake>,
    conns: HashMap<ConnKey, Slot>,
    conn_fds: HashMap<RawFd, ConnKey>,
    host_ports: HashSet<u32>,
    next_host_port: u32,
    rxq: VecDeque<RxItem>,
    /// Connections that have an entry in `rxq`.
    queued: HashSet<ConnKey>,
    pending_rst: usize,
    /// [`MAX_CONNECTIONS`], lowered by tests.
    max_streams: usize,
    /// Guest data all connections may buffer together ([`MAX_TOTAL_BUFFERED`]).
    tx_budget: TxBudget,
    /// [`HANDSHAKE_TIMEOUT`], shortened by tests.
    handshake_timeout: Duration,
    /// How long a connection's shutdown waits for the peer's RST.
    shutdown_timeout: Duration,
}

impl Muxer {
    /// Listens on `uds_path` (which must not exist yet; it is removed again on drop) for host
    /// programs, on behalf of the guest with CID `guest_cid`.
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Muxer> {
        let bind_err = |source| VsockError::Bind {
            path: uds_path.display().to_string(),
            source,
        };
        let listener = UnixListener::bind(uds_path).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let epoll = Epoll::new().map_err(Error::io("creating the vsock epoll set"))?;
        let timer = TimerFd::new()
            .map_err(|e| Error::io("creating the vsock timer")(std::io::Error::from(e)))?;
        let muxer = Muxer {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            listener_paused: false,
            epoll,
            timer,
            timer_deadline: None,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            conn_fds: HashMap::new(),
            host_ports: HashSet::new(),
            next_host_port: HOST_PORT_FIRST,
            rxq: VecDeque::new(),
            queued: HashSet::new(),
            pending_rst: 0,
            max_streams: MAX_CONNECTIONS,
            tx_budget: TxBudget::new(MAX_TOTAL_BUFFERED),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            shutdown_timeout: crate::virtio::vsock::SHUTDOWN_TIMEOUT,
        };
        muxer
            .epoll_ctl(
                ControlOperation::Add,
                muxer.listener.as_raw_fd(),
                EventSet::IN,
            )
            .map_err(Error::io("watching the vsock listener"))?;
        muxer
            .epoll_ctl(ControlOperation::Add, muxer.timer.as_raw_fd(), EventSet::IN)
            .map_err(Error::io("watching the vsock timer"))?;
        Ok(muxer)
    }

    /// Lowers the stream limit, so that tests can reach it.
    #[cfg(test)]
    pub(crate) fn set_max_streams(&mut self, max: usize) {
        self.max_streams = max;
    }

    /// Shortens the handshake deadline, so that tests can reach it.
    #[cfg(test)]
    pub(crate) fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Shortens the shutdown deadline of the connections made from now on, so that tests can
    /// reach it.
    #[cfg(test)]
    pub(crate) fn set_shutdown_timeout(&mut self, timeout: Duration) {
        self.shutdown_timeout = timeout;
    }

    /// Live connections.
    #[cfg(test)]
    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn epoll_ctl(&self, op: ControlOperation, fd: RawFd, events: EventSet) -> std::io::Result<()> {
        // The data is the fd itself; fds are never negative.
        self.epoll.ctl(op, fd, EpollEvent::new(events, fd as u64))
    }

    /// Whether a packet for the guest is (probably) waiting: [`recv_pkt`](Self::recv_pkt) may
    /// still find nothing, when a stream turns out to have no data.
    pub fn has_pending_rx(&self) -> bool {
        !self.rxq.is_empty()
    }

    /// Produces the next packet for the guest, its payload read into `buf` (at most
    /// `buf.len()` bytes, `header.len` of them used).
    pub fn recv_pkt(&mut self, buf: &mut [u8]) -> Option<PacketHeader> {
        for _ in 0..self.rxq.len() {
            match self.rxq.pop_front()? {
                RxItem::Rst(key) => {
                    self.pending_rst = self.pending_rst.saturating_sub(1);
                    return Some(self.rst_header(key));
                }
                RxItem::Conn(key) => {
                    self.queued.remove(&key);
                    match self.with_conn(key, |slot| slot.conn.recv_pkt(buf)) {
                        None | Some(None) => {}
                        Some(Some(header)) if header.op == OP_RST => {
                            self.remove(key);
                            return Some(header);
                        }
                        Some(Some(header)) => {
                            if header.op == OP_CREDIT_REQUEST {
                                debug!("vsock: {key:?} waits for guest credit");
                            }
                            return Some(header);
                        }
                    }
                }
            }
        }
        None
    }

    /// Handles a packet the guest sent (already parsed; `payload` is its data).
    pub fn send_pkt(&mut self, header: &PacketHeader, payload: &[u8]) {
        if header.dst_cid != HOST_CID || header.src_cid != self.guest_cid {
            warn!(
                "vsock: dropping packet from CID {} to CID {} (guest is {}, host is {HOST_CID})",
                header.src_cid, header.dst_cid, self.guest_cid
            );
            return;
        }
        let key = ConnKey {
            local_port: header.dst_port,
            peer_port: header.src_port,
        };
        if header.type_ != TYPE_STREAM {
            warn!("vsock: socket type {} is not supported: RST", header.type_);
            if header.op != OP_RST {
                self.queue_rst(key);
            }
            return;
        }
        if !(OP_REQUEST..=OP_CREDIT_REQUEST).contains(&header.op) {
            warn!(
                "vsock: dropping packet with unknown op {} for {key:?}",
                header.op
            );
            return;
        }
        match (header.op, self.conns.contains_key(&key)) {
            (OP_RST, true) => self.remove(key),
            (OP_RST, false) => {}
            (OP_REQUEST, false) => self.connect_guest(key, header),
            (OP_REQUEST, true) => {
                warn!("vsock: guest reused the ports of live connection {key:?}: resetting it");
                self.with_conn(key, |slot| slot.conn.reset());
            }
            (_, true) => {
                self.with_conn(key, |slot| slot.conn.send_pkt(header, payload));
            }
            (op, false) => {
                debug!("vsock: op {op} for unknown connection {key:?}: RST");
                self.queue_rst(key);
            }
        }
    }

    /// Handles what the epoll set reports; call when its fd is readable.
    pub fn process_events(&mut self) {
        let mut events = [EpollEvent::default(); EVENTS_PER_WAKE];
        let count = match self.epoll.wait(0, &mut events) {
            Ok(count) => count,
            Err(e) => {
                warn!("vsock: waiting on the epoll set failed: {e}");
                return;
            }
        };
        for event in &events[..count] {
            // Data is always a registered fd (see `epoll_ctl`).
            #[expect(clippy::cast_possible_truncation, reason = "it was a RawFd")]
            let fd = event.data() as RawFd;
            let set = event.event_set();
            if fd == self.listener.as_raw_fd() {
                self.accept();
            } else if fd == self.timer.as_raw_fd() {
                self.expire();
            } else if self.handshakes.contains_key(&fd) {
                self.handshake(fd);
            } else if let Some(&key) = self.conn_fds.get(&fd) {
                self.with_conn(key, |slot| slot.conn.notify(set));
            } else {
                debug!("vsock: event for fd {fd}, which is gone");
            }
        }
    }

    /// Drops every connection the guest knows about (device reset). Host programs still in
    /// their handshake, and host connections whose `REQUEST` has not reached the guest, wait
    /// for the next driver.
    pub fn reset(&mut self) {
        let known: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, slot)| slot.conn.guest_knows())
            .map(|(key, _)| *key)
            .collect();
        for key in known {
            self.remove(key);
        }
        self.rxq.retain(|item| matches!(item, RxItem::Conn(_)));
        self.pending_rst = 0;
        info!(
            "vsock: device reset, {} connection(s) kept",
            self.conns.len()
        );
    }

    fn rst_header(&self, key: ConnKey) -> PacketHeader {
        PacketHeader {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.local_port,
            dst_port: key.peer_port,
            type_: TYPE_STREAM,
            op: OP_RST,
            ..PacketHeader::default()
        }
    }

    fn queue_rst(&mut self, key: ConnKey) {
        if self.pending_rst >= MAX_PENDING_RST {
            warn!("vsock: too many RSTs waiting for guest RX buffers; dropping one for {key:?}");
            return;
        }
        self.pending_rst += 1;
        self.rxq.push_back(RxItem::Rst(key));
    }

    fn stream_count(&self) -> usize {
        self.conns.len() + self.handshakes.len()
    }

    /// A guest `REQUEST`: connect to the host listener for the port, or refuse.
    fn connect_guest(&mut self, key: ConnKey, request: &PacketHeader) {
        if self.stream_count() >= self.max_streams {
            warn!(
                "vsock: {} connections open; refusing {key:?}",
                self.max_streams
            );
            self.queue_rst(key);
            return;
        }
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", key.local_port));
        let path = PathBuf::from(path);
        // Never a blocking connect here: this is the event-loop thread.
        let stream = match connect_nonblocking(&path) {
            Ok(stream) => stream,
            Err(e) => {
                debug!("vsock: {key:?} -> {}: {e}: RST", path.display());
                self.queue_rst(key);
                return;
            }
        };
        let conn = Connection::new_guest_initiated(
            stream,
            key,
            self.guest_cid,
            request,
            self.tx_budget.clone(),
        );
        self.insert(conn, false);
    }

    fn insert(&mut self, mut conn: Connection, host_initiated: bool) {
        conn.set_shutdown_timeout(self.shutdown_timeout);
        let key = conn.key();
        self.conn_fds.insert(conn.as_raw_fd(), key);
        if host_initiated {
            self.host_ports.insert(key.local_port);
        }
        let slot = Slot {
            conn,
            polled: None,
            host_initiated,
        };
        self.conns.insert(key, slot);
        // Registers it with epoll, the RX schedule and the timer.
        self.with_conn(key, |_| ());
    }

    /// Runs `change` on connection `key` (None when there is no such connection), then
    /// brings the epoll registration, the RX schedule and the timer in line with what it did.
    /// The one way to touch a connection, so no change can go without its refresh.
    fn with_conn<R>(&mut self, key: ConnKey, change: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let result = change(self.conns.get_mut(&key)?);
        self.refresh(key);
        Some(result)
    }

    /// The bookkeeping after a change (only [`Muxer::with_conn`] calls it).
    fn refresh(&mut self, key: ConnKey) {
        let Some(slot) = self.conns.get_mut(&key) else {
            return;
        };
        let fd = slot.conn.as_raw_fd();
        let wanted = slot.conn.interest();
        if wanted != slot.polled {
            let result = match (slot.polled, wanted) {
                (None, Some(set)) => {
                    self.epoll
                        .ctl(ControlOperation::Add, fd, EpollEvent::new(set, fd as u64))
                }
                (Some(_), Some(set)) => self.epoll.ctl(
                    ControlOperation::Modify,
                    fd,
                    EpollEvent::new(set, fd as u64),
                ),
                _ => self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default()),
            };
            match result {
                Ok(()) => slot.polled = wanted,
                Err(e) => {
                    warn!("vsock: cannot watch the host stream of {key:?}: {e}; resetting it");
                    if slot.polled.is_some() {
                        let _ = self
                            .epoll
                            .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                    }
                    slot.polled = None;
                    slot.conn.reset();
                }
            }
        }
        if slot.conn.has_pending_rx() && self.queued.insert(key) {
            self.rxq.push_back(RxItem::Conn(key));
        }
        if let Some(deadline) = slot.conn.deadline() {
            self.arm_timer(deadline);
        }
    }

    fn remove(&mut self, key: ConnKey) {
        let Some(slot) = self.conns.remove(&key) else {
            return;
        };
        let fd = slot.conn.as_raw_fd();
        if slot.polled.is_some() {
            if let Err(e) = self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default())
            {
                debug!("vsock: unwatching {key:?}: {e}");
            }
        }
        self.conn_fds.remove(&fd);
        if slot.host_initiated {
            self.host_ports.remove(&key.local_port);
        }
        self.queued.remove(&key);
        // Drop its place in the RX schedule too: a guest cycling REQUEST/RST on the same ports
        // must not grow the schedule with stale entries.
        self.rxq
            .retain(|item| !matches!(item, RxItem::Conn(k) if *k == key));
        self.resume_listener();
        debug!("vsock: connection {key:?} closed");
    }

    fn arm_timer(&mut self, deadline: Instant) {
        if self.timer_deadline.is_some_and(|t| t <= deadline) {
            return;
        }
        self.timer_deadline = Some(deadline);
        // A zero duration would disarm the timer.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if let Err(e) = self.timer.reset(wait, None) {
            warn!("vsock: cannot arm the connection timer: {e}");
        }
    }

    /// The timer fired: reset connections past their deadline, re-arm for the next one.
    fn expire(&mut self) {
        self.timer_deadline = None;
        // Re-arming or clearing the timerfd also clears its readiness.
        if let Err(e) = self.timer.clear() {
            warn!("vsock: cannot clear the connection timer: {e}");
        }
        let now = Instant::now();
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            self.with_conn(key, |slot| slot.conn.expire(now));
        }
        let stalled: Vec<RawFd> = self
            .handshakes
            .iter()
            .filter_map(|(fd, hs)| (hs.deadline <= now).then_some(*fd))
            .collect();
        for fd in stalled {
            info!("vsock: closing a host stream that sent no CONNECT line in time");
            self.end_handshake(fd);
        }
        let next_conn = self.conns.values().filter_map(|s| s.conn.deadline()).min();
        let next_handshake = self.handshakes.values().map(|hs| hs.deadline).min();
        if let Some(next) = next_conn.into_iter().chain(next_handshake).min() {
            self.arm_timer(next);
        }
    }

    /// Accepts host programs on the listener.
    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds, most likely: stop watching the listener (it would stay
                    // readable and spin the loop) until a connection closes.
                    warn!(
                        "vsock: accepting on {} failed: {e}",
                        self.uds_path.display()
                    );
                    self.pause_listener();
                    return;
                }
            };
            if self.stream_count() >= self.max_streams {
                warn!(
                    "vsock: {} connections open; closing a new host stream",
                    self.max_streams
                );
                continue;
            }
            let fd = stream.as_raw_fd();
            if let Err(e) = stream.set_nonblocking(true) {
                warn!("vsock: cannot make a host stream non-blocking: {e}");
                continue;
            }
            if let Err(e) = self.epoll_ctl(ControlOperation::Add, fd, EventSet::IN) {
                warn!("vsock: cannot watch a host stream: {e}");
                continue;
            }
            let deadline = Instant::now() + self.handshake_timeout;
            let line = LineReader::default();
            self.handshakes.insert(
                fd,
                Handshake {
                    stream,
                    line,
                    deadline,
                },
            );
            self.arm_timer(deadline);
        }
    }

    fn pause_listener(&mut self) {
        let fd = self.listener.as_raw_fd();
        if !self.listener_paused
            && self
                .epoll
                .ctl(ControlOperation::Delete, fd, EpollEvent::default())
                .is_ok()
        {
            self.listener_paused = true;
        }
    }

    fn resume_listener(&mut self) {
        let fd = self.listener.as_raw_fd();
        if self.listener_paused
            && self
                .epoll_ctl(ControlOperation::Add, fd, EventSet::IN)
                .is_ok()
        {
            self.listener_paused = false;
        }
    }

    /// Reads a host program's `CONNECT <port>` line.
    fn handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let port = match hs.line.read_from(&mut hs.stream) {
            Ok(None) => return,
            Ok(Some(port)) => Ok(port),
            Err(e) => Err(e),
        };
        let Some(hs) = self.end_handshake(fd) else {
            return;
        };
        match port {
            Ok(port) => self.connect_host(hs.stream, port),
            Err(e) => info!("vsock: closing host stream: {e}"),
        }
    }

    /// Stops watching a host program's handshake and hands its stream back (dropping it closes
    /// the program's connection).
    fn end_handshake(&mut self, fd: RawFd) -> Option<Handshake> {
        let hs = self.handshakes.remove(&fd)?;
        if let Err(e) = self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
        {
            debug!("vsock: unwatching a host stream: {e}");
        }
        self.resume_listener();
        Some(hs)
    }

    /// A host program asked for guest port `port`.
    fn connect_host(&mut self, stream: UnixStream, port: u32) {
        let Some(local_port) = self.alloc_host_port(port) else {
            warn!("vsock: no free host port for a connection to guest port {port}");
            return;
        };
        let key = ConnKey {
            local_port,
            peer_port: port,
        };
        debug!("vsock: host connects to guest port {port} from {local_port}");
        let conn =
            Connection::new_host_initiated(stream, key, self.guest_cid, self.tx_budget.clone());
        self.insert(conn, true);
    }

    /// The next free host port, round-robin over [2^30, 2^31).
    fn alloc_host_port(&mut self, peer_port: u32) -> Option<u32> {
        // Every port tried is either free or taken by one of these, so this many tries find
        // a free one.
        for _ in 0..=self.host_ports.len() + self.conns.len() {
            let port = self.next_host_port;
            self.next_host_port = if port + 1 >= HOST_PORT_END {
                HOST_PORT_FIRST
            } else {
                port + 1
            };
            let key = ConnKey {
                local_port: port,
                peer_port,
            };
            if !self.host_ports.contains(&port) && !self.conns.contains_key(&key) {
                return Some(port);
            }
        }
        None
    }
}

impl Drop for Muxer {
    /// Removes the socket file, so that the next VM can listen on the same path.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.uds_path) {
            debug!("vsock: removing {}: {e}", self.uds_path.display());
        }
    }
}

impl AsRawFd for Muxer {
    /// The epoll set to watch (readable when any stream, the listener or the timer is).
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}
