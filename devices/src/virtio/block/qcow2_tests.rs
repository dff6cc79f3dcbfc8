//! Block device tests over qcow2 images: copy-on-write overlays over a shared raw base, the
//! backing chain, read-only overlays, corrupt images, and a raw image that only looks like
//! qcow2.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use boxlite_proto::DiskFormat;
use imago::file::File;
use imago::qcow2::Qcow2;
use imago::{FormatCreateBuilder, Storage, StorageCreateOptions};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempdir::TempDir;

use super::{Block, BlockOptions, SECTOR_SIZE};
use crate::virtio::test_utils::{guest_memory, interrupt, readable, writable, Driver, DATA_BASE};
use crate::virtio::VirtioDevice;

/// 64 KiB: one qcow2 cluster of the overlays below.
const SECTORS: u64 = 128;
const HEADER: u64 = DATA_BASE;
const DATA: u64 = DATA_BASE + 0x1000;
const STATUS: u64 = DATA_BASE + 0x8_0000;
const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

/// The base's byte at `offset`.
fn pattern(offset: u64) -> u8 {
    ((offset / SECTOR_SIZE) as u8).wrapping_mul(13) ^ (offset % 241) as u8
}

/// A folder with a raw base image of `SECTORS` sectors.
struct Images {
    dir: TempDir,
}

impl Images {
    fn new() -> Images {
        let images = Images {
            dir: TempDir::new().unwrap(),
        };
        let bytes: Vec<u8> = (0..SECTORS * SECTOR_SIZE).map(pattern).collect();
        fs::write(images.path("base.raw"), bytes).unwrap();
        images
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.as_path().join(name)
    }

    fn base(&self) -> Vec<u8> {
        fs::read(self.path("base.raw")).unwrap()
    }

    /// Creates the qcow2 overlay `name` over `backing` (absolute path, format `format`).
    fn overlay(&self, name: &str, backing: &Path, format: &str) -> PathBuf {
        let path = self.path(name);
        let file = File::create_open(StorageCreateOptions::new().filename(&path)).unwrap();
        Qcow2::<File>::create_builder(file)
            .size(SECTORS * SECTOR_SIZE)
            .backing(backing.display().to_string(), format.into())
            .create()
            .unwrap();
        path
    }
}

/// A block device and its guest memory.
struct Disk {
    mem: GuestMemoryMmap,
    block: Block,
}

impl Disk {
    fn open(path: &Path, format: DiskFormat, read_only: bool) -> Disk {
        let block = Block::new(&BlockOptions {
            path: path.to_path_buf(),
            format,
            read_only,
            serial: String::new(),
        })
        .unwrap();
        Disk {
            mem: guest_memory(),
            block,
        }
    }

    /// Runs one request of `request_type` at `sector` with `len` data bytes at DATA (none
    /// when 0); returns the status byte.
    fn request(&mut self, request_type: u32, sector: u64, len: u32) -> u8 {
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&request_type.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        let mem = self.mem.clone();
        let mut driver = Driver::new(&mem, 16);
        let mut descs = vec![readable(HEADER, 16)];
        if len > 0 {
            descs.push(if request_type == VIRTIO_BLK_T_IN {
                writable(DATA, len)
            } else {
                readable(DATA, len)
            });
        }
        descs.push(writable(STATUS, 1));
        driver.add_chain(&descs);
        self.block
            .activate(self.mem.clone(), interrupt(), vec![driver.active_queue()])
            .unwrap();
        self.block.process_queue();
        assert_eq!(driver.used_idx(), 1, "the request must come back");
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    /// Reads `len` bytes at `sector`.
    fn read(&mut self, sector: u64, len: usize) -> Vec<u8> {
        assert_eq!(self.request(VIRTIO_BLK_T_IN, sector, len as u32), OK);
        let mut bytes = vec![0u8; len];
        self.mem.read_slice(&mut bytes, GuestAddress(DATA)).unwrap();
        bytes
    }

    /// Writes `bytes` at `sector`; returns the status byte.
    fn write(&mut self, sector: u64, bytes: &[u8]) -> u8 {
        self.mem.write_slice(bytes, GuestAddress(DATA)).unwrap();
        self.request(VIRTIO_BLK_T_OUT, sector, bytes.len() as u32)
    }

    fn flush(&mut self) {
        assert_eq!(self.request(VIRTIO_BLK_T_FLUSH, 0, 0), OK);
    }
}

fn base_bytes(sector: u64, len: usize) -> Vec<u8> {
    let start = sector * SECTOR_SIZE;
    (start..start + len as u64).map(pattern).collect()
}

/// `qemu-img check` of `image`; the test fails when qemu-img is missing.
fn assert_qemu_img_check_clean(image: &Path) {
    let output = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(image)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run qemu-img ({e}): install qemu-utils (apt-get install -y qemu-utils; \
                 scripts/test.sh installs it)"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "qemu-img check {}: {stdout}{}",
        image.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("No errors were found"), "{stdout}");
}

#[test]
fn an_overlay_reads_its_base_and_keeps_writes_to_itself() {
    let images = Images::new();
    let before = images.base();
    let overlay = images.overlay("box.qcow2", &images.path("base.raw"), "raw");
    let mut disk = Disk::open(&overlay, DiskFormat::Qcow2, false);
    assert_eq!(disk.block.sectors(), SECTORS);
    assert_eq!(disk.read(0, 4096), base_bytes(0, 4096));

    let written = vec![0x5a; 1024];
    assert_eq!(disk.write(10, &written), OK);
    disk.flush();
    assert_eq!(disk.read(10, 1024), written);
    // The rest of the cluster the write allocated still reads as the base.
    assert_eq!(disk.read(8, 1024), base_bytes(8, 1024));
    assert_eq!(disk.read(12, 2048), base_bytes(12, 2048));
    assert_eq!(images.base(), before, "the base must never be written");
    drop(disk);

    // The write is in the overlay: a fresh open sees it, and the image is consistent.
    let mut reopened = Disk::open(&overlay, DiskFormat::Qcow2, true);
    assert_eq!(reopened.read(10, 1024), written);
    assert_qemu_img_check_clean(&overlay);
}

#[test]
fn two_overlays_over_one_base_see_only_their_own_writes() {
    let images = Images::new();
    let before = images.base();
    let base = images.path("base.raw");
    let mut a = Disk::open(
        &images.overlay("a.qcow2", &base, "raw"),
        DiskFormat::Qcow2,
        false,
    );
    let mut b = Disk::open(
        &images.overlay("b.qcow2", &base, "raw"),
        DiskFormat::Qcow2,
        false,
    );
    assert_eq!(a.write(0, &[0xaa; 512]), OK);
    assert_eq!(b.write(1, &[0xbb; 512]), OK);
    a.flush();
    b.flush();
    assert_eq!(
        a.read(0, 1024),
        [vec![0xaa; 512], base_bytes(1, 512)].concat()
    );
    assert_eq!(
        b.read(0, 1024),
        [base_bytes(0, 512), vec![0xbb; 512]].concat()
    );
    assert_eq!(images.base(), before);
    drop((a, b));
    assert_qemu_img_check_clean(&images.path("a.qcow2"));
    assert_qemu_img_check_clean(&images.path("b.qcow2"));
}

#[test]
fn a_chain_of_qcow2_images_reads_through_every_layer() {
    let images = Images::new();
    let middle = images.overlay("middle.qcow2", &images.path("base.raw"), "raw");
    let mut disk = Disk::open(&middle, DiskFormat::Qcow2, false);
    assert_eq!(disk.write(3, &[0x33; 512]), OK);
    disk.flush();
    drop(disk);
    let top = images.overlay("top.qcow2", &middle, "qcow2");
    let mut disk = Disk::open(&top, DiskFormat::Qcow2, false);
    assert_eq!(disk.write(4, &[0x44; 512]), OK);
    assert_eq!(
        disk.read(2, 1536),
        [base_bytes(2, 512), vec![0x33; 512], vec![0x44; 512]].concat()
    );
}

#[test]
fn read_only_overlays_refuse_writes() {
    let images = Images::new();
    let overlay = images.overlay("ro.qcow2", &images.path("base.raw"), "raw");
    let before = fs::read(&overlay).unwrap();
    let mut disk = Disk::open(&overlay, DiskFormat::Qcow2, true);
    assert_eq!(disk.write(0, &[0x11; 512]), IOERR);
    assert_eq!(disk.read(0, 512), base_bytes(0, 512));
    disk.flush();
    assert_eq!(fs::read(&overlay).unwrap(), before);
}

#[test]
fn sectors_past_the_virtual_size_are_io_errors() {
    let images = Images::new();
    let overlay = images.overlay("box.qcow2", &images.path("base.raw"), "raw");
    let mut disk = Disk::open(&overlay, DiskFormat::Qcow2, false);
    for (sector, len) in [(SECTORS, 512), (SECTORS - 1, 1024), (u64::MAX, 512)] {
        assert_eq!(disk.request(VIRTIO_BLK_T_IN, sector, len), IOERR);
        assert_eq!(disk.write(sector, &vec![0x77; len as usize]), IOERR);
    }
    assert_eq!(disk.read(SECTORS - 1, 512), base_bytes(SECTORS - 1, 512));
}

#[test]
fn corrupt_qcow2_images_are_open_errors() {
    let images = Images::new();
    let garbage = images.path("garbage.qcow2");
    fs::write(&garbage, vec![0x42; 4096]).unwrap();
    // The magic and version, then a header pointing its L1 table far past the file's end.
    let overlay = images.overlay("broken.qcow2", &images.path("base.raw"), "raw");
    let file = fs::OpenOptions::new().write(true).open(&overlay).unwrap();
    file.write_all_at(&u64::MAX.to_be_bytes(), 40).unwrap();
    // A backing file that does not exist.
    let orphan = images.overlay("orphan.qcow2", &images.path("gone.raw"), "raw");
    for (image, expected) in [
        (&garbage, "garbage.qcow2"),
        (&overlay, "broken.qcow2"),
        (&orphan, "gone.raw"),
    ] {
        let error = Block::new(&BlockOptions {
            path: image.clone(),
            format: DiskFormat::Qcow2,
            read_only: false,
            serial: String::new(),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(error.contains("qcow2"), "{error}");
        assert!(error.contains(expected), "{error}");
    }
}

#[test]
fn backing_formats_are_never_probed() {
    let images = Images::new();
    let unknown = images.overlay("unknown.qcow2", &images.path("base.raw"), "vmdk");
    let error = Block::new(&BlockOptions {
        path: unknown,
        format: DiskFormat::Qcow2,
        read_only: true,
        serial: String::new(),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("unknown backing format"), "{error}");
}

#[test]
fn a_raw_image_that_looks_like_qcow2_stays_raw() {
    let images = Images::new();
    // A guest could write this into its raw disk: a qcow2 header naming a host file.
    let lure = images.overlay("lure", Path::new("/etc/shadow"), "raw");
    let lure_bytes = fs::read(&lure).unwrap();
    let mut disk = Disk::open(&lure, DiskFormat::Raw, false);
    assert_eq!(
        disk.block.sectors(),
        lure_bytes.len() as u64 / SECTOR_SIZE,
        "the capacity is the file's size, not a qcow2 virtual size"
    );
    assert_eq!(disk.read(0, 512), lure_bytes[..512]);
}
