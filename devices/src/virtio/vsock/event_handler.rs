//! The vsock device on the event loop: the three queue events (through [`QueueEvents`]) and
//! the backend's epoll set, which holds the Unix listener, every host stream and a timer.
//!
//! [`QueueEvents`]: crate::virtio::QueueEvents

use std::os::unix::io::AsRawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use log::error;

use super::device::{RX, TX};
use super::Vsock;

impl MutEventSubscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps) {
        self.state.events.init(ops);
        if let Err(e) = ops.add(Events::new(self.muxer(), EventSet::IN)) {
            error!("vsock: cannot watch the host sockets: {e:?}; no connection will work");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.muxer().as_raw_fd() {
            self.handle_backend_event();
            return;
        }
        match self.state.events.handle(&events, ops) {
            Some(TX) => self.handle_tx_notify(),
            // New RX buffers; or, after a wake-up (activation), packets queued before it.
            Some(RX) | None => self.process_rx(),
            // The event queue: the device posts no events.
            Some(_) => {}
        }
    }
}
