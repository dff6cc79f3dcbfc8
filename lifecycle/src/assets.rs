//! Finding the runtime's assets: the shim, the guest kernel and the default initramfs.
//!
//! Each is looked for, in order: the explicit path in [`Assets`]; `$BOXLITE_RUNTIME_DIR`; an
//! installed runtime folder (`<prefix>/lib/boxlite/`, with `<prefix>` the parent of the running
//! program's folder, then `/usr/local` and `/usr`); the project's build caches.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File names in a runtime folder.
const SHIM: &str = "boxlite-shim";
const KERNEL: &str = "vmlinux";
const INITRD: &str = "initramfs.cpio";

/// Explicit asset paths; `None` searches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assets {
    /// The `boxlite-shim` binary.
    pub shim: Option<PathBuf>,
    /// The guest kernel.
    pub kernel: Option<PathBuf>,
    /// The default initramfs (busybox + agent).
    pub initrd: Option<PathBuf>,
}

/// One asset kind: its file name and how to build it.
struct Kind {
    what: &'static str,
    file: &'static str,
    build: &'static str,
}

const SHIM_KIND: Kind = Kind {
    what: "the VMM (boxlite-shim)",
    file: SHIM,
    build: "build it with `cargo build --release -p boxlite-shim`",
};
const KERNEL_KIND: Kind = Kind {
    what: "the guest kernel (vmlinux)",
    file: KERNEL,
    build: "build it with scripts/build-kernel.sh",
};
const INITRD_KIND: Kind = Kind {
    what: "the default initramfs (initramfs.cpio)",
    file: INITRD,
    build: "build it with scripts/build-rootfs.sh",
};

impl Assets {
    /// The shim to spawn.
    pub fn shim(&self) -> Result<PathBuf> {
        find(&SHIM_KIND, self.shim.as_deref(), shim_build_outputs())
    }

    /// The guest kernel.
    pub fn kernel(&self) -> Result<PathBuf> {
        find(
            &KERNEL_KIND,
            self.kernel.as_deref(),
            newest_in(&kernel_cache(), KERNEL),
        )
    }

    /// Checks that the assets a box with `root` boots from are there, in the order a start
    /// needs them, so a missing one is named before anything changes.
    pub fn check_for(&self, root: &crate::options::Root) -> Result<()> {
        if !matches!(root, crate::options::Root::Kernel { .. }) {
            self.kernel()?;
            self.initrd()?;
        }
        self.shim().map(drop)
    }

    /// The default initramfs.
    pub fn initrd(&self) -> Result<PathBuf> {
        find(
            &INITRD_KIND,
            self.initrd.as_deref(),
            newest_in(&target_dir().join("rootfs"), INITRD),
        )
    }
}

fn find(kind: &Kind, explicit: Option<&Path>, cached: Vec<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(Error::AssetMissing {
                what: kind.what,
                tried: vec![path.display().to_string()],
                build: kind.build,
            })
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("BOXLITE_RUNTIME_DIR")
        .map(|dir| PathBuf::from(dir).join(kind.file))
        .into_iter()
        .collect();
    candidates.extend(installed_dirs().into_iter().map(|dir| dir.join(kind.file)));
    candidates.extend(cached);
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| Error::AssetMissing {
            what: kind.what,
            tried: candidates.iter().map(|p| p.display().to_string()).collect(),
            build: kind.build,
        })
}

/// `<prefix>/lib/boxlite` for the running program's prefix, `/usr/local` and `/usr`.
fn installed_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        dirs.push(prefix.join("lib/boxlite"));
    }
    for prefix in ["/usr/local", "/usr"] {
        let dir = Path::new(prefix).join("lib/boxlite");
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The project's cargo target folder (for assets built from this source tree).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where scripts/build-kernel.sh caches kernels.
fn kernel_cache() -> PathBuf {
    let base = std::env::var_os("BOXLITE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("boxlite")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/boxlite")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    base.join("kernel")
}

/// The shim next to the running program, then cargo's build outputs.
fn shim_build_outputs() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SHIM)))
        .into_iter()
        .collect();
    // A test binary lives in target/<profile>/deps: the shim is one folder up.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join(SHIM)))
    {
        paths.push(dir);
    }
    let target = target_dir();
    for profile in ["release", "debug", "x86_64-unknown-linux-musl/release"] {
        paths.push(target.join(profile).join(SHIM));
    }
    paths
}

/// `<dir>/*/<file>`, newest first.
fn newest_in(dir: &Path, file: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|entry| entry.path().join(file))
        .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
        .collect();
    found.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    found.into_iter().map(|(_, path)| path).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_wins_and_a_missing_one_says_how_to_build_it() {
        let tmp = crate::testing::TempDir::new();
        let kernel = tmp.path().join("my-vmlinux");
        std::fs::write(&kernel, b"elf").unwrap();
        let assets = Assets {
            kernel: Some(kernel.clone()),
            initrd: Some(tmp.path().join("missing.cpio")),
            ..Assets::default()
        };
        assert_eq!(assets.kernel().unwrap(), kernel);
        let err = assets.initrd().unwrap_err().to_string();
        assert!(err.contains("missing.cpio"), "{err}");
        assert!(err.contains("scripts/build-rootfs.sh"), "{err}");
    }

    #[test]
    fn the_newest_cached_build_comes_first() {
        let tmp = crate::testing::TempDir::new();
        for (key, age) in [("old", 100), ("new", 0)] {
            let dir = tmp.path().join(key);
            std::fs::create_dir(&dir).unwrap();
            let file = std::fs::File::create(dir.join(KERNEL)).unwrap();
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            file.set_modified(when).unwrap();
        }
        let found = newest_in(tmp.path(), KERNEL);
        assert_eq!(
            found,
            [
                tmp.path().join("new/vmlinux"),
                tmp.path().join("old/vmlinux")
            ]
        );
    }
}
