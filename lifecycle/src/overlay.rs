//! Copy-on-write disks: each box gets its own qcow2 overlay over the user's base image, which
//! is never written. Many boxes share one base; removing a box frees only its overlay.
//!
//! The host decides the base's format here, from the user's own file; the VMM takes the format
//! from the configuration and never probes an image. An overlay records its base's absolute
//! path and format in its header, so opening it never needs a guess either.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use boxlite_proto::DiskFormat;
use imago::file::File;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatCreateBuilder, StorageOpenOptions};

/// The first four bytes of every qcow2 image.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// The longest backing file name a qcow2 header may hold (QEMU's limit).
const MAX_BACKING_NAME: usize = 1023;
/// Virtual sizes are whole 512-byte sectors, the unit of the guest's block device.
const SECTOR_SIZE: u64 = 512;

/// The format of the user's base image: qcow2 if it starts with the qcow2 magic, else raw.
pub fn base_format(base: &Path) -> io::Result<DiskFormat> {
    let mut file = fs::File::open(base).map_err(|e| base_error(base, "cannot open", e))?;
    let mut magic = [0u8; 4];
    let mut len = 0;
    while len < magic.len() {
        match file.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(base_error(base, "cannot read", e)),
        }
    }
    Ok(if magic == QCOW2_MAGIC {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    })
}

/// Creates `overlay`: a new qcow2 image (mode 0600) whose backing file is `base` (by its
/// absolute path, with its format from [`base_format`]) and whose virtual size is the base's,
/// rounded down to whole 512-byte sectors. An existing `overlay` is never overwritten.
pub fn create_overlay(base: &Path, overlay: &Path) -> io::Result<()> {
    let base = fs::canonicalize(base).map_err(|e| base_error(base, "cannot resolve", e))?;
    let format = base_format(&base)?;
    let size = match format {
        DiskFormat::Raw => fs::metadata(&base)
            .map_err(|e| base_error(&base, "cannot stat", e))?
            .len(),
        DiskFormat::Qcow2 => qcow2_size(&base)?,
    } / SECTOR_SIZE
        * SECTOR_SIZE;
    let name = base.to_str().ok_or_else(|| {
        base_error(
            &base,
            "cannot be named in an overlay",
            io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8"),
        )
    })?;
    if name.len() > MAX_BACKING_NAME {
        return Err(base_error(
            &base,
            "cannot be named in an overlay",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the path is longer than {MAX_BACKING_NAME} bytes"),
            ),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(overlay)
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::AlreadyExists {
                "remove it or choose another path (overlays are never overwritten)"
            } else {
                "check that its folder exists and is writable"
            };
            io::Error::new(
                e.kind(),
                format!("cannot create overlay {}: {e}; {hint}", overlay.display()),
            )
        })?;
    let written = write_overlay(file, overlay, name, format, size);
    if written.is_err() {
        // Only a file this call created is removed; a failed removal leaves the first error.
        let _ = fs::remove_file(overlay);
    }
    written.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot write overlay {} over {}: {e}; check free space in its folder",
                overlay.display(),
                base.display()
            ),
        )
    })
}

/// Formats the new, empty `file` as the overlay and syncs it.
fn write_overlay(
    file: fs::File,
    path: &Path,
    base: &str,
    format: DiskFormat,
    size: u64,
) -> io::Result<()> {
    let sync = file.try_clone()?;
    let storage = File::from_open_file(file, StorageOpenOptions::new().filename(path).write(true))?;
    let backing_format = match format {
        DiskFormat::Raw => "raw",
        DiskFormat::Qcow2 => "qcow2",
    };
    Qcow2::<File>::create_builder(storage)
        .size(size)
        .backing(base.to_string(), backing_format.to_string())
        .create()?;
    sync.sync_all()
}

/// The virtual size of the qcow2 image `base` (its header only: the chain is not opened).
fn qcow2_size(base: &Path) -> io::Result<u64> {
    let storage = File::from_open_file(
        fs::File::open(base).map_err(|e| base_error(base, "cannot open", e))?,
        StorageOpenOptions::new().filename(base),
    )
    .map_err(|e| base_error(base, "cannot open", e))?;
    let image = Qcow2::<File>::open_image(storage, false)
        .map_err(|e| base_error(base, "is not a readable qcow2 image", e))?;
    Ok(FormatAccess::new(image).size())
}

fn base_error(base: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "base image {} {what}: {e}; check that the file exists and is readable",
            base.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::Command;

    use imago::{FormatDriverBuilder, PermissiveImplicitOpenGate, Storage, StorageCreateOptions};

    use super::*;

    const BASE_LEN: u64 = 256 * 1024;

    fn pattern(offset: u64) -> u8 {
        ((offset / 512) as u8).wrapping_mul(17) ^ (offset % 239) as u8
    }

    fn base_bytes() -> Vec<u8> {
        (0..BASE_LEN).map(pattern).collect()
    }

    /// A fresh folder under the system temp folder, removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let path = std::env::temp_dir().join(format!(
                "boxlite-overlay-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir(&path).unwrap();
            Folder(path)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        fn raw_base(&self) -> PathBuf {
            let path = self.path("base.raw");
            fs::write(&path, base_bytes()).unwrap();
            path
        }

        /// A standalone qcow2 base (no backing file) holding the pattern.
        fn qcow2_base(&self) -> PathBuf {
            let path = self.path("base.qcow2");
            let file = File::create_open(StorageCreateOptions::new().filename(&path)).unwrap();
            Qcow2::<File>::create_builder(file)
                .size(BASE_LEN)
                .create()
                .unwrap();
            let image = open(&path, true);
            image.write(&base_bytes()[..], 0).unwrap();
            image.flush().unwrap();
            path
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Opens a qcow2 image and the chain its header names (trusted: these tests made it).
    fn open(path: &Path, writable: bool) -> FormatAccess<File> {
        let image = Qcow2::<File>::builder_path(path)
            .write(writable)
            .open(PermissiveImplicitOpenGate::default())
            .unwrap();
        FormatAccess::new(image)
    }

    fn read_all(image: &FormatAccess<File>) -> Vec<u8> {
        let mut bytes = vec![0u8; BASE_LEN as usize];
        image.read(&mut bytes[..], 0).unwrap();
        bytes
    }

    fn qemu_img(args: &[&str], image: &Path) -> String {
        let output = Command::new("qemu-img")
            .args(args)
            .arg(image)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run qemu-img ({e}): install qemu-utils (apt-get install -y \
                     qemu-utils; scripts/test.sh installs it)"
                )
            });
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "qemu-img {args:?} {}: {stdout}{}",
            image.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Writes into the overlay, then checks it with qemu-img.
    fn write_and_check(overlay: &Path, base: &Path) {
        let image = open(overlay, true);
        image.write(&[0xab; 4096][..], 64 * 1024).unwrap();
        image.flush().unwrap();
        let mut expected = base_bytes();
        expected[64 * 1024..68 * 1024].fill(0xab);
        assert_eq!(read_all(&image), expected);
        drop(image);
        let check = qemu_img(&["check", "-f", "qcow2"], overlay);
        assert!(check.contains("No errors were found"), "{check}");
        let info = qemu_img(&["info", "-f", "qcow2", "--output=json"], overlay);
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["virtual-size"], BASE_LEN);
        assert_eq!(info["backing-filename"], base.to_str().unwrap());
        assert_eq!(
            info["backing-filename-format"],
            match base_format(base).unwrap() {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            }
        );
    }

    #[test]
    fn an_overlay_over_a_raw_base_reads_the_base_and_keeps_its_writes() {
        let folder = Folder::new("raw");
        let base = folder.raw_base();
        let overlay = folder.path("box.qcow2");
        create_overlay(&base, &overlay).unwrap();
        assert_eq!(
            fs::metadata(&overlay).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_all(&open(&overlay, false)), base_bytes());
        write_and_check(&overlay, &base);
        assert_eq!(
            fs::read(&base).unwrap(),
            base_bytes(),
            "the base is unchanged"
        );
    }

    #[test]
    fn an_overlay_over_a_qcow2_base_reads_the_base() {
        let folder = Folder::new("qcow2");
        let base = folder.qcow2_base();
        let before = fs::read(&base).unwrap();
        let overlay = folder.path("box.qcow2");
        create_overlay(&base, &overlay).unwrap();
        assert_eq!(read_all(&open(&overlay, false)), base_bytes());
        write_and_check(&overlay, &base);
        assert_eq!(fs::read(&base).unwrap(), before, "the base is unchanged");
    }

    #[test]
    fn relative_base_paths_are_recorded_absolute() {
        let folder = Folder::new("relative");
        let base = folder.raw_base();
        let relative = Path::new(".")
            .join(pathdiff(&base, &std::env::current_dir().unwrap()).expect("temp dir reachable"));
        let overlay = folder.path("box.qcow2");
        create_overlay(&relative, &overlay).unwrap();
        let info = qemu_img(&["info", "-f", "qcow2", "--output=json"], &overlay);
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["backing-filename"], base.to_str().unwrap());
    }

    /// `path` relative to `from` through `..` steps (both absolute).
    fn pathdiff(path: &Path, from: &Path) -> Option<PathBuf> {
        let mut up = PathBuf::new();
        let mut from = from;
        loop {
            if let Ok(rest) = path.strip_prefix(from) {
                return Some(up.join(rest));
            }
            up.push("..");
            from = from.parent()?;
        }
    }

    #[test]
    fn existing_files_are_never_overwritten() {
        let folder = Folder::new("exists");
        let base = folder.raw_base();
        let overlay = folder.path("box.qcow2");
        fs::write(&overlay, b"precious").unwrap();
        let error = create_overlay(&base, &overlay).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        let message = error.to_string();
        assert!(message.contains(overlay.to_str().unwrap()), "{message}");
        assert!(message.contains("never overwritten"), "{message}");
        assert_eq!(fs::read(&overlay).unwrap(), b"precious");
    }

    #[test]
    fn missing_bases_and_folders_are_explained() {
        let folder = Folder::new("missing");
        let error = create_overlay(&folder.path("nope.raw"), &folder.path("box.qcow2"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("nope.raw"), "{error}");
        assert!(!folder.path("box.qcow2").exists());
        let base = folder.raw_base();
        let error = create_overlay(&base, &folder.path("no/such/box.qcow2"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no/such/box.qcow2"), "{error}");
        assert!(error.contains("folder"), "{error}");
    }

    #[test]
    fn base_formats_come_from_the_magic() {
        let folder = Folder::new("format");
        assert_eq!(base_format(&folder.raw_base()).unwrap(), DiskFormat::Raw);
        assert_eq!(
            base_format(&folder.qcow2_base()).unwrap(),
            DiskFormat::Qcow2
        );
        let short = folder.path("short");
        fs::write(&short, b"QF").unwrap();
        assert_eq!(base_format(&short).unwrap(), DiskFormat::Raw);
        let error = base_format(&folder.path("gone")).unwrap_err().to_string();
        assert!(error.contains("gone"), "{error}");
    }
}
