//! The shim's command line. Production runs pass no flags and send the config on stdin; the flags
//! exist for debugging and benchmarking, like Firecracker's config file.

use boxlite_proto::{
    ConsoleConfig, DiskConfig, DiskFormat, LogLevel, ShimConfig, VmConfig, VsockConfig,
};

/// Command line used when none is given: serial console, i8042 reset on reboot, reset on panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
const DEFAULT_MEM_MIB: u32 = 256;
const DEFAULT_GUEST_CID: u32 = 3;

/// Usage text for `--help`.
pub const USAGE: &str = "\
boxlite-shim: runs one boxlite VM in this process and exits with how it ended.

USAGE:
    boxlite-shim                          read a length-prefixed postcard ShimConfig on stdin
    boxlite-shim [FLAGS]                  boot from flags (debugging, benchmarks)
    boxlite-shim encode-config [FLAGS]    write the config the flags describe to stdout
                                          (so `encode-config ... | boxlite-shim` uses the stdin path)

FLAGS:
    --kernel PATH       guest kernel: ELF vmlinux (PVH entry, else 64-bit boot) or bzImage [required]
    --initrd PATH       initramfs to load
    --cmdline STRING    kernel command line [default: console=ttyS0 reboot=k panic=-1]
    --mem-mib N         guest memory in MiB [default: 256]
    --vcpus N           number of vCPUs, 1..=32 [default: 1]
    --disk PATH         add a virtio-blk disk backed by a raw image (first = /dev/vda); repeatable
    --ro-disk PATH      the same, read-only (guest writes are refused)
    --qcow2-disk PATH   add a virtio-blk disk backed by a qcow2 image, e.g. a copy-on-write
                        overlay (its backing files are opened read-only); repeatable
    --vsock UDS         add a virtio-vsock device bridged to the Unix socket UDS (Firecracker's
                        protocol: host connects to UDS and sends 'CONNECT <port>'; guest
                        connections to host port P go to UDS_P)
    --vsock-cid N       the guest's vsock context id [default: 3]
    --console DEST      where the serial console goes: a file path (appended to) or '-' for
                        stdout; repeat for both [default: -]
    --log-level LEVEL   error, warn, info, debug or trace [default: info]
    --no-seccomp        run without the per-thread seccomp filters (to debug them only)
    -h, --help          this text
    -V, --version       the shim version

EXIT STATUS:
    0 guest reset/reboot    1 VMM error          2 usage or config error
    3 guest panic           4 triple fault       5 KVM internal error
    6 host-requested shutdown (SIGTERM/SIGINT)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print usage.
    Help,
    /// Print the version.
    Version,
    /// Read the config from stdin and run it.
    RunFromStdin,
    /// Run the config given by flags.
    Run(ShimConfig),
    /// Write the config given by flags to stdout.
    EncodeConfig(ShimConfig),
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None => Ok(Command::RunFromStdin),
        Some("-h" | "--help") => Ok(Command::Help),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("encode-config") => parse_flags(&args[1..]).map(Command::EncodeConfig),
        Some(_) => parse_flags(args).map(Command::Run),
    }
}

fn parse_flags(args: &[String]) -> Result<ShimConfig, String> {
    let mut kernel = None;
    let mut initrd = None;
    let mut cmdline = DEFAULT_CMDLINE.to_string();
    let mut mem_mib = DEFAULT_MEM_MIB;
    let mut vcpus = 1u8;
    let mut console = ConsoleConfig::default();
    let mut console_given = false;
    let mut log_level = LogLevel::Info;
    let mut disks = Vec::new();
    let mut vsock_uds = None;
    let mut guest_cid = DEFAULT_GUEST_CID;
    let mut seccomp = true;

    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kernel" => kernel = Some(value()?.clone()),
            "--initrd" => initrd = Some(value()?.clone()),
            "--cmdline" => cmdline = value()?.clone(),
            "--mem-mib" => mem_mib = number(flag, value()?)?,
            "--vcpus" => vcpus = number(flag, value()?)?,
            "--disk" => disks.push(DiskConfig {
                path: value()?.clone(),
                read_only: false,
                format: DiskFormat::Raw,
            }),
            "--ro-disk" => disks.push(DiskConfig {
                path: value()?.clone(),
                read_only: true,
                format: DiskFormat::Raw,
            }),
            "--qcow2-disk" => disks.push(DiskConfig {
                path: value()?.clone(),
                read_only: false,
                format: DiskFormat::Qcow2,
            }),
            "--vsock" => vsock_uds = Some(value()?.clone()),
            "--vsock-cid" => guest_cid = number(flag, value()?)?,
            "--console" => {
                let dest = value()?;
                console_given = true;
                if dest == "-" {
                    console.stdout = true;
                } else if console.file.replace(dest.clone()).is_some() {
                    return Err("--console takes at most one file".to_string());
                }
            }
            "--log-level" => {
                let level = value()?;
                log_level = LogLevel::parse(level).ok_or_else(|| {
                    format!("unknown log level '{level}' (error, warn, info, debug, trace)")
                })?;
            }
            "--no-seccomp" => seccomp = false,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if !console_given {
        console.stdout = true;
    }
    let kernel = kernel.ok_or("--kernel is required")?;
    let vsock = vsock_uds.map(|uds_path| VsockConfig {
        guest_cid,
        uds_path,
    });
    let vm = VmConfig {
        kernel,
        initrd,
        cmdline,
        mem_mib,
        vcpus,
        console,
        disks,
        vsock,
    };
    let mut config = ShimConfig::new(vm, log_level);
    config.seccomp = seccomp;
    Ok(config)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: '{value}' is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_arguments_means_config_on_stdin() {
        assert_eq!(parse(&[]), Ok(Command::RunFromStdin));
        assert_eq!(parse(&args(&["--help"])), Ok(Command::Help));
    }

    #[test]
    fn flags_build_a_config_with_defaults() {
        let Ok(Command::Run(config)) = parse(&args(&["--kernel", "/k"])) else {
            panic!()
        };
        assert_eq!(config.vm.kernel, "/k");
        assert_eq!(config.vm.cmdline, DEFAULT_CMDLINE);
        assert_eq!((config.vm.mem_mib, config.vm.vcpus), (256, 1));
        assert!(config.seccomp, "the filters are on unless --no-seccomp");
        assert_eq!(
            config.vm.console,
            ConsoleConfig {
                file: None,
                stdout: true,
                file_cap: None,
            }
        );
        assert!(config.vm.disks.is_empty() && config.vm.vsock.is_none());
    }

    #[test]
    fn every_flag_is_honoured() {
        let list = [
            "encode-config",
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--cmdline",
            "a=b",
            "--mem-mib",
            "64",
            "--vcpus",
            "2",
            "--console",
            "/tmp/c.log",
            "--console",
            "-",
            "--log-level",
            "debug",
            "--ro-disk",
            "/root.ext4",
            "--disk",
            "/data.raw",
            "--qcow2-disk",
            "/box.qcow2",
            "--vsock",
            "/run/v.sock",
            "--vsock-cid",
            "7",
            "--no-seccomp",
        ];
        let Ok(Command::EncodeConfig(config)) = parse(&args(&list)) else {
            panic!()
        };
        assert_eq!(config.vm.initrd.as_deref(), Some("/i"));
        assert_eq!(
            (
                config.vm.cmdline.as_str(),
                config.vm.mem_mib,
                config.vm.vcpus
            ),
            ("a=b", 64, 2)
        );
        assert_eq!(
            config.vm.console,
            ConsoleConfig {
                file: Some("/tmp/c.log".into()),
                stdout: true,
                file_cap: None,
            }
        );
        assert_eq!(config.log_level, LogLevel::Debug);
        assert!(!config.seccomp);
        assert_eq!(
            config.vm.disks,
            vec![
                DiskConfig {
                    path: "/root.ext4".into(),
                    read_only: true,
                    format: DiskFormat::Raw,
                },
                DiskConfig {
                    path: "/data.raw".into(),
                    read_only: false,
                    format: DiskFormat::Raw,
                },
                DiskConfig {
                    path: "/box.qcow2".into(),
                    read_only: false,
                    format: DiskFormat::Qcow2,
                }
            ]
        );
        assert_eq!(
            config.vm.vsock,
            Some(VsockConfig {
                guest_cid: 7,
                uds_path: "/run/v.sock".into()
            })
        );
    }

    #[test]
    fn a_file_console_alone_keeps_stdout_quiet() {
        let Ok(Command::Run(config)) = parse(&args(&["--kernel", "/k", "--console", "/c"])) else {
            panic!()
        };
        assert!(!config.vm.console.stdout);
    }

    #[test]
    fn mistakes_are_explained() {
        for (list, needle) in [
            (&["--kernel"][..], "needs a value"),
            (&["--vcpus", "2"][..], "--kernel is required"),
            (
                &["--kernel", "/k", "--mem-mib", "lots"][..],
                "not a valid number",
            ),
            (
                &["--kernel", "/k", "--vcpus", "300"][..],
                "not a valid number",
            ),
            (&["--kernel", "/k", "--bogus"][..], "unknown argument"),
            (
                &["--kernel", "/k", "--log-level", "loud"][..],
                "unknown log level",
            ),
            (
                &["--kernel", "/k", "--console", "/a", "--console", "/b"][..],
                "at most one file",
            ),
        ] {
            let err = parse(&args(list)).unwrap_err();
            assert!(err.contains(needle), "{list:?}: {err}");
        }
    }
}
