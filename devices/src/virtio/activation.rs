//! The activation state every virtio device shares: what the transport hands over at
//! DRIVER_OK (guest memory, the interrupt, the queues) and the queues' notification events on
//! the event loop, set up and torn down together so no device can do one without the other.

use std::sync::Arc;

use log::error;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{QueueEvents, VirtioInterrupt};
use crate::Result;

/// What a running device works on; `Q` is its queues (one `Queue`, or several).
pub struct Active<Q> {
    /// The guest's memory.
    pub mem: GuestMemoryMmap,
    /// The interrupt it raises.
    pub interrupt: Arc<VirtioInterrupt>,
    /// Its queues as the driver configured them.
    pub queues: Q,
}

/// A device's activation: inactive, or running on what the transport handed over.
pub struct Activation<Q> {
    active: Option<Active<Q>>,
    /// The queues' notification events, registered with the event loop while active.
    pub events: QueueEvents,
}

impl<Q> Activation<Q> {
    /// An inactive device.
    pub fn new() -> Result<Activation<Q>> {
        Ok(Activation {
            active: None,
            events: QueueEvents::new()?,
        })
    }

    /// Starts running on `queues`, their notification events (`notify`, in queue order) now
    /// served by the event loop.
    pub fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<VirtioInterrupt>,
        queues: Q,
        notify: Vec<EventFd>,
    ) -> Result<()> {
        self.events.activate(notify)?;
        self.active = Some(Active {
            mem,
            interrupt,
            queues,
        });
        Ok(())
    }

    /// Back to inactive (the driver reset the device); `device` names it in the log.
    pub fn reset(&mut self, device: &str) {
        self.active = None;
        if let Err(e) = self.events.reset() {
            error!("{device}: {e}");
        }
    }

    /// The running state, or None before activation and after a reset.
    pub fn active_mut(&mut self) -> Option<&mut Active<Q>> {
        self.active.as_mut()
    }
}
