//! PID 1 duties: mount the pseudo-filesystems, optionally switch to a root disk, signal
//! readiness to the host, and shut the guest down on request.
//!
//! # Boot
//!
//! The kernel starts the agent as `/init` of the initramfs. It mounts `/dev` (devtmpfs),
//! `/dev/pts`, `/dev/shm`, `/proc`, `/sys`, `/tmp` and `/run` (tmpfs), then reads
//! `/proc/cmdline`:
//!
//! * `boxlite.root=<device>` (e.g. `/dev/vda`): mount that disk on [`NEW_ROOT`] with
//!   `boxlite.rootfstype=` (default `ext4`) and `boxlite.rootflags=` (comma-separated: `ro`,
//!   `rw`, `noatime`, `nodiratime`, `relatime`, `nosuid`, `nodev`, `noexec`, `sync`; anything
//!   else is passed to the filesystem), move the mounts above into it (`MS_MOVE`), move it onto
//!   `/` and `chroot` into it, like `switch_root`. The agent keeps running from the initramfs
//!   (whose memory is not reclaimed) and serves commands in the new root. Without the option it
//!   stays on the initramfs. If the disk cannot be mounted the agent logs why and reboots,
//!   which ends the VM before readiness is signalled.
//! * `boxlite.log=<level>`: `error`, `warn`, `info` (default), `debug` or `trace`, for the
//!   agent's lines on the console.
//!
//! The agent then listens on vsock port [`AGENT_PORT`] and connects to the host (CID
//! [`HOST_CID`]) on port [`READY_PORT`] to write one [`Ready`] frame, retrying for
//! [`READY_PATIENCE`] while nothing listens there.
//!
//! # Shutdown
//!
//! [`power_off`]: `SIGTERM` to every process, `SIGKILL` to those left after a grace, `sync`, lazy
//! unmounts of the pseudo-filesystems, remount of `/` read-only, `sync`, then
//! `reboot(RB_AUTOBOOT)`: with `reboot=k` on the kernel command line the guest resets through the
//! i8042, which the VMM takes as the clean end of the VM (a power-off would only halt).
//!
//! PID 1 never exits (that would panic the kernel): setup failures end in [`power_off`] too.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use boxlite_proto::agent::{Ready, AGENT_PORT, HOST_CID, READY_PORT};

use crate::error::AgentError;
use crate::reaper::Reaper;
use crate::server::{self, Agent, Listener, Mode};
use crate::{logger, sys, vsock, AGENT_NAME};

/// Where the root disk is mounted before the switch.
pub const NEW_ROOT: &str = "/sysroot";

/// How long the agent keeps trying to signal readiness while nothing listens on the host.
pub const READY_PATIENCE: Duration = Duration::from_secs(30);

/// How long the root device may take to appear in devtmpfs.
const DEVICE_PATIENCE: Duration = Duration::from_secs(2);

/// How long processes get to exit after `SIGTERM`, then after `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// One filesystem the agent mounts at boot.
struct PseudoFs {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
    data: &'static str,
}

/// Mounted in this order (`/dev` before what lies inside it).
const PSEUDO_FILESYSTEMS: [PseudoFs; 7] = [
    PseudoFs {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
    PseudoFs {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: "mode=0620,ptmxmode=0666",
    },
    PseudoFs {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    PseudoFs {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
    },
    PseudoFs {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
    },
    PseudoFs {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    PseudoFs {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=0755",
    },
];

/// The top-level mounts moved into the new root (the others move along inside `/dev`).
const MOVED_MOUNTS: [&str; 5] = ["/dev", "/proc", "/sys", "/tmp", "/run"];

/// Runs the agent as PID 1; never returns.
pub fn main(start: Instant) -> ! {
    logger::init(log::LevelFilter::Info, start);
    match boot(start) {
        Ok((listener, agent)) => server::serve_forever(listener, agent),
        Err(e) => {
            log::error!("{e}");
            log::error!("the guest cannot serve the host: shutting down");
            power_off()
        }
    }
}

/// Everything before serving: mounts, root switch, reaper, listener, readiness.
fn boot(start: Instant) -> Result<(Listener, Arc<Agent>), AgentError> {
    for fs in &PSEUDO_FILESYSTEMS {
        let target = Path::new(fs.target);
        let result = make_dir(target).and_then(|()| {
            mount(
                Some(fs.source),
                target,
                Some(fs.fstype),
                fs.flags,
                Some(fs.data),
            )
        });
        if let Err(e) = result {
            log::warn!("cannot mount {} on {}: {e}", fs.fstype, fs.target);
        }
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(AgentError::os("cannot read /proc/cmdline"))?;
    let config = BootConfig::parse(&cmdline);
    if let Some(level) = config.log_level {
        log::set_max_level(level);
    }
    if let Some(root) = &config.root {
        switch_root(root)?;
    }
    let reaper = Reaper::start().map_err(AgentError::os("cannot start the reaper thread"))?;
    let listener = vsock::listen(AGENT_PORT).map_err(AgentError::os(format!(
        "cannot listen on vsock port {AGENT_PORT} (is there a virtio-vsock device?)"
    )))?;
    log::info!("listening on vsock port {AGENT_PORT}");
    thread::Builder::new()
        .name("ready".into())
        .spawn(move || signal_ready(start))
        .map_err(AgentError::os("cannot start the readiness thread"))?;
    let agent = Arc::new(Agent {
        reaper,
        mode: Mode::Init,
    });
    Ok((Listener::Vsock(listener), agent))
}

/// The root disk to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RootDisk {
    device: String,
    fstype: String,
    flags: libc::c_ulong,
    data: String,
}

/// What the agent takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct BootConfig {
    root: Option<RootDisk>,
    log_level: Option<log::LevelFilter>,
}

impl BootConfig {
    fn parse(cmdline: &str) -> BootConfig {
        let mut device = None;
        let mut fstype = "ext4".to_string();
        let mut rootflags = "";
        let mut log_level = None;
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "boxlite.root" if !value.is_empty() => device = Some(value.to_string()),
                "boxlite.rootfstype" if !value.is_empty() => fstype = value.to_string(),
                "boxlite.rootflags" => rootflags = value,
                "boxlite.log" => match logger::parse_level(value) {
                    Some(level) => log_level = Some(level),
                    None => log::warn!("ignoring unknown log level boxlite.log={value}"),
                },
                _ => {}
            }
        }
        let (flags, data) = parse_mount_options(rootflags);
        BootConfig {
            root: device.map(|device| RootDisk {
                device,
                fstype,
                flags,
                data,
            }),
            log_level,
        }
    }
}

/// Splits `ro,noatime,errors=remount-ro` into mount flags and the filesystem's own options.
fn parse_mount_options(options: &str) -> (libc::c_ulong, String) {
    let mut flags = 0;
    let mut data = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "noatime" => flags |= libc::MS_NOATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

fn make_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
}

fn c_str(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

/// `mount(2)`; `None` passes a null pointer.
fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(c_str).transpose()?;
    let target = sys::c_path(target)?;
    let fstype = fstype.map(c_str).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(c_str).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call; `data`
    // is a string, as the filesystems mounted here expect.
    let ret = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for `device` to appear (devtmpfs creates disk nodes as drivers probe them).
fn wait_for_device(device: &Path) {
    let deadline = Instant::now() + DEVICE_PATIENCE;
    while !device.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Mounts the root disk and makes it `/`, keeping the pseudo-filesystems.
fn switch_root(root: &RootDisk) -> Result<(), AgentError> {
    let new_root = Path::new(NEW_ROOT);
    let device = Path::new(&root.device);
    wait_for_device(device);
    make_dir(new_root).map_err(AgentError::os(format!("cannot create {NEW_ROOT}")))?;
    mount(
        Some(&root.device),
        new_root,
        Some(&root.fstype),
        root.flags,
        Some(&root.data),
    )
    .map_err(AgentError::os(format!(
        "cannot mount {} ({}) on {NEW_ROOT}",
        root.device, root.fstype
    )))?;
    for old in MOVED_MOUNTS {
        let target = new_root.join(old.trim_start_matches('/'));
        let moved = if target.is_dir() {
            mount(Some(old), &target, None, libc::MS_MOVE, None)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no such directory on the root disk",
            ))
        };
        if let Err(e) = moved {
            log::warn!("cannot move {old} to {}: {e}", target.display());
        }
    }
    std::env::set_current_dir(new_root)
        .map_err(AgentError::os(format!("cannot enter {NEW_ROOT}")))?;
    mount(Some("."), Path::new("/"), None, libc::MS_MOVE, None)
        .map_err(AgentError::os(format!("cannot move {NEW_ROOT} onto /")))?;
    let dot = c_str(".").map_err(AgentError::os("chroot"))?;
    // SAFETY: `dot` is a NUL-terminated string that outlives the call.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(AgentError::os("cannot chroot into the root disk")(
            io::Error::last_os_error(),
        ));
    }
    std::env::set_current_dir("/").map_err(AgentError::os("cannot enter the new /"))?;
    log::info!("switched root to {} ({})", root.device, root.fstype);
    Ok(())
}

/// Tells the host the agent is serving: one [`Ready`] frame on vsock port [`READY_PORT`].
fn signal_ready(start: Instant) {
    let frame = match Ready::new(AGENT_NAME).to_frame() {
        Ok(frame) => frame,
        Err(e) => return log::error!("cannot encode the ready message: {e}"),
    };
    let mut delay = Duration::from_millis(5);
    let mut last_error = None;
    let give_up = Instant::now() + READY_PATIENCE;
    while Instant::now() < give_up {
        match vsock::connect(HOST_CID, READY_PORT) {
            Ok(conn) => match sys::write_all(conn.as_fd(), &frame) {
                Ok(()) => {
                    let ms = start.elapsed().as_secs_f64() * 1000.0;
                    return log::info!("ready ({ms:.1} ms after start)");
                }
                Err(e) => last_error = Some(e),
            },
            Err(e) => last_error = Some(e),
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    if let Some(e) = last_error {
        log::warn!(
            "could not signal readiness on vsock port {READY_PORT} within {READY_PATIENCE:?}: \
             {e}; still serving port {AGENT_PORT}"
        );
    }
}

/// Whether any process other than PID 1 and kernel threads (which have no command line) exists.
fn user_processes_left() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let is_other_pid = name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| pid != 1);
        is_other_pid
            && std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| !cmdline.is_empty())
    })
}

/// Sends `signal` to every process and waits up to [`STOP_GRACE`] for them to be gone.
fn stop_processes(signal: i32) {
    match sys::kill_all(signal) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => return log::warn!("cannot signal every process: {e}"),
    }
    let deadline = Instant::now() + STOP_GRACE;
    while user_processes_left() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

fn sync() {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
}

/// Stops every process, syncs, unmounts and reboots (which ends the VM); never returns.
pub fn power_off() -> ! {
    log::info!("stopping every process");
    stop_processes(libc::SIGTERM);
    stop_processes(libc::SIGKILL);
    sync();
    for target in [
        "/dev/pts", "/dev/shm", "/dev", "/tmp", "/run", "/sys", "/proc",
    ] {
        let Ok(path) = c_str(target) else { continue };
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            log::debug!("cannot unmount {target}: {}", io::Error::last_os_error());
        }
    }
    if let Err(e) = mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    ) {
        log::debug!("cannot remount / read-only: {e}");
    }
    sync();
    log::info!("rebooting (ends the VM)");
    // SAFETY: reboot takes no memory; RB_AUTOBOOT restarts the machine.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    log::error!("reboot failed: {}", io::Error::last_os_error());
    // PID 1 must not exit.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_root_option_stays_on_the_initramfs() {
        let config = BootConfig::parse("console=ttyS0 reboot=k panic=-1 quiet\n");
        assert_eq!(config, BootConfig::default());
    }

    #[test]
    fn root_options_are_parsed() {
        let config = BootConfig::parse(
            "console=ttyS0 boxlite.root=/dev/vda boxlite.rootfstype=ext2 \
             boxlite.rootflags=ro,noatime,errors=remount-ro,commit=5 boxlite.log=debug",
        );
        assert_eq!(
            config.root,
            Some(RootDisk {
                device: "/dev/vda".to_string(),
                fstype: "ext2".to_string(),
                flags: libc::MS_RDONLY | libc::MS_NOATIME,
                data: "errors=remount-ro,commit=5".to_string(),
            })
        );
        assert_eq!(config.log_level, Some(log::LevelFilter::Debug));
    }

    #[test]
    fn root_defaults_to_ext4_read_write() {
        let config = BootConfig::parse("boxlite.root=/dev/vdb boxlite.rootflags=ro,rw");
        let root = config.root.unwrap();
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.flags, 0);
        assert_eq!(root.data, "");
    }

    #[test]
    fn empty_values_and_bad_levels_are_ignored() {
        let config = BootConfig::parse("boxlite.root= boxlite.log=loud boxlite.rootflags=");
        assert_eq!(config, BootConfig::default());
    }
}
