//! The loop every device runs when a queue is notified: pop each available chain, handle it,
//! return it to the used ring, and interrupt the driver once at the end.

use log::{error, warn};
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::VirtioInterrupt;

/// A descriptor chain as devices receive it.
pub type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Handles every chain available in `queue`: `handle` gets each one and returns how many bytes
/// it wrote into the chain's device-writable buffers (the used length). Returns how many
/// chains went back to the used ring; the driver is interrupted if any did and it wants to be.
///
/// Driver notifications are suppressed while the loop runs and re-checked before it ends, so a
/// chain added during the pass is not missed. A queue whose available index is corrupt (more
/// chains than its size) yields nothing and ends the loop: it must not spin the event loop.
pub fn drain_queue<'m, F>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
    interrupt: &VirtioInterrupt,
    mut handle: F,
) -> usize
where
    F: FnMut(Chain<'m>) -> u32,
{
    if !queue.ready() {
        return 0;
    }
    let mut used = 0;
    loop {
        if let Err(e) = queue.disable_notification(mem) {
            warn!("virtio queue: cannot suppress notifications: {e}");
        }
        let mut popped = 0usize;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            popped += 1;
            let head = chain.head_index();
            let len = handle(chain);
            match queue.add_used(mem, head, len) {
                Ok(()) => used += 1,
                // A head index the driver made up: there is no slot to give back.
                Err(e) => warn!("virtio queue: chain with head {head} not returned: {e}"),
            }
        }
        match queue.enable_notification(mem) {
            Ok(true) if popped > 0 => continue,
            Ok(true) => {
                warn!("virtio queue: the available ring index is corrupt; waiting for a reset");
                break;
            }
            Ok(false) => break,
            Err(e) => {
                warn!("virtio queue: cannot re-enable notifications: {e}");
                break;
            }
        }
    }
    if used > 0 {
        // If the driver's suppression hint cannot be read, interrupting is the safe choice.
        if queue.needs_notification(mem).unwrap_or(true) {
            if let Err(e) = interrupt.signal_used_queue() {
                error!("{e}");
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, interrupt, writable, Driver, DATA_BASE};

    #[test]
    fn every_chain_is_used_and_the_driver_interrupted_once() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 8);
        for i in 0..3 {
            driver.add_chain(&[writable(DATA_BASE + i * 0x100, 16)]);
        }
        let mut queue = driver.queue();
        let irq = interrupt();
        let mut heads = Vec::new();
        let used = drain_queue(&mut queue, &mem, &irq, |chain| {
            heads.push(chain.head_index());
            7
        });
        assert_eq!(used, 3);
        assert_eq!(heads, vec![0, 1, 2]);
        assert_eq!(driver.used_idx(), 3);
        assert_eq!(driver.used(2), (2, 7));
        assert_eq!(irq.irqfd().read().unwrap(), 1);
        // Nothing new: nothing used, no interrupt.
        assert_eq!(drain_queue(&mut queue, &mem, &irq, |_| 0), 0);
        assert!(irq.irqfd().read().is_err());
    }

    #[test]
    fn a_corrupt_available_index_ends_the_pass() {
        let mem = guest_memory();
        let driver = Driver::new(&mem, 8);
        let mut queue = driver.queue();
        // More chains announced than the queue can hold.
        driver.set_avail_idx(100);
        let irq = interrupt();
        assert_eq!(drain_queue(&mut queue, &mem, &irq, |_| 0), 0);
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn a_queue_that_is_not_ready_is_left_alone() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 8);
        driver.add_chain(&[writable(DATA_BASE, 16)]);
        let mut queue = driver.queue();
        queue.set_ready(false);
        assert_eq!(drain_queue(&mut queue, &mem, &interrupt(), |_| 0), 0);
        assert_eq!(driver.used_idx(), 0);
    }

    #[test]
    fn event_idx_lets_the_driver_postpone_the_interrupt() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 8);
        driver.add_chain(&[writable(DATA_BASE, 16)]);
        let mut queue = driver.queue();
        queue.set_event_idx(true);
        // The driver asks for an interrupt only once entry 5 is used.
        driver.set_used_event(5);
        let irq = interrupt();
        assert_eq!(drain_queue(&mut queue, &mem, &irq, |_| 0), 1);
        assert_eq!(irq.status(), 0);
        assert!(irq.irqfd().read().is_err());
    }
}
