//! The entropy device on the event loop: fill buffers when the driver notifies the queue.

use event_manager::{EventOps, Events, MutEventSubscriber};

use super::Rng;

impl MutEventSubscriber for Rng {
    fn init(&mut self, ops: &mut EventOps) {
        self.state.events.init(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if self.state.events.handle(&events, ops).is_some() {
            self.process_queue();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, interrupt, writable, Driver, DATA_BASE};
    use crate::virtio::VirtioDevice;
    use event_manager::{EventManager, SubscriberOps};
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_notification_on_the_event_loop_fills_the_queue() {
        let mem = guest_memory();
        let mut driver = Driver::new(&mem, 16);
        let rng = Arc::new(Mutex::new(Rng::new().unwrap()));
        let mut manager = EventManager::<Arc<Mutex<Rng>>>::new().unwrap();
        manager.add_subscriber(rng.clone());

        let queue = driver.active_queue();
        let notify = queue.notify.try_clone().unwrap();
        let irq = interrupt();
        rng.lock()
            .unwrap()
            .activate(mem.clone(), irq.clone(), vec![queue])
            .unwrap();
        manager.run_with_timeout(0).unwrap(); // applies the activation

        driver.add_chain(&[writable(DATA_BASE, 32)]);
        notify.write(1).unwrap();
        manager.run_with_timeout(0).unwrap();
        assert_eq!(driver.used_idx(), 1);
        assert_eq!(driver.used(0).1, 32);
        assert_eq!(irq.irqfd().read().unwrap(), 1);
    }
}
