//! The block device proper: features, config space, activation.

use std::path::PathBuf;
use std::sync::Arc;

use boxlite_proto::DiskFormat;
use log::warn;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use super::config::BlockConfig;
use super::disk::{Disk, SECTOR_SIZE};
use super::request::{handle_chain, ID_LEN};
use crate::virtio::drain::drain_queue;
use crate::virtio::{Activation, ActiveQueue, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::{Error, Result};

/// Queue size offered to the driver.
/// The sector size as the config space spells it.
#[expect(clippy::cast_possible_truncation, reason = "512 fits")]
const SECTOR_SIZE_U32: u32 = SECTOR_SIZE as u32;
const QUEUE_SIZE: u16 = 256;
/// Data segments per request: the chain minus its header and status descriptors (no indirect
/// descriptors are offered, so a chain is at most the queue size).
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Requests served per event-loop pass; the rest wait for the next pass, after the other
/// subscribers (the exit monitor, other devices) have run. Kept well below the queue size
/// because one request can be a megabyte of host I/O or an fdatasync.
pub(super) const PASS_BUDGET: usize = 16;

/// How to build a [`Block`].
#[derive(Clone, Debug)]
pub struct BlockOptions {
    /// The image file. Its virtual size (the file's size for a raw image), rounded down to
    /// 512 bytes, is the disk's capacity.
    pub path: PathBuf,
    /// How the image is laid out. Taken as given: the image's bytes are never probed.
    pub format: DiskFormat,
    /// Open the image read-only and offer VIRTIO_BLK_F_RO; guest writes then fail. A qcow2
    /// image's backing files are always opened read-only.
    pub read_only: bool,
    /// The serial the guest reads with VIRTIO_BLK_T_GET_ID (Linux shows it in
    /// /sys/block/vdX/serial and /dev/disk/by-id); at most 20 bytes.
    pub serial: String,
}

/// A virtio block device over a raw or qcow2 image. Share it as `Arc<Mutex<Block>>`: it is both the
/// transport's [`VirtioDevice`] and an `event_manager::MutEventSubscriber` that serves the
/// request queue.
pub struct Block {
    disk: Disk,
    id: [u8; ID_LEN],
    config: BlockConfig,
    avail_features: u64,
    acked_features: u64,
    /// Guest memory, interrupt and queues while the driver runs the device.
    pub(super) state: Activation<Queue>,
}

impl Block {
    /// Opens the image in `options`.
    pub fn new(options: &BlockOptions) -> Result<Block> {
        let serial = options.serial.as_bytes();
        if serial.len() > ID_LEN {
            return Err(Error::BlockSerialTooLong {
                serial: options.serial.clone(),
                len: serial.len(),
            });
        }
        let mut id = [0u8; ID_LEN];
        id[..serial.len()].copy_from_slice(serial);
        let disk = Disk::open(&options.path, options.format, options.read_only)?;
        let mut avail_features = VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if options.read_only {
            avail_features |= 1 << VIRTIO_BLK_F_RO;
        }
        Ok(Block {
            config: BlockConfig::new(disk.sectors, SEG_MAX, SECTOR_SIZE_U32),
            disk,
            id,
            avail_features,
            acked_features: 0,
            state: Activation::new()?,
        })
    }

    /// The disk's capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.disk.sectors
    }

    /// The features the driver accepted at the last negotiation (0 after a reset).
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Serves up to [`PASS_BUDGET`] available requests; called when the driver notifies the
    /// queue. When more may be waiting, the queue's event is re-armed for another pass.
    pub(super) fn process_queue(&mut self) {
        let Some(active) = self.state.active_mut() else {
            return;
        };
        let (disk, id) = (&self.disk, &self.id);
        let mem = &active.mem;
        let pass = drain_queue(
            &mut active.queues,
            mem,
            &active.interrupt,
            PASS_BUDGET,
            |chain| handle_chain(mem, chain, disk, id),
        );
        if pass.more {
            self.state.events.rearm(0);
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only the writeback field is writable, and only with VIRTIO_BLK_F_CONFIG_WCE, which
        // is not offered.
        warn!(
            "virtio-blk: {}-byte config write at {offset:#x} ignored (config space is read-only)",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
    ) -> Result<()> {
        let ActiveQueue { queue, notify } = ActiveQueue::take_single(queues, "block")?;
        self.state.activate(mem, interrupt, queue, vec![notify])
    }

    fn reset(&mut self) {
        self.state.reset("virtio-blk");
        self.acked_features = 0;
    }
}
