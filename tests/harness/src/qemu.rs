//! The test host: one QEMU (TCG, `-cpu max` so the guest sees AMD-V with nested paging) per
//! case, run in its own process group and killed with it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use crate::error::{HarnessError, Result};

/// How to start the test host.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// `qemu-system-x86_64` (resolved).
    pub qemu: PathBuf,
    /// The test host's kernel (PVH vmlinux).
    pub kernel: PathBuf,
    /// The test host's initramfs.
    pub initrd: PathBuf,
    /// Value for `tsc_early_khz=`: without it ~27% of TCG boots miscalibrate the TSC and the
    /// nested KVM livelocks.
    pub tsc_khz: u64,
    /// Test host memory in MiB.
    pub mem_mib: u32,
    /// A host directory every test host sees read-only at /assets (9p tag `assets`): binaries
    /// and images the cases use beyond the shim and the kernels.
    pub assets_dir: Option<PathBuf>,
}

/// The TSC frequency in kHz from `/proc/cpuinfo` text (`cpu MHz` × 1000, rounded).
pub fn tsc_khz_from_cpuinfo(cpuinfo: &str) -> Option<u64> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != "cpu MHz" {
            return None;
        }
        let mhz: f64 = value.trim().parse().ok()?;
        (1.0..1.0e6)
            .contains(&mhz)
            .then(|| (mhz * 1000.0).round() as u64)
    })
}

/// Escapes a value for a QEMU `-opt key=value,...` list (a comma is written `,,`).
pub fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

/// QEMU's arguments for a test host whose 9p share (tag `work`) is `share_dir`.
pub fn qemu_args(cfg: &QemuConfig, share_dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-M",
        "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(cfg.mem_mib.to_string().into());
    for a in [
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-serial",
        "stdio",
        "-device",
        "virtio-rng-device",
        "-kernel",
    ] {
        args.push(a.into());
    }
    args.push(cfg.kernel.clone().into());
    args.push("-initrd".into());
    args.push(cfg.initrd.clone().into());
    args.push("-append".into());
    args.push(
        format!(
            "console=ttyS0 reboot=t panic=-1 tsc_early_khz={}",
            cfg.tsc_khz
        )
        .into(),
    );
    args.push("-fsdev".into());
    args.push(
        format!(
            "local,id=fs0,path={},security_model=none",
            escape_opt(&share_dir.to_string_lossy())
        )
        .into(),
    );
    args.push("-device".into());
    args.push("virtio-9p-device,fsdev=fs0,mount_tag=work".into());
    if let Some(assets) = &cfg.assets_dir {
        args.push("-fsdev".into());
        args.push(
            format!(
                "local,id=fs1,path={},security_model=none,readonly=on",
                escape_opt(&assets.to_string_lossy())
            )
            .into(),
        );
        args.push("-device".into());
        args.push("virtio-9p-device,fsdev=fs1,mount_tag=assets".into());
    }
    // The outer machine's root, read-only (tag `hostroot`): programs built here for glibc (C
    // tests, Go, Node) run unchanged in the test host through `chroot /hostroot`.
    args.push("-fsdev".into());
    args.push("local,id=fs2,path=/,security_model=none,readonly=on".into());
    args.push("-device".into());
    args.push("virtio-9p-device,fsdev=fs2,mount_tag=hostroot".into());
    args
}

/// A running QEMU, the leader of its own process group. Dropping it kills the group.
pub struct Qemu {
    child: Child,
    exited: Option<ExitStatus>,
}

impl Qemu {
    /// Starts QEMU with stdin from /dev/null (so it never touches a terminal), stdout piped and
    /// stderr into `stderr_file`. It also dies if the thread that spawned it ends (the runner's
    /// worker threads live until their QEMU is gone).
    pub fn spawn(
        cfg: &QemuConfig,
        share_dir: &Path,
        stderr_file: std::fs::File,
    ) -> Result<(Self, ChildStdout)> {
        let mut cmd = Command::new(&cfg.qemu);
        cmd.args(qemu_args(cfg, share_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| HarnessError::io(format!("cannot start {}", cfg.qemu.display()), e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::io("QEMU's stdout", std::io::Error::other("not piped")))?;
        Ok((
            Self {
                child,
                exited: None,
            },
            stdout,
        ))
    }

    /// Kills QEMU's whole process group (no-op once it has been reaped).
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall; the group exists until the child is reaped, which only
            // `wait` below does.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }

    /// Waits for QEMU to exit and returns its status.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .map_err(|e| HarnessError::io("waiting for QEMU", e))?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
        let _ = self.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QemuConfig {
        QemuConfig {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinux".into(),
            initrd: "/r/host.cpio".into(),
            tsc_khz: 2_445_406,
            mem_mib: 1024,
            assets_dir: None,
        }
    }

    #[test]
    fn cpuinfo_mhz() {
        let text =
            "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2445.406\ncache size\t: 512 KB\n";
        assert_eq!(tsc_khz_from_cpuinfo(text), Some(2_445_406));
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz : 3000\n"), Some(3_000_000));
        assert_eq!(tsc_khz_from_cpuinfo("processor: 0\n"), None);
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz : fast\n"), None);
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz : NaN\n"), None);
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz : 0\n"), None);
    }

    #[test]
    fn args_match_the_reference_command() {
        let args: Vec<String> = qemu_args(&cfg(), Path::new("/r/a,b/work"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with(
            "-M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off -accel tcg,thread=multi \
             -cpu max -smp 1 -m 1024 -nodefaults -no-user-config -nographic -no-reboot \
             -serial stdio -device virtio-rng-device -kernel /k/vmlinux -initrd /r/host.cpio"
        ));
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(
            args[append + 1],
            "console=ttyS0 reboot=t panic=-1 tsc_early_khz=2445406"
        );
        assert!(args.contains(&"local,id=fs0,path=/r/a,,b/work,security_model=none".to_owned()));
        assert!(args.contains(&"virtio-9p-device,fsdev=fs0,mount_tag=work".to_owned()));
        assert!(
            !joined.contains("mount_tag=assets"),
            "no assets share unless asked for"
        );
    }

    #[test]
    fn assets_are_shared_read_only() {
        let cfg = QemuConfig {
            assets_dir: Some("/a".into()),
            ..cfg()
        };
        let args: Vec<String> = qemu_args(&cfg, Path::new("/w"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(args.contains(&"local,id=fs1,path=/a,security_model=none,readonly=on".to_owned()));
        assert!(args.contains(&"virtio-9p-device,fsdev=fs1,mount_tag=assets".to_owned()));
        assert!(args.contains(&"virtio-9p-device,fsdev=fs2,mount_tag=hostroot".to_owned()));
    }
}
