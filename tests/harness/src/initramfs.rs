//! The two initramfs images of the tier, both uncompressed newc cpio (gunzip under TCG is slow):
//! the guest's (busybox + a `/init` acting on `harness.action=`) and the test host's (busybox,
//! its `/init`, the helper library, and under `/opt/boxlite/` the shim, both kernel images and
//! the guest initramfs).

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::cpio::CpioWriter;
use crate::error::{HarnessError, Result};

/// `/init` of the guest initramfs.
pub const GUEST_INIT: &str = include_str!("../assets/guest-init.sh");
/// `/init` of the test host initramfs.
pub const HOST_INIT: &str = include_str!("../assets/host-init.sh");
/// Helper library sourced before each case, at `/opt/boxlite/harness-lib.sh` in the test host.
pub const HARNESS_LIB: &str = include_str!("../assets/harness-lib.sh");

/// Applets linked when `busybox --list` cannot be run; everything the assets use.
const FALLBACK_APPLETS: &[&str] = &[
    "awk", "cat", "date", "dmesg", "echo", "grep", "head", "kill", "ls", "mkdir", "mount", "nproc",
    "reboot", "rm", "sed", "sh", "sleep", "sync", "tail", "tee", "tr", "umount",
];

/// A static busybox binary and the applet names to link to it.
pub struct Busybox {
    /// The binary's bytes.
    pub binary: Vec<u8>,
    /// Applets to link under `/bin`.
    pub applets: Vec<String>,
}

impl Busybox {
    /// Wraps `binary` (the contents of `path`, already checked to be static) and asks it for its
    /// applet list, falling back to the applets the harness scripts use.
    pub fn load(path: &Path, binary: Vec<u8>) -> Self {
        let listed = Command::new(path)
            .arg("--list")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| applets_from_list(&String::from_utf8_lossy(&out.stdout)))
            .filter(|applets| !applets.is_empty());
        let applets =
            listed.unwrap_or_else(|| FALLBACK_APPLETS.iter().map(|s| (*s).to_owned()).collect());
        Self { binary, applets }
    }
}

/// The applet names in `busybox --list` output that can be linked as `/bin/<name>`.
pub fn applets_from_list(list: &str) -> Vec<String> {
    let mut names: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != ".." && *n != "busybox")
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The skeleton both images share: directories, `/dev/console` (the kernel opens it for
/// `/init` before devtmpfs is mounted), busybox and its applet links, and `/init`.
fn write_base<W: Write>(w: &mut CpioWriter<W>, busybox: &Busybox, init: &str) -> Result<()> {
    for dir in ["bin", "dev", "proc", "sys", "tmp", "work"] {
        w.dir(dir, 0o755)?;
    }
    w.char_device("dev/console", 0o600, 5, 1)?;
    w.char_device("dev/null", 0o666, 1, 3)?;
    w.file("bin/busybox", 0o755, &busybox.binary)?;
    for applet in &busybox.applets {
        w.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    w.file("init", 0o755, init.as_bytes())
}

/// Builds the guest initramfs in memory.
pub fn guest_initramfs(busybox: &Busybox) -> Result<Vec<u8>> {
    let mut w = CpioWriter::new(Vec::new());
    write_base(&mut w, busybox, GUEST_INIT)?;
    w.finish()
}

/// What the test host carries under `/opt/boxlite/`.
pub struct HostPayload<'a> {
    /// The shim binary (static).
    pub shim: &'a [u8],
    /// The guest's PVH vmlinux.
    pub guest_kernel: &'a [u8],
    /// The guest's bzImage.
    pub guest_bzimage: &'a [u8],
    /// The guest initramfs ([`guest_initramfs`]).
    pub guest_initrd: &'a [u8],
}

/// Writes the test host initramfs to `out`.
pub fn write_host_initramfs(
    out: &Path,
    busybox: &Busybox,
    payload: &HostPayload<'_>,
) -> Result<()> {
    let file = std::fs::File::create(out).map_err(|e| HarnessError::file("create", out, e))?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(file));
    write_base(&mut w, busybox, HOST_INIT)?;
    w.dir("opt", 0o755)?;
    w.dir("opt/boxlite", 0o755)?;
    w.file("opt/boxlite/harness-lib.sh", 0o644, HARNESS_LIB.as_bytes())?;
    w.file("opt/boxlite/boxlite-shim", 0o755, payload.shim)?;
    w.file("opt/boxlite/vmlinux", 0o644, payload.guest_kernel)?;
    w.file("opt/boxlite/bzImage", 0o644, payload.guest_bzimage)?;
    w.file("opt/boxlite/guest-initrd.cpio", 0o644, payload.guest_initrd)?;
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox() -> Busybox {
        Busybox {
            binary: b"\x7fELF fake".to_vec(),
            applets: vec!["sh".into(), "mount".into()],
        }
    }

    #[test]
    fn applet_list_is_cleaned() {
        let list = "sh\nmount\n\nbusybox\n../evil\nsh\n[\n[[\n";
        assert_eq!(applets_from_list(list), ["[", "[[", "mount", "sh"]);
    }

    #[test]
    fn guest_image_has_init_and_console() {
        let image = guest_initramfs(&busybox()).unwrap();
        let text = String::from_utf8_lossy(&image);
        for name in [
            "init\0",
            "dev/console\0",
            "bin/busybox\0",
            "bin/sh\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "missing {name:?}");
        }
        assert!(text.contains("harness.action="));
    }

    #[test]
    fn assets_speak_the_runner_protocol() {
        assert!(HOST_INIT.contains("echo HARNESS-OUTER-INIT"));
        assert!(HOST_INIT.contains("HARNESS-TEST-EXIT $1"));
        assert!(HOST_INIT.contains("HARNESS-NO-KVM"));
        assert!(HARNESS_LIB.contains("mark shim-spawn"));
        assert!(HARNESS_LIB.contains("guest| "));
        assert!(GUEST_INIT.contains("echo BOXLITE-GUEST-INIT-OK"));
    }
}
