//! virtio-rng (entropy device, type 4): one queue of device-writable buffers that the device
//! fills with random bytes from the host (virtio 1.2, section 5.4).

mod device;
mod event_handler;

pub use device::Rng;
