//! A polled virtio-vsock driver (virtio 1.2, 5.10): a few small RX buffers
//! that are re-posted as soon as a packet is copied out, and one TX buffer
//! used for one packet at a time. The event queue is left unconfigured
//! (the device posts no events).

use crate::deadline::{self, Deadline};

use super::mmio::Transport;
use super::virtq::{DmaBytes, RingMem, Virtq, DESC_WRITE};

pub const HOST_CID: u64 = 2;
/// Largest payload the probe sends or receives in one packet.
pub const MAX_PAYLOAD: usize = 64;
const HEADER_LEN: usize = 44;
const BUF_LEN: usize = HEADER_LEN + MAX_PAYLOAD;
const RX_BUFS: usize = 4;
/// The receive space advertised to peers: all RX buffers' payload room.
pub const BUF_ALLOC: u32 = (RX_BUFS * MAX_PAYLOAD) as u32;

pub const TYPE_STREAM: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;
/// SHUTDOWN flags: no more receiving (1) and no more sending (2).
pub const SHUTDOWN_BOTH: u32 = 3;

/// Queue indexes.
const RX: u32 = 0;
const TX: u32 = 1;

static RX_RING: RingMem = RingMem::zeroed();
static TX_RING: RingMem = RingMem::zeroed();
static RX_MEM: [DmaBytes<BUF_LEN>; RX_BUFS] = [const { DmaBytes::zeroed() }; RX_BUFS];
static TX_MEM: DmaBytes<BUF_LEN> = DmaBytes::zeroed();

/// `struct virtio_vsock_hdr` (little endian on the wire).
#[derive(Clone, Copy, Default)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    fn encode(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
    }

    fn decode(b: &[u8; BUF_LEN]) -> Header {
        let u64_at = |o: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(v)
        };
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }
}

/// A received packet; `hdr.len` was checked against the bytes received.
pub struct Packet {
    pub hdr: Header,
    payload: [u8; MAX_PAYLOAD],
}

impl Packet {
    pub fn data(&self) -> &[u8] {
        &self.payload[..self.hdr.len as usize]
    }
}

pub struct Vsock {
    dev: Transport,
    rx: Virtq,
    tx: Virtq,
    /// Our context ID, from config space.
    pub cid: u64,
}

impl Vsock {
    /// Negotiate VERSION_1, set up RX and TX, and post every RX buffer.
    pub fn init(dev: Transport) -> Result<Vsock, &'static str> {
        dev.negotiate(0)?;
        let rx = dev.setup_queue(RX, &RX_RING)?;
        let tx = dev.setup_queue(TX, &TX_RING)?;
        let mut vs = Vsock {
            cid: dev.config_u64(0),
            dev,
            rx,
            tx,
        };
        // Buffer i is descriptor i (a queue may be smaller than RX_BUFS).
        let count = RX_BUFS.min(usize::from(vs.rx.size()));
        for (i, buf) in RX_MEM.iter().enumerate().take(count) {
            let i = i as u16;
            vs.rx.set_desc(i, buf.addr(), BUF_LEN as u32, DESC_WRITE, 0);
            vs.rx.publish(i);
        }
        vs.dev.driver_ok()?;
        // Queue notifications are only allowed after DRIVER_OK.
        vs.dev.notify(RX);
        Ok(vs)
    }

    /// Send one packet and wait until the device has consumed it.
    pub fn send(&mut self, hdr: &Header, payload: &[u8]) -> Result<(), &'static str> {
        let mut bytes = [0u8; BUF_LEN];
        let len = payload.len().min(MAX_PAYLOAD);
        let hdr = Header {
            len: len as u32,
            ..*hdr
        };
        hdr.encode(&mut bytes[..HEADER_LEN]);
        bytes[HEADER_LEN..HEADER_LEN + len].copy_from_slice(&payload[..len]);
        TX_MEM.fill(&bytes);
        self.tx
            .set_desc(0, TX_MEM.addr(), (HEADER_LEN + len) as u32, 0, 0);
        self.tx.publish(0);
        self.dev.notify(TX);
        self.tx
            .wait_used(&mut Deadline::after(deadline::SHORT))
            .map(|_| ())
            .ok_or("the device did not consume a TX packet")
    }

    /// Acknowledges the device's pending interrupt causes, so it can raise the next one.
    pub fn ack_interrupt(&self) {
        let pending = self.dev.interrupt_status();
        if pending != 0 {
            self.dev.interrupt_ack(pending);
        }
    }

    /// The next packet from the device, within `ticks` TSC ticks; its RX
    /// buffer goes straight back to the device.
    pub fn recv(&mut self, ticks: u64) -> Result<Packet, &'static str> {
        let used = self
            .rx
            .wait_used(&mut Deadline::after(ticks))
            .ok_or("timed out waiting for a packet")?;
        let buf = RX_MEM
            .get(used.id as usize)
            .ok_or("used entry names an RX buffer we did not post")?;
        let mut bytes = [0u8; BUF_LEN];
        buf.read_into(&mut bytes);
        // Give the buffer back before anything can fail below.
        self.rx.publish(used.id as u16);
        self.dev.notify(RX);
        let written = used.len as usize;
        if !(HEADER_LEN..=BUF_LEN).contains(&written) {
            return Err("RX used length outside header..buffer size");
        }
        let hdr = Header::decode(&bytes);
        // This also keeps `Packet::data` within the buffer.
        if hdr.len as usize > written - HEADER_LEN {
            return Err("RX header announces more payload than was written");
        }
        let mut payload = [0u8; MAX_PAYLOAD];
        payload.copy_from_slice(&bytes[HEADER_LEN..]);
        Ok(Packet { hdr, payload })
    }
}
