//! The configuration a host runtime hands to `boxlite-shim` on its standard input.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::frame::{decode_frame, encode_frame, FrameError};

/// Version of [`ShimConfig`]; bumped on any incompatible change so an old shim refuses a new
/// config with a clear message instead of misreading it.
pub const SHIM_CONFIG_VERSION: u32 = 3;

/// Everything one shim process needs to run one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Must equal [`SHIM_CONFIG_VERSION`].
    pub version: u32,
    /// The VM to run.
    pub vm: VmConfig,
    /// How much the shim logs to its standard error.
    pub log_level: LogLevel,
    /// How the shim reports its end and reacts to its parent going away.
    pub supervision: Supervision,
    /// Confine each of the shim's threads to its seccomp allow-list before the guest runs (a
    /// system call outside it kills the shim with SIGSYS). Off only to debug the filters.
    pub seccomp: bool,
}

/// What a supervising host runtime asks of the shim beyond running the VM. The default (all
/// off) is a shim run by hand from flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    /// Write an [`ExitRecord`](crate::ExitRecord) as JSON to this path when the shim ends
    /// (atomically: a temporary file renamed into place).
    pub exit_file: Option<String>,
    /// The shim's fd 3 is the read end of the runtime's watchdog pipe. When it hangs up (the
    /// runtime process died) the shim asks the guest agent to shut down, waits up to
    /// `stop_timeout_ms`, then stops the VM itself; SIGKILL of itself is the last resort.
    pub watchdog: bool,
    /// Detached box: the shim calls `setsid()` and outlives the process that spawned it.
    pub detach: bool,
    /// How long a graceful guest shutdown may take before the shim stops the VM itself.
    pub stop_timeout_ms: u32,
}

/// The virtual machine: kernel, memory, vCPUs and console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Host path of the guest kernel: an ELF vmlinux (PVH entry preferred) or a bzImage.
    pub kernel: String,
    /// Host path of an initramfs, if any.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Where the guest's serial console goes.
    pub console: ConsoleConfig,
    /// virtio-blk disks, in order: the first is the guest's `/dev/vda`.
    pub disks: Vec<DiskConfig>,
    /// The virtio-vsock device, if the VM has one.
    pub vsock: Option<VsockConfig>,
}

/// A virtio-blk disk backed by an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// Host path of the image.
    pub path: String,
    /// Refuse guest writes (VIRTIO_BLK_F_RO); the image is opened read-only.
    pub read_only: bool,
    /// How the image is laid out.
    pub format: DiskFormat,
}

/// The layout of a disk image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskFormat {
    /// A raw image: guest sector N is at byte N * 512 of the file.
    #[default]
    Raw,
    /// A qcow2 image, possibly a copy-on-write overlay over a backing file named in its header.
    Qcow2,
}

/// A virtio-vsock device bridged to host Unix sockets (Firecracker's protocol): host programs
/// connect to `uds_path` and send `CONNECT <port>`; guest connections to host port P reach a
/// listener at `<uds_path>_<P>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockConfig {
    /// The guest's context id (3 or more; 0-2 are reserved).
    pub guest_cid: u32,
    /// Host path of the Unix socket the device listens on.
    pub uds_path: String,
}

/// Destinations of the guest serial console (COM1). Both may be set; neither discards it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleConfig {
    /// Append the console to this host file (created if missing).
    pub file: Option<String>,
    /// Copy the console to the shim's standard output.
    pub stdout: bool,
    /// Most bytes `file` may hold; `None` means [`DEFAULT_CONSOLE_FILE_CAP`]. When a write would
    /// pass it, the file moves to `<file>.1` (replacing the previous one) and a new file starts
    /// with a marker line that counts the bytes dropped so far, followed by the last quarter of
    /// the old file, so its end is always the guest's latest output.
    #[serde(default)]
    pub file_cap: Option<u64>,
}

/// The console file's cap when [`ConsoleConfig::file_cap`] is `None`: 16 MiB.
pub const DEFAULT_CONSOLE_FILE_CAP: u64 = 16 << 20;

/// Log verbosity of the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal operation (default).
    Info,
    /// Diagnostics.
    Debug,
    /// Everything, including every VM exit.
    Trace,
}

impl LogLevel {
    /// Parses `error`, `warn`, `info`, `debug` or `trace`.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }
}

/// Why a shim configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The bytes are not a valid frame.
    Frame(FrameError),
    /// The configuration was written for another shim version.
    Version {
        /// Version in the config.
        found: u32,
        /// Version this shim understands.
        expected: u32,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Frame(e) => write!(f, "malformed shim config: {e}"),
            ConfigError::Version { found, expected } => write!(
                f,
                "shim config version {found} is not supported (this shim speaks version {expected}); \
                 use a boxlite-shim from the same release as the runtime"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

impl ShimConfig {
    /// A config at the current version.
    pub fn new(vm: VmConfig, log_level: LogLevel) -> ShimConfig {
        ShimConfig {
            version: SHIM_CONFIG_VERSION,
            vm,
            log_level,
            supervision: Supervision::default(),
            seccomp: true,
        }
    }

    /// Encodes the config as one length-prefixed frame.
    pub fn to_frame(&self) -> Result<Vec<u8>, ConfigError> {
        encode_frame(self).map_err(ConfigError::Frame)
    }

    /// Decodes and version-checks a config frame.
    pub fn from_frame(bytes: &[u8]) -> Result<ShimConfig, ConfigError> {
        let config: ShimConfig = decode_frame(bytes).map_err(ConfigError::Frame)?;
        if config.version != SHIM_CONFIG_VERSION {
            return Err(ConfigError::Version {
                found: config.version,
                expected: SHIM_CONFIG_VERSION,
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn sample() -> ShimConfig {
        ShimConfig::new(
            VmConfig {
                kernel: "/boot/vmlinux".to_string(),
                initrd: Some("/boot/initrd.cpio".to_string()),
                cmdline: "console=ttyS0 reboot=k panic=-1".to_string(),
                mem_mib: 256,
                vcpus: 2,
                console: ConsoleConfig {
                    file: Some("/tmp/console.log".to_string()),
                    stdout: true,
                    file_cap: Some(1 << 20),
                },
                disks: vec![
                    DiskConfig {
                        path: "/img/root.ext4".to_string(),
                        read_only: true,
                        format: DiskFormat::Raw,
                    },
                    DiskConfig {
                        path: "/img/data.qcow2".to_string(),
                        read_only: false,
                        format: DiskFormat::Qcow2,
                    },
                ],
                vsock: Some(VsockConfig {
                    guest_cid: 3,
                    uds_path: "/run/box/vsock.sock".to_string(),
                }),
            },
            LogLevel::Info,
        )
    }

    #[test]
    fn config_round_trips_through_a_frame() {
        let mut config = sample();
        config.supervision = Supervision {
            exit_file: Some("/home/box/exit".to_string()),
            watchdog: true,
            detach: false,
            stop_timeout_ms: 10_000,
        };
        let bytes = config.to_frame().unwrap();
        assert_eq!(ShimConfig::from_frame(&bytes).unwrap(), config);
    }

    #[test]
    fn other_versions_are_refused_with_both_numbers() {
        let mut config = sample();
        config.version = 99;
        let bytes = encode_frame(&config).unwrap();
        let err = ShimConfig::from_frame(&bytes).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Version {
                found: 99,
                expected: SHIM_CONFIG_VERSION
            }
        );
        assert!(err.to_string().contains("version 99"));
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_an_error() {
        let bytes = sample().to_frame().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                ShimConfig::from_frame(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn log_levels_parse() {
        assert_eq!(LogLevel::parse("debug"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse("loud"), None);
    }
}
