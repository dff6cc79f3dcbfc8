//! The entropy device proper.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;

use log::{error, warn};
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use crate::virtio::drain::{drain_queue, Chain};
use crate::virtio::{Activation, ActiveQueue, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::{Error, Result};

/// Queue size offered to the driver (Linux's hwrng asks for 32 bytes at a time).
const QUEUE_SIZE: u16 = 256;
/// The most bytes one request gets: the guest sizes its buffers, and filling gigabytes on the
/// event-loop thread would stall every other device. The spec lets the device fill less.
const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;
/// The host source. /dev/urandom is the kernel's CSPRNG, the same one getrandom(2) reads, and
/// reachable from safe std code; it is opened at construction, before any sandboxing.
const ENTROPY_SOURCE: &str = "/dev/urandom";

/// A virtio entropy device. Share it as `Arc<Mutex<Rng>>`: it is both the transport's
/// [`VirtioDevice`] and an `event_manager::MutEventSubscriber` that serves the queue.
pub struct Rng {
    source: File,
    /// Guest memory, interrupt and queues while the driver runs the device.
    pub(super) state: Activation<Queue>,
    /// Staging buffer between the host source and guest memory, reused across requests.
    buffer: Vec<u8>,
}

impl Rng {
    /// A device reading from the host's /dev/urandom.
    pub fn new() -> Result<Rng> {
        let source = File::open(ENTROPY_SOURCE).map_err(Error::io("opening /dev/urandom"))?;
        Rng::with_source(source)
    }

    /// A device reading its bytes from `source` (tests use a file with known content).
    pub fn with_source(source: File) -> Result<Rng> {
        Ok(Rng {
            source,
            state: Activation::new()?,
            buffer: vec![0; 4096],
        })
    }

    /// Fills the available buffers; called when the driver notifies the queue.
    pub(super) fn process_queue(&mut self) {
        let Some(active) = self.state.active_mut() else {
            return;
        };
        let (source, buffer) = (&mut self.source, &mut self.buffer);
        let budget = usize::from(QUEUE_SIZE);
        let pass = drain_queue(
            &mut active.queues,
            &active.mem,
            &active.interrupt,
            budget,
            |chain| fill(chain, source, buffer),
        );
        if pass.more {
            self.state.events.rearm(0);
        }
    }
}

/// Writes random bytes into `chain`'s writable buffers; returns how many.
fn fill(chain: Chain<'_>, source: &mut File, buffer: &mut [u8]) -> u32 {
    let mem = chain.memory();
    let mut writer = match chain.clone().writer(mem) {
        Ok(writer) => writer,
        Err(e) => {
            warn!("virtio-rng: request {} dropped: {e}", chain.head_index());
            return 0;
        }
    };
    let mut left = writer.available_bytes().min(MAX_BYTES_PER_REQUEST);
    while left > 0 {
        let len = left.min(buffer.len());
        let chunk = &mut buffer[..len];
        if let Err(e) = source.read_exact(chunk) {
            error!("virtio-rng: reading the host entropy source failed: {e}");
            break;
        }
        if let Err(e) = writer.write_all(chunk) {
            warn!("virtio-rng: writing guest memory failed: {e}");
            break;
        }
        left -= chunk.len();
    }
    // At most MAX_BYTES_PER_REQUEST, so it fits.
    u32::try_from(writer.bytes_written()).unwrap_or(u32::MAX)
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {
        // VERSION_1 is all there is to agree on; it changes nothing in how requests are served.
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // virtio-rng has no configuration space.
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        warn!(
            "virtio-rng: {}-byte config write at {offset:#x} ignored (no config space)",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<VirtioInterrupt>,
        queues: Vec<ActiveQueue>,
    ) -> Result<()> {
        let ActiveQueue { queue, notify } = ActiveQueue::take_single(queues, "rng")?;
        self.state.activate(mem, interrupt, queue, vec![notify])
    }

    fn reset(&mut self) {
        self.state.reset("virtio-rng");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{
        guest_memory, interrupt, readable, writable, Driver, DATA_BASE,
    };
    use std::io::Seek;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::tempfile::TempFile;

    /// A device whose "entropy" is the byte pattern 0, 1, 2, ... so tests can check placement.
    fn patterned_rng() -> Rng {
        let mut file = TempFile::new().unwrap().into_file();
        let pattern: Vec<u8> = (0..=255u8).cycle().take(256 * 1024).collect();
        file.write_all(&pattern).unwrap();
        file.rewind().unwrap();
        Rng::with_source(file).unwrap()
    }

    fn activated(
        rng: &mut Rng,
        driver: &Driver<'_>,
        mem: &GuestMemoryMmap,
    ) -> Arc<VirtioInterrupt> {
        let irq = interrupt();
        rng.activate(mem.clone(), irq.clone(), vec![driver.active_queue()])
            .unwrap();
        irq
    }

    #[test]
    fn fills_writable_buffers_across_descriptors() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 16);
        let head = driver.add_chain(&[writable(DATA_BASE, 3), writable(DATA_BASE + 0x100, 5)]);
        let mut rng = patterned_rng();
        let irq = activated(&mut rng, &driver, &mem);

        rng.process_queue();

        assert_eq!(driver.used_idx(), 1);
        assert_eq!(driver.used(0), (u32::from(head), 8));
        let mut first = [0u8; 3];
        let mut second = [0u8; 5];
        mem.read_slice(&mut first, GuestAddress(DATA_BASE)).unwrap();
        mem.read_slice(&mut second, GuestAddress(DATA_BASE + 0x100))
            .unwrap();
        assert_eq!(first, [0, 1, 2]);
        assert_eq!(second, [3, 4, 5, 6, 7]);
        assert_eq!(irq.status(), 1);
        assert_eq!(irq.irqfd().read().unwrap(), 1);
    }

    #[test]
    fn real_entropy_source_fills_the_buffer() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 16);
        driver.add_chain(&[writable(DATA_BASE, 64)]);
        let mut rng = Rng::new().unwrap();
        activated(&mut rng, &driver, &mem);
        rng.process_queue();
        assert_eq!(driver.used(0).1, 64);
        let mut bytes = [0u8; 64];
        mem.read_slice(&mut bytes, GuestAddress(DATA_BASE)).unwrap();
        // 64 random bytes all zero has probability 2^-512.
        assert!(bytes.iter().any(|&b| b != 0));
    }

    #[test]
    fn huge_requests_are_capped_and_readable_buffers_ignored() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 16);
        driver.add_chain(&[
            readable(DATA_BASE, 16),
            writable(DATA_BASE + 0x1000, 0x40_0000),
        ]);
        let mut rng = patterned_rng();
        activated(&mut rng, &driver, &mem);
        rng.process_queue();
        assert_eq!(driver.used(0).1, MAX_BYTES_PER_REQUEST as u32);
        let mut readable_area = [0xaau8; 16];
        mem.read_slice(&mut readable_area, GuestAddress(DATA_BASE))
            .unwrap();
        assert_eq!(readable_area, [0; 16]);
    }

    #[test]
    fn bad_chains_are_returned_empty_without_panicking() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 16);
        // Out of guest RAM, wrapping the address space, and a zero-length buffer.
        driver.add_chain(&[writable(0x4000_0000, 64)]);
        driver.add_chain(&[writable(u64::MAX - 4, 64)]);
        driver.add_chain(&[writable(DATA_BASE, 0)]);
        // A head index past the table, and a descriptor that loops onto itself.
        driver.publish_head(0xffff);
        driver.store_desc(
            10,
            DATA_BASE,
            8,
            (virtio_bindings::virtio_ring::VRING_DESC_F_WRITE
                | virtio_bindings::virtio_ring::VRING_DESC_F_NEXT) as u16,
            10,
        );
        driver.publish_head(10);
        let mut rng = patterned_rng();
        activated(&mut rng, &driver, &mem);

        rng.process_queue();

        // Four chains came back (the made-up head has no slot); the loop yielded only what the
        // ttl allowed: 16 descriptors of 8 bytes.
        assert_eq!(driver.used_idx(), 4);
        assert_eq!(driver.used(0).1, 0);
        assert_eq!(driver.used(1).1, 0);
        assert_eq!(driver.used(2).1, 0);
        assert_eq!(driver.used(3), (10, 16 * 8));
    }

    #[test]
    fn nothing_happens_before_activation_or_after_reset() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 16);
        driver.add_chain(&[writable(DATA_BASE, 8)]);
        let mut rng = patterned_rng();
        rng.process_queue();
        let irq = activated(&mut rng, &driver, &mem);
        rng.reset();
        rng.process_queue();
        assert_eq!(driver.used_idx(), 0);
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn activation_wants_exactly_one_queue() {
        let mem = guest_memory();
        let driver = Driver::new(&mem, 16);
        let mut rng = patterned_rng();
        let two = vec![driver.active_queue(), driver.active_queue()];
        assert!(rng.activate(mem.clone(), interrupt(), two).is_err());
        assert!(rng.activate(mem.clone(), interrupt(), vec![]).is_err());
        assert_eq!(rng.device_type(), 4);
        assert_eq!(rng.queue_max_sizes(), &[QUEUE_SIZE]);
        assert_eq!(rng.avail_features(), VIRTIO_F_VERSION_1);
        let mut config = [0xffu8; 4];
        rng.read_config(0, &mut config);
        assert_eq!(config, [0; 4]);
    }
}
