//! Test helpers: a mock guest driver with the three vsock queues in guest memory, and host-side
//! socket helpers.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::tempdir::TempDir;

use super::packet::{PacketHeader, HEADER_SIZE, TYPE_STREAM};
use super::{Vsock, HOST_CID};
use crate::virtio::test_utils::interrupt;
use crate::virtio::{ActiveQueue, VirtioDevice, VirtioInterrupt};

/// The guest CID tests use.
pub const GUEST_CID: u64 = 3;
/// Queue size the mock driver uses.
pub const QSIZE: u16 = 64;
/// The credit the mock guest advertises unless a test says otherwise.
pub const GUEST_BUF_ALLOC: u32 = 64 * 1024;
/// Each RX buffer the mock guest posts (Linux posts 4 KiB).
pub const RX_BUF: u32 = 4096;

const RX_RING: u64 = 0;
const TX_RING: u64 = 0x1_0000;
const EV_RING: u64 = 0x2_0000;
/// RX buffer of descriptor `i` at `RX_DATA + i * RX_SLOT`.
const RX_DATA: u64 = 0x10_0000;
const RX_SLOT: u64 = 0x2_0000;
/// TX header of a chain with head `i` at `TX_DATA + i * TX_SLOT`, payload after it.
const TX_DATA: u64 = 0x90_0000;
const TX_SLOT: u64 = 0x1_1000;

/// A descriptor: (address, length, flags without NEXT).
pub type Desc = (u64, u32, u16);
/// Device-readable flag value.
pub const R: u16 = 0;
/// Device-writable flag value.
pub const W: u16 = VRING_DESC_F_WRITE as u16;

/// One descriptor in the form `MockSplitQueue::build_desc_chain` takes.
pub fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

/// The driver side of one split queue, reusing descriptors and ring slots modulo its size.
///
/// It lays the rings out itself: `virtio_queue::mock::MockSplitQueue` puts the used ring over
/// the upper half of the avail ring (its `end()` counts entries, not bytes), which corrupts
/// any test that uses more than half the queue.
pub struct QueueDriver<'a> {
    mem: &'a GuestMemoryMmap,
    desc_table: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    used_seen: u16,
}

impl<'a> QueueDriver<'a> {
    fn new(mem: &'a GuestMemoryMmap, base: u64) -> QueueDriver<'a> {
        let size = u64::from(QSIZE);
        let avail = base + 16 * size;
        // flags, idx, ring, used_event; the used ring is 4-byte aligned.
        let used = (avail + 4 + 2 * size + 2 + 3) & !3;
        let driver = QueueDriver {
            mem,
            desc_table: base,
            avail,
            used,
            next_desc: 0,
            used_seen: 0,
        };
        let ring_bytes = (used + 4 + 8 * size + 2 - base) as usize;
        mem.write_slice(&vec![0u8; ring_bytes], GuestAddress(base))
            .unwrap();
        driver
    }

    /// The head index the next chain gets.
    pub fn next_head(&self) -> u16 {
        self.next_desc
    }

    /// Makes a chain of `descs` available; returns its head.
    pub fn add_chain(&mut self, descs: &[Desc]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let index = (head + i as u16) % QSIZE;
            let last = i + 1 == descs.len();
            let next = (index + 1) % QSIZE;
            let flags = if last {
                flags
            } else {
                flags | VRING_DESC_F_NEXT as u16
            };
            self.store_desc(index, addr, len, flags, next);
        }
        self.next_desc = (head + descs.len() as u16) % QSIZE;
        self.publish_head(head);
        head
    }

    /// Writes descriptor `index` as given (for chains a test corrupts by hand).
    pub fn store_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        let at = self.desc_table + 16 * u64::from(index);
        self.mem.write_slice(&raw, GuestAddress(at)).unwrap();
    }

    fn read_u16(&self, at: u64) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(at)).unwrap())
    }

    fn read_u32(&self, at: u64) -> u32 {
        u32::from_le(self.mem.read_obj(GuestAddress(at)).unwrap())
    }

    /// Makes `head` available.
    pub fn publish_head(&self, head: u16) {
        let idx = self.read_u16(self.avail + 2);
        let slot = self.avail + 4 + 2 * u64::from(idx % QSIZE);
        self.mem
            .write_obj(head.to_le(), GuestAddress(slot))
            .unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1).to_le(), GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// The queue as the transport hands it over.
    pub fn active_queue(&self) -> ActiveQueue {
        let mut queue = Queue::new(QSIZE).unwrap();
        queue.set_size(QSIZE);
        queue
            .try_set_desc_table_address(GuestAddress(self.desc_table))
            .unwrap();
        queue
            .try_set_avail_ring_address(GuestAddress(self.avail))
            .unwrap();
        queue
            .try_set_used_ring_address(GuestAddress(self.used))
            .unwrap();
        queue.set_ready(true);
        ActiveQueue {
            queue,
            notify: EventFd::new(EFD_NONBLOCK).unwrap(),
        }
    }

    /// The next used element the driver has not looked at: (head, length).
    pub fn take_used(&mut self) -> Option<(u16, u32)> {
        if self.read_u16(self.used + 2) == self.used_seen {
            return None;
        }
        let elem = self.used + 4 + 8 * u64::from(self.used_seen % QSIZE);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((self.read_u32(elem) as u16, self.read_u32(elem + 4)))
    }

    fn memory(&self) -> &'a GuestMemoryMmap {
        self.mem
    }
}

/// A mock vsock driver: RX, TX and event queues in one guest memory.
pub struct Guest<'a> {
    pub rx: QueueDriver<'a>,
    pub tx: QueueDriver<'a>,
    pub ev: QueueDriver<'a>,
}

impl<'a> Guest<'a> {
    /// The three queues, laid out in `mem`.
    pub fn new(mem: &'a GuestMemoryMmap) -> Guest<'a> {
        Guest {
            rx: QueueDriver::new(mem, RX_RING),
            tx: QueueDriver::new(mem, TX_RING),
            ev: QueueDriver::new(mem, EV_RING),
        }
    }

    /// Activates `dev` with the three queues; returns its interrupt.
    pub fn activate(&self, dev: &mut Vsock) -> Arc<VirtioInterrupt> {
        self.activate_with_notifiers(dev).0
    }

    /// Activates `dev`; returns its interrupt and the queues' notification events.
    pub fn activate_with_notifiers(&self, dev: &mut Vsock) -> (Arc<VirtioInterrupt>, Vec<EventFd>) {
        let irq = interrupt();
        let queues = vec![
            self.rx.active_queue(),
            self.tx.active_queue(),
            self.ev.active_queue(),
        ];
        let notifiers = queues
            .iter()
            .map(|q| q.notify.try_clone().unwrap())
            .collect();
        dev.activate(self.rx.memory().clone(), irq.clone(), queues)
            .unwrap();
        (irq, notifiers)
    }

    /// Posts `count` RX buffers of [`RX_BUF`] bytes.
    pub fn post_rx(&mut self, count: usize) {
        for _ in 0..count {
            let addr = RX_DATA + u64::from(self.rx.next_head()) * RX_SLOT;
            self.rx.add_chain(&[(addr, RX_BUF, W)]);
        }
    }

    /// Makes a TX packet available: header (its `len` set to the payload's) and payload in
    /// two descriptors (one if empty).
    pub fn send(&mut self, mut header: PacketHeader, payload: &[u8]) {
        header.len = payload.len() as u32;
        let mem = self.tx.memory();
        let addr = TX_DATA + u64::from(self.tx.next_head()) * TX_SLOT;
        mem.write_slice(&header.to_bytes(), GuestAddress(addr))
            .unwrap();
        let data = addr + HEADER_SIZE as u64;
        mem.write_slice(payload, GuestAddress(data)).unwrap();
        if payload.is_empty() {
            self.tx.add_chain(&[(addr, HEADER_SIZE as u32, R)]);
        } else {
            let len = payload.len() as u32;
            self.tx
                .add_chain(&[(addr, HEADER_SIZE as u32, R), (data, len, R)]);
        }
    }

    /// The next packet the device put in an RX buffer, with its payload.
    pub fn recv(&mut self) -> Option<(PacketHeader, Vec<u8>)> {
        let (head, len) = self.rx.take_used()?;
        let addr = RX_DATA + u64::from(head) * RX_SLOT;
        let mut raw = [0u8; HEADER_SIZE];
        let mem = self.rx.memory();
        mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
        let header = PacketHeader::from_bytes(&raw);
        assert_eq!(len as usize, HEADER_SIZE + header.len as usize);
        let mut payload = vec![0u8; header.len as usize];
        mem.read_slice(&mut payload, GuestAddress(addr + HEADER_SIZE as u64))
            .unwrap();
        Some((header, payload))
    }

    /// Every packet delivered so far.
    pub fn recv_all(&mut self) -> Vec<(PacketHeader, Vec<u8>)> {
        std::iter::from_fn(|| self.recv()).collect()
    }
}

/// A guest-to-host packet: `op` from guest port `src` to host port `dst`.
pub fn guest_pkt(op: u16, src: u32, dst: u32) -> PacketHeader {
    PacketHeader {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: src,
        dst_port: dst,
        len: 0,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: GUEST_BUF_ALLOC,
        fwd_cnt: 0,
    }
}

/// A temporary directory holding the device's socket `v.sock`.
pub struct SocketDir {
    dir: TempDir,
}

impl SocketDir {
    /// A fresh directory.
    pub fn new() -> SocketDir {
        SocketDir {
            dir: TempDir::new_with_prefix("/tmp/vsock").unwrap(),
        }
    }

    /// The device's socket path.
    pub fn uds(&self) -> PathBuf {
        self.dir.as_path().join("v.sock")
    }

    /// Where the device looks for a listener for host port `port`.
    pub fn port_path(&self, port: u32) -> PathBuf {
        self.dir.as_path().join(format!("v.sock_{port}"))
    }
}

/// Reads what `stream` (blocking, with a timeout) has right now, up to `len` bytes.
pub fn read_some(stream: &mut UnixStream, len: usize) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; len];
    let n = stream.read(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Whether the peer closed `stream` (end-of-file within a second, nothing else before it).
pub fn is_closed(stream: &mut UnixStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Err(_) => false,
    }
}
