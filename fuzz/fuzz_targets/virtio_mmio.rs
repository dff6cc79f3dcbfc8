//! The virtio-mmio transport in front of each real device (block, vsock, entropy), reached as
//! a vCPU's MMIO exits reach it: through the MMIO bus at the device's window. Register reads
//! and writes of any offset and width, a driver bring-up with any features and queue
//! addresses (garbage included), queue notifications (as an MMIO write, or as KVM's ioeventfd
//! would deliver them), resets; the devices' event-loop subscribers run between accesses.
//!
//! Oracles, besides "never panics":
//! - identity: MagicValue, Version and DeviceID read the same whatever the driver did before
//!   (the driver re-probes them after a reset, and Linux refuses a device whose magic changed);
//! - descriptors: none leaked once the transport, the device and the event loop are dropped.

#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use boxlite_devices::bus::Bus;
use boxlite_devices::virtio::block::{Block, BlockOptions};
use boxlite_devices::virtio::mmio::{MmioTransport, MMIO_WINDOW_SIZE};
use boxlite_devices::virtio::rng::Rng;
use boxlite_devices::virtio::vsock::Vsock;
use boxlite_devices::virtio::VirtioDevice;
use boxlite_fuzz::input::run_input;
use boxlite_fuzz::ring::{guest_memory, interrupt, Addr};
use boxlite_proto::DiskFormat;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio as reg;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::tempdir::TempDir;
use vmm_sys_util::tempfile::TempFile;

/// Where the window sits (any base works; this is the first virtio slot of the VMM's layout).
const BASE: u64 = 0xc000_1000;
/// Event-loop dispatches after each access: enough for a device to drain a notified queue.
const MAX_PASSES: usize = 8;
const MAGIC_VALUE: u32 = 0x7472_6976;

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

#[derive(Arbitrary, Debug)]
struct Input {
    device: DeviceKind,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum DeviceKind {
    Block { read_only: bool },
    Vsock,
    Rng,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read {
        offset: Offset,
        width: Width,
    },
    Write {
        offset: Offset,
        width: Width,
        value: u64,
    },
    /// What a driver does to bring the device up, in register writes.
    BringUp {
        features: Features,
        queues: Vec<QueueSetup>,
    },
    /// Queue `n`'s notification as KVM's ioeventfd delivers it (no MMIO exit).
    Kick(u8),
    /// The guest writes its RAM (rings and buffers at the addresses it gave).
    Poke {
        at: Addr,
        bytes: Vec<u8>,
    },
}

/// A register offset: one of the 32-bit registers, a config-space byte, or anywhere in (and
/// just past) the window.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Register(u8),
    Config(u8),
    Any(u16),
}

impl Offset {
    fn get(self) -> u64 {
        match self {
            Offset::Register(n) => u64::from(n % 64) * 4,
            Offset::Config(n) => u64::from(reg::VIRTIO_MMIO_CONFIG) + u64::from(n),
            Offset::Any(offset) => u64::from(offset) % (MMIO_WINDOW_SIZE + 0x100),
        }
    }
}

/// MMIO accesses are 1, 2, 4 or 8 bytes wide.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Width {
    Byte,
    Word,
    Long,
    Quad,
}

impl Width {
    fn len(self) -> usize {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Long => 4,
            Width::Quad => 8,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Features {
    /// Everything the device offers (read back through DeviceFeatures).
    Offered,
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
struct QueueSetup {
    size: u16,
    desc: Addr,
    avail: Addr,
    used: Addr,
    ready: bool,
}

/// The device under test, kept alive for the input's duration with its backing files.
struct Device {
    virtio: Arc<Mutex<dyn VirtioDevice>>,
    subscriber: Subscriber,
    _backing: Backing,
}

/// Host files a device needs; removed when the input is done (held only for their drop).
enum Backing {
    Image(#[allow(dead_code, reason = "held for its drop")] TempFile),
    Socket(#[allow(dead_code, reason = "held for its drop")] TempDir),
    None,
}

impl Device {
    fn new(kind: &DeviceKind) -> Device {
        match kind {
            DeviceKind::Block { read_only } => {
                let image = TempFile::new().expect("a temporary file");
                image
                    .as_file()
                    .set_len(16 * 512)
                    .expect("the image can be sized");
                let block = Block::new(&BlockOptions {
                    path: image.as_path().to_path_buf(),
                    format: DiskFormat::Raw,
                    read_only: *read_only,
                    serial: "fuzz".into(),
                })
                .expect("a raw image opens");
                let block = Arc::new(Mutex::new(block));
                Device {
                    virtio: block.clone(),
                    subscriber: block,
                    _backing: Backing::Image(image),
                }
            }
            DeviceKind::Vsock => {
                let dir = TempDir::new_with_prefix("/tmp/boxlite-fuzz-mmio").expect("a folder");
                let vsock = Vsock::new(3, dir.as_path().join("v.sock")).expect("vsock listens");
                Device {
                    virtio: vsock.clone(),
                    subscriber: vsock,
                    _backing: Backing::Socket(dir),
                }
            }
            DeviceKind::Rng => {
                let rng = Arc::new(Mutex::new(Rng::new().expect("/dev/urandom opens")));
                Device {
                    virtio: rng.clone(),
                    subscriber: rng,
                    _backing: Backing::None,
                }
            }
        }
    }
}

struct Rig {
    bus: Bus,
    manager: EventManager<Subscriber>,
    transport: Arc<Mutex<MmioTransport>>,
    device_type: u32,
}

impl Rig {
    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.bus.read(BASE + offset, &mut data);
        data
    }

    fn read32(&self, offset: u32) -> u32 {
        let bytes = self.read(offset.into(), 4);
        u32::from_le_bytes(bytes.try_into().expect("four bytes"))
    }

    fn write32(&mut self, offset: u32, value: u32) {
        self.bus
            .write(BASE + u64::from(offset), &value.to_le_bytes());
        self.run_loop();
    }

    fn run_loop(&mut self) {
        for _ in 0..MAX_PASSES {
            if self.manager.run_with_timeout(0).expect("epoll_wait works") == 0 {
                break;
            }
        }
    }

    fn bring_up(&mut self, features: &Features, queues: &[QueueSetup]) {
        let features = match features {
            Features::Offered => {
                let mut offered = 0u64;
                for sel in 0..2 {
                    self.write32(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
                    let half = self.read32(reg::VIRTIO_MMIO_DEVICE_FEATURES);
                    offered |= u64::from(half) << (32 * sel);
                }
                offered
            }
            Features::Raw(features) => *features,
        };
        self.write32(reg::VIRTIO_MMIO_STATUS, 0);
        let mut status = VIRTIO_CONFIG_S_ACKNOWLEDGE;
        self.write32(reg::VIRTIO_MMIO_STATUS, status);
        status |= VIRTIO_CONFIG_S_DRIVER;
        self.write32(reg::VIRTIO_MMIO_STATUS, status);
        for sel in 0..2u32 {
            self.write32(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
            let half = (features >> (32 * sel)) as u32;
            self.write32(reg::VIRTIO_MMIO_DRIVER_FEATURES, half);
        }
        status |= VIRTIO_CONFIG_S_FEATURES_OK;
        self.write32(reg::VIRTIO_MMIO_STATUS, status);
        for (index, queue) in (0u32..).zip(queues) {
            self.write32(reg::VIRTIO_MMIO_QUEUE_SEL, index);
            self.write32(reg::VIRTIO_MMIO_QUEUE_NUM, queue.size.into());
            let pairs = [
                (reg::VIRTIO_MMIO_QUEUE_DESC_LOW, queue.desc.get()),
                (reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, queue.avail.get()),
                (reg::VIRTIO_MMIO_QUEUE_USED_LOW, queue.used.get()),
            ];
            for (low, addr) in pairs {
                self.write32(low, addr as u32);
                self.write32(low + 4, (addr >> 32) as u32);
            }
            self.write32(reg::VIRTIO_MMIO_QUEUE_READY, queue.ready.into());
        }
        self.write32(reg::VIRTIO_MMIO_STATUS, status | VIRTIO_CONFIG_S_DRIVER_OK);
    }

    /// The identity oracle.
    fn check_identity(&self) {
        assert_eq!(
            self.read32(reg::VIRTIO_MMIO_MAGIC_VALUE),
            MAGIC_VALUE,
            "magic"
        );
        assert_eq!(self.read32(reg::VIRTIO_MMIO_VERSION), 2, "version");
        assert_eq!(
            self.read32(reg::VIRTIO_MMIO_DEVICE_ID),
            self.device_type,
            "device id"
        );
    }
}

fn run(input: Input) {
    let device = Device::new(&input.device);
    let device_type = device.virtio.lock().unwrap().device_type();
    let mem = guest_memory();
    let transport = MmioTransport::new(device.virtio.clone(), mem.clone(), interrupt())
        .expect("a real device fits the transport");
    let transport = Arc::new(Mutex::new(transport));
    let mut bus = Bus::new();
    bus.insert(BASE, MMIO_WINDOW_SIZE, transport.clone())
        .expect("the window fits");
    let mut manager = EventManager::<Subscriber>::new().expect("an epoll set");
    manager.add_subscriber(device.subscriber.clone());
    let mut rig = Rig {
        bus,
        manager,
        transport,
        device_type,
    };
    for op in input.ops {
        match op {
            Op::Read { offset, width } => {
                rig.read(offset.get(), width.len());
            }
            Op::Write {
                offset,
                width,
                value,
            } => {
                let bytes = value.to_le_bytes();
                rig.bus.write(BASE + offset.get(), &bytes[..width.len()]);
                rig.run_loop();
            }
            Op::BringUp { features, queues } => rig.bring_up(&features, &queues),
            Op::Kick(queue) => {
                let transport = rig.transport.lock().unwrap();
                if let Some(event) = transport.queue_events().get(usize::from(queue)) {
                    event.write(1).expect("the queue eventfd has room");
                }
                drop(transport);
                rig.run_loop();
            }
            Op::Poke { at, bytes } => {
                let _ = mem.write_slice(&bytes, GuestAddress(at.get()));
            }
        }
        rig.check_identity();
    }
}

fuzz_target!(|input: Input| run_input(input, true, run));
