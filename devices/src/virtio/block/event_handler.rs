//! The block device on the event loop: serve requests when the driver notifies the queue.

use event_manager::{EventOps, Events, MutEventSubscriber};

use super::Block;

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        self.state.events.init(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if self.state.events.handle(&events, ops).is_some() {
            self.process_queue();
        }
    }
}
