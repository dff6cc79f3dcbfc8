//! virtio-blk (block device, type 2) backed by a raw or qcow2 image file (virtio 1.2, section
//! 5.2).
//!
//! One request queue; requests are served synchronously on the event-loop thread. The image is
//! an `imago` format driver (raw, or qcow2 with its backing chain opened read-only) that reads
//! into and writes from guest memory directly; FLUSH writes out the driver's cached metadata,
//! then syncs the files. The format comes from the configuration, never from the image.
//!
//! Status choices where the spec leaves room (all documented in `request.rs`):
//! - writes to a read-only disk complete with `VIRTIO_BLK_S_IOERR` (spec 5.2.6.2 requires
//!   IOERR when VIRTIO_BLK_F_RO is offered) and write nothing;
//! - unknown request types complete with `VIRTIO_BLK_S_UNSUPP`;
//! - malformed requests (short header, readable buffer after a writable one, unreachable
//!   buffers, zero-length or non-sector-multiple data, out-of-range sectors) complete with
//!   `VIRTIO_BLK_S_IOERR`;
//! - a chain without a usable status byte (last descriptor not device-writable, empty or
//!   outside guest RAM) is returned to the used ring with length 0 and nothing written.

mod config;
mod device;
mod disk;
mod event_handler;
mod request;

pub use device::{Block, BlockOptions};
pub use disk::SECTOR_SIZE;

#[cfg(test)]
mod qcow2_tests;
#[cfg(test)]
mod tests;
