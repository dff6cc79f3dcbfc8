//! Test support: temporary folders and a runtime home that checks it leaks no shim.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::pidfile::{identity_at, PID_FILE};

/// A temporary folder removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh folder under the system's temporary folder (or `$BOXLITE_TEST_TMP`).
    pub fn new() -> TempDir {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var_os("BOXLITE_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let id = crate::home::random_id().expect("the kernel's random source is readable");
        let path = base.join(format!(
            "boxlite-test-{}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed),
            &id[..8]
        ));
        std::fs::create_dir_all(&path).expect("the temporary folder is writable");
        TempDir { path }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for TempDir {
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A runtime home for one test. Dropping it kills any shim still alive under it and then
/// fails the test, so a test that leaks a box is caught.
#[derive(Debug, Default)]
pub struct TestHome {
    dir: TempDir,
}

impl TestHome {
    /// A fresh, empty home.
    pub fn new() -> TestHome {
        TestHome {
            dir: TempDir::new(),
        }
    }

    /// The home folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Pids of live shims recorded under this home.
    pub fn live_shims(&self) -> Vec<u32> {
        let boxes = self.path().join("boxes");
        let Ok(entries) = std::fs::read_dir(boxes) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| identity_at(&entry.path().join(PID_FILE)).pid())
            .collect()
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        let live = self.live_shims();
        for &pid in &live {
            // SAFETY: kill(2) on a pid whose start time matched the box's shim.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if !live.is_empty() && !std::thread::panicking() {
            panic!("the test left live shims behind: {live:?}");
        }
    }
}
