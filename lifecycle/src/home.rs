//! The runtime's home folder and the layout of each box's folder in it.
//!
//! ```text
//! <home>/journal            the state journal (append-only records)
//! <home>/journal.lock       held (flock) while a process appends or compacts
//! <home>/boxes/<id>/        one folder per box, 0700:
//!     options.json          the box's options, 0600: the one place its env lives
//!     shim.pid              pid and start time of its shim
//!     exit, exit.previous   how the shim ended (JSON, written by the shim)
//!     shim.stderr           the shim's log, created before the spawn
//!     console.log           the guest's serial console
//!     timings.json          the last start's stage timings
//!     sockets/              0700: vsock.sock, vsock.sock_2696 (readiness)
//!     disks/                the copy-on-write overlay of the root image
//! ```

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes of a Unix socket address that hold the path, NUL included.
const SUN_PATH_LEN: usize = 108;
/// The vsock device's socket, in `sockets/`.
const VSOCK_SOCKET: &str = "vsock.sock";

/// The home folder of a runtime.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`, created (0700) if missing.
    pub fn create(root: PathBuf) -> Result<Home> {
        fs::create_dir_all(&root).map_err(Error::file("create", &root))?;
        let boxes = root.join("boxes");
        match DirBuilder::new().mode(0o700).create(&boxes) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::file("create", &boxes)(e)),
        }
        Ok(Home { root })
    }

    /// The home folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state journal.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// The lock file serialising journal writers.
    pub fn journal_lock(&self) -> PathBuf {
        self.root.join("journal.lock")
    }

    /// The folder of box `id`.
    pub fn box_dir(&self, id: &str) -> BoxDir {
        BoxDir {
            root: self.root.join("boxes").join(id),
            id: id.to_string(),
        }
    }
}

/// One box's folder.
#[derive(Debug, Clone)]
pub struct BoxDir {
    root: PathBuf,
    id: String,
}

impl BoxDir {
    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the folder (0700); it must not exist yet.
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.root)
    }

    /// The folder holding the box's sockets.
    pub fn sockets(&self) -> PathBuf {
        self.root.join("sockets")
    }

    /// The folder holding the box's overlays.
    pub fn disks(&self) -> PathBuf {
        self.root.join("disks")
    }

    /// Creates `sockets/` and `disks/` when missing, checks that `sockets/` is ours and private,
    /// and removes sockets an earlier VM left behind.
    pub fn lay_out(&self) -> Result<()> {
        for dir in [self.sockets(), self.disks()] {
            match create_private_dir(&dir) {
                Ok(()) => {}
                Err(Error::File { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    check_private_dir(&dir)?;
                }
                Err(e) => return Err(e),
            }
        }
        let sockets = self.sockets();
        for entry in fs::read_dir(&sockets).map_err(Error::file("read", &sockets))? {
            let path = entry.map_err(Error::file("read", &sockets))?.path();
            fs::remove_file(&path).map_err(Error::file("remove", &path))?;
        }
        Ok(())
    }

    /// The path the shim and the runtime use for the vsock socket. When the real path is too
    /// long for a socket address, it is reached through a short symlink to `sockets/` in a
    /// private per-user runtime folder.
    pub fn vsock_socket(&self) -> Result<PathBuf> {
        let real = self.sockets().join(VSOCK_SOCKET);
        // The longest socket is the readiness listener `vsock.sock_2696`.
        if real.as_os_str().len() + "_2696".len() < SUN_PATH_LEN {
            return Ok(real);
        }
        let link = short_runtime_dir()?.join(self.id.get(..16).unwrap_or(&self.id));
        if fs::read_link(&link).ok() != Some(self.sockets()) {
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(self.sockets(), &link)
                .map_err(Error::file("link", &link))?;
        }
        Ok(link.join(VSOCK_SOCKET))
    }

    /// Removes the short socket symlink, if one was made.
    pub fn remove_socket_link(&self) {
        let link = short_runtime_path().join(self.id.get(..16).unwrap_or(&self.id));
        if fs::read_link(&link).is_ok_and(|target| target == self.sockets()) {
            let _ = fs::remove_file(link);
        }
    }
}

/// Creates `dir` with mode 0700; an existing folder is an error (`AlreadyExists`), so a folder
/// someone else made is never reused.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(Error::file("create", dir))
}

/// Checks that `dir` is a real folder owned by this user with no access for others.
fn check_private_dir(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(Error::file("inspect", dir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::file("trust", dir)(std::io::Error::other(
            "it is not a private folder of this user (mode 0700); remove it",
        )));
    }
    Ok(())
}

/// A private per-user folder for short socket symlinks: `$XDG_RUNTIME_DIR/boxlite`, else
/// `/tmp/boxlite-<uid>`, created 0700 and checked to be ours.
fn short_runtime_dir() -> Result<PathBuf> {
    let dir = short_runtime_path();
    match create_private_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(Error::File { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            check_private_dir(&dir)?;
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// Where [`short_runtime_dir`] is, without creating it.
fn short_runtime_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base).join("boxlite"),
        _ => PathBuf::from(format!("/tmp/boxlite-{uid}")),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file (mode `mode`) in the same folder,
/// fsync'd, renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(Error::file("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::file("write", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::file("rename into place", path))
}

/// Reads at most `limit` bytes of `path` (a box file may be corrupt or huge); `None` when
/// it does not exist.
pub fn read_limited(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::file("open", path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(Error::file("read", path))?;
    Ok(Some(bytes))
}

/// The last `lines` lines of `path`, reading at most its last 64 KiB; empty when missing.
pub fn tail_lines(path: &Path, lines: usize) -> String {
    use std::io::{Seek, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file
        .seek(SeekFrom::Start(len.saturating_sub(WINDOW)))
        .is_err()
    {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(WINDOW).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A random id of 96 bits as 24 lower-case hex digits, from the kernel's CSPRNG.
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 12];
    let path = Path::new("/dev/urandom");
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(Error::file("read", path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_random_and_hex() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn long_homes_reach_their_sockets_through_a_short_link() {
        let tmp = crate::testing::TempDir::new();
        let deep = tmp.path().join("x".repeat(90));
        let home = Home::create(deep).unwrap();
        let dir = home.box_dir("0123456789abcdef01234567");
        dir.create().unwrap();
        dir.lay_out().unwrap();
        let socket = dir.vsock_socket().unwrap();
        assert!(socket.as_os_str().len() + 5 < SUN_PATH_LEN, "{socket:?}");
        assert_eq!(
            fs::canonicalize(socket.parent().unwrap()).unwrap(),
            fs::canonicalize(dir.sockets()).unwrap()
        );
        dir.remove_socket_link();
        assert!(fs::symlink_metadata(socket.parent().unwrap()).is_err());
        // The per-user folder goes too when nothing else uses it.
        let _ = fs::remove_dir(short_runtime_path());
    }

    #[test]
    fn a_sockets_folder_open_to_others_is_refused() {
        let tmp = crate::testing::TempDir::new();
        let home = Home::create(tmp.path().to_path_buf()).unwrap();
        let dir = home.box_dir("abc");
        dir.create().unwrap();
        fs::create_dir(dir.sockets()).unwrap();
        fs::set_permissions(dir.sockets(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = dir.lay_out().unwrap_err();
        assert!(err.to_string().contains("private"), "{err}");
    }

    #[test]
    fn atomic_writes_replace_whole_files_with_the_given_mode() {
        let tmp = crate::testing::TempDir::new();
        let path = tmp.path().join("f");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_limited(&path, 2).unwrap().unwrap(), b"tw");
        assert_eq!(read_limited(&tmp.path().join("none"), 2).unwrap(), None);
    }
}
