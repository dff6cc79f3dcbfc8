//! The backing image: a raw file, addressed in 512-byte sectors.

use std::fs::{File, OpenOptions};
use std::path::Path;

use log::warn;

use crate::{Error, Result};

/// The virtio-blk sector: the unit of `sector` in requests and of the capacity.
pub const SECTOR_SIZE: u64 = 512;

/// An open image and what the guest may do with it.
#[derive(Debug)]
pub(super) struct Disk {
    pub(super) file: File,
    /// Whole sectors in the image; a trailing partial sector is not visible to the guest.
    pub(super) sectors: u64,
    pub(super) read_only: bool,
}

impl Disk {
    /// Opens `path`, read-only or read-write.
    pub(super) fn open(path: &Path, read_only: bool) -> Result<Disk> {
        let image_error = |what| {
            let path = path.display().to_string();
            move |source| Error::BlockImage { path, what, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(image_error("open"))?;
        let len = file.metadata().map_err(image_error("stat"))?.len();
        if len % SECTOR_SIZE != 0 {
            warn!(
                "block image {}: {} trailing bytes past the last whole 512-byte sector are not visible to the guest",
                path.display(),
                len % SECTOR_SIZE
            );
        }
        Ok(Disk {
            file,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempfile::TempFile;

    fn disk_of(len: u64) -> Disk {
        let image = TempFile::new().unwrap();
        image.as_file().set_len(len).unwrap();
        Disk::open(image.as_path(), false).unwrap()
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
        let err = Disk::open(Path::new("/nonexistent/boxlite.img"), true).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/boxlite.img"), "{message}");
        assert!(message.contains("open"), "{message}");
    }

    #[test]
    fn read_only_images_are_opened_without_write_access() {
        let image = TempFile::new().unwrap();
        image.as_file().set_len(SECTOR_SIZE).unwrap();
        let disk = Disk::open(image.as_path(), true).unwrap();
        assert!(disk.read_only);
        use std::os::unix::fs::FileExt;
        assert!(disk.file.write_at(b"x", 0).is_err());
    }
}
