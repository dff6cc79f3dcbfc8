//! What a box is made of: [`BoxOptions`], stored as `options.json` (mode 0600) in its folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::home::{read_limited, write_atomic};

/// Name of the options file in a box's folder.
pub const OPTIONS_FILE: &str = "options.json";
/// Default guest-ready timeout; `BOXLITE_GUEST_READY_TIMEOUT` (seconds) overrides it.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest options file read back (a corrupt or hostile file cannot make us allocate more).
const MAX_OPTIONS_LEN: u64 = 1 << 20;

/// What the guest boots into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Root {
    /// The runtime's kernel and default initramfs (busybox and the agent).
    #[default]
    Default,
    /// A user's ext4 image as the root filesystem, never written: the box runs on its own
    /// copy-on-write overlay. The agent still comes from the default initramfs.
    Image(PathBuf),
    /// A kernel and initramfs of the user's, whose `/init` must be the boxlite agent.
    Kernel {
        /// The kernel (ELF vmlinux or bzImage).
        kernel: PathBuf,
        /// The initramfs, if the kernel needs one.
        initrd: Option<PathBuf>,
    },
}

/// An extra disk attached to a box (after the root image, if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// A raw image file.
    pub path: PathBuf,
    /// Attach it read-only.
    pub read_only: bool,
}

/// How to make a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BoxOptions {
    /// A unique name, if wanted (letters, digits, `-`, `_`, `.`; up to 64).
    pub name: Option<String>,
    /// vCPUs (1 to 32).
    pub cpus: u8,
    /// Guest memory in MiB (64 or more).
    pub memory_mib: u32,
    /// What the guest boots into.
    pub root: Root,
    /// Extra disks, in order (`/dev/vdb`... after a root image, else from `/dev/vda`).
    pub disks: Vec<Disk>,
    /// Environment of every command run in the box (a command's own env adds to it).
    pub env: Vec<(String, String)>,
    /// Working directory of commands that name none.
    pub working_dir: Option<String>,
    /// The box outlives the process that started it (else it stops when that process ends).
    pub detach: bool,
    /// Remove the box when it stops.
    pub auto_remove: bool,
    /// Extra words for the guest kernel's command line.
    pub kernel_args: Vec<String>,
    /// How long the guest may take to become ready; `None` is [`DEFAULT_READY_TIMEOUT`] or
    /// `BOXLITE_GUEST_READY_TIMEOUT`.
    #[serde(with = "millis")]
    pub ready_timeout: Option<Duration>,
}

impl Default for BoxOptions {
    fn default() -> BoxOptions {
        BoxOptions {
            name: None,
            cpus: 1,
            memory_mib: 512,
            root: Root::Default,
            disks: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            detach: false,
            auto_remove: false,
            kernel_args: Vec::new(),
            ready_timeout: None,
        }
    }
}

impl BoxOptions {
    /// Refuses options that cannot make a box, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidOptions(why));
        if let Some(name) = &self.name {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
                return bad(format!(
                    "name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
                ));
            }
            if name.chars().all(|c| c.is_ascii_hexdigit()) {
                return bad(format!(
                    "name {name:?} looks like an id prefix; add a letter beyond a-f"
                ));
            }
        }
        if !(1..=32).contains(&self.cpus) {
            return bad(format!("{} vCPUs: use 1 to 32", self.cpus));
        }
        if self.memory_mib < 64 {
            return bad(format!("{} MiB of memory: use 64 or more", self.memory_mib));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return bad(format!(
                    "environment variable {key:?}: a name without '=' or NUL"
                ));
            }
        }
        if self.disks.len() + usize::from(matches!(self.root, Root::Image(_))) > 16 {
            return bad("more than 16 disks".to_string());
        }
        Ok(())
    }

    /// The guest-ready timeout in force.
    pub fn effective_ready_timeout(&self) -> Duration {
        self.ready_timeout.unwrap_or_else(|| {
            std::env::var("BOXLITE_GUEST_READY_TIMEOUT")
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(DEFAULT_READY_TIMEOUT, Duration::from_secs_f64)
        })
    }

    /// Stores the options in `path` (mode 0600: they hold the box's environment).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidOptions(e.to_string()))?;
        write_atomic(path, &json, 0o600)
    }

    /// Reads options stored by [`BoxOptions::save`].
    pub fn load(id: &str, path: &Path) -> Result<BoxOptions> {
        let unusable = |reason: String| Error::Options {
            id: id.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        let bytes = read_limited(path, MAX_OPTIONS_LEN)?
            .ok_or_else(|| unusable("the file is missing".to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| unusable(e.to_string()))
    }
}

/// `Option<Duration>` as milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis().min(u128::from(u64::MAX)) as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = crate::testing::TempDir::new();
        let path = tmp.path().join(OPTIONS_FILE);
        let options = BoxOptions {
            name: Some("web".into()),
            env: vec![("SECRET".into(), "s3cr3t".into())],
            root: Root::Image("/img/root.ext4".into()),
            ready_timeout: Some(Duration::from_millis(1500)),
            ..BoxOptions::default()
        };
        options.save(&path).unwrap();
        assert_eq!(BoxOptions::load("id", &path).unwrap(), options);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_options_are_an_error_naming_the_file() {
        let tmp = crate::testing::TempDir::new();
        let path = tmp.path().join(OPTIONS_FILE);
        std::fs::write(&path, b"{\"cpus\": \"many\"").unwrap();
        let err = BoxOptions::load("abc", &path).unwrap_err();
        assert!(err.to_string().contains(OPTIONS_FILE), "{err}");
        std::fs::write(&path, b"{\"cpus\": 2, \"future_field\": true}").unwrap();
        assert_eq!(BoxOptions::load("abc", &path).unwrap().cpus, 2);
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let cases = [
            (
                BoxOptions {
                    cpus: 0,
                    ..Default::default()
                },
                "vCPUs",
            ),
            (
                BoxOptions {
                    memory_mib: 1,
                    ..Default::default()
                },
                "memory",
            ),
            (
                BoxOptions {
                    name: Some("a b".into()),
                    ..Default::default()
                },
                "name",
            ),
            (
                BoxOptions {
                    name: Some("cafe".into()),
                    ..Default::default()
                },
                "id prefix",
            ),
            (
                BoxOptions {
                    env: vec![("A=B".into(), "x".into())],
                    ..Default::default()
                },
                "environment",
            ),
        ];
        for (options, needle) in cases {
            let err = options.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(BoxOptions::default().validate().is_ok());
    }
}
