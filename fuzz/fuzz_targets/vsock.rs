//! virtio-vsock between a fuzzed guest and real host sockets: guest TX packets with every
//! header field chosen by the fuzzer (and chains cut or corrupted), RX buffers of odd shapes,
//! device resets, and on the host side the Unix-socket protocol (`CONNECT <port>\n` lines or
//! garbage, data, half and full closes, listeners accepting guest-initiated connections).
//! The device runs as in the VMM: its event-loop subscriber serves the queue notifications
//! and its host sockets.
//!
//! Oracles, besides "never panics":
//! - an RX buffer's used length never exceeds what the buffer can hold (the header's bytes are
//!   not checked: the fuzzer's own writes may cover a filled buffer);
//! - the used rings never hold more chains than the driver made available;
//! - descriptors: the count in `/proc/self/fd` is the same before the input and after the
//!   device, the event loop and every host socket are dropped (a leaked host stream per
//!   guest connection would exhaust the VMM's descriptors).

#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use boxlite_devices::virtio::vsock::{Vsock, HOST_CID};
use boxlite_devices::virtio::VirtioDevice;
use boxlite_fuzz::input::run_input;
use boxlite_fuzz::ring::{guest_memory, interrupt, Arena, Chains, RawDesc, Ring, Segment};
use event_manager::{EventManager, SubscriberOps};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::tempdir::TempDir;

const GUEST_CID: u64 = 3;
const HEADER_SIZE: usize = 44;
const QUEUE_SIZE: u16 = 64;
const RX: usize = 0;
const TX: usize = 1;
const EVENT: usize = 2;
/// Event-loop dispatches after each action: enough for a notified queue and the host sockets
/// it touched to settle.
const MAX_PASSES: usize = 8;
/// Guest ports and host listener ports the fuzzer picks from, so that packets meet
/// connections and listeners.
const GUEST_PORTS: [u32; 4] = [1024, 1025, 2695, 52];
const HOST_PORTS: [u32; 4] = [2696, 5000, 5001, 7];
/// Bytes read per host-side read.
const READ_CHUNK: usize = 4096;

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The guest sends one packet and notifies the TX queue.
    Send {
        header: Header,
        payload: Vec<u8>,
        shape: TxShape,
    },
    /// Any TX chain (wrong directions, no header, short header...).
    SendChain(Vec<Segment>),
    /// One TX descriptor written as given, then a notification.
    TxDesc(RawDesc),
    /// The guest posts RX buffers of some shape and notifies the RX queue.
    PostRx {
        count: u8,
        shape: RxShape,
    },
    /// Any RX chain.
    PostRxChain(Vec<Segment>),
    /// The guest notifies the event queue (the device posts no events).
    NotifyEvent,
    /// The driver resets the device and sets it up again.
    Reset,
    /// A host program connects to the device's socket and sends a line.
    HostConnect(ConnectLine),
    HostSend {
        stream: u8,
        data: Vec<u8>,
    },
    HostRead {
        stream: u8,
    },
    HostShutdown {
        stream: u8,
        write_side: bool,
        read_side: bool,
    },
    HostClose {
        stream: u8,
    },
    /// A host program listens for guest connections to one of [`HOST_PORTS`].
    Listen(u8),
    Accept {
        listener: u8,
    },
    CloseListener(u8),
}

#[derive(Arbitrary, Debug)]
enum ConnectLine {
    /// `CONNECT <port>\n` to one of [`GUEST_PORTS`].
    Port(u8),
    /// `CONNECT <n>\n` for any number.
    Any(u32),
    /// Anything at all, newline or not.
    Raw(Vec<u8>),
}

/// A header field by field; ports and CIDs are usually ones the device knows.
#[derive(Arbitrary, Debug)]
struct Header {
    src_cid: Cid,
    dst_cid: Cid,
    src_port: Port,
    dst_port: Port,
    len: Len,
    type_: u16,
    op: PacketOp,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
}

#[derive(Arbitrary, Debug)]
enum Cid {
    Guest,
    Host,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Port {
    Guest(u8),
    HostListener(u8),
    /// A host port the device announced in a connection request it delivered.
    Announced(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Len {
    /// The payload's real length.
    Exact,
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum PacketOp {
    /// REQUEST ..= CREDIT_REQUEST, and 0.
    Known(u8),
    Any(u16),
}

/// How a TX packet is laid out in descriptors.
#[derive(Arbitrary, Debug)]
enum TxShape {
    /// Header and payload in one buffer.
    Whole,
    /// Header, then the payload in its own buffer (Linux's layout).
    Split,
    /// The header cut after `n` bytes, then the rest.
    HeaderCut(u8),
    /// The payload spread over up to 8 buffers.
    Scattered(u8),
}

#[derive(Arbitrary, Debug)]
enum RxShape {
    /// One 4 KiB writable buffer (Linux's).
    Page,
    /// One writable buffer of any length.
    Sized(u16),
    /// A header-sized buffer and a payload buffer.
    Split(u16),
    /// A device-readable buffer.
    Readable(u16),
}

/// What the harness recorded about an RX chain it posted: where its first buffer is and how
/// long it is, and the chain's total writable bytes.
struct RxChain {
    /// The arena's start-overs when the chain was placed (see `Arena::wraps`).
    wraps: u64,
    first: u64,
    first_len: u64,
    first_write: bool,
    writable: u64,
}

/// The guest's three queues.
struct Queues {
    rings: Vec<Ring>,
    notify: Vec<EventFd>,
    rx_chains: Chains<RxChain>,
    rx_used_seen: u16,
}

impl Queues {
    fn activate(mem: &GuestMemoryMmap, vsock: &Mutex<Vsock>) -> Queues {
        let rings: Vec<Ring> = (0..3).map(|q| Ring::new(mem, q, QUEUE_SIZE)).collect();
        let (queues, notify) = rings.iter().map(|r| r.active_queue(false)).unzip();
        vsock
            .lock()
            .unwrap()
            .activate(mem.clone(), interrupt(), queues)
            .expect("vsock activates with three queues");
        Queues {
            rings,
            notify,
            rx_chains: Chains::default(),
            rx_used_seen: 0,
        }
    }
}

struct Rig {
    dir: TempDir,
    mem: GuestMemoryMmap,
    vsock: Arc<Mutex<Vsock>>,
    manager: EventManager<Arc<Mutex<Vsock>>>,
    queues: Queues,
    arena: Arena,
    announced: Vec<u32>,
    streams: Vec<UnixStream>,
    listeners: Vec<UnixListener>,
}

impl Rig {
    fn new() -> Rig {
        let dir = TempDir::new_with_prefix("/tmp/boxlite-fuzz-vsock").expect("a temporary folder");
        let vsock = Vsock::new(GUEST_CID, dir.as_path().join("v.sock")).expect("vsock listens");
        let mut manager = EventManager::new().expect("an epoll set");
        manager.add_subscriber(vsock.clone());
        let mem = guest_memory();
        let queues = Queues::activate(&mem, &vsock);
        let mut rig = Rig {
            dir,
            mem,
            vsock,
            manager,
            queues,
            arena: Arena::default(),
            announced: Vec::new(),
            streams: Vec::new(),
            listeners: Vec::new(),
        };
        rig.run_loop();
        rig
    }

    fn uds(&self) -> PathBuf {
        self.dir.as_path().join("v.sock")
    }

    fn notify(&mut self, queue: usize) {
        self.queues.notify[queue]
            .write(1)
            .expect("the eventfd has room");
        self.run_loop();
    }

    /// Dispatches events until none is ready, then checks what reached the guest.
    fn run_loop(&mut self) {
        for _ in 0..MAX_PASSES {
            if self.manager.run_with_timeout(0).expect("epoll_wait works") == 0 {
                break;
            }
        }
        self.check_rx();
        for ring in &self.queues.rings {
            ring.check_used_bound(&self.mem);
        }
    }

    /// The RX oracle, on every chain returned since the last look.
    fn check_rx(&mut self) {
        let ring = &self.queues.rings[RX];
        let used_idx = ring.used_idx(&self.mem);
        while self.queues.rx_used_seen != used_idx {
            let (head, len) = ring.used_elem(&self.mem, self.queues.rx_used_seen);
            self.queues.rx_used_seen = self.queues.rx_used_seen.wrapping_add(1);
            let Some(chain) = self.queues.rx_chains.get(head) else {
                continue;
            };
            assert!(
                u64::from(len) <= chain.writable,
                "RX used length {len} past the buffer"
            );
            // A chain whose memory the arena has handed out again may hold a newer buffer's
            // bytes: only its length is checked.
            if len == 0
                || !chain.first_write
                || chain.first_len < HEADER_SIZE as u64
                || chain.wraps != self.arena.wraps
            {
                continue;
            }
            let mut raw = [0u8; HEADER_SIZE];
            self.mem
                .read_slice(&mut raw, GuestAddress(chain.first))
                .expect("recorded chains are in the data area");
            // The header's bytes are not checked: the fuzzer writes guest memory (TX data, buffers
            // placed by hand) that may cover an RX buffer after the device filled it, so only
            // the used length is an oracle here. The bytes still name ports to aim at.
            let u32_at = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
            let u16_at = |o: usize| u16::from_le_bytes(raw[o..o + 2].try_into().unwrap());
            const OP_REQUEST: u16 = 1;
            if u16_at(30) == OP_REQUEST {
                self.announced.push(u32_at(16));
            }
        }
    }

    fn header_bytes(&self, header: &Header, payload_len: usize) -> Vec<u8> {
        let cid = |cid: &Cid| match cid {
            Cid::Guest => GUEST_CID,
            Cid::Host => HOST_CID,
            Cid::Any(cid) => *cid,
        };
        let port = |port: &Port| match port {
            Port::Guest(n) => GUEST_PORTS[usize::from(*n) % GUEST_PORTS.len()],
            Port::HostListener(n) => HOST_PORTS[usize::from(*n) % HOST_PORTS.len()],
            Port::Announced(n) => {
                let seen = &self.announced;
                seen.get(usize::from(*n) % seen.len().max(1))
                    .copied()
                    .unwrap_or(0)
            }
            Port::Any(port) => *port,
        };
        let len = match header.len {
            Len::Exact => u32::try_from(payload_len).unwrap_or(u32::MAX),
            Len::Any(len) => len,
        };
        let op = match header.op {
            PacketOp::Known(op) => u16::from(op % 8),
            PacketOp::Any(op) => op,
        };
        let mut b = Vec::with_capacity(HEADER_SIZE);
        b.extend_from_slice(&cid(&header.src_cid).to_le_bytes());
        b.extend_from_slice(&cid(&header.dst_cid).to_le_bytes());
        b.extend_from_slice(&port(&header.src_port).to_le_bytes());
        b.extend_from_slice(&port(&header.dst_port).to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&header.type_.to_le_bytes());
        b.extend_from_slice(&op.to_le_bytes());
        b.extend_from_slice(&header.flags.to_le_bytes());
        b.extend_from_slice(&header.buf_alloc.to_le_bytes());
        b.extend_from_slice(&header.fwd_cnt.to_le_bytes());
        b
    }

    fn send(&mut self, header: &Header, payload: Vec<u8>, shape: &TxShape) {
        let head = self.header_bytes(header, payload.len());
        let segments = match shape {
            TxShape::Whole => vec![Segment::readable([head, payload].concat())],
            TxShape::Split if payload.is_empty() => vec![Segment::readable(head)],
            TxShape::Split => vec![Segment::readable(head), Segment::readable(payload)],
            TxShape::HeaderCut(at) => {
                let bytes = [head, payload].concat();
                let (a, b) = bytes.split_at(usize::from(*at).min(bytes.len()));
                vec![Segment::readable(a.to_vec()), Segment::readable(b.to_vec())]
            }
            TxShape::Scattered(pieces) => {
                let pieces = 1 + usize::from(*pieces % 8);
                let size = payload.len().div_ceil(pieces).max(1);
                let mut segments = vec![Segment::readable(head)];
                segments.extend(payload.chunks(size).map(|c| Segment::readable(c.to_vec())));
                segments
            }
        };
        self.send_chain(&segments);
    }

    fn send_chain(&mut self, segments: &[Segment]) {
        let ring = &mut self.queues.rings[TX];
        ring.add_chain(&self.mem, &mut self.arena, segments);
        self.notify(TX);
    }

    fn post_rx(&mut self, segments: &[Segment]) {
        let ring = &mut self.queues.rings[RX];
        let placed = ring.add_chain(&self.mem, &mut self.arena, segments);
        // A device-writable buffer the fuzzer placed over a ring lets the device itself write
        // that ring (legitimately: it is the guest's memory): the ring's bound no longer holds.
        if let Some((_, addrs)) = &placed {
            for (segment, &at) in segments.iter().zip(addrs.iter()) {
                if segment.write {
                    for ring in self.queues.rings.iter_mut() {
                        ring.note_poke(at, segment.len as usize);
                    }
                }
            }
        }
        // Only chains wholly in the data area are checked: the device may fill two RX chains
        // in one pass, and a buffer the fuzzer placed by hand may overlap another one.
        let in_arena = segments.iter().all(|s| s.at.is_none());
        if let (Some((head, addrs)), true) = (placed, in_arena) {
            let writable = segments
                .iter()
                .filter(|s| s.write)
                .map(|s| u64::from(s.len));
            let chain = RxChain {
                wraps: self.arena.wraps,
                first: addrs[0],
                first_len: segments[0].len.into(),
                first_write: segments[0].write,
                writable: writable.sum(),
            };
            self.queues
                .rx_chains
                .record(head, segments.len(), QUEUE_SIZE, chain);
        }
    }

    fn reset(&mut self) {
        self.vsock.lock().unwrap().reset();
        self.run_loop();
        self.queues = Queues::activate(&self.mem, &self.vsock);
        self.announced.clear();
        self.run_loop();
    }

    fn stream(&mut self, n: u8) -> Option<&mut UnixStream> {
        let len = self.streams.len();
        self.streams.get_mut(usize::from(n) % len.max(1))
    }
}

fn rx_segments(shape: &RxShape) -> Vec<Segment> {
    match *shape {
        RxShape::Page => vec![Segment::writable(4096)],
        RxShape::Sized(len) => vec![Segment::writable(len)],
        RxShape::Split(len) => vec![
            Segment::writable(HEADER_SIZE as u16),
            Segment::writable(len),
        ],
        RxShape::Readable(len) => vec![Segment {
            write: false,
            len,
            data: Vec::new(),
            at: None,
        }],
    }
}

fn run(input: Input) {
    let mut rig = Rig::new();
    for op in input.ops {
        match op {
            Op::Send {
                header,
                payload,
                shape,
            } => rig.send(&header, payload, &shape),
            Op::SendChain(segments) => rig.send_chain(&segments),
            Op::TxDesc(desc) => {
                rig.queues.rings[TX].store_raw(&rig.mem, &desc);
                rig.notify(TX);
            }
            Op::PostRx { count, shape } => {
                for _ in 0..1 + count % 8 {
                    rig.post_rx(&rx_segments(&shape));
                }
                rig.notify(RX);
            }
            Op::PostRxChain(segments) => {
                rig.post_rx(&segments);
                rig.notify(RX);
            }
            Op::NotifyEvent => rig.notify(EVENT),
            Op::Reset => rig.reset(),
            Op::HostConnect(line) => {
                if let Ok(mut stream) = UnixStream::connect(rig.uds()) {
                    let line = match line {
                        ConnectLine::Port(n) => {
                            let port = GUEST_PORTS[usize::from(n) % GUEST_PORTS.len()];
                            format!("CONNECT {port}\n").into_bytes()
                        }
                        ConnectLine::Any(port) => format!("CONNECT {port}\n").into_bytes(),
                        ConnectLine::Raw(bytes) => bytes,
                    };
                    stream.set_nonblocking(true).expect("fcntl works");
                    let _ = stream.write(&line);
                    rig.streams.push(stream);
                }
                rig.run_loop();
            }
            Op::HostSend { stream, data } => {
                if let Some(stream) = rig.stream(stream) {
                    let _ = stream.write(&data);
                }
                rig.run_loop();
            }
            Op::HostRead { stream } => {
                if let Some(stream) = rig.stream(stream) {
                    let mut buf = [0u8; READ_CHUNK];
                    // Nonblocking: whatever is there now, or nothing.
                    match stream.read(&mut buf) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => {}
                    }
                }
                rig.run_loop();
            }
            Op::HostShutdown {
                stream,
                write_side,
                read_side,
            } => {
                let how = match (write_side, read_side) {
                    (true, true) => Shutdown::Both,
                    (true, false) => Shutdown::Write,
                    (false, _) => Shutdown::Read,
                };
                if let Some(stream) = rig.stream(stream) {
                    let _ = stream.shutdown(how);
                }
                rig.run_loop();
            }
            Op::HostClose { stream } => {
                if !rig.streams.is_empty() {
                    let n = usize::from(stream) % rig.streams.len();
                    rig.streams.swap_remove(n);
                }
                rig.run_loop();
            }
            Op::Listen(n) => {
                let port = HOST_PORTS[usize::from(n) % HOST_PORTS.len()];
                let path = rig.dir.as_path().join(format!("v.sock_{port}"));
                if let Ok(listener) = UnixListener::bind(path) {
                    listener.set_nonblocking(true).expect("fcntl works");
                    rig.listeners.push(listener);
                }
            }
            Op::Accept { listener } => {
                let len = rig.listeners.len();
                if let Some(listener) = rig.listeners.get(usize::from(listener) % len.max(1)) {
                    if let Ok((stream, _)) = listener.accept() {
                        stream.set_nonblocking(true).expect("fcntl works");
                        rig.streams.push(stream);
                    }
                }
                rig.run_loop();
            }
            Op::CloseListener(n) => {
                if !rig.listeners.is_empty() {
                    let n = usize::from(n) % rig.listeners.len();
                    rig.listeners.swap_remove(n);
                }
            }
        }
    }
}

fuzz_target!(|input: Input| run_input(input, true, run));
