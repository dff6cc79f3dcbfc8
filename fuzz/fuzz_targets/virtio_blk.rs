//! virtio-blk as a guest drives it: descriptor tables, available rings and request headers
//! from the fuzzer in guest memory, served by the device's event-loop subscriber (the same
//! `MutEventSubscriber::process` the VMM's event loop calls when the guest notifies the queue)
//! over a temporary raw disk, read-only or not, with event-index mode on or off.
//!
//! Oracles, besides "never panics":
//! - used ring: the device never returns more chains than the driver made available, and a
//!   chain the harness built never comes back with a used length larger than its
//!   device-writable bytes (the used length is what the device wrote into the chain);
//! - read-only: the image is byte-for-byte unchanged, whatever the guest sent;
//! - descriptors: none leaked once the device and its event loop are dropped.

#![no_main]

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use boxlite_devices::virtio::block::{Block, BlockOptions, SECTOR_SIZE};
use boxlite_devices::virtio::VirtioDevice;
use boxlite_fuzz::input::run_input;
use boxlite_fuzz::ring::{
    guest_memory, interrupt, queue_size, Addr, Arena, Chains, RawDesc, Ring, Segment, DATA_START,
};
use boxlite_proto::DiskFormat;
use event_manager::{EventManager, SubscriberOps};
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::tempfile::TempFile;

/// Event-loop dispatches per notification: the device serves 16 requests a pass and re-arms
/// itself while more wait, so a full 256-entry queue needs 16 passes.
const MAX_PASSES: usize = 32;

#[derive(Arbitrary, Debug)]
struct Input {
    read_only: bool,
    event_idx: bool,
    queue_size_log2: u8,
    /// The disk's size in sectors (modulo 33: empty disks included).
    sectors: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A request as a driver builds it: a 16-byte header, data buffers, a status buffer.
    Request {
        kind: Kind,
        sector: Sector,
        data: Vec<Segment>,
        status: Status,
    },
    /// Any chain of buffers with any contents.
    Chain(Vec<Segment>),
    /// One descriptor written as given.
    Desc(RawDesc),
    /// Makes `head` available whatever the table holds there.
    Publish(u16),
    ForgeAvailIdx(u16),
    AvailFlags(u16),
    UsedEvent(u16),
    /// The guest writes anywhere in its RAM (rings included).
    Poke {
        at: Addr,
        bytes: Vec<u8>,
    },
    /// The guest notifies the queue; the event loop runs until the device is done.
    Notify,
    /// The driver resets the device and brings it up again with a fresh queue.
    Reset {
        event_idx: bool,
        size_log2: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Kind {
    In,
    Out,
    Flush,
    GetId,
    Other(u32),
}

impl Kind {
    fn code(&self) -> u32 {
        match self {
            Kind::In => VIRTIO_BLK_T_IN,
            Kind::Out => VIRTIO_BLK_T_OUT,
            Kind::Flush => VIRTIO_BLK_T_FLUSH,
            Kind::GetId => VIRTIO_BLK_T_GET_ID,
            Kind::Other(code) => *code,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Sector {
    /// Near the disk (inside, at its end, just past it).
    Near(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Status {
    /// One writable byte, as drivers do.
    Byte,
    /// A longer writable buffer (the status is its last byte).
    Long(u16),
    /// Device-readable: there is nowhere to put the status.
    Readable,
    /// No status buffer: the chain ends with the data.
    Missing,
}

/// The device with its event loop and the guest's view of its one queue.
struct Rig {
    mem: GuestMemoryMmap,
    block: Arc<Mutex<Block>>,
    manager: EventManager<Arc<Mutex<Block>>>,
    ring: Ring,
    notify: EventFd,
    arena: Arena,
    /// Device-writable bytes of each chain the harness built.
    writable: Chains<u64>,
    used_seen: u16,
}

impl Rig {
    fn new(block: Block, event_idx: bool, size: u16) -> Rig {
        let mem = guest_memory();
        let block = Arc::new(Mutex::new(block));
        let mut manager = EventManager::new().expect("an epoll set can be created");
        manager.add_subscriber(block.clone());
        let ring = Ring::new(&mem, 0, size);
        let notify = activate(&block, &mem, &ring, event_idx);
        let mut rig = Rig {
            mem,
            block,
            manager,
            ring,
            notify,
            arena: Arena::default(),
            writable: Chains::default(),
            used_seen: 0,
        };
        rig.run_loop();
        rig
    }

    /// What the guest's reset and re-initialisation do, through the device's own calls.
    fn reset(&mut self, event_idx: bool, size: u16) {
        self.block.lock().unwrap().reset();
        self.run_loop();
        self.ring = Ring::new(&self.mem, 0, size);
        self.notify = activate(&self.block, &self.mem, &self.ring, event_idx);
        self.writable.clear();
        self.used_seen = 0;
        self.run_loop();
    }

    fn add_chain(&mut self, segments: &[Segment]) {
        if let Some((head, _)) = self.ring.add_chain(&self.mem, &mut self.arena, segments) {
            let writable = segments
                .iter()
                .filter(|s| s.write)
                .map(|s| u64::from(s.len));
            let size = self.ring.size();
            self.writable
                .record(head, segments.len(), size, writable.sum());
        }
    }

    /// Dispatches events until none is ready (or the pass limit: a device that keeps
    /// re-arming forever would show up as a timeout, not here).
    fn run_loop(&mut self) {
        for _ in 0..MAX_PASSES {
            if self.manager.run_with_timeout(0).expect("epoll_wait works") == 0 {
                break;
            }
        }
    }

    fn notify(&mut self) {
        self.notify.write(1).expect("the notify eventfd has room");
        self.run_loop();
        self.ring.check_used_bound(&self.mem);
        let used_idx = self.ring.used_idx(&self.mem);
        while self.used_seen != used_idx {
            let (head, len) = self.ring.used_elem(&self.mem, self.used_seen);
            if let Some(&writable) = self.writable.get(head) {
                assert!(
                    u64::from(len) <= writable,
                    "chain {head} came back with {len} bytes used but has {writable} writable"
                );
            }
            self.used_seen = self.used_seen.wrapping_add(1);
        }
    }
}

fn activate(block: &Mutex<Block>, mem: &GuestMemoryMmap, ring: &Ring, event_idx: bool) -> EventFd {
    let (queue, notify) = ring.active_queue(event_idx);
    block
        .lock()
        .unwrap()
        .activate(mem.clone(), interrupt(), vec![queue])
        .expect("a block device activates with one queue");
    notify
}

fn header(kind: &Kind, sector: &Sector, sectors: u64) -> Vec<u8> {
    let sector = match sector {
        Sector::Near(delta) => sectors.saturating_sub(4) + u64::from(*delta % 8),
        Sector::Any(sector) => *sector,
    };
    let mut bytes = kind.code().to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&sector.to_le_bytes());
    bytes
}

fn image(sectors: u64) -> (TempFile, Vec<u8>) {
    let file = TempFile::new().expect("a temporary file can be created");
    let bytes: Vec<u8> = (0..sectors * SECTOR_SIZE)
        .map(|i| (i % 251) as u8)
        .collect();
    file.as_file()
        .write_all_at(&bytes, 0)
        .expect("the temporary file is writable");
    (file, bytes)
}

fn run(input: Input) {
    let sectors = u64::from(input.sectors % 33);
    let (file, original) = image(sectors);
    let block = Block::new(&BlockOptions {
        path: file.as_path().to_path_buf(),
        format: DiskFormat::Raw,
        read_only: input.read_only,
        serial: "fuzz-disk".into(),
    })
    .expect("a raw image opens");
    let mut rig = Rig::new(block, input.event_idx, queue_size(input.queue_size_log2));
    for op in input.ops {
        match op {
            Op::Request {
                kind,
                sector,
                data,
                status,
            } => {
                let mut segments = vec![Segment::readable(header(&kind, &sector, sectors))];
                segments.extend(data);
                match status {
                    Status::Byte => segments.push(Segment::writable(1)),
                    Status::Long(len) => segments.push(Segment::writable(len)),
                    Status::Readable => segments.push(Segment::readable(vec![0xee])),
                    Status::Missing => {}
                }
                rig.add_chain(&segments);
            }
            Op::Chain(segments) => rig.add_chain(&segments),
            Op::Desc(desc) => {
                rig.ring.store_raw(&rig.mem, &desc);
                // The chains through that slot are no longer what the harness built.
                rig.writable.clear();
            }
            Op::Publish(head) => rig.ring.publish(&rig.mem, head),
            Op::ForgeAvailIdx(idx) => rig.ring.forge_avail_idx(&rig.mem, idx),
            Op::AvailFlags(flags) => rig.ring.set_avail_flags(&rig.mem, flags),
            Op::UsedEvent(index) => rig.ring.set_used_event(&rig.mem, index),
            Op::Poke { at, bytes } => {
                let at = at.get();
                if rig.mem.write_slice(&bytes, GuestAddress(at)).is_ok() {
                    rig.ring.note_poke(at, bytes.len());
                    if at < DATA_START {
                        rig.writable.clear();
                    }
                }
            }
            Op::Notify => rig.notify(),
            Op::Reset {
                event_idx,
                size_log2,
            } => rig.reset(event_idx, queue_size(size_log2)),
        }
    }
    drop(rig);
    if input.read_only {
        let mut now = vec![0u8; original.len()];
        file.as_file()
            .read_exact_at(&mut now, 0)
            .expect("the image is still readable");
        let len = file.as_file().metadata().expect("stat works").len();
        assert!(
            now == original && len == original.len() as u64,
            "a read-only disk was modified"
        );
    }
}

fuzz_target!(|input: Input| run_input(input, true, run));
