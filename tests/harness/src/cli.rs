//! Command-line parsing (std only).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{HarnessError, Result};

/// The usage text.
pub const USAGE: &str = "\
boxlite-harness: the e2e tier that boots real Linux guests with boxlite-shim inside a QEMU (TCG,
emulated AMD-V) test host with a nested /dev/kvm. Each case runs in a fresh QEMU.

USAGE:
  boxlite-harness run --host-kernel K --guest-kernel K --guest-bzimage B --shim S [OPTIONS]
  boxlite-harness list [--cases-dir DIR] [--filter SUBSTR]...
  boxlite-harness guest-initrd --out PATH [--busybox PATH]
                        write the guest initramfs the cases boot (busybox + /init acting on
                        harness.action=marker|nproc|meminfo|panic|sleep) to PATH
  boxlite-harness help

run options:
  --host-kernel PATH    test host kernel (PVH vmlinux with KVM_AMD and 9p)
  --guest-kernel PATH   guest PVH vmlinux (GUEST_KERNEL in cases)
  --guest-bzimage PATH  guest bzImage (GUEST_BZIMAGE in cases)
  --shim PATH           static boxlite-shim (SHIM in cases)
  --busybox PATH        static busybox [default: /bin/busybox]
  --filter SUBSTR       run only cases whose name contains SUBSTR (repeatable)
  --jobs N              cases run in parallel [default: 2]
  --report-dir DIR      where console logs and the summary go [default: target/harness-report]
  --cases-dir DIR       case scripts [default: this crate's cases/]
  --qemu PATH           QEMU binary [default: qemu-system-x86_64]
  --assets-dir DIR      shared read-only with every test host at /assets (ASSETS in cases)
  --tsc-khz N           tsc_early_khz= for the test host [default: cpu MHz in /proc/cpuinfo x 1000]

Exit status: 0 all selected cases passed; 1 a case failed; 2 usage error;
3 the tier could not run (every case counted as skipped).";

/// Default `--report-dir`.
pub const DEFAULT_REPORT_DIR: &str = "target/harness-report";
/// Default `--busybox`.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// Default `--qemu`.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// Default `--jobs`.
pub const DEFAULT_JOBS: usize = 2;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `run`: run the selected cases.
    Run(Box<RunArgs>),
    /// `list`: print the cases.
    List(ListArgs),
    /// `guest-initrd`: write the guest initramfs.
    GuestInitrd(GuestInitrdArgs),
    /// `help`, `-h`, `--help`.
    Help,
}

/// Arguments of `guest-initrd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInitrdArgs {
    /// `--busybox`.
    pub busybox: PathBuf,
    /// `--out`.
    pub out: PathBuf,
}

/// Arguments of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// `--host-kernel`.
    pub host_kernel: PathBuf,
    /// `--guest-kernel`.
    pub guest_kernel: PathBuf,
    /// `--guest-bzimage`.
    pub guest_bzimage: PathBuf,
    /// `--shim`.
    pub shim: PathBuf,
    /// `--busybox`.
    pub busybox: PathBuf,
    /// `--filter` values.
    pub filters: Vec<String>,
    /// `--jobs`.
    pub jobs: usize,
    /// `--report-dir`.
    pub report_dir: PathBuf,
    /// `--cases-dir`.
    pub cases_dir: PathBuf,
    /// `--qemu`.
    pub qemu: PathBuf,
    /// `--tsc-khz`.
    pub tsc_khz: Option<u64>,
    /// `--assets-dir`.
    pub assets_dir: Option<PathBuf>,
}

/// Arguments of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    /// `--cases-dir`.
    pub cases_dir: PathBuf,
    /// `--filter` values.
    pub filters: Vec<String>,
}

/// The repository's cases directory, used when `--cases-dir` is not given.
pub fn default_cases_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/cases"))
}

fn usage(msg: impl Into<String>) -> HarnessError {
    HarnessError::Usage(msg.into())
}

/// Splits `--flag=value` / `--flag value` pairs.
struct Flags {
    args: std::vec::IntoIter<OsString>,
}

impl Flags {
    /// The next flag and its value.
    fn next_pair(&mut self) -> Result<Option<(String, OsString)>> {
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        let arg = arg
            .into_string()
            .map_err(|a| usage(format!("flag {a:?} is not valid UTF-8")))?;
        if !arg.starts_with("--") {
            return Err(usage(format!("unexpected argument {arg:?}")));
        }
        if let Some((flag, value)) = arg.split_once('=') {
            return Ok(Some((flag.to_owned(), value.into())));
        }
        let value = self
            .args
            .next()
            .ok_or_else(|| usage(format!("{arg} needs a value")))?;
        Ok(Some((arg, value)))
    }
}

fn utf8(flag: &str, value: OsString) -> Result<String> {
    value
        .into_string()
        .map_err(|v| usage(format!("{flag} {v:?}: not valid UTF-8")))
}

fn number<T: std::str::FromStr>(flag: &str, value: OsString) -> Result<T> {
    let text = utf8(flag, value)?;
    text.parse()
        .map_err(|_| usage(format!("{flag} {text:?}: expected a positive whole number")))
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut args = args.into_iter();
    let sub = args.next().map(|s| s.to_string_lossy().into_owned());
    let mut flags = Flags {
        args: args.collect::<Vec<_>>().into_iter(),
    };
    match sub.as_deref() {
        None | Some("help" | "-h" | "--help") => Ok(Command::Help),
        Some("list") => {
            let mut list = ListArgs {
                cases_dir: default_cases_dir(),
                filters: Vec::new(),
            };
            while let Some((flag, value)) = flags.next_pair()? {
                match flag.as_str() {
                    "--cases-dir" => list.cases_dir = value.into(),
                    "--filter" => list.filters.push(utf8(&flag, value)?),
                    _ => return Err(usage(format!("`list` has no flag {flag}"))),
                }
            }
            Ok(Command::List(list))
        }
        Some("run") => parse_run(flags).map(|r| Command::Run(Box::new(r))),
        Some("guest-initrd") => {
            let (mut busybox, mut out) = (PathBuf::from(DEFAULT_BUSYBOX), None);
            while let Some((flag, value)) = flags.next_pair()? {
                match flag.as_str() {
                    "--busybox" => busybox = value.into(),
                    "--out" => out = Some(value.into()),
                    _ => return Err(usage(format!("`guest-initrd` has no flag {flag}"))),
                }
            }
            let out = out.ok_or_else(|| usage("`guest-initrd` needs --out PATH"))?;
            Ok(Command::GuestInitrd(GuestInitrdArgs { busybox, out }))
        }
        Some(other) => Err(usage(format!(
            "unknown subcommand {other:?} (expected run, list, guest-initrd or help)"
        ))),
    }
}

fn parse_run(mut flags: Flags) -> Result<RunArgs> {
    let (mut host_kernel, mut guest_kernel, mut guest_bzimage, mut shim) = (None, None, None, None);
    let mut run = RunArgs {
        host_kernel: PathBuf::new(),
        guest_kernel: PathBuf::new(),
        guest_bzimage: PathBuf::new(),
        shim: PathBuf::new(),
        busybox: DEFAULT_BUSYBOX.into(),
        filters: Vec::new(),
        jobs: DEFAULT_JOBS,
        report_dir: DEFAULT_REPORT_DIR.into(),
        cases_dir: default_cases_dir(),
        qemu: DEFAULT_QEMU.into(),
        tsc_khz: None,
        assets_dir: None,
    };
    while let Some((flag, value)) = flags.next_pair()? {
        match flag.as_str() {
            "--host-kernel" => host_kernel = Some(value.into()),
            "--guest-kernel" => guest_kernel = Some(value.into()),
            "--guest-bzimage" => guest_bzimage = Some(value.into()),
            "--shim" => shim = Some(value.into()),
            "--busybox" => run.busybox = value.into(),
            "--filter" => run.filters.push(utf8(&flag, value)?),
            "--jobs" => run.jobs = number(&flag, value)?,
            "--report-dir" => run.report_dir = value.into(),
            "--cases-dir" => run.cases_dir = value.into(),
            "--qemu" => run.qemu = value.into(),
            "--tsc-khz" => run.tsc_khz = Some(number(&flag, value)?),
            "--assets-dir" => run.assets_dir = Some(value.into()),
            _ => return Err(usage(format!("`run` has no flag {flag}"))),
        }
    }
    if run.jobs == 0 {
        return Err(usage("--jobs must be at least 1"));
    }
    if run.tsc_khz == Some(0) {
        return Err(usage("--tsc-khz must be positive"));
    }
    let required =
        |v: Option<PathBuf>, flag: &str| v.ok_or_else(|| usage(format!("`run` needs {flag} PATH")));
    run.host_kernel = required(host_kernel, "--host-kernel")?;
    run.guest_kernel = required(guest_kernel, "--guest-kernel")?;
    run.guest_bzimage = required(guest_bzimage, "--guest-bzimage")?;
    run.shim = required(shim, "--shim")?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn run_with_all_flags() {
        let Command::Run(r) = parse(args(
            "run --host-kernel /k/v --guest-kernel=/k/g --guest-bzimage /k/b --shim /s \
             --busybox /bb --filter boot --filter=kvm --jobs 3 --report-dir /r --cases-dir /c \
             --qemu /q --tsc-khz 2000000 --assets-dir /a",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(r.host_kernel, PathBuf::from("/k/v"));
        assert_eq!(r.guest_kernel, PathBuf::from("/k/g"));
        assert_eq!(r.filters, ["boot", "kvm"]);
        assert_eq!((r.jobs, r.tsc_khz), (3, Some(2_000_000)));
        assert_eq!(r.qemu, PathBuf::from("/q"));
        assert_eq!(r.assets_dir, Some(PathBuf::from("/a")));
    }

    #[test]
    fn guest_initrd_needs_an_output_path() {
        assert_eq!(
            parse(args("guest-initrd --out /o/g.cpio")).unwrap(),
            Command::GuestInitrd(GuestInitrdArgs {
                busybox: DEFAULT_BUSYBOX.into(),
                out: "/o/g.cpio".into()
            })
        );
        assert!(matches!(
            parse(args("guest-initrd")),
            Err(HarnessError::Usage(_))
        ));
        assert!(matches!(
            parse(args("guest-initrd --out /o --jobs 2")),
            Err(HarnessError::Usage(_))
        ));
    }

    #[test]
    fn run_defaults() {
        let Command::Run(r) = parse(args(
            "run --host-kernel a --guest-kernel b --guest-bzimage c --shim d",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(r.jobs, DEFAULT_JOBS);
        assert_eq!(r.busybox, PathBuf::from(DEFAULT_BUSYBOX));
        assert_eq!(r.report_dir, PathBuf::from(DEFAULT_REPORT_DIR));
        assert!(r.cases_dir.ends_with("cases"));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            "run",
            "run --host-kernel a --guest-kernel b --guest-bzimage c",
            "run --shim",
            "run --jobs 0 --host-kernel a --guest-kernel b --guest-bzimage c --shim d",
            "run --jobs two",
            "run --bogus 1",
            "run stray",
            "list --jobs 2",
            "frobnicate",
        ] {
            assert!(
                matches!(parse(args(bad)), Err(HarnessError::Usage(_))),
                "{bad:?} should be a usage error"
            );
        }
    }

    #[test]
    fn list_and_help() {
        assert_eq!(parse(args("")).unwrap(), Command::Help);
        assert_eq!(parse(args("--help")).unwrap(), Command::Help);
        let Command::List(l) = parse(args("list --filter boot --cases-dir /c")).unwrap() else {
            panic!("not list")
        };
        assert_eq!(l.filters, ["boot"]);
        assert_eq!(l.cases_dir, PathBuf::from("/c"));
    }
}
