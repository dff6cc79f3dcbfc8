//! The directory holding one box's sockets and logs. Unix socket paths are limited to 108
//! bytes, so a temporary box lives under a short path in /tmp.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::CliError;

/// A box directory; a temporary one is removed when dropped.
pub struct BoxDir {
    path: PathBuf,
    temporary: bool,
}

impl BoxDir {
    /// Uses `given` (kept afterwards) or creates a fresh temporary directory.
    pub fn create(given: Option<&Path>) -> Result<BoxDir, CliError> {
        let (path, temporary) = match given {
            Some(path) => (path.to_path_buf(), false),
            None => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                (
                    PathBuf::from(format!("/tmp/boxlite-{}-{nanos:x}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&path).map_err(|source| CliError::File {
            action: "create the box directory",
            path: path.clone(),
            source,
        })?;
        Ok(BoxDir { path, temporary })
    }

    /// A file in the box directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for BoxDir {
    fn drop(&mut self) {
        if self.temporary {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                log::debug!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_dirs_are_short_and_removed() {
        let dir = BoxDir::create(None).unwrap();
        let path = dir.path.clone();
        assert!(path.is_dir());
        // Room for the longest socket name we create under it ("vsock.sock_2696" and more).
        assert!(path.as_os_str().len() < 60);
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn given_dirs_are_kept() {
        let path = std::env::temp_dir().join(format!("boxlite-given-{}", std::process::id()));
        drop(BoxDir::create(Some(&path)).unwrap());
        assert!(path.is_dir());
        std::fs::remove_dir(path).unwrap();
    }
}
