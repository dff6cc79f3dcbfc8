//! Keeps a device's event-loop registrations in step with its activation state.

use std::os::fd::AsRawFd;

use event_manager::{EventOps, EventSet, Events};
use log::{error, warn};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::{Error, Result};

/// The queue notification events a device's event handler watches, and the wake-up event
/// through which the device (on a vCPU thread) tells the handler (on the event-loop thread)
/// that the set changed.
///
/// The event manager only lets a subscriber change its registrations from inside its own
/// `init`/`process` calls, but activation and reset happen on vCPU threads. So
/// [`activate`](Self::activate) and [`reset`](Self::reset) only record the wanted set and wake
/// the loop; [`handle`](Self::handle), called from `process`, applies it. Usage in a device:
///
/// - `VirtioDevice::activate`: pass the `notify` event of every [`super::ActiveQueue`], in
///   queue order, to [`activate`](Self::activate), and keep the queues;
/// - `VirtioDevice::reset`: [`reset`](Self::reset);
/// - `MutEventSubscriber::init`: [`init`](Self::init);
/// - `MutEventSubscriber::process`: `if let Some(queue) = self.events.handle(&events, ops)`,
///   run that queue; other events (a backend's own fds) are the device's to recognise first.
///
/// The device must be added to the event manager, or its queues never run.
#[derive(Debug)]
pub struct QueueEvents {
    wake: EventFd,
    /// The events in the epoll set now; index = queue index.
    registered: Vec<EventFd>,
    /// The set to register at the next wake-up, if it changed since the last one.
    pending: Option<Vec<EventFd>>,
}

impl QueueEvents {
    /// An empty set with its wake-up event.
    pub fn new() -> Result<QueueEvents> {
        Ok(QueueEvents {
            wake: EventFd::new(EFD_NONBLOCK)
                .map_err(Error::io("creating a device wake-up eventfd"))?,
            registered: Vec::new(),
            pending: None,
        })
    }

    /// Registers the wake-up event; call from `MutEventSubscriber::init`.
    pub fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            error!(
                "cannot watch a virtio device's wake-up event: {e:?}; its queues will never run"
            );
        }
    }

    /// Asks the event loop to watch `events` (index = queue index) instead of the current set.
    pub fn activate(&mut self, events: Vec<EventFd>) -> Result<()> {
        self.pending = Some(events);
        self.wake()
    }

    /// Asks the event loop to stop watching the queue events.
    pub fn reset(&mut self) -> Result<()> {
        self.pending = Some(Vec::new());
        self.wake()
    }

    fn wake(&self) -> Result<()> {
        self.wake
            .write(1)
            .map_err(Error::io("waking the event loop for a virtio device"))
    }

    /// Handles one event given to `MutEventSubscriber::process`: applies a pending change on a
    /// wake-up, and returns the queue index when a queue was notified (its event is drained,
    /// so the queue should then be processed until empty).
    pub fn handle(&mut self, events: &Events, ops: &mut EventOps) -> Option<usize> {
        let fd = events.fd();
        if fd == self.wake.as_raw_fd() {
            // Drained even when empty: a second wake-up for an already applied change is fine.
            let _ = self.wake.read();
            self.apply_pending(ops);
            return None;
        }
        let index = usize::try_from(events.data()).ok()?;
        match self.registered.get(index) {
            Some(event) if event.as_raw_fd() == fd => {
                // EAGAIN means another wake-up already drained it; the queue still gets a pass.
                let _ = event.read();
                Some(index)
            }
            _ => {
                warn!("virtio device got an event for fd {fd} it does not watch");
                None
            }
        }
    }

    /// Signals queue `index`'s own notification event, so the loop gives the queue another
    /// pass after serving whatever else is ready; for a pass that ended with work left (see
    /// [`super::drain::Pass::more`]). Nothing happens for a queue that is not watched.
    pub fn rearm(&self, index: usize) {
        if let Some(event) = self.registered.get(index) {
            if let Err(e) = event.write(1) {
                error!(
                    "cannot re-arm virtio queue {index}: {e}; it waits for the next notification"
                );
            }
        }
    }

    fn apply_pending(&mut self, ops: &mut EventOps) {
        let Some(wanted) = self.pending.take() else {
            return;
        };
        for event in self.registered.drain(..) {
            if let Err(e) = ops.remove(Events::new(&event, EventSet::IN)) {
                warn!("cannot stop watching a virtio queue event: {e:?}");
            }
        }
        for (index, event) in wanted.iter().enumerate() {
            // Queue counts come from `VirtioDevice::queue_max_sizes`, far below u32::MAX.
            let data = u32::try_from(index).unwrap_or(u32::MAX);
            if let Err(e) = ops.add(Events::with_data(event, data, EventSet::IN)) {
                error!("cannot watch virtio queue {index}'s notifications: {e:?}; the queue will stall");
            }
        }
        self.registered = wanted;
    }

    /// Whether the event loop currently watches any queue event (after the last applied change).
    pub fn watching(&self) -> bool {
        !self.registered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
    use std::sync::{Arc, Mutex};

    /// A subscriber that records which queues were notified.
    struct Recorder {
        events: QueueEvents,
        notified: Vec<usize>,
    }

    impl MutEventSubscriber for Recorder {
        fn init(&mut self, ops: &mut EventOps) {
            self.events.init(ops);
        }
        fn process(&mut self, events: Events, ops: &mut EventOps) {
            if let Some(queue) = self.events.handle(&events, ops) {
                self.notified.push(queue);
            }
        }
    }

    fn eventfd() -> EventFd {
        EventFd::new(EFD_NONBLOCK).unwrap()
    }

    fn setup() -> (EventManager<Arc<Mutex<Recorder>>>, Arc<Mutex<Recorder>>) {
        let mut manager = EventManager::new().unwrap();
        let recorder = Arc::new(Mutex::new(Recorder {
            events: QueueEvents::new().unwrap(),
            notified: Vec::new(),
        }));
        manager.add_subscriber(recorder.clone());
        (manager, recorder)
    }

    #[test]
    fn activation_registers_queue_events_and_routes_them_by_index() {
        let (mut manager, recorder) = setup();
        let (q0, q1) = (eventfd(), eventfd());
        let events = vec![q0.try_clone().unwrap(), q1.try_clone().unwrap()];
        recorder.lock().unwrap().events.activate(events).unwrap();
        manager.run_with_timeout(0).unwrap();
        assert!(recorder.lock().unwrap().events.watching());

        q1.write(1).unwrap();
        manager.run_with_timeout(0).unwrap();
        q0.write(1).unwrap();
        manager.run_with_timeout(0).unwrap();
        assert_eq!(recorder.lock().unwrap().notified, vec![1, 0]);
        // Handled events are drained: nothing fires again.
        assert_eq!(manager.run_with_timeout(0).unwrap(), 0);
    }

    #[test]
    fn reset_unregisters_and_reactivation_works_again() {
        let (mut manager, recorder) = setup();
        let q0 = eventfd();
        let activate = |r: &Arc<Mutex<Recorder>>| {
            let events = vec![q0.try_clone().unwrap()];
            r.lock().unwrap().events.activate(events).unwrap();
        };
        activate(&recorder);
        manager.run_with_timeout(0).unwrap();
        recorder.lock().unwrap().events.reset().unwrap();
        manager.run_with_timeout(0).unwrap();
        assert!(!recorder.lock().unwrap().events.watching());

        // A notification while reset is not delivered...
        q0.write(1).unwrap();
        assert_eq!(manager.run_with_timeout(0).unwrap(), 0);
        assert!(recorder.lock().unwrap().notified.is_empty());
        // ...and is picked up once the device is activated again.
        activate(&recorder);
        manager.run_with_timeout(0).unwrap();
        manager.run_with_timeout(0).unwrap();
        assert_eq!(recorder.lock().unwrap().notified, vec![0]);
    }

    #[test]
    fn activate_then_reset_before_the_loop_runs_leaves_nothing_watched() {
        let (mut manager, recorder) = setup();
        {
            let mut r = recorder.lock().unwrap();
            r.events.activate(vec![eventfd()]).unwrap();
            r.events.reset().unwrap();
        }
        manager.run_with_timeout(0).unwrap();
        assert!(!recorder.lock().unwrap().events.watching());
    }
}
