//! The command line, declared with clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Run untrusted code in boxes: small KVM virtual machines with a Linux guest.
#[derive(Debug, Parser)]
#[command(name = "boxlite", version, about, max_term_width = 100)]
pub struct Cli {
    /// The runtime's home folder (default: $BOXLITE_HOME, else ~/.local/share/boxlite).
    #[arg(long, global = true, env = "BOXLITE_HOME")]
    pub home: Option<PathBuf>,
    /// The VMM binary (default: searched; see `boxlite doctor`).
    #[arg(long, global = true, env = "BOXLITE_SHIM")]
    pub shim: Option<PathBuf>,
    /// The guest kernel (default: searched).
    #[arg(long, global = true, env = "BOXLITE_KERNEL")]
    pub kernel: Option<PathBuf>,
    /// The default initramfs with the guest agent (default: searched).
    #[arg(long, global = true, env = "BOXLITE_INITRD")]
    pub initrd: Option<PathBuf>,
    /// Log more (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new box, then stop it (`-d`: start a detached box instead).
    Run(RunArgs),
    /// Create a box without starting it; prints its id.
    Create(BoxArgs),
    /// Start boxes (they run detached from this command).
    Start {
        /// Names or id prefixes.
        #[arg(required = true)]
        boxes: Vec<String>,
    },
    /// Run a command in a running box (started first if it is stopped).
    Exec(ExecArgs),
    /// Stop boxes: the guest shuts down, the VMM is terminated if it does not.
    Stop {
        /// Names or id prefixes.
        #[arg(required = true)]
        boxes: Vec<String>,
    },
    /// Remove boxes and their files.
    #[command(alias = "remove")]
    Rm {
        /// Stop running boxes first (kills them).
        #[arg(short, long)]
        force: bool,
        /// Names or id prefixes.
        #[arg(required = true)]
        boxes: Vec<String>,
    },
    /// List boxes.
    #[command(alias = "ls")]
    Ps {
        /// Show every box, not only active ones.
        #[arg(short, long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything about a box, as JSON.
    Inspect {
        /// Name or id prefix.
        r#box: String,
    },
    /// Print a box's guest console.
    Logs {
        /// Keep printing as the console grows, until the box stops.
        #[arg(short, long)]
        follow: bool,
        /// Name or id prefix.
        r#box: String,
    },
    /// Check whether this host can run boxes.
    Doctor,
    /// Wait for the agent of a VM started by hand (`boxlite-shim --vsock UDS`) to be ready.
    WaitReady {
        /// The VM's vsock socket.
        #[arg(long)]
        vsock: PathBuf,
        /// Seconds to wait.
        #[arg(long = "boot-timeout", default_value = "30", value_parser = seconds)]
        timeout: Duration,
    },
    /// Shut down the guest of a VM started by hand.
    Shutdown {
        /// The VM's vsock socket.
        #[arg(long)]
        vsock: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// What a box is made of.
#[derive(Debug, Clone, Args)]
pub struct BoxArgs {
    /// A unique name for the box.
    #[arg(long)]
    pub name: Option<String>,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Environment of every command in the box (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory of commands.
    #[arg(short, long = "workdir")]
    pub workdir: Option<String>,
    /// An ext4 image as the root filesystem (never written: the box gets an overlay).
    #[arg(long)]
    pub root_disk: Option<PathBuf>,
    /// An extra raw disk, `PATH` or `PATH:ro` (repeatable).
    #[arg(long = "disk", value_name = "PATH[:ro]", value_parser = disk)]
    pub disks: Vec<(PathBuf, bool)>,
    /// Seconds the guest may take to become ready.
    #[arg(long, value_parser = seconds)]
    pub ready_timeout: Option<Duration>,
    /// Extra guest kernel command-line words (repeatable).
    #[arg(long = "kernel-arg")]
    pub kernel_args: Vec<String>,
}

/// `boxlite run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub r#box: BoxArgs,
    /// Remove the box when it stops.
    #[arg(long)]
    pub rm: bool,
    /// Start the box detached and print its id (no command).
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub exec: ExecFlags,
    /// The command (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// How a command runs.
#[derive(Debug, Clone, Args)]
pub struct ExecFlags {
    /// Forward this program's stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Kill the command after this many seconds.
    #[arg(long, value_parser = seconds)]
    pub timeout: Option<Duration>,
    /// Run as `UID[:GID]`.
    #[arg(short, long, value_parser = user)]
    pub user: Option<(u32, Option<u32>)>,
}

/// `boxlite exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The box (name or id prefix).
    #[arg(required_unless_present = "vsock")]
    pub r#box: Option<String>,
    /// Reach a VM started by hand through its vsock socket instead of a box.
    #[arg(long, conflicts_with = "box")]
    pub vsock: Option<PathBuf>,
    /// Environment of the command (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory.
    #[arg(short, long = "workdir")]
    pub workdir: Option<String>,
    #[command(flatten)]
    pub exec: ExecFlags,
    /// The command (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((key.to_string(), value.to_string()))
}

fn disk(s: &str) -> Result<(PathBuf, bool), String> {
    match s.strip_suffix(":ro") {
        Some(path) => Ok((PathBuf::from(path), true)),
        None => Ok((PathBuf::from(s.strip_suffix(":rw").unwrap_or(s)), false)),
    }
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

fn user(s: &str) -> Result<(u32, Option<u32>), String> {
    let bad = || format!("{s:?} is not UID or UID:GID");
    match s.split_once(':') {
        Some((uid, gid)) => Ok((
            uid.parse().map_err(|_| bad())?,
            Some(gid.parse().map_err(|_| bad())?),
        )),
        None => Ok((s.parse().map_err(|_| bad())?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("boxlite").chain(args.iter().copied()))
    }

    #[test]
    fn run_takes_box_and_exec_flags_and_the_command_after_dashes() {
        let cli = parse(&[
            "run",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "--cpus",
            "2",
            "--memory",
            "256",
            "--disk",
            "/d.raw:ro",
            "--disk",
            "/e.raw",
            "--root-disk",
            "/r.ext4",
            "-i",
            "--timeout",
            "1.5",
            "-u",
            "1000:1000",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.rm && run.exec.interactive && !run.detach);
        assert_eq!(run.r#box.name.as_deref(), Some("web"));
        assert_eq!(run.r#box.env, [("A".to_string(), "1".to_string())]);
        assert_eq!((run.r#box.cpus, run.r#box.memory), (2, 256));
        assert_eq!(
            run.r#box.disks,
            [
                (PathBuf::from("/d.raw"), true),
                (PathBuf::from("/e.raw"), false)
            ]
        );
        assert_eq!(run.exec.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(run.exec.user, Some((1000, Some(1000))));
        assert_eq!(run.command, ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn bad_values_are_usage_errors_that_name_the_value() {
        for (args, needle) in [
            (&["run", "-e", "NOEQUALS", "--", "true"][..], "KEY=VALUE"),
            (&["run", "--timeout", "soon", "--", "true"][..], "seconds"),
            (&["exec", "b", "-u", "root", "--", "id"][..], "UID"),
            (&["exec", "--", "true"][..], "required"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn exec_reaches_a_box_or_a_raw_vsock_socket() {
        let cli = parse(&["exec", "--vsock", "/v.sock", "--", "uname"]).unwrap();
        let Command::Exec(exec) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(exec.vsock, Some(PathBuf::from("/v.sock")));
        assert!(parse(&["exec", "web", "--vsock", "/v", "--", "x"]).is_err());
    }

    #[test]
    fn the_declaration_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
