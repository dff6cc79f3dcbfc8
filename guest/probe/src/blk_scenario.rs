//! `probe=blk`: drive the first two virtio block devices. Disk 0 must be
//! read-write and hold a NUL-terminated text at the start of sector 0;
//! disk 1 must be read-only.

use core::sync::atomic::Ordering;

use crate::deadline::{self, Deadline};
use crate::irq;
use crate::probe;
use crate::serial::write_bytes;
use crate::virtio::blk::{Blk, Req, ID_LEN, SECTOR_SIZE, S_OK};
use crate::virtio::virtq::RingMem;
use crate::virtio::{self, ID_BLOCK};

/// What the probe writes to sector 1 of disk 0 (the host test checks it).
const PATTERN: &[u8] = b"boxlite-probe-write";

static RING0: RingMem = RingMem::zeroed();
static RING1: RingMem = RingMem::zeroed();

/// A failed step: what was being done, and what went wrong.
type Failure = (&'static str, &'static str);

pub fn run(cmdline: &[u8]) {
    if let Err((step, why)) = steps(cmdline) {
        probe!("blk error {}: {}", step, why);
    }
}

fn steps(cmdline: &[u8]) -> Result<(), Failure> {
    let found = virtio::find(cmdline, ID_BLOCK, 0).map_err(|e| ("disk0", e))?;
    let irq_line = found.irq;
    let mut disk0 = Blk::init(found.transport, &RING0).map_err(|e| ("disk0 init", e))?;
    if disk0.read_only() {
        return Err(("disk0 init", "the read-write disk offers VIRTIO_BLK_F_RO"));
    }

    ok(disk0.run(Req::GetId), "disk0 get-id")?;
    let mut id = [0u8; ID_LEN];
    disk0.data(&mut id);
    print_text(b"PROBE: blk id=", &id);

    probe!("blk capacity={}", disk0.capacity());

    ok(disk0.run(Req::Read(0)), "disk0 read sector 0")?;
    let mut sector = [0u8; SECTOR_SIZE];
    disk0.data(&mut sector);
    print_text(b"PROBE: blk sector0=", &sector[..16]);

    write_flush_readback(&mut disk0)?;

    let found = virtio::find(cmdline, ID_BLOCK, 1).map_err(|e| ("disk1", e))?;
    let mut disk1 = Blk::init(found.transport, &RING1).map_err(|e| ("disk1 init", e))?;
    if !disk1.read_only() {
        return Err((
            "disk1 init",
            "the read-only disk does not offer VIRTIO_BLK_F_RO",
        ));
    }
    match disk1.run(Req::Write(0, PATTERN)) {
        Ok(S_OK) => return Err(("disk1 write", "the read-only disk accepted a write")),
        Ok(status) => probe!("blk ro write refused status={}", status),
        Err(e) => return Err(("disk1 write", e)),
    }

    // Every request so far checked InterruptStatus and acknowledged it.
    probe!(
        "blk interrupt status acked={}",
        disk0.isr_acks + disk1.isr_acks
    );

    irq_delivery(&mut disk0, irq_line)
}

/// Write [`PATTERN`] to sector 1, flush, read it back and compare.
fn write_flush_readback(disk: &mut Blk) -> Result<(), Failure> {
    ok(disk.run(Req::Write(1, PATTERN)), "disk0 write sector 1")?;
    if !disk.has_flush() {
        return Err(("disk0 flush", "VIRTIO_BLK_F_FLUSH not offered"));
    }
    ok(disk.run(Req::Flush), "disk0 flush")?;
    ok(disk.run(Req::Read(1)), "disk0 read sector 1")?;
    let mut sector = [0u8; SECTOR_SIZE];
    disk.data(&mut sector);
    let (head, tail) = sector.split_at(PATTERN.len());
    if head != PATTERN || tail.iter().any(|&b| b != 0) {
        return Err(("disk0 readback", "sector 1 differs from what was written"));
    }
    probe!("blk write+flush+readback ok");
    Ok(())
}

/// One more request, completed by a real interrupt: I/O APIC pin
/// `irq_line` → IDT vector → `hlt` wakes up → EOI.
fn irq_delivery(disk: &mut Blk, irq_line: u32) -> Result<(), Failure> {
    irq::init();
    irq::route(irq_line, true).map_err(|e| ("irq route", e))?;
    let before = irq::DEVICE_IRQS.load(Ordering::SeqCst);
    disk.start(Req::GetId);
    let delivered = irq::wait_device_irq(before, &mut Deadline::after(deadline::SHORT));
    // Mask the pin again before anything else can go wrong.
    irq::route(irq_line, false).map_err(|e| ("irq route", e))?;
    ok(disk.finish(), "disk0 get-id (interrupt)")?;
    if !delivered {
        return Err(("irq", "no interrupt arrived for a completed request"));
    }
    probe!("blk irq delivered");
    Ok(())
}

/// A request must have completed with status OK.
fn ok(result: Result<u8, &'static str>, step: &'static str) -> Result<(), Failure> {
    match result {
        Ok(S_OK) => Ok(()),
        Ok(_) => Err((step, "device returned an error status")),
        Err(e) => Err((step, e)),
    }
}

/// `prefix`, then `bytes` up to the first NUL, then a newline.
fn print_text(prefix: &[u8], bytes: &[u8]) {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    write_bytes(prefix);
    write_bytes(&bytes[..len]);
    write_bytes(b"\n");
}
