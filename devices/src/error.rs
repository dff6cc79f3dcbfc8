//! The boxlite-devices error type.

use std::io;

/// Result alias for boxlite-devices.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while setting up or activating a device.
///
/// Guest mistakes at run time are not errors of this type: they end up in the guest-visible
/// state (a virtio status byte, DEVICE_NEEDS_RESET) and in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bus range was empty or ran past the end of the address space.
    #[error("bus range {base:#x}+{len:#x} is empty or wraps the address space; give each device a non-empty window")]
    BusRangeInvalid {
        /// Requested base.
        base: u64,
        /// Requested length.
        len: u64,
    },
    /// A bus range overlapped one already mapped.
    #[error(
        "bus range {base:#x}..{end:#x} overlaps a device already on the bus; pick a free window"
    )]
    BusRangeOverlap {
        /// Requested base.
        base: u64,
        /// Requested end (exclusive).
        end: u64,
    },
    /// A host system call (eventfd, read, write) failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// A block device's backing image could not be opened or sized.
    #[error("block image {path}: {what}: {source}; check that the file exists and is accessible")]
    BlockImage {
        /// Image path.
        path: String,
        /// The operation that failed.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// A block device serial (its VIRTIO_BLK_T_GET_ID answer) does not fit the 20 bytes the
    /// protocol has for it.
    #[error(
        "block serial {serial:?} is {len} bytes long; virtio-blk serials are at most 20 bytes"
    )]
    BlockSerialTooLong {
        /// The serial given.
        serial: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A device declares something its transport cannot offer (a host-side bug).
    #[error("virtio device type {device_type} cannot be put behind a transport: {reason}")]
    InvalidDevice {
        /// The virtio device ID.
        device_type: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The vsock device could not be created (bad guest CID, unusable Unix socket path).
    #[error("vsock: {0}")]
    Vsock(#[from] crate::virtio::vsock::VsockError),
    /// A device refused to activate with the queues the driver set up.
    #[error("virtio {device} device cannot activate: {reason}")]
    Activate {
        /// The device kind ("block", "rng", ...).
        device: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation it came from.
    pub fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
