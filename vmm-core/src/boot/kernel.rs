//! Loading the kernel image and choosing its entry point.
//!
//! An ELF vmlinux with a PVH note is entered through PVH (the fastest path: no decompression, no
//! real-mode setup). An ELF without the note is entered at its ELF entry through the Linux 64-bit
//! boot protocol, and a bzImage at its 64-bit entry (load address + 0x200).

use std::fs::File;
use std::io::Read;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arch::regs::EntryPoint;
use crate::error::{Error, Result};
use crate::layout::HIMEM_START;

/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode kernel.
const BZIMAGE_ENTRY_64_OFFSET: u64 = 0x200;
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];

/// A kernel in guest memory.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// How the boot vCPU enters it.
    pub entry: EntryPoint,
    /// First byte after the loaded image.
    pub kernel_end: u64,
    /// The bzImage setup header, which the zero page must start from.
    pub setup_header: Option<setup_header>,
}

/// Image formats we recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Elf,
    BzImage,
}

fn detect(file: &mut File, path: &str) -> Result<Format> {
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(|e| Error::KernelLoad {
        path: path.to_string(),
        reason: format!("too short to be a kernel image ({e})"),
    })?;
    Ok(if magic == ELF_MAGIC {
        Format::Elf
    } else {
        Format::BzImage
    })
}

/// Loads the kernel at `path` into `mem`.
pub fn load(mem: &GuestMemoryMmap, path: &str) -> Result<LoadedKernel> {
    let mut file = File::open(path).map_err(|source| Error::File {
        what: "cannot open kernel",
        path: path.to_string(),
        source,
    })?;
    let format = detect(&mut file, path)?;
    let load_error = |e: linux_loader::loader::Error| Error::KernelLoad {
        path: path.to_string(),
        reason: match format {
            Format::Elf => format!("not a loadable x86_64 ELF kernel: {e}"),
            Format::BzImage => format!("neither an ELF nor a valid bzImage: {e}"),
        },
    };
    let himem = Some(GuestAddress(HIMEM_START));
    let loaded = match format {
        Format::Elf => {
            let result = Elf::load(mem, None, &mut file, himem).map_err(load_error)?;
            let entry = match result.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => EntryPoint::Pvh { entry: addr.0 },
                _ => EntryPoint::Linux64 {
                    entry: result.kernel_load.0,
                },
            };
            LoadedKernel {
                entry,
                kernel_end: result.kernel_end,
                setup_header: None,
            }
        }
        Format::BzImage => {
            let result = BzImage::load(mem, None, &mut file, himem).map_err(load_error)?;
            LoadedKernel {
                entry: EntryPoint::Linux64 {
                    entry: result.kernel_load.0 + BZIMAGE_ENTRY_64_OFFSET,
                },
                kernel_end: result.kernel_end,
                setup_header: result.setup_header,
            }
        }
    };
    log::debug!(
        "kernel {path}: {format:?}, entry {:?}, ends at {:#x}",
        loaded.entry,
        loaded.kernel_end
    );
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;
    use std::io::Write;

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("boxlite-kernel-test-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    #[test]
    fn missing_kernel_names_the_path() {
        let mem = create_guest_memory(16).unwrap();
        let err = load(&mem, "/nonexistent/vmlinux").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
    }

    #[test]
    fn garbage_and_truncated_images_are_refused() {
        let mem = create_guest_memory(16).unwrap();
        for (name, bytes) in [
            ("empty", &b""[..]),
            ("garbage", &[0x55u8; 8192][..]),
            ("elf-header-only", &b"\x7fELF\x02\x01\x01\0"[..]),
        ] {
            let path = temp_file(name, bytes);
            let err = load(&mem, path.to_str().unwrap()).unwrap_err();
            assert!(matches!(err, Error::KernelLoad { .. }), "{name}: {err}");
            std::fs::remove_file(path).unwrap();
        }
    }
}
