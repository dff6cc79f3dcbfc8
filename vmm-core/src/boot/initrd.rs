//! Placing the initramfs: page-aligned at the top of low RAM, where it cannot overlap the kernel
//! and stays below any initrd address limit a kernel may have.

use std::fs::File;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::memory::low_ram_end;

const PAGE_SIZE: u64 = 4096;

/// Where the initrd was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    /// Guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Chooses the address for an initrd of `size` bytes in a guest of `mem_bytes`, above
/// `kernel_end`.
pub fn place(size: u64, kernel_end: u64, mem_bytes: u64) -> Result<InitrdPlacement> {
    let low_end = low_ram_end(mem_bytes);
    let too_large = || Error::InitrdTooLarge {
        size,
        kernel_end,
        low_end,
    };
    let addr = low_end.checked_sub(size).ok_or_else(too_large)? & !(PAGE_SIZE - 1);
    if addr < kernel_end {
        return Err(too_large());
    }
    Ok(InitrdPlacement { addr, size })
}

/// Loads the initrd file at `path` into guest memory.
pub fn load(
    mem: &GuestMemoryMmap,
    path: &str,
    kernel_end: u64,
    mem_bytes: u64,
) -> Result<InitrdPlacement> {
    let file_error = |source| Error::File {
        what: "cannot read initrd",
        path: path.to_string(),
        source,
    };
    let mut file = File::open(path).map_err(file_error)?;
    let size = file.metadata().map_err(file_error)?.len();
    let placement = place(size, kernel_end, mem_bytes)?;
    let len = usize::try_from(size).map_err(|_| Error::InitrdTooLarge {
        size,
        kernel_end,
        low_end: low_ram_end(mem_bytes),
    })?;
    mem.read_exact_volatile_from(GuestAddress(placement.addr), &mut file, len)
        .map_err(|e| Error::BootSetup {
            what: "initrd",
            reason: format!("{path}: {e}"),
        })?;
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn goes_page_aligned_to_the_top_of_low_ram() {
        let p = place(10_000, 2 * MIB, 64 * MIB).unwrap();
        assert_eq!(p.addr, (64 * MIB - 10_000) & !0xfff);
        assert_eq!(p.addr % PAGE_SIZE, 0);
        assert!(p.addr + p.size <= 64 * MIB);
    }

    #[test]
    fn stays_below_the_mmio_hole_in_large_guests() {
        let p = place(MIB, 2 * MIB, 8 << 30).unwrap();
        assert_eq!(p.addr, 0xc000_0000 - MIB);
    }

    #[test]
    fn refuses_overlap_with_the_kernel_or_too_large_files() {
        assert!(matches!(
            place(60 * MIB, 8 * MIB, 64 * MIB),
            Err(Error::InitrdTooLarge { .. })
        ));
        assert!(matches!(
            place(u64::MAX, 0, 64 * MIB),
            Err(Error::InitrdTooLarge { .. })
        ));
    }
}
