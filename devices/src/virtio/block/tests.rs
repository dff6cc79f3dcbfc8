//! Block device tests: requests built by a mock driver in guest memory, served by the device,
//! checked in the used ring, the status byte, guest memory and the image.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use boxlite_proto::DiskFormat;
use event_manager::{EventManager, SubscriberOps};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

use super::device::PASS_BUDGET;
use super::{Block, BlockOptions, SECTOR_SIZE};
use crate::virtio::test_utils::{
    guest_memory, interrupt, readable, writable, Desc, Driver, DATA_BASE, MEM_SIZE,
};
use crate::virtio::{VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};

const SECTORS: u64 = 16;
const HEADER: u64 = DATA_BASE;
const DATA: u64 = DATA_BASE + 0x1000;
const STATUS: u64 = DATA_BASE + 0x8_0000;
/// Outside the 16 MiB of test guest RAM.
const NOWHERE: u64 = 0x4000_0000;

/// The image byte at `offset`: recognisable per sector and per position.
fn pattern(offset: u64) -> u8 {
    ((offset / SECTOR_SIZE) as u8).wrapping_mul(31) ^ (offset % 251) as u8
}

struct Fixture {
    mem: GuestMemoryMmap,
    image: TempFile,
    block: Block,
}

impl Fixture {
    fn new(read_only: bool) -> Fixture {
        let image = TempFile::new().unwrap();
        let bytes: Vec<u8> = (0..SECTORS * SECTOR_SIZE).map(pattern).collect();
        image.as_file().write_all_at(&bytes, 0).unwrap();
        let block = Block::new(&BlockOptions {
            path: image.as_path().to_path_buf(),
            format: DiskFormat::Raw,
            read_only,
            serial: "boxlite-disk-0".into(),
        })
        .unwrap();
        Fixture {
            mem: guest_memory(),
            image,
            block,
        }
    }

    fn header(&self, request_type: u32, sector: u64) {
        self.header_at(HEADER, request_type, sector);
    }

    fn header_at(&self, addr: u64, request_type: u32, sector: u64) {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&request_type.to_le_bytes());
        bytes[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&bytes, GuestAddress(addr)).unwrap();
    }

    /// Activates the device on `driver`'s queue and serves what is available.
    fn serve(&mut self, driver: &Driver<'_>) -> Arc<VirtioInterrupt> {
        let irq = interrupt();
        self.block
            .activate(self.mem.clone(), irq.clone(), vec![driver.active_queue()])
            .unwrap();
        self.block.process_queue();
        irq
    }

    fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn guest_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        self.mem.read_slice(&mut bytes, GuestAddress(addr)).unwrap();
        bytes
    }

    fn image_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        self.image
            .as_file()
            .read_exact_at(&mut bytes, offset)
            .unwrap();
        bytes
    }

    /// Runs one request made of `descs`; returns (used length, status byte).
    fn request(&mut self, descs: &[Desc]) -> (u32, u8) {
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        let mem = self.mem.clone();
        let mut driver = Driver::new(&mem, 16);
        driver.add_chain(descs);
        self.serve(&driver);
        assert_eq!(driver.used_idx(), 1, "the request must come back");
        (driver.used(0).1, self.status())
    }
}

fn status_desc() -> Desc {
    writable(STATUS, 1)
}

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;
const UNANSWERED: u8 = 0xee;

#[test]
fn read_spans_descriptors_and_returns_the_image_bytes() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 1);
    let mem = f.mem.clone();
    let mut driver = Driver::new(&mem, 16);
    let head = driver.add_chain(&[
        readable(HEADER, 16),
        writable(DATA, 512),
        writable(DATA + 0x2000, 1024),
        status_desc(),
    ]);
    let irq = f.serve(&driver);

    assert_eq!(driver.used(0), (u32::from(head), 1536 + 1));
    assert_eq!(f.status(), OK);
    assert_eq!(f.guest_bytes(DATA, 512), f.image_bytes(512, 512));
    assert_eq!(
        f.guest_bytes(DATA + 0x2000, 1024),
        f.image_bytes(1024, 1024)
    );
    assert_eq!(irq.status(), 1);
    assert_eq!(irq.irqfd().read().unwrap(), 1);
}

#[test]
fn write_reaches_the_image() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_OUT, SECTORS - 2);
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    f.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let (used, status) = f.request(&[
        readable(HEADER, 16),
        readable(DATA, 300),
        readable(DATA + 300, 724),
        status_desc(),
    ]);
    assert_eq!((used, status), (1, OK));
    assert_eq!(f.image_bytes((SECTORS - 2) * SECTOR_SIZE, 1024), data);
    // Neighbours are untouched.
    assert_eq!(
        f.image_bytes((SECTORS - 3) * SECTOR_SIZE, 512),
        ((SECTORS - 3) * SECTOR_SIZE..(SECTORS - 2) * SECTOR_SIZE)
            .map(pattern)
            .collect::<Vec<_>>()
    );
}

#[test]
fn any_layout_header_data_and_status_may_share_descriptors() {
    let mut f = Fixture::new(false);
    // Header split 10 + 6, and the data + status in one writable descriptor.
    f.header(VIRTIO_BLK_T_IN, 3);
    let (used, _) = f.request(&[
        readable(HEADER, 10),
        readable(HEADER + 10, 6),
        writable(STATUS - 512, 513),
    ]);
    assert_eq!(used, 513);
    assert_eq!(f.status(), OK);
    assert_eq!(
        f.guest_bytes(STATUS - 512, 512),
        f.image_bytes(3 * 512, 512)
    );
}

#[test]
fn large_requests_are_served_whole() {
    let mut f = Fixture::new(false);
    // A 256 KiB read.
    let image = TempFile::new().unwrap();
    let len = 256 * 1024u64;
    let bytes: Vec<u8> = (0..len).map(pattern).collect();
    image.as_file().write_all_at(&bytes, 0).unwrap();
    f.block = Block::new(&BlockOptions {
        path: image.as_path().to_path_buf(),
        format: DiskFormat::Raw,
        read_only: false,
        serial: String::new(),
    })
    .unwrap();
    f.header(VIRTIO_BLK_T_IN, 0);
    let (used, status) = f.request(&[
        readable(HEADER, 16),
        writable(DATA, len as u32),
        status_desc(),
    ]);
    assert_eq!((used, status), (len as u32 + 1, OK));
    assert_eq!(f.guest_bytes(DATA, len as usize), bytes);
}

#[test]
fn flush_and_get_id() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(f.request(&[readable(HEADER, 16), status_desc()]), (1, OK));

    f.header(VIRTIO_BLK_T_GET_ID, 0);
    f.mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    let (used, status) = f.request(&[readable(HEADER, 16), writable(DATA, 20), status_desc()]);
    assert_eq!((used, status), (21, OK));
    let mut expected = b"boxlite-disk-0".to_vec();
    expected.resize(20, 0);
    assert_eq!(f.guest_bytes(DATA, 20), expected);

    // A short buffer gets the start of the serial; none at all is an error.
    f.mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    let (used, status) = f.request(&[readable(HEADER, 16), writable(DATA, 4), status_desc()]);
    assert_eq!((used, status), (5, OK));
    assert_eq!(f.guest_bytes(DATA, 5), b"boxl\xff");
    assert_eq!(
        f.request(&[readable(HEADER, 16), status_desc()]),
        (1, IOERR)
    );
}

#[test]
fn read_only_disks_refuse_writes_but_serve_reads_and_flushes() {
    let mut f = Fixture::new(true);
    assert_ne!(f.block.avail_features() & 1 << VIRTIO_BLK_F_RO, 0);
    f.header(VIRTIO_BLK_T_OUT, 0);
    f.mem.write_slice(&[0u8; 512], GuestAddress(DATA)).unwrap();
    let (used, status) = f.request(&[readable(HEADER, 16), readable(DATA, 512), status_desc()]);
    assert_eq!((used, status), (1, IOERR));
    assert_eq!(
        f.image_bytes(0, 512),
        (0..512).map(pattern).collect::<Vec<_>>()
    );

    f.header(VIRTIO_BLK_T_IN, 0);
    let (_, status) = f.request(&[readable(HEADER, 16), writable(DATA, 512), status_desc()]);
    assert_eq!(status, OK);
    f.header(VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(f.request(&[readable(HEADER, 16), status_desc()]).1, OK);
}

#[test]
fn sector_ranges_are_checked_against_the_capacity() {
    let mut f = Fixture::new(false);
    let cases = [
        (SECTORS, 512),                // starts at the end
        (SECTORS - 1, 1024),           // runs past the end
        (u64::MAX, 512),               // sector + length overflows
        (u64::MAX / SECTOR_SIZE, 512), // byte offset would overflow
    ];
    for (sector, len) in cases {
        for request_type in [VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT] {
            f.header(request_type, sector);
            let data = if request_type == VIRTIO_BLK_T_IN {
                writable(DATA, len)
            } else {
                readable(DATA, len)
            };
            let (used, status) = f.request(&[readable(HEADER, 16), data, status_desc()]);
            assert_eq!(
                (used, status),
                (1, IOERR),
                "type {request_type} sector {sector}"
            );
        }
    }
    // The last sector itself is fine.
    f.header(VIRTIO_BLK_T_IN, SECTORS - 1);
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(DATA, 512), status_desc()])
            .1,
        OK
    );
    assert_eq!(f.block.sectors(), SECTORS);
}

#[test]
fn data_lengths_must_be_whole_non_empty_sectors() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(DATA, 100), status_desc()]),
        (1, IOERR)
    );
    // No data buffer at all, and an empty one.
    assert_eq!(
        f.request(&[readable(HEADER, 16), status_desc()]),
        (1, IOERR)
    );
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(DATA, 0), status_desc()]),
        (1, IOERR)
    );
    f.header(VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        f.request(&[readable(HEADER, 16), readable(DATA, 0), status_desc()]),
        (1, IOERR)
    );
    assert_eq!(
        f.request(&[readable(HEADER, 16), readable(DATA, 513), status_desc()]),
        (1, IOERR)
    );
}

#[test]
fn short_or_misplaced_headers_are_io_errors() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 0);
    // Header of 8 bytes.
    assert_eq!(f.request(&[readable(HEADER, 8), status_desc()]), (1, IOERR));
    // Header in a device-writable descriptor: no readable part at all.
    assert_eq!(
        f.request(&[writable(HEADER, 16), writable(DATA, 512), status_desc()]),
        (1, IOERR)
    );
    // Header outside guest RAM.
    assert_eq!(
        f.request(&[readable(NOWHERE, 16), writable(DATA, 512), status_desc()]),
        (1, IOERR)
    );
}

#[test]
fn wrong_descriptor_directions_are_io_errors() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 0);
    f.mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    // A readable descriptor after a writable one.
    let (used, status) = f.request(&[
        readable(HEADER, 16),
        writable(DATA, 512),
        readable(DATA + 0x1000, 512),
        status_desc(),
    ]);
    assert_eq!((used, status), (1, IOERR));
    assert_eq!(
        f.guest_bytes(DATA, 512),
        vec![0xab; 512],
        "nothing may be read in"
    );
    // IN data in a device-readable buffer: the data area is empty.
    assert_eq!(
        f.request(&[readable(HEADER, 16), readable(DATA, 512), status_desc()]),
        (1, IOERR)
    );
    // OUT data in a device-writable buffer: nothing to write, and the image is unchanged.
    f.header(VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(DATA, 512), status_desc()]),
        (1, IOERR)
    );
    assert_eq!(
        f.image_bytes(0, 512),
        (0..512).map(pattern).collect::<Vec<_>>()
    );
}

#[test]
fn unreachable_data_buffers_are_io_errors() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(NOWHERE, 512), status_desc()]),
        (1, IOERR)
    );
    // Straddling the end of guest RAM.
    let edge = MEM_SIZE as u64 - 256;
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(edge, 512), status_desc()]),
        (1, IOERR)
    );
    f.header(VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        f.request(&[
            readable(HEADER, 16),
            readable(u64::MAX - 100, 512),
            status_desc()
        ]),
        (1, IOERR)
    );
}

#[test]
fn chains_without_a_usable_status_byte_come_back_unanswered() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 0);
    // Last descriptor readable: no status byte.
    assert_eq!(
        f.request(&[readable(HEADER, 16), readable(DATA, 512)]),
        (0, UNANSWERED)
    );
    // Without a separate status descriptor the status is the data's last byte, which leaves
    // 511 bytes of data: refused, and reported there.
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(DATA, 512)]),
        (1, UNANSWERED)
    );
    assert_eq!(f.guest_bytes(DATA + 511, 1), [IOERR]);
    // Empty status descriptor, status outside RAM, status at the top of the address space.
    assert_eq!(
        f.request(&[
            readable(HEADER, 16),
            writable(DATA, 512),
            writable(STATUS, 0)
        ]),
        (0, UNANSWERED)
    );
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(NOWHERE, 1)]),
        (0, UNANSWERED)
    );
    assert_eq!(
        f.request(&[readable(HEADER, 16), writable(u64::MAX, 1)]),
        (0, UNANSWERED)
    );
    // Only a header.
    assert_eq!(f.request(&[readable(HEADER, 16)]), (0, UNANSWERED));
}

#[test]
fn unknown_request_types_are_unsupported() {
    let mut f = Fixture::new(false);
    for request_type in [2, 11, 13, 0xdead_beef] {
        f.header(request_type, 0);
        assert_eq!(
            f.request(&[readable(HEADER, 16), writable(DATA, 512), status_desc()]),
            (1, UNSUPP)
        );
    }
}

#[test]
fn descriptor_loops_and_bogus_heads_do_not_hang_or_panic() {
    let mut f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 0);
    let mem = f.mem.clone();
    let mut driver = Driver::new(&mem, 16);
    // 10 -> 11 -> 10 -> ...: header then a writable descriptor pointing back.
    let next = VRING_DESC_F_NEXT as u16;
    driver.store_desc(10, HEADER, 16, next, 11);
    driver.store_desc(11, STATUS, 1, next | VRING_DESC_F_WRITE as u16, 10);
    driver.publish_head(10);
    // A head past the table.
    driver.publish_head(200);
    // And a sane request after them.
    let head = driver.add_chain(&[
        readable(DATA + 0x4000, 16),
        writable(DATA, 512),
        writable(DATA + 0x3000, 1),
    ]);
    f.header_at(DATA + 0x4000, VIRTIO_BLK_T_IN, 2);
    f.serve(&driver);

    // The loop's chain ends after a queue's worth of descriptors with a readable one after a
    // writable one: IOERR. The made-up head has no used slot. The sane request completes.
    assert_eq!(driver.used_idx(), 2);
    assert_eq!(driver.used(0), (10, 1));
    assert_eq!(f.status(), IOERR);
    assert_eq!(driver.used(1), (u32::from(head), 513));
    assert_eq!(f.guest_bytes(DATA, 512), f.image_bytes(1024, 512));
}

#[test]
fn a_pass_serves_every_request_and_interrupts_once() {
    let mut f = Fixture::new(false);
    let mem = f.mem.clone();
    let mut driver = Driver::new(&mem, 16);
    for i in 0..4u64 {
        let header = DATA_BASE + 0x20_0000 + i * 0x100;
        f.header_at(header, VIRTIO_BLK_T_IN, i);
        driver.add_chain(&[
            readable(header, 16),
            writable(DATA + i * 0x1000, 512),
            writable(STATUS + i, 1),
        ]);
    }
    let irq = f.serve(&driver);
    assert_eq!(driver.used_idx(), 4);
    for i in 0..4u64 {
        assert_eq!(
            f.guest_bytes(DATA + i * 0x1000, 512),
            f.image_bytes(i * 512, 512)
        );
        assert_eq!(f.guest_bytes(STATUS + i, 1), [OK]);
    }
    assert_eq!(irq.irqfd().read().unwrap(), 1);
}

#[test]
fn device_identity_config_and_reset() {
    let mut f = Fixture::new(false);
    assert_eq!(f.block.device_type(), 2);
    assert_eq!(f.block.queue_max_sizes(), &[256]);
    let features = f.block.avail_features();
    assert_ne!(features & VIRTIO_F_VERSION_1, 0);
    assert_ne!(features & 1 << VIRTIO_BLK_F_FLUSH, 0);
    assert_eq!(features & 1 << VIRTIO_BLK_F_RO, 0);

    let mut capacity = [0u8; 8];
    f.block.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), SECTORS);
    let mut seg_max = [0u8; 4];
    f.block.read_config(12, &mut seg_max);
    assert_eq!(u32::from_le_bytes(seg_max), 254);
    f.block.write_config(0, &[0xff; 8]);
    f.block.read_config(0, &mut capacity);
    assert_eq!(
        u64::from_le_bytes(capacity),
        SECTORS,
        "config space is read-only"
    );

    f.block.ack_features(VIRTIO_F_VERSION_1);
    assert_eq!(f.block.acked_features(), VIRTIO_F_VERSION_1);
    let mem = f.mem.clone();
    let mut driver = Driver::new(&mem, 16);
    f.serve(&driver);
    f.block.reset();
    assert_eq!(f.block.acked_features(), 0);
    // After a reset nothing is served.
    f.header(VIRTIO_BLK_T_IN, 0);
    driver.add_chain(&[readable(HEADER, 16), writable(DATA, 512), status_desc()]);
    f.block.process_queue();
    assert_eq!(driver.used_idx(), 0);
    // And activation wants exactly one queue.
    assert!(f
        .block
        .activate(f.mem.clone(), interrupt(), Vec::new())
        .is_err());
}

#[test]
fn construction_errors_are_explained() {
    let too_long = Block::new(&BlockOptions {
        path: "/dev/null".into(),
        format: DiskFormat::Raw,
        read_only: true,
        serial: "x".repeat(21),
    });
    assert!(too_long
        .err()
        .unwrap()
        .to_string()
        .contains("at most 20 bytes"));
    let missing = Block::new(&BlockOptions {
        path: "/nonexistent/disk.img".into(),
        format: DiskFormat::Raw,
        read_only: false,
        serial: String::new(),
    });
    assert!(missing
        .err()
        .unwrap()
        .to_string()
        .contains("/nonexistent/disk.img"));
}

#[test]
fn requests_are_served_from_the_event_loop() {
    let f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_IN, 5);
    let mem = f.mem.clone();
    let mut driver = Driver::new(&mem, 16);
    let block = Arc::new(Mutex::new(f.block));
    let mut manager = EventManager::<Arc<Mutex<Block>>>::new().unwrap();
    manager.add_subscriber(block.clone());

    let queue = driver.active_queue();
    let notify = queue.notify.try_clone().unwrap();
    let irq = interrupt();
    block
        .lock()
        .unwrap()
        .activate(mem.clone(), irq.clone(), vec![queue])
        .unwrap();
    manager.run_with_timeout(0).unwrap();

    driver.add_chain(&[readable(HEADER, 16), writable(DATA, 512), status_desc()]);
    notify.write(1).unwrap();
    manager.run_with_timeout(0).unwrap();
    assert_eq!(driver.used_idx(), 1);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), OK);
    let mut data = [0u8; 512];
    mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
    assert_eq!(
        data.to_vec(),
        (5 * 512..6 * 512).map(pattern).collect::<Vec<_>>()
    );
    assert_eq!(irq.irqfd().read().unwrap(), 1);

    // After a reset, notifications are no longer watched.
    block.lock().unwrap().reset();
    manager.run_with_timeout(0).unwrap();
    driver.add_chain(&[readable(HEADER, 16), writable(DATA, 512), status_desc()]);
    notify.write(1).unwrap();
    manager.run_with_timeout(0).unwrap();
    assert_eq!(driver.used_idx(), 1);
}

#[test]
fn one_pass_serves_a_bounded_batch_and_the_loop_comes_back_for_the_rest() {
    let f = Fixture::new(false);
    f.header(VIRTIO_BLK_T_FLUSH, 0);
    let mem = f.mem.clone();
    let mut driver = Driver::new(&mem, 256);
    let block = Arc::new(Mutex::new(f.block));
    let mut manager = EventManager::<Arc<Mutex<Block>>>::new().unwrap();
    manager.add_subscriber(block.clone());
    let queue = driver.active_queue();
    let notify = queue.notify.try_clone().unwrap();
    block
        .lock()
        .unwrap()
        .activate(mem.clone(), interrupt(), vec![queue])
        .unwrap();
    manager.run_with_timeout(0).unwrap();

    let requests = 2 * PASS_BUDGET + 3;
    for _ in 0..requests {
        driver.add_chain(&[readable(HEADER, 16), status_desc()]);
    }
    notify.write(1).unwrap();
    let mut per_pass = Vec::new();
    let mut before = 0;
    while usize::from(driver.used_idx()) < requests {
        manager.run_with_timeout(0).unwrap();
        let now = usize::from(driver.used_idx());
        per_pass.push(now - before);
        before = now;
    }
    assert_eq!(per_pass, vec![PASS_BUDGET, PASS_BUDGET, 3]);
    // The last pass found the queue empty: nothing is re-armed.
    assert_eq!(manager.run_with_timeout(0).unwrap(), 0);
}
