//! The backing image, addressed in 512-byte sectors: a raw file or a qcow2 image (with its
//! backing chain), both served by an `imago` format driver that reads and writes guest memory
//! directly.
//!
//! The format always comes from the configuration. It is never probed from the image's bytes:
//! a guest-writable raw image may hold anything, a qcow2 header naming a host file included.

use std::io;
use std::path::{Path, PathBuf};

use boxlite_proto::DiskFormat;
use imago::file::File;
use imago::io_buffers::{IoVector, IoVectorMut};
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, Storage, StorageOpenOptions};
use log::warn;
use vm_memory::VolatileSlice;

use crate::{Error, Result};

/// The virtio-blk sector: the unit of `sector` in requests and of the capacity.
pub const SECTOR_SIZE: u64 = 512;

/// How many backing files a qcow2 chain may have below the image itself.
const MAX_BACKING_DEPTH: usize = 16;

/// A guest memory buffer of one request's data.
pub(super) type GuestSlice<'m> = VolatileSlice<'m, ()>;

/// An open image and what the guest may do with it.
pub(super) struct Disk {
    image: FormatAccess<File>,
    /// Whole sectors in the virtual disk; a trailing partial sector is not visible to the guest.
    pub(super) sectors: u64,
    pub(super) read_only: bool,
}

impl Disk {
    /// Opens `path` as `format`, read-only or read-write. A qcow2 image's backing chain is
    /// opened read-only.
    pub(super) fn open(path: &Path, format: DiskFormat, read_only: bool) -> Result<Disk> {
        let image = match format {
            DiskFormat::Raw => open_raw(path, !read_only),
            DiskFormat::Qcow2 => open_qcow2(path, !read_only, 0),
        }
        .map_err(|source| Error::BlockImage {
            path: path.display().to_string(),
            what: match format {
                DiskFormat::Raw => "open as a raw image",
                DiskFormat::Qcow2 => "open as a qcow2 image",
            },
            source,
        })?;
        let len = image.size();
        if len % SECTOR_SIZE != 0 {
            warn!(
                "block image {}: {} trailing bytes past the last whole 512-byte sector are not visible to the guest",
                path.display(),
                len % SECTOR_SIZE
            );
        }
        Ok(Disk {
            image,
            sectors: len / SECTOR_SIZE,
            read_only,
        })
    }

    /// The byte offset of `len` bytes at `sector`, if they are whole sectors inside the disk.
    pub(super) fn byte_range(&self, sector: u64, len: u64) -> Option<u64> {
        if len == 0 || len % SECTOR_SIZE != 0 {
            return None;
        }
        let end = sector.checked_add(len / SECTOR_SIZE)?;
        (end <= self.sectors).then(|| sector * SECTOR_SIZE)
    }

    /// Fills `slices` with the disk's bytes from `offset` on.
    pub(super) fn read(&self, slices: &[GuestSlice<'_>], offset: u64) -> io::Result<()> {
        let (vector, _guard) = IoVectorMut::from_volatile_slice(slices);
        self.image.readv(vector, offset)
    }

    /// Writes `slices` to the disk from `offset` on.
    pub(super) fn write(&self, slices: &[GuestSlice<'_>], offset: u64) -> io::Result<()> {
        let (vector, _guard) = IoVector::from_volatile_slice(slices);
        self.image.writev(vector, offset)
    }

    /// Makes completed writes durable: the driver's cached metadata is written out, then the
    /// files are synced.
    pub(super) fn flush(&self) -> io::Result<()> {
        self.image.flush()?;
        self.image.sync()
    }
}

fn storage(path: &Path, writable: bool) -> io::Result<File> {
    File::open(StorageOpenOptions::new().filename(path).write(writable))
}

fn open_raw(path: &Path, writable: bool) -> io::Result<FormatAccess<File>> {
    let raw = Raw::builder(storage(path, writable)?)
        .write(writable)
        .open(DenyImplicitOpenGate::default())?;
    Ok(FormatAccess::new(raw))
}

/// Opens the qcow2 image at `path` and, read-only, the backing chain its header names. Each
/// backing file must have its format in the header (qcow2 or raw): nothing is probed.
fn open_qcow2(path: &Path, writable: bool, depth: usize) -> io::Result<FormatAccess<File>> {
    let mut qcow2 = Qcow2::<File>::open_image(storage(path, writable)?, writable)?;
    if qcow2.requires_external_data_file() {
        return Err(io::Error::other(
            "the image keeps its data in an external data file, which boxlite does not open",
        ));
    }
    let backing = match qcow2.implicit_backing_file() {
        None => None,
        Some(name) => {
            if depth >= MAX_BACKING_DEPTH {
                return Err(io::Error::other(format!(
                    "the backing chain is deeper than {MAX_BACKING_DEPTH} files"
                )));
            }
            let backing_path = resolve(path, name);
            let shown = backing_path.display();
            let backing = match qcow2.implicit_backing_format().map(String::as_str) {
                Some("qcow2") => open_qcow2(&backing_path, false, depth + 1),
                Some("raw" | "file") => open_raw(&backing_path, false),
                Some(other) => Err(io::Error::other(format!("unknown backing format {other:?}"))),
                None => Err(io::Error::other(
                    "no backing format in the header, and formats are never probed; recreate the overlay with one (qemu-img create -F raw|qcow2)",
                )),
            };
            Some(
                backing
                    .map_err(|e| io::Error::new(e.kind(), format!("backing file {shown}: {e}")))?,
            )
        }
    };
    qcow2.set_backing(backing);
    Ok(FormatAccess::new(qcow2))
}

/// A backing file name from `image`'s header: relative names are relative to the image's folder.
fn resolve(image: &Path, name: &str) -> PathBuf {
    let name = Path::new(name);
    match image.parent() {
        Some(folder) if name.is_relative() => folder.join(name),
        _ => name.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempfile::TempFile;

    fn disk_of(len: u64) -> Disk {
        let image = TempFile::new().unwrap();
        image.as_file().set_len(len).unwrap();
        Disk::open(image.as_path(), DiskFormat::Raw, false).unwrap()
    }

    #[test]
    fn capacity_counts_whole_sectors_only() {
        assert_eq!(disk_of(4096).sectors, 8);
        assert_eq!(disk_of(4096 + 100).sectors, 8);
        assert_eq!(disk_of(100).sectors, 0);
    }

    #[test]
    fn byte_ranges_must_be_whole_sectors_inside_the_disk() {
        let disk = disk_of(8 * SECTOR_SIZE);
        assert_eq!(disk.byte_range(0, 8 * SECTOR_SIZE), Some(0));
        assert_eq!(disk.byte_range(7, SECTOR_SIZE), Some(7 * SECTOR_SIZE));
        assert_eq!(disk.byte_range(7, 2 * SECTOR_SIZE), None);
        assert_eq!(disk.byte_range(8, SECTOR_SIZE), None);
        assert_eq!(disk.byte_range(0, 0), None);
        assert_eq!(disk.byte_range(0, 100), None);
        assert_eq!(disk.byte_range(u64::MAX, SECTOR_SIZE), None);
        assert_eq!(disk.byte_range(u64::MAX / SECTOR_SIZE, SECTOR_SIZE), None);
    }

    #[test]
    fn missing_images_are_reported_with_their_path() {
        let err = Disk::open(Path::new("/nonexistent/boxlite.img"), DiskFormat::Raw, true)
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/boxlite.img"), "{message}");
        assert!(message.contains("open"), "{message}");
    }

    #[test]
    fn read_only_images_are_opened_without_write_access() {
        let image = TempFile::new().unwrap();
        image.as_file().set_len(SECTOR_SIZE).unwrap();
        let disk = Disk::open(image.as_path(), DiskFormat::Raw, true).unwrap();
        assert!(disk.read_only);
        let mut byte = [b'x'];
        let slice = VolatileSlice::from(&mut byte[..]);
        assert!(disk.write(&[slice], 0).is_err());
    }

    #[test]
    fn relative_backing_names_resolve_next_to_the_image() {
        let image = Path::new("/boxes/a/disk.qcow2");
        assert_eq!(resolve(image, "base.raw"), Path::new("/boxes/a/base.raw"));
        assert_eq!(resolve(image, "/images/b.raw"), Path::new("/images/b.raw"));
    }
}
