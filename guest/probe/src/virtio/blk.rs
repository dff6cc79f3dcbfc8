//! A polled virtio-blk driver (virtio 1.2, 5.2): one request in flight,
//! always in descriptors 0..=2 of queue 0.

use crate::deadline::{self, Deadline};

use super::mmio::{Transport, INT_USED_RING};
use super::virtq::{DmaBytes, RingMem, Virtq, Vol, DESC_NEXT, DESC_WRITE};

pub const SECTOR_SIZE: usize = 512;
/// Length of a GET_ID answer (VIRTIO_BLK_ID_BYTES).
pub const ID_LEN: usize = 20;

/// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

/// Feature bits.
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;

/// Request status values.
pub const S_OK: u8 = 0;
/// What the status byte holds until the device overwrites it.
const S_UNSET: u8 = 0xff;

/// `struct virtio_blk_req`, with room for one sector of data.
#[repr(C)]
struct RequestMem {
    kind: Vol<u32>,
    reserved: Vol<u32>,
    sector: Vol<u64>,
    data: DmaBytes<SECTOR_SIZE>,
    status: Vol<u8>,
}

/// Shared by every [`Blk`]: the probe runs one request at a time.
static REQUEST: RequestMem = RequestMem {
    kind: Vol::new(0),
    reserved: Vol::new(0),
    sector: Vol::new(0),
    data: DmaBytes::zeroed(),
    status: Vol::new(0),
};

/// One request.
pub enum Req<'a> {
    GetId,
    Read(u64),
    Write(u64, &'a [u8]),
    Flush,
}

pub struct Blk {
    dev: Transport,
    queue: Virtq,
    features: u64,
    /// Completions whose used-ring InterruptStatus bit was seen and acked.
    pub isr_acks: u32,
    /// Used length the current request should report on success.
    expected_len: u32,
}

impl Blk {
    /// Negotiate (VERSION_1, plus RO and FLUSH when offered) and set up the
    /// request queue on `ring`.
    pub fn init(dev: Transport, ring: &'static RingMem) -> Result<Blk, &'static str> {
        let features = dev.negotiate(F_RO | F_FLUSH)?;
        let queue = dev.setup_queue(0, ring)?;
        dev.driver_ok()?;
        Ok(Blk {
            dev,
            queue,
            features,
            isr_acks: 0,
            expected_len: 0,
        })
    }

    pub fn read_only(&self) -> bool {
        self.features & F_RO != 0
    }

    pub fn has_flush(&self) -> bool {
        self.features & F_FLUSH != 0
    }

    /// Capacity in 512-byte sectors (config space offset 0).
    pub fn capacity(&self) -> u64 {
        self.dev.config_u64(0)
    }

    /// Run `req` to completion by polling; returns its status byte.
    pub fn run(&mut self, req: Req) -> Result<u8, &'static str> {
        self.start(req);
        self.finish()
    }

    /// Post `req` and notify the device; complete it with [`finish`](Self::finish).
    pub fn start(&mut self, req: Req) {
        let (kind, sector, data_len, device_writes) = match req {
            Req::GetId => (T_GET_ID, 0, ID_LEN, true),
            Req::Read(sector) => (T_IN, sector, SECTOR_SIZE, true),
            Req::Write(sector, bytes) => {
                REQUEST.data.fill(bytes);
                (T_OUT, sector, SECTOR_SIZE, false)
            }
            Req::Flush => (T_FLUSH, 0, 0, false),
        };
        REQUEST.kind.set(kind);
        REQUEST.reserved.set(0);
        REQUEST.sector.set(sector);
        REQUEST.status.set(S_UNSET);
        // Chain: header (device-readable) → data, if any → status byte
        // (device-writable). Lengths are at most one sector: exact as u32.
        let q = &self.queue;
        q.set_desc(0, REQUEST.kind.addr(), 16, DESC_NEXT, 1);
        let status_desc = if data_len > 0 {
            let flags = DESC_NEXT | if device_writes { DESC_WRITE } else { 0 };
            q.set_desc(1, REQUEST.data.addr(), data_len as u32, flags, 2);
            2
        } else {
            1
        };
        q.set_desc(status_desc, REQUEST.status.addr(), 1, DESC_WRITE, 0);
        // On success the device writes the data it returns plus the status.
        self.expected_len = 1 + if device_writes { data_len as u32 } else { 0 };
        self.queue.publish(0);
        self.dev.notify(0);
    }

    /// Wait for the posted request, check the used entry and the
    /// InterruptStatus register (then acknowledge it); returns the status.
    pub fn finish(&mut self) -> Result<u8, &'static str> {
        let mut deadline = Deadline::after(deadline::SHORT);
        let used = self
            .queue
            .wait_used(&mut deadline)
            .ok_or("request timed out (no used entry)")?;
        if used.id != 0 {
            return Err("used entry names a chain we did not post");
        }
        let status = REQUEST.status.get();
        if status == S_UNSET {
            return Err("device did not write the status byte");
        }
        if status == S_OK && used.len != self.expected_len {
            return Err("used length does not match the request");
        }
        // The device sets the bit right after filling the used ring; give
        // it a moment to get there.
        let mut deadline = Deadline::after(deadline::SHORT);
        while self.dev.interrupt_status() & INT_USED_RING == 0 {
            if deadline.expired() {
                return Err("InterruptStatus lacks the used-ring bit after a completion");
            }
        }
        self.dev.interrupt_ack(INT_USED_RING);
        if self.dev.interrupt_status() & INT_USED_RING != 0 {
            return Err("InterruptStatus used-ring bit still set after InterruptACK");
        }
        self.isr_acks += 1;
        Ok(status)
    }

    /// Copy the data of the last IN or GET_ID request into `out`.
    pub fn data(&self, out: &mut [u8]) {
        REQUEST.data.read_into(out);
    }
}
