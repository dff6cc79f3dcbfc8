//! Transport tests: the guest's side of the register protocol against a recording device.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FAILED as FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET as NEEDS_RESET,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::offset::*;
use super::{MmioTransport, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET};
use crate::bus::{Bus, BusDevice};
use crate::virtio::test_utils::{guest_memory, interrupt};
use crate::virtio::{ActiveQueue, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::{Error, Result};

const EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;
/// A device-specific feature bit, below 32 so it lands on feature page 0.
const DEVICE_FEATURE: u64 = 1 << 5;

/// What a queue looked like when the device got it.
#[derive(Debug, PartialEq)]
struct SeenQueue {
    ready: bool,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    event_idx: bool,
}

/// A device that records what the transport does to it.
struct Recorder {
    max_sizes: Vec<u16>,
    features: u64,
    config: [u8; 8],
    fail_activation: bool,
    acked: Vec<u64>,
    activations: Vec<Vec<SeenQueue>>,
    notify: Vec<EventFd>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

impl Recorder {
    fn new(max_sizes: &[u16], features: u64) -> Recorder {
        Recorder {
            max_sizes: max_sizes.to_vec(),
            features,
            config: [1, 2, 3, 4, 5, 6, 7, 8],
            fail_activation: false,
            acked: Vec::new(),
            activations: Vec::new(),
            notify: Vec::new(),
            resets: 0,
            config_writes: Vec::new(),
        }
    }
}

impl VirtioDevice for Recorder {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }
    fn avail_features(&self) -> u64 {
        self.features
    }
    fn ack_features(&mut self, features: u64) {
        self.acked.push(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config_writes.push((offset, data.to_vec()));
    }
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        _interrupt: Arc<VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
    ) -> Result<()> {
        if self.fail_activation {
            return Err(Error::Activate {
                device: "recorder",
                reason: "told to fail".into(),
            });
        }
        let seen = queues
            .iter()
            .map(|q| SeenQueue {
                ready: q.queue.ready(),
                size: q.queue.size(),
                desc: q.queue.desc_table(),
                avail: q.queue.avail_ring(),
                used: q.queue.used_ring(),
                event_idx: q.queue.event_idx_enabled(),
            })
            .collect();
        self.activations.push(seen);
        self.notify = queues.into_iter().map(|q| q.notify).collect();
        Ok(())
    }
    fn reset(&mut self) {
        self.resets += 1;
        self.notify.clear();
    }
}

/// A transport over a [`Recorder`], driven through its registers like a guest would.
struct Guest {
    transport: MmioTransport,
    device: Arc<Mutex<Recorder>>,
    interrupt: Arc<VirtioInterrupt>,
}

/// Queue `i`'s ring addresses: 64 KiB apart, all in guest RAM and aligned.
fn rings(i: u64) -> (u64, u64, u64) {
    let base = 0x10_0000 + i * 0x1_0000;
    (base, base + 0x4000, base + 0x8000)
}

impl Guest {
    fn new(max_sizes: &[u16], features: u64) -> Guest {
        Guest::with(Recorder::new(max_sizes, features))
    }

    fn with(recorder: Recorder) -> Guest {
        let device = Arc::new(Mutex::new(recorder));
        let interrupt = interrupt();
        let transport =
            MmioTransport::new(device.clone(), guest_memory(), interrupt.clone()).unwrap();
        Guest {
            transport,
            device,
            interrupt,
        }
    }

    fn read(&mut self, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        self.transport.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write(&mut self, offset: u64, value: u32) {
        self.transport.write(offset, &value.to_le_bytes());
    }

    /// Adds `bits` to the status the way Linux does: read, or, write.
    fn add_status(&mut self, bits: u32) {
        let status = self.read(STATUS);
        self.write(STATUS, status | bits);
    }

    fn write_driver_features(&mut self, features: u64) {
        self.write(DRIVER_FEATURES_SEL, 0);
        self.write(DRIVER_FEATURES, features as u32);
        self.write(DRIVER_FEATURES_SEL, 1);
        self.write(DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// ACKNOWLEDGE, DRIVER, `features`, FEATURES_OK; returns whether FEATURES_OK stuck.
    fn negotiate(&mut self, features: u64) -> bool {
        self.add_status(ACK);
        self.add_status(DRIVER);
        self.write_driver_features(features);
        self.add_status(FEATURES_OK);
        self.read(STATUS) & FEATURES_OK != 0
    }

    fn setup_queue(&mut self, index: u32, size: u32) {
        let (desc, avail, used) = rings(u64::from(index));
        self.write(QUEUE_SEL, index);
        self.write(QUEUE_NUM, size);
        self.write(QUEUE_DESC_LOW, desc as u32);
        self.write(QUEUE_DESC_HIGH, (desc >> 32) as u32);
        self.write(QUEUE_AVAIL_LOW, avail as u32);
        self.write(QUEUE_AVAIL_HIGH, (avail >> 32) as u32);
        self.write(QUEUE_USED_LOW, used as u32);
        self.write(QUEUE_USED_HIGH, (used >> 32) as u32);
        self.write(QUEUE_READY, 1);
    }

    fn activations(&self) -> usize {
        self.device.lock().unwrap().activations.len()
    }
}

#[test]
fn identity_registers() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    assert_eq!(guest.read(MAGIC_VALUE), 0x7472_6976);
    assert_eq!(guest.read(VERSION), 2);
    assert_eq!(guest.read(DEVICE_ID), 42);
    assert_eq!(guest.read(VENDOR_ID), 0);
    assert_eq!(guest.read(STATUS), 0);
    // No shared memory regions.
    assert_eq!(guest.read(SHM_LEN_LOW), u32::MAX);
    assert_eq!(guest.read(SHM_BASE_HIGH), u32::MAX);
    // Write-only and unknown registers read as zero.
    assert_eq!(guest.read(QUEUE_NOTIFY), 0);
    assert_eq!(guest.read(0x0f0), 0);
}

#[test]
fn only_aligned_32_bit_register_accesses_count() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    let mut byte = [0xffu8; 1];
    guest.transport.read(MAGIC_VALUE, &mut byte);
    assert_eq!(byte, [0]);
    let mut word = [0xffu8; 4];
    guest.transport.read(MAGIC_VALUE + 1, &mut word);
    assert_eq!(word, [0; 4]);
    let mut wide = [0xffu8; 8];
    guest.transport.read(MAGIC_VALUE, &mut wide);
    assert_eq!(wide, [0; 8]);
    // A 1-byte status write is ignored.
    guest.transport.write(STATUS, &[ACK as u8]);
    assert_eq!(guest.read(STATUS), 0);
    guest.transport.write(STATUS + 2, &(ACK).to_le_bytes());
    assert_eq!(guest.read(STATUS), 0);
}

#[test]
fn device_features_are_paged() {
    let features = VIRTIO_F_VERSION_1 | DEVICE_FEATURE;
    let mut guest = Guest::new(&[16], features);
    assert_eq!(guest.read(DEVICE_FEATURES), DEVICE_FEATURE as u32);
    guest.write(DEVICE_FEATURES_SEL, 1);
    assert_eq!(guest.read(DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    guest.write(DEVICE_FEATURES_SEL, 2);
    assert_eq!(guest.read(DEVICE_FEATURES), 0);
    guest.write(DEVICE_FEATURES_SEL, u32::MAX);
    assert_eq!(guest.read(DEVICE_FEATURES), 0);
}

#[test]
fn negotiation_accepts_a_modern_subset_of_the_offer() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1 | DEVICE_FEATURE);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    assert_eq!(guest.read(STATUS), ACK | DRIVER | FEATURES_OK);
    assert_eq!(guest.device.lock().unwrap().acked, vec![VIRTIO_F_VERSION_1]);
}

#[test]
fn legacy_drivers_and_unknown_features_are_refused() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1 | DEVICE_FEATURE);
    assert!(!guest.negotiate(DEVICE_FEATURE), "no VERSION_1: legacy");
    assert_eq!(guest.read(STATUS), ACK | DRIVER);

    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    assert!(!guest.negotiate(VIRTIO_F_VERSION_1 | DEVICE_FEATURE));
    assert!(guest.device.lock().unwrap().acked.is_empty());
    // A driver that then gives up marks the device FAILED.
    guest.add_status(FAILED);
    assert_eq!(guest.read(STATUS), ACK | DRIVER | FAILED);
    // Nothing else is accepted until a reset.
    guest.write_driver_features(VIRTIO_F_VERSION_1);
    guest.add_status(FEATURES_OK);
    assert_eq!(guest.read(STATUS), ACK | DRIVER | FAILED);
}

#[test]
fn driver_features_are_only_taken_between_driver_and_features_ok() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    // Before DRIVER: dropped, so FEATURES_OK later fails for lack of VERSION_1.
    guest.write_driver_features(VIRTIO_F_VERSION_1);
    guest.add_status(ACK);
    guest.add_status(DRIVER);
    guest.add_status(FEATURES_OK);
    assert_eq!(guest.read(STATUS) & FEATURES_OK, 0);

    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1 | DEVICE_FEATURE);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    // After FEATURES_OK: dropped, the device keeps what it acked.
    guest.write_driver_features(VIRTIO_F_VERSION_1 | DEVICE_FEATURE);
    guest.setup_queue(0, 16);
    guest.add_status(DRIVER_OK);
    assert_eq!(guest.device.lock().unwrap().acked, vec![VIRTIO_F_VERSION_1]);
    // Pages above 1 take nothing.
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    guest.add_status(ACK);
    guest.add_status(DRIVER);
    guest.write_driver_features(VIRTIO_F_VERSION_1);
    guest.write(DRIVER_FEATURES_SEL, 2);
    guest.write(DRIVER_FEATURES, u32::MAX);
    guest.add_status(FEATURES_OK);
    assert_eq!(guest.read(STATUS) & FEATURES_OK, FEATURES_OK);
}

#[test]
fn status_bits_must_come_in_order_and_never_be_cleared() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    guest.write(STATUS, DRIVER);
    assert_eq!(guest.read(STATUS), 0, "DRIVER before ACKNOWLEDGE");
    guest.write(STATUS, ACK | FEATURES_OK);
    assert_eq!(
        guest.read(STATUS),
        ACK,
        "FEATURES_OK before DRIVER stops after ACK"
    );
    guest.write(STATUS, ACK | DRIVER | DRIVER_OK);
    assert_eq!(
        guest.read(STATUS),
        ACK | DRIVER,
        "DRIVER_OK before FEATURES_OK"
    );
    guest.write(STATUS, DRIVER);
    assert_eq!(guest.read(STATUS), ACK | DRIVER, "clearing ACKNOWLEDGE");
    // Several bits at once are fine when they are in order.
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    guest.write(STATUS, ACK | DRIVER);
    assert_eq!(guest.read(STATUS), ACK | DRIVER);
    // The driver cannot set DEVICE_NEEDS_RESET, nor unknown bits.
    guest.write(STATUS, ACK | DRIVER | NEEDS_RESET | 0x10);
    assert_eq!(guest.read(STATUS), ACK | DRIVER);
}

#[test]
fn queue_setup_and_activation_hand_the_device_its_queues() {
    let mut guest = Guest::new(&[256, 64], VIRTIO_F_VERSION_1);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    guest.write(QUEUE_SEL, 0);
    assert_eq!(guest.read(QUEUE_NUM_MAX), 256);
    guest.write(QUEUE_SEL, 1);
    assert_eq!(guest.read(QUEUE_NUM_MAX), 64);
    guest.write(QUEUE_SEL, 2);
    assert_eq!(guest.read(QUEUE_NUM_MAX), 0, "no queue 2");

    guest.setup_queue(0, 128);
    assert_eq!(guest.read(QUEUE_READY), 1);
    guest.write(QUEUE_SEL, 1);
    assert_eq!(guest.read(QUEUE_READY), 0, "queue 1 left unused");
    guest.add_status(DRIVER_OK);

    assert_eq!(guest.read(STATUS), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    let (desc, avail, used) = rings(0);
    let device = guest.device.lock().unwrap();
    assert_eq!(
        device.activations,
        vec![vec![
            SeenQueue {
                ready: true,
                size: 128,
                desc,
                avail,
                used,
                event_idx: false
            },
            SeenQueue {
                ready: false,
                size: 64,
                desc: 0,
                avail: 0,
                used: 0,
                event_idx: false
            },
        ]]
    );
}

#[test]
fn event_idx_reaches_the_queues_when_negotiated() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1 | EVENT_IDX);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1 | EVENT_IDX));
    guest.setup_queue(0, 16);
    guest.add_status(DRIVER_OK);
    assert!(guest.device.lock().unwrap().activations[0][0].event_idx);
}

#[test]
fn refused_queue_sizes_need_a_reset_and_never_activate() {
    for size in [0, 3, 100, 512, 0x1_0000, u32::MAX] {
        let mut guest = Guest::new(&[256], VIRTIO_F_VERSION_1);
        assert!(guest.negotiate(VIRTIO_F_VERSION_1));
        guest.setup_queue(0, size);
        assert_eq!(guest.read(QUEUE_READY), 0, "size {size}");
        assert_ne!(guest.read(STATUS) & NEEDS_RESET, 0, "size {size}");
        guest.add_status(DRIVER_OK);
        assert_eq!(guest.read(STATUS) & DRIVER_OK, 0, "size {size}");
        assert_eq!(guest.activations(), 0);
        // A reset recovers the device.
        guest.write(STATUS, 0);
        assert!(guest.negotiate(VIRTIO_F_VERSION_1));
        guest.setup_queue(0, 256);
        guest.add_status(DRIVER_OK);
        assert_eq!(guest.activations(), 1, "size {size}");
    }
}

#[test]
fn rings_outside_guest_ram_or_misaligned_are_refused() {
    let cases: [(u64, u64); 4] = [
        (QUEUE_DESC_HIGH, 0x1),        // descriptor table above 4 GiB: not in RAM
        (QUEUE_USED_LOW, 0x00ff_fc00), // used ring runs past the end of RAM
        (QUEUE_DESC_LOW, 0x10_0008),   // descriptor table not 16-byte aligned
        (QUEUE_AVAIL_LOW, 0x10_4001),  // available ring not 2-byte aligned
    ];
    for (register, value) in cases {
        let mut guest = Guest::new(&[256], VIRTIO_F_VERSION_1);
        assert!(guest.negotiate(VIRTIO_F_VERSION_1));
        let (desc, avail, used) = rings(0);
        guest.write(QUEUE_NUM, 256);
        guest.write(QUEUE_DESC_LOW, desc as u32);
        guest.write(QUEUE_AVAIL_LOW, avail as u32);
        guest.write(QUEUE_USED_LOW, used as u32);
        guest.write(register, value as u32);
        guest.write(QUEUE_READY, 1);
        assert_eq!(
            guest.read(QUEUE_READY),
            0,
            "register {register:#x} = {value:#x}"
        );
        assert_ne!(guest.read(STATUS) & NEEDS_RESET, 0);
    }
}

#[test]
fn queue_registers_only_change_during_setup() {
    let mut guest = Guest::new(&[256], VIRTIO_F_VERSION_1);
    // Before FEATURES_OK: ignored.
    guest.add_status(ACK);
    guest.write(QUEUE_NUM, 3);
    guest.write(QUEUE_READY, 1);
    assert_eq!(guest.read(QUEUE_READY), 0);
    assert_eq!(guest.read(STATUS) & NEEDS_RESET, 0, "ignored, not refused");
    guest.add_status(DRIVER);
    guest.write_driver_features(VIRTIO_F_VERSION_1);
    guest.add_status(FEATURES_OK);
    guest.setup_queue(0, 32);
    // Once ready, its setup is frozen.
    guest.write(QUEUE_NUM, 64);
    guest.write(QUEUE_DESC_LOW, 0x20_0000);
    // A queue that does not exist takes nothing and breaks nothing.
    guest.write(QUEUE_SEL, 7);
    guest.write(QUEUE_NUM, 3);
    guest.write(QUEUE_READY, 1);
    assert_eq!(guest.read(QUEUE_READY), 0);
    guest.add_status(DRIVER_OK);
    assert_eq!(guest.read(STATUS) & NEEDS_RESET, 0);
    // After DRIVER_OK: ignored.
    guest.write(QUEUE_SEL, 0);
    guest.write(QUEUE_READY, 0);
    assert_eq!(guest.read(QUEUE_READY), 1);
    let device = guest.device.lock().unwrap();
    assert_eq!(device.activations[0][0].size, 32);
    assert_eq!(device.activations[0][0].desc, rings(0).0);
}

#[test]
fn queue_notify_writes_the_queue_event_shared_with_the_device() {
    let mut guest = Guest::new(&[16, 16], VIRTIO_F_VERSION_1);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    guest.setup_queue(0, 16);
    guest.setup_queue(1, 16);
    guest.add_status(DRIVER_OK);

    guest.write(QUEUE_NOTIFY, 1);
    guest.write(QUEUE_NOTIFY, 1);
    guest.write(QUEUE_NOTIFY, 9); // no such queue: ignored
    let device = guest.device.lock().unwrap();
    // The device's copy is the same eventfd as the transport's (what KVM writes).
    assert_eq!(device.notify[1].read().unwrap(), 2);
    assert!(device.notify[0].read().is_err(), "queue 0 was not notified");
    guest.transport.queue_events()[0].write(5).unwrap();
    assert_eq!(device.notify[0].read().unwrap(), 5);
}

#[test]
fn interrupt_status_reads_and_acknowledges() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    guest.interrupt.signal_used_queue().unwrap();
    guest.interrupt.signal_config_change().unwrap();
    assert_eq!(guest.read(INTERRUPT_STATUS), 3);
    assert_eq!(guest.read(CONFIG_GENERATION), 1);
    guest.write(INTERRUPT_ACK, 1);
    assert_eq!(guest.read(INTERRUPT_STATUS), 2);
    guest.write(INTERRUPT_ACK, 2);
    assert_eq!(guest.read(INTERRUPT_STATUS), 0);
    assert!(Arc::ptr_eq(guest.transport.interrupt(), &guest.interrupt));
}

#[test]
fn config_space_is_the_device_s_at_0x100() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    let mut data = [0u8; 2];
    guest.transport.read(CONFIG + 2, &mut data);
    assert_eq!(data, [3, 4]);
    let mut wide = [0u8; 8];
    guest.transport.read(CONFIG, &mut wide);
    assert_eq!(wide, [1, 2, 3, 4, 5, 6, 7, 8]);
    guest.transport.write(CONFIG + 4, &[9]);
    guest.transport.write(MMIO_WINDOW_SIZE - 1, &[1]);
    assert_eq!(
        guest.device.lock().unwrap().config_writes,
        vec![(4, vec![9]), (MMIO_WINDOW_SIZE - 1 - CONFIG, vec![1])]
    );
}

#[test]
fn reset_returns_everything_to_the_initial_state() {
    let mut guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    guest.setup_queue(0, 8);
    guest.add_status(DRIVER_OK);
    guest.interrupt.signal_used_queue().unwrap();
    guest.write(QUEUE_NOTIFY, 0);
    guest.write(DEVICE_FEATURES_SEL, 1);

    guest.write(STATUS, 0);
    assert_eq!(guest.read(STATUS), 0);
    assert_eq!(guest.read(INTERRUPT_STATUS), 0);
    assert_eq!(guest.read(QUEUE_READY), 0);
    assert_eq!(guest.read(DEVICE_FEATURES), 0, "back to feature page 0");
    assert!(
        guest.transport.queue_events()[0].read().is_err(),
        "stale notifications are dropped"
    );
    assert_eq!(guest.device.lock().unwrap().resets, 1);

    // A second negotiation starts from scratch: the queue size is the maximum again.
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    guest.write(QUEUE_SEL, 0);
    let (desc, avail, used) = rings(0);
    guest.write(QUEUE_DESC_LOW, desc as u32);
    guest.write(QUEUE_AVAIL_LOW, avail as u32);
    guest.write(QUEUE_USED_LOW, used as u32);
    guest.write(QUEUE_READY, 1);
    guest.add_status(DRIVER_OK);
    let device = guest.device.lock().unwrap();
    assert_eq!(device.activations.len(), 2);
    assert_eq!(device.activations[1][0].size, 16);
    assert_eq!(device.acked, vec![VIRTIO_F_VERSION_1, VIRTIO_F_VERSION_1]);
}

#[test]
fn a_failed_activation_needs_a_reset() {
    let mut recorder = Recorder::new(&[16], VIRTIO_F_VERSION_1);
    recorder.fail_activation = true;
    let mut guest = Guest::with(recorder);
    assert!(guest.negotiate(VIRTIO_F_VERSION_1));
    guest.setup_queue(0, 16);
    guest.add_status(DRIVER_OK);
    assert_eq!(guest.read(STATUS), ACK | DRIVER | FEATURES_OK | NEEDS_RESET);
    // The driver echoing NEEDS_RESET back with FAILED is accepted.
    guest.add_status(FAILED);
    assert_eq!(guest.read(STATUS) & FAILED, FAILED);
    guest.write(STATUS, 0);
    assert_eq!(guest.read(STATUS), 0);
}

#[test]
fn ioevents_name_the_notify_register_and_queue_index() {
    let guest = Guest::new(&[16, 16, 16], VIRTIO_F_VERSION_1);
    let base = 0xc000_1000;
    let ioevents: Vec<(u64, u32)> = guest
        .transport
        .ioevents(base)
        .map(|(addr, datamatch, _)| (addr, datamatch))
        .collect();
    assert_eq!(
        ioevents,
        vec![
            (base + QUEUE_NOTIFY_OFFSET, 0),
            (base + 0x50, 1),
            (base + 0x50, 2)
        ]
    );
    assert_eq!(guest.transport.queue_events().len(), 3);
}

#[test]
fn devices_the_transport_cannot_offer_are_refused() {
    let make = |sizes: &[u16], features: u64| {
        let device = Arc::new(Mutex::new(Recorder::new(sizes, features)));
        MmioTransport::new(device, guest_memory(), interrupt())
    };
    assert!(make(&[16], DEVICE_FEATURE).is_err(), "no VERSION_1");
    for size in [0, 3, 65535] {
        let err = make(&[16, size], VIRTIO_F_VERSION_1).err().unwrap();
        assert!(err.to_string().contains("power of two"), "{err}");
    }
    assert!(make(&[32768], VIRTIO_F_VERSION_1).is_ok());
}

#[test]
fn the_transport_works_on_the_mmio_bus() {
    let guest = Guest::new(&[16], VIRTIO_F_VERSION_1);
    let mut bus = Bus::new();
    let base = 0xc000_1000;
    bus.insert(
        base,
        MMIO_WINDOW_SIZE,
        Arc::new(Mutex::new(guest.transport)),
    )
    .unwrap();
    let mut data = [0u8; 4];
    assert!(bus.read(base + VERSION, &mut data));
    assert_eq!(u32::from_le_bytes(data), 2);
    assert!(bus.write(base + STATUS, &ACK.to_le_bytes()));
    assert!(bus.read(base + STATUS, &mut data));
    assert_eq!(u32::from_le_bytes(data), ACK);
    assert!(!bus.read(base + MMIO_WINDOW_SIZE, &mut data));
}
