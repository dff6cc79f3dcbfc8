//! The vmm-core error type.

use std::io;

/// Result alias for vmm-core.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A set-up step of the caller's on one of the VM's threads failed (see
    /// [`crate::vmm::ThreadHooks`]), e.g. installing a seccomp filter.
    #[error("setting up the {thread} thread: {reason}")]
    ThreadSetup {
        /// Which thread.
        thread: String,
        /// What went wrong.
        reason: String,
    },
    /// The VM configuration is invalid; the message says which field and why.
    #[error("invalid VM configuration: {0}")]
    InvalidConfig(String),
    /// /dev/kvm could not be opened or lacks something we need.
    #[error("KVM is not usable: {0}")]
    KvmUnavailable(String),
    /// A KVM ioctl failed.
    #[error("KVM {what} failed: {source}")]
    Kvm {
        /// The operation that failed.
        what: &'static str,
        /// The errno it failed with.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be allocated or accessed.
    #[error("guest memory: {0}")]
    GuestMemory(String),
    /// A host file (kernel, initrd, console) could not be used.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The kernel image could not be loaded.
    #[error("cannot load kernel {path}: {reason}")]
    KernelLoad {
        /// Kernel path.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The initrd does not fit in guest memory.
    #[error("initrd of {size} bytes does not fit in guest RAM between the kernel end {kernel_end:#x} and {low_end:#x}; give the VM more memory")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// End of the loaded kernel.
        kernel_end: u64,
        /// End of low RAM.
        low_end: u64,
    },
    /// Writing the boot structures into guest memory failed.
    #[error("writing {what} into guest memory failed: {reason}")]
    BootSetup {
        /// The structure.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A device could not be set up (bus window, virtio device).
    #[error(transparent)]
    Device(#[from] boxlite_devices::Error),
    /// An event-loop or thread operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
}

impl Error {
    /// Wraps a KVM ioctl error with the operation it came from.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { what, source }
    }

    /// Wraps an I/O error with the operation it came from.
    pub fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
