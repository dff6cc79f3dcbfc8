//! The loop every device runs when a queue is notified: pop the available chains, handle them,
//! return them to the used ring, and interrupt the driver once at the end.
//!
//! All devices share one event-loop thread with the exit monitor and the host's shutdown, so a
//! pass is bounded: a guest that keeps posting gets at most `budget` chains served per pass and
//! the rest in later passes, after the loop has served everyone else that is ready.

use log::{error, warn};
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::VirtioInterrupt;

/// A descriptor chain as devices receive it.
pub type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// What one [`drain_queue`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Chains returned to the used ring.
    pub used: usize,
    /// The budget ran out with chains possibly still available: the caller must schedule
    /// another pass (re-arm the queue's event, see [`super::QueueEvents::rearm`]), because the
    /// driver's notifications stay suppressed until a pass ends with the queue empty.
    pub more: bool,
}

/// Handles up to `budget` chains available in `queue`: `handle` gets each one and returns how
/// many bytes it wrote into the chain's device-writable buffers (the used length). The driver
/// is interrupted if any chain went back to the used ring and it wants to be.
///
/// Driver notifications are suppressed while the loop runs and re-checked before it ends, so a
/// chain added during the pass is not missed: either it is served in this pass, or the pass
/// ends with [`Pass::more`]. A queue whose available index is corrupt (more chains than its
/// size) yields nothing and ends the loop: it must not spin the event loop.
pub fn drain_queue<'m, F>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
    interrupt: &VirtioInterrupt,
    budget: usize,
    mut handle: F,
) -> Pass
where
    F: FnMut(Chain<'m>) -> u32,
{
    let mut pass = Pass::default();
    if !queue.ready() {
        return pass;
    }
    let mut served = 0usize;
    loop {
        if let Err(e) = queue.disable_notification(mem) {
            warn!("virtio queue: cannot suppress notifications: {e}");
        }
        let mut popped = 0usize;
        while served < budget {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            popped += 1;
            served += 1;
            let head = chain.head_index();
            let len = handle(chain);
            match queue.add_used(mem, head, len) {
                Ok(()) => pass.used += 1,
                // A head index the driver made up: there is no slot to give back.
                Err(e) => warn!("virtio queue: chain with head {head} not returned: {e}"),
            }
        }
        if served >= budget {
            // Notifications stay off: the caller's next pass picks up what is left.
            pass.more = true;
            break;
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
    if pass.used > 0 {
        // If the driver's suppression hint cannot be read, interrupting is the safe choice.
        if queue.needs_notification(mem).unwrap_or(true) {
            if let Err(e) = interrupt.signal_used_queue() {
                error!("{e}");
            }
        }
    }
    pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use event_manager::{
        EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps,
    };
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use crate::virtio::test_utils::{guest_memory, interrupt, repost, writable, Driver, DATA_BASE};
    use crate::virtio::QueueEvents;

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
        let pass = drain_queue(&mut queue, &mem, &irq, 8, |chain| {
            heads.push(chain.head_index());
            7
        });
        assert_eq!(
            pass,
            Pass {
                used: 3,
                more: false
            }
        );
        assert_eq!(heads, vec![0, 1, 2]);
        assert_eq!(driver.used_idx(), 3);
        assert_eq!(driver.used(2), (2, 7));
        assert_eq!(irq.irqfd().read().unwrap(), 1);
        // Nothing new: nothing used, no interrupt.
        assert_eq!(
            drain_queue(&mut queue, &mem, &irq, 8, |_| 0),
            Pass::default()
        );
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
        assert_eq!(
            drain_queue(&mut queue, &mem, &irq, 8, |_| 0),
            Pass::default()
        );
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn a_queue_that_is_not_ready_is_left_alone() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 8);
        driver.add_chain(&[writable(DATA_BASE, 16)]);
        let mut queue = driver.queue();
        queue.set_ready(false);
        assert_eq!(
            drain_queue(&mut queue, &mem, &interrupt(), 8, |_| 0).used,
            0
        );
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
        assert_eq!(drain_queue(&mut queue, &mem, &irq, 8, |_| 0).used, 1);
        assert_eq!(irq.status(), 0);
        assert!(irq.irqfd().read().is_err());
    }

    #[test]
    fn a_pass_stops_at_its_budget_and_says_more_is_left() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 8);
        for i in 0..5 {
            driver.add_chain(&[writable(DATA_BASE + i * 0x100, 16)]);
        }
        let mut queue = driver.queue();
        let irq = interrupt();
        let pass = drain_queue(&mut queue, &mem, &irq, 2, |_| 0);
        assert_eq!(
            pass,
            Pass {
                used: 2,
                more: true
            }
        );
        assert_eq!(driver.used_idx(), 2);
        // The driver hears about the first two at once, not after the whole queue.
        assert_eq!(irq.irqfd().read().unwrap(), 1);
        assert_eq!(drain_queue(&mut queue, &mem, &irq, 2, |_| 0).used, 2);
        let last = drain_queue(&mut queue, &mem, &irq, 2, |_| 0);
        assert_eq!(
            last,
            Pass {
                used: 1,
                more: false
            }
        );
        assert_eq!(driver.used_idx(), 5);
    }

    const BUDGET: usize = 4;
    const SIZE: u16 = 8;

    /// A device whose driver re-posts every buffer the moment it comes back: it never runs
    /// out of work. Records how many chains each pass served.
    struct Producer {
        mem: vm_memory::GuestMemoryMmap,
        queue: virtio_queue::Queue,
        events: QueueEvents,
        irq: Arc<VirtioInterrupt>,
        served: Arc<AtomicUsize>,
        passes: Vec<usize>,
    }

    impl MutEventSubscriber for Producer {
        fn init(&mut self, ops: &mut EventOps) {
            self.events.init(ops);
        }

        fn process(&mut self, events: Events, ops: &mut EventOps) {
            if self.events.handle(&events, ops).is_none() {
                return;
            }
            let (mem, served) = (&self.mem, &self.served);
            let pass = drain_queue(&mut self.queue, mem, &self.irq, BUDGET, |chain| {
                served.fetch_add(1, Ordering::SeqCst);
                repost(mem, SIZE, chain.head_index());
                0
            });
            self.passes.push(pass.used);
            if pass.more {
                self.events.rearm(0);
            }
        }
    }

    /// Another subscriber on the same loop (the exit monitor's shutdown, another device):
    /// notes how many producer chains had been served when it got to run.
    struct Other {
        event: EventFd,
        served: Arc<AtomicUsize>,
        ran_at: Vec<usize>,
    }

    impl MutEventSubscriber for Other {
        fn init(&mut self, ops: &mut EventOps) {
            ops.add(Events::new(&self.event, EventSet::IN)).unwrap();
        }

        fn process(&mut self, _events: Events, _ops: &mut EventOps) {
            self.event.read().unwrap();
            self.ran_at.push(self.served.load(Ordering::SeqCst));
        }
    }

    #[test]
    fn a_producer_that_never_stops_cannot_hold_the_event_loop() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, SIZE);
        for i in 0..u64::from(SIZE) {
            driver.add_chain(&[writable(DATA_BASE + i * 0x100, 16)]);
        }
        let active = driver.active_queue();
        let notify = active.notify.try_clone().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let mut events = QueueEvents::new().unwrap();
        events.activate(vec![active.notify]).unwrap();
        let producer = Arc::new(Mutex::new(Producer {
            mem: mem.clone(),
            queue: active.queue,
            events,
            irq: interrupt(),
            served: served.clone(),
            passes: Vec::new(),
        }));
        let other = Arc::new(Mutex::new(Other {
            event: EventFd::new(EFD_NONBLOCK).unwrap(),
            served: served.clone(),
            ran_at: Vec::new(),
        }));
        let mut manager = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
        manager.add_subscriber(producer.clone());
        manager.add_subscriber(other.clone());
        // Applies the activation.
        manager.run_with_timeout(0).unwrap();

        notify.write(1).unwrap();
        other.lock().unwrap().event.write(1).unwrap();
        for _ in 0..10 {
            manager.run_with_timeout(0).unwrap();
        }

        let producer = producer.lock().unwrap();
        // The producer kept the loop busy on every dispatch, one bounded pass at a time...
        assert_eq!(producer.passes, vec![BUDGET; 10]);
        assert_eq!(served.load(Ordering::SeqCst), 10 * BUDGET);
        // ... yet the other subscriber ran once, at most one pass after it was signalled.
        let ran_at = &other.lock().unwrap().ran_at;
        assert_eq!(ran_at.len(), 1);
        assert!(
            ran_at[0] <= BUDGET,
            "the other subscriber waited for {} chains",
            ran_at[0]
        );
    }
}
