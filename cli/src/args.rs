//! `boxlite run` arguments.

use std::path::PathBuf;
use std::time::Duration;

/// Usage text.
pub const USAGE: &str = "\
boxlite: run commands in boxes (KVM microVMs).

USAGE:
    boxlite run [BOX OPTIONS] [COMMAND OPTIONS] -- COMMAND [ARGS...]
        Boots a box (one boxlite-shim process), waits for its guest agent, runs COMMAND in it
        with stdout and stderr streamed here, shuts the box down and exits with COMMAND's
        status (128 + N when it died of signal N).
    boxlite exec --vsock UDS [COMMAND OPTIONS] -- COMMAND [ARGS...]
        Runs COMMAND in an already running box, reached through its vsock socket UDS
        (boxlite-shim --vsock UDS). Many execs may run in one box at once.
    boxlite wait-ready --vsock UDS [--boot-timeout SECS]
        Waits for the guest agent of a box being started to signal readiness (listens at
        UDS_2696; start it before or just after the shim).
    boxlite shutdown --vsock UDS
        Asks the guest agent to sync, unmount and power the box off.

BOX OPTIONS:
    --kernel PATH       guest kernel [default: $BOXLITE_KERNEL]
    --initrd PATH       root initramfs with the agent as /init [default: $BOXLITE_INITRD]
    --root-disk PATH    boot the root filesystem from this ext4 image (read-only, /dev/vda)
    --disk PATH         add a writable raw disk (after the root disk); repeatable
    --ro-disk PATH      add a read-only raw disk; repeatable
    --shim PATH         the boxlite-shim binary [default: $BOXLITE_SHIM, else next to boxlite]
    --mem-mib N         guest memory [default: 256]
    --vcpus N           vCPUs [default: 1]
    --boot-timeout SECS how long the guest may take to become ready [default: 60]
    --box-dir DIR       keep the box's files (sockets, console.log, shim.stderr) in DIR

COMMAND OPTIONS:
    --env KEY=VALUE     environment of COMMAND; repeatable
    --cwd DIR           working directory of COMMAND in the guest
    --user UID[:GID]    run COMMAND as this user
    --timeout SECS      kill COMMAND after SECS seconds
    -i, --interactive   forward this process's stdin to COMMAND
    -h, --help          this text";

/// What to run in the guest, shared by `run` and `exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Environment of the command.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<String>,
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
    /// Command timeout.
    pub timeout: Option<Duration>,
    /// Forward stdin.
    pub interactive: bool,
    /// The command.
    pub argv: Vec<String>,
}

/// A parsed `boxlite run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Root initramfs.
    pub initrd: PathBuf,
    /// ext4 root image.
    pub root_disk: Option<PathBuf>,
    /// Extra disks: (path, read-only).
    pub disks: Vec<(PathBuf, bool)>,
    /// The shim binary, if given.
    pub shim: Option<PathBuf>,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// vCPUs.
    pub vcpus: u8,
    /// Readiness timeout.
    pub boot_timeout: Duration,
    /// Where to keep the box's files.
    pub box_dir: Option<PathBuf>,
    /// The command and how to run it.
    pub exec: ExecOptions,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print usage.
    Help,
    /// Run a command in a fresh box.
    Run(Box<RunArgs>),
    /// Run a command in a running box.
    Exec {
        /// The box's vsock socket.
        vsock: PathBuf,
        /// The command.
        exec: ExecOptions,
    },
    /// Wait for a box's guest agent.
    WaitReady {
        /// The box's vsock socket.
        vsock: PathBuf,
        /// How long to wait.
        timeout: Duration,
    },
    /// Shut a running box down.
    Shutdown {
        /// The box's vsock socket.
        vsock: PathBuf,
    },
}

const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses the arguments after the program name; `env` looks up defaults.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Command, String> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("run") => parse_run(rest, env).map(|r| Command::Run(Box::new(r))),
        Some("exec") => {
            let mut vsock = None;
            let exec = parse_exec(rest, |flag, value| match flag {
                "--vsock" => {
                    vsock = Some(PathBuf::from(value));
                    Ok(())
                }
                other => Err(format!("unknown option '{other}'")),
            })?;
            let vsock = vsock.ok_or("exec needs --vsock UDS: the running box's vsock socket")?;
            Ok(Command::Exec { vsock, exec })
        }
        Some(sub @ ("wait-ready" | "shutdown")) => {
            let (mut vsock, mut timeout) = (None, DEFAULT_BOOT_TIMEOUT);
            let mut iter = rest.iter();
            while let Some(flag) = iter.next() {
                let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag.as_str() {
                    "--vsock" => vsock = Some(PathBuf::from(value)),
                    "--boot-timeout" if sub == "wait-ready" => {
                        timeout = Duration::from_secs(number(flag, value)?)
                    }
                    other => return Err(format!("unknown option '{other}'")),
                }
            }
            let vsock = vsock.ok_or_else(|| format!("{sub} needs --vsock UDS"))?;
            Ok(if sub == "shutdown" {
                Command::Shutdown { vsock }
            } else {
                Command::WaitReady { vsock, timeout }
            })
        }
        Some(other) => Err(format!(
            "unknown command '{other}' (expected run, exec, wait-ready or shutdown)"
        )),
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: '{value}' is not a valid number"))
}

/// Parses command options up to `--` and the command after it; any other flag (with its value)
/// goes to `other`.
fn parse_exec(
    args: &[String],
    mut other: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<ExecOptions, String> {
    let mut exec = ExecOptions::default();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        if flag == "--" {
            exec.argv = iter.by_ref().cloned().collect();
            break;
        }
        if flag == "-i" || flag == "--interactive" {
            exec.interactive = true;
            continue;
        }
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--env" => {
                let (key, val) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--env '{value}': expected KEY=VALUE"))?;
                exec.env.push((key.to_string(), val.to_string()));
            }
            "--cwd" => exec.cwd = Some(value.clone()),
            "--user" => {
                let (uid, gid) = match value.split_once(':') {
                    Some((uid, gid)) => (uid, Some(gid)),
                    None => (value.as_str(), None),
                };
                exec.uid = Some(number(flag, uid)?);
                exec.gid = gid.map(|gid| number(flag, gid)).transpose()?;
            }
            "--timeout" => exec.timeout = Some(Duration::from_secs(number(flag, value)?)),
            _ => other(flag, value)?,
        }
    }
    if exec.argv.is_empty() {
        return Err("no command given: put it after '--'".to_string());
    }
    Ok(exec)
}

fn parse_run(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<RunArgs, String> {
    let (mut kernel, mut initrd) = (env("BOXLITE_KERNEL"), env("BOXLITE_INITRD"));
    let mut run = RunArgs {
        kernel: PathBuf::new(),
        initrd: PathBuf::new(),
        root_disk: None,
        disks: Vec::new(),
        shim: env("BOXLITE_SHIM").map(PathBuf::from),
        mem_mib: 256,
        vcpus: 1,
        boot_timeout: DEFAULT_BOOT_TIMEOUT,
        box_dir: None,
        exec: ExecOptions::default(),
    };
    run.exec = parse_exec(args, |flag, value| {
        match flag {
            "--kernel" => kernel = Some(value.to_string()),
            "--initrd" => initrd = Some(value.to_string()),
            "--root-disk" => run.root_disk = Some(value.into()),
            "--disk" => run.disks.push((value.into(), false)),
            "--ro-disk" => run.disks.push((value.into(), true)),
            "--shim" => run.shim = Some(value.into()),
            "--mem-mib" => run.mem_mib = number(flag, value)?,
            "--vcpus" => run.vcpus = number(flag, value)?,
            "--boot-timeout" => run.boot_timeout = Duration::from_secs(number(flag, value)?),
            "--box-dir" => run.box_dir = Some(value.into()),
            other => return Err(format!("unknown option '{other}'")),
        }
        Ok(())
    })?;
    run.kernel = kernel
        .ok_or("no guest kernel: pass --kernel or set BOXLITE_KERNEL")?
        .into();
    run.initrd = initrd
        .ok_or("no root initramfs: pass --initrd or set BOXLITE_INITRD")?
        .into();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn run_takes_everything_after_the_separator_as_the_command() {
        let list = [
            "run",
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--",
            "sh",
            "-c",
            "echo --kernel",
        ];
        let Ok(Command::Run(run)) = parse(&args(&list), no_env) else {
            panic!()
        };
        assert_eq!(run.exec.argv, ["sh", "-c", "echo --kernel"]);
        assert_eq!((run.kernel, run.initrd), ("/k".into(), "/i".into()));
        assert_eq!(
            (run.mem_mib, run.vcpus, run.exec.interactive),
            (256, 1, false)
        );
    }

    #[test]
    fn every_option_is_honoured() {
        let list = [
            "run",
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--root-disk",
            "/r.ext4",
            "--disk",
            "/d",
            "--ro-disk",
            "/ro",
            "--shim",
            "/s",
            "--mem-mib",
            "512",
            "--vcpus",
            "2",
            "--env",
            "A=b=c",
            "--cwd",
            "/tmp",
            "--user",
            "1000:100",
            "--timeout",
            "5",
            "-i",
            "--boot-timeout",
            "9",
            "--box-dir",
            "/b",
            "--",
            "true",
        ];
        let Ok(Command::Run(run)) = parse(&args(&list), no_env) else {
            panic!()
        };
        assert_eq!(run.root_disk, Some("/r.ext4".into()));
        assert_eq!(run.disks, vec![("/d".into(), false), ("/ro".into(), true)]);
        assert_eq!(run.exec.env, vec![("A".to_string(), "b=c".to_string())]);
        assert_eq!((run.exec.uid, run.exec.gid), (Some(1000), Some(100)));
        assert_eq!(run.exec.timeout, Some(Duration::from_secs(5)));
        assert_eq!(run.boot_timeout, Duration::from_secs(9));
        assert!(run.exec.interactive);
        assert_eq!(
            (run.shim, run.box_dir),
            (Some("/s".into()), Some("/b".into()))
        );
    }

    #[test]
    fn defaults_come_from_the_environment() {
        let env = |key: &str| match key {
            "BOXLITE_KERNEL" => Some("/env/k".to_string()),
            "BOXLITE_INITRD" => Some("/env/i".to_string()),
            "BOXLITE_SHIM" => Some("/env/s".to_string()),
            _ => None,
        };
        let Ok(Command::Run(run)) = parse(&args(&["run", "--", "true"]), env) else {
            panic!()
        };
        assert_eq!(
            (run.kernel, run.initrd, run.shim),
            ("/env/k".into(), "/env/i".into(), Some("/env/s".into()))
        );
    }

    #[test]
    fn running_box_commands_take_the_vsock_socket() {
        let list = [
            "exec",
            "--vsock",
            "/b/v.sock",
            "--env",
            "K=V",
            "-i",
            "--",
            "cat",
        ];
        let Ok(Command::Exec { vsock, exec }) = parse(&args(&list), no_env) else {
            panic!()
        };
        assert_eq!(vsock, PathBuf::from("/b/v.sock"));
        assert_eq!(
            (exec.argv, exec.interactive),
            (vec!["cat".to_string()], true)
        );
        let wait = parse(
            &args(&["wait-ready", "--vsock", "/v", "--boot-timeout", "7"]),
            no_env,
        );
        assert_eq!(
            wait,
            Ok(Command::WaitReady {
                vsock: "/v".into(),
                timeout: Duration::from_secs(7)
            })
        );
        let stop = parse(&args(&["shutdown", "--vsock", "/v"]), no_env);
        assert_eq!(stop, Ok(Command::Shutdown { vsock: "/v".into() }));
    }

    #[test]
    fn mistakes_are_explained() {
        for (list, needle) in [
            (
                &["run", "--kernel", "/k", "--initrd", "/i"][..],
                "no command",
            ),
            (&["run", "--", "true"][..], "no guest kernel"),
            (
                &["run", "--kernel", "/k", "--", "true"][..],
                "no root initramfs",
            ),
            (&["run", "--env", "NOEQUALS", "--", "x"][..], "KEY=VALUE"),
            (
                &["run", "--user", "root", "--", "x"][..],
                "not a valid number",
            ),
            (&["run", "--bogus", "1", "--", "x"][..], "unknown option"),
            (&["start"][..], "unknown command"),
            (&["exec", "--", "true"][..], "needs --vsock"),
            (&["exec", "--vsock", "/v"][..], "no command"),
            (&["shutdown"][..], "needs --vsock"),
            (
                &["shutdown", "--vsock", "/v", "--boot-timeout", "3"][..],
                "unknown option",
            ),
        ] {
            let err = parse(&args(list), no_env).unwrap_err();
            assert!(err.contains(needle), "{list:?}: {err}");
        }
    }
}
