//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): register
//! access, feature negotiation and queue setup.

use crate::arch::{mmio_read32, mmio_write32};

use super::virtq::{RingMem, Virtq, QUEUE_SIZE};

// Register offsets.
const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;
const QUEUE_DESC_LOW: usize = 0x080;
const QUEUE_AVAIL_LOW: usize = 0x090;
const QUEUE_USED_LOW: usize = 0x0a0;
const CONFIG_GENERATION: usize = 0x0fc;
const CONFIG: usize = 0x100;

/// "virt", little endian.
const MAGIC_VALUE: u32 = 0x7472_6976;

// Device status bits.
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
const NEEDS_RESET: u32 = 0x40;
const FAILED: u32 = 0x80;

/// VIRTIO_F_VERSION_1: the modern interface, mandatory here.
pub const F_VERSION_1: u64 = 1 << 32;
/// InterruptStatus bit: the device used buffers.
pub const INT_USED_RING: u32 = 1;

/// Where the probe's page tables map devices (uncached): 3–4 GiB.
const MMIO_START: u64 = 0xc000_0000;
const MMIO_END: u64 = 0x1_0000_0000;
const WINDOW: u64 = 0x1000;

/// One virtio-mmio device window.
pub struct Transport {
    base: usize,
}

impl Transport {
    /// The device at `base`, if the window is mapped and speaks version 2.
    pub fn new(base: u64) -> Result<Transport, &'static str> {
        if !(MMIO_START..=MMIO_END - WINDOW).contains(&base) || !base.is_multiple_of(WINDOW) {
            return Err("window outside the mapped 3-4 GiB range or unaligned");
        }
        let t = Transport {
            base: base as usize,
        };
        if t.read(MAGIC) != MAGIC_VALUE {
            return Err("bad magic value");
        }
        if t.read(VERSION) != 2 {
            return Err("not a version 2 (modern) device");
        }
        Ok(t)
    }

    fn read(&self, reg: usize) -> u32 {
        mmio_read32(self.base + reg)
    }

    fn write(&self, reg: usize, value: u32) {
        mmio_write32(self.base + reg, value)
    }

    /// The virtio device type (2 block, 4 entropy, 19 vsock; 0 none).
    pub fn device_id(&self) -> u32 {
        self.read(DEVICE_ID)
    }

    /// Reset, then ACKNOWLEDGE, DRIVER, and accept `offered & wanted`
    /// (which must include VERSION_1) with FEATURES_OK, checking that the
    /// device kept it. Returns the accepted features.
    pub fn negotiate(&self, wanted: u64) -> Result<u64, &'static str> {
        self.write(STATUS, 0);
        if self.read(STATUS) != 0 {
            return Err("status not 0 after reset");
        }
        self.write(STATUS, ACKNOWLEDGE);
        self.write(STATUS, ACKNOWLEDGE | DRIVER);
        self.write(DEVICE_FEATURES_SEL, 0);
        let low = self.read(DEVICE_FEATURES);
        self.write(DEVICE_FEATURES_SEL, 1);
        let high = self.read(DEVICE_FEATURES);
        let offered = u64::from(high) << 32 | u64::from(low);
        if offered & F_VERSION_1 == 0 {
            return self.fail("device does not offer VIRTIO_F_VERSION_1");
        }
        let accepted = offered & (wanted | F_VERSION_1);
        // Truncations select the two 32-bit feature pages.
        self.write(DRIVER_FEATURES_SEL, 0);
        self.write(DRIVER_FEATURES, accepted as u32);
        self.write(DRIVER_FEATURES_SEL, 1);
        self.write(DRIVER_FEATURES, (accepted >> 32) as u32);
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        // Spec 3.1.1 step 6: the device clears FEATURES_OK to refuse.
        if self.read(STATUS) & FEATURES_OK == 0 {
            return self.fail("device refused the features (FEATURES_OK did not stick)");
        }
        Ok(accepted)
    }

    /// Tell the device we give up on it (status FAILED), and say why.
    fn fail<T>(&self, why: &'static str) -> Result<T, &'static str> {
        self.write(STATUS, self.read(STATUS) | FAILED);
        Err(why)
    }

    /// Set up queue `index` on the rings in `mem` (sized down to
    /// QueueNumMax) and mark it ready.
    pub fn setup_queue(&self, index: u32, mem: &'static RingMem) -> Result<Virtq, &'static str> {
        self.write(QUEUE_SEL, index);
        if self.read(QUEUE_READY) != 0 {
            return self.fail("queue already ready after reset");
        }
        let max = self.read(QUEUE_NUM_MAX);
        if max == 0 {
            return self.fail("queue does not exist (QueueNumMax 0)");
        }
        // Both are powers of two, so the smaller one is a valid size.
        let size = u32::from(QUEUE_SIZE).min(max) as u16;
        let q = Virtq::new(mem, size);
        self.write(QUEUE_NUM, u32::from(size));
        let (desc, avail, used) = q.addrs();
        // All rings are in the probe's image, below 1 GiB: the high
        // halves are 0 (the truncation is exact).
        for (reg, addr) in [
            (QUEUE_DESC_LOW, desc),
            (QUEUE_AVAIL_LOW, avail),
            (QUEUE_USED_LOW, used),
        ] {
            self.write(reg, addr as u32);
            self.write(reg + 4, (addr >> 32) as u32);
        }
        self.write(QUEUE_READY, 1);
        if self.read(QUEUE_READY) != 1 {
            return self.fail("device refused the queue (QueueReady reads 0)");
        }
        Ok(q)
    }

    /// Set DRIVER_OK and check the device did not ask for a reset.
    pub fn driver_ok(&self) -> Result<(), &'static str> {
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        let status = self.read(STATUS);
        if status & NEEDS_RESET != 0 {
            return self.fail("device set DEVICE_NEEDS_RESET");
        }
        if status & DRIVER_OK == 0 {
            return self.fail("DRIVER_OK did not stick");
        }
        Ok(())
    }

    /// Tell the device queue `index` has new buffers (a KVM ioeventfd).
    pub fn notify(&self, index: u32) {
        self.write(QUEUE_NOTIFY, index);
    }

    pub fn interrupt_status(&self) -> u32 {
        self.read(INTERRUPT_STATUS)
    }

    pub fn interrupt_ack(&self, bits: u32) {
        self.write(INTERRUPT_ACK, bits);
    }

    /// A 64-bit config-space field, read as two 32-bit halves and retried
    /// until ConfigGeneration shows no change in between (spec 4.2.2.2;
    /// a few tries, then the last value: our devices never change it).
    pub fn config_u64(&self, offset: usize) -> u64 {
        let mut value = 0;
        for _ in 0..4 {
            let generation = self.read(CONFIG_GENERATION);
            let low = self.read(CONFIG + offset);
            let high = self.read(CONFIG + offset + 4);
            value = u64::from(high) << 32 | u64::from(low);
            if self.read(CONFIG_GENERATION) == generation {
                break;
            }
        }
        value
    }
}
