//! Putting a kernel into guest memory and describing the machine to it.
//!
//! [`kernel`] loads the image and decides how the boot vCPU enters it; [`cmdline`] and
//! [`initrd`] place their payloads; [`pvh`] and [`zero_page`] write the boot-protocol structures
//! that point at all of it.

pub mod cmdline;
pub mod initrd;
pub mod kernel;
pub mod pvh;
pub mod zero_page;

use vm_memory::GuestMemoryMmap;

use crate::arch::regs::EntryPoint;
use crate::error::Result;
use crate::memory::MemoryMapEntry;

pub use initrd::InitrdPlacement;
pub use kernel::LoadedKernel;

/// Writes the boot-protocol structure matching how `kernel` is entered: PVH `start_info` or the
/// Linux `boot_params`.
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    map: &[MemoryMapEntry],
) -> Result<()> {
    match kernel.entry {
        EntryPoint::Pvh { .. } => pvh::write_start_info(mem, initrd, map),
        EntryPoint::Linux64 { .. } => {
            zero_page::write_boot_params(mem, kernel.setup_header, cmdline_len, initrd, map)
        }
    }
}
