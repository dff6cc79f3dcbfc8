//! `boxlite-agent`: the guest agent, PID 1 of every boxlite guest.
//!
//! Started by the kernel as `/init`, it prepares the guest (see [`init`]), tells the host it is
//! ready and serves the agent protocol ([`boxlite_proto::agent`]) on vsock port 2695: commands
//! with streamed stdin, stdout and stderr, signals, timeouts and exit statuses, each connection on
//! its own thread. As PID 1 it also reaps orphaned processes ([`reaper`]) and never exits.
//!
//! For host-side tests the same binary serves the identical protocol on a Unix socket:
//! `boxlite-agent --listen-unix PATH` (no mounts, no readiness signal, no reboot; it makes itself
//! a child subreaper so orphans are reaped the same way, and a shutdown request makes it exit).

mod bridge;
mod error;
mod exec;
mod init;
mod logger;
mod reaper;
mod server;
mod sys;
mod vsock;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use crate::error::AgentError;
use crate::reaper::Reaper;
use crate::server::{Agent, Listener, Mode};

/// Name and release reported to the host.
pub const AGENT_NAME: &str = concat!("boxlite-agent ", env!("CARGO_PKG_VERSION"));

const USAGE: &str = "\
Usage: boxlite-agent                     (as PID 1 of a boxlite guest)
       boxlite-agent --listen-unix PATH [--log-level LEVEL]
       boxlite-agent vsock-connect PORT | vsock-listen PORT

The boxlite guest agent. As PID 1 it mounts the pseudo-filesystems, optionally switches to the
root disk named by boxlite.root= on the kernel command line, signals readiness on vsock port
2696 and serves exec requests on vsock port 2695.

Options:
  --listen-unix PATH   serve the same protocol on a Unix socket at PATH instead (host-side
                       testing: no mounts, no readiness signal, no reboot)
  --log-level LEVEL    error, warn, info (default), debug or trace
  vsock-connect PORT   bridge stdin/stdout to host vsock port PORT (a guest-side tool)
  vsock-listen PORT    wait for one host connection on vsock port PORT and bridge it likewise
  -h, --help           print this help
  -V, --version        print the version";

/// What the command line asks for (when not PID 1).
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Version,
    ListenUnix {
        path: PathBuf,
        log_level: log::LevelFilter,
    },
    Bridge {
        side: bridge::Side,
        port: u32,
    },
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, AgentError> {
    let mut args = args.by_ref().peekable();
    let side = match args.peek().map(String::as_str) {
        Some("vsock-connect") => Some(bridge::Side::Connect),
        Some("vsock-listen") => Some(bridge::Side::Listen),
        _ => None,
    };
    if let Some(side) = side {
        let sub = args.next().unwrap_or_default();
        let port = args
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| AgentError::Usage(format!("{sub} needs a port number")))?;
        if let Some(extra) = args.next() {
            return Err(AgentError::Usage(format!("unexpected argument {extra:?}")));
        }
        return Ok(Command::Bridge { side, port });
    }
    let mut path = None;
    let mut log_level = log::LevelFilter::Info;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| AgentError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen-unix" => path = Some(PathBuf::from(value("--listen-unix")?)),
            "--log-level" => {
                let level = value("--log-level")?;
                log_level = logger::parse_level(&level)
                    .ok_or_else(|| AgentError::Usage(format!("unknown log level {level:?}")))?;
            }
            other => return Err(AgentError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let path = path.ok_or_else(|| {
        AgentError::Usage("not PID 1: --listen-unix PATH is required".to_string())
    })?;
    Ok(Command::ListenUnix { path, log_level })
}

/// Serves the protocol on a Unix socket until a shutdown request.
fn listen_unix(path: PathBuf, log_level: log::LevelFilter, start: Instant) -> AgentError {
    logger::init(log_level, start);
    let setup = || -> Result<(Listener, Arc<Agent>), AgentError> {
        sys::set_child_subreaper().map_err(AgentError::os("cannot become a child subreaper"))?;
        let reaper = Reaper::start().map_err(AgentError::os("cannot start the reaper thread"))?;
        let listener = UnixListener::bind(&path).map_err(AgentError::os(format!(
            "cannot listen on {}",
            path.display()
        )))?;
        log::info!("listening on {}", path.display());
        let agent = Arc::new(Agent {
            reaper,
            mode: Mode::Unix(path.clone()),
        });
        Ok((Listener::Unix(listener), agent))
    };
    match setup() {
        Ok((listener, agent)) => server::serve_forever(listener, agent),
        Err(e) => e,
    }
}

fn main() -> ExitCode {
    let start = Instant::now();
    // Before any thread exists, so that every thread inherits the mask and only the reaper
    // collects SIGCHLD.
    let blocked = sys::block_sigchld();
    if std::process::id() == 1 {
        if let Err(e) = blocked {
            // Without it the reaper would miss exits; carry on and let the log say why.
            eprintln!("boxlite-agent: cannot block SIGCHLD: {e}");
        }
        init::main(start)
    }
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("boxlite-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => println!("{USAGE}"),
        Command::Version => println!("{AGENT_NAME}"),
        Command::Bridge { side, port } => {
            if let Err(e) = bridge::run(side, port) {
                eprintln!("boxlite-agent: {e}");
                return ExitCode::FAILURE;
            }
        }
        Command::ListenUnix { path, log_level } => {
            if let Err(e) = blocked {
                eprintln!("boxlite-agent: cannot block SIGCHLD: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!("boxlite-agent: {}", listen_unix(path, log_level, start));
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, AgentError> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn listen_unix_takes_a_path_and_a_level() {
        assert_eq!(
            parse(&["--listen-unix", "/tmp/a.sock", "--log-level", "debug"]).unwrap(),
            Command::ListenUnix {
                path: PathBuf::from("/tmp/a.sock"),
                log_level: log::LevelFilter::Debug
            }
        );
        assert_eq!(parse(&["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(&["-V"]).unwrap(), Command::Version);
    }

    #[test]
    fn vsock_bridges_take_a_port() {
        assert_eq!(
            parse(&["vsock-connect", "5000"]).unwrap(),
            Command::Bridge {
                side: bridge::Side::Connect,
                port: 5000
            }
        );
        assert_eq!(
            parse(&["vsock-listen", "1234"]).unwrap(),
            Command::Bridge {
                side: bridge::Side::Listen,
                port: 1234
            }
        );
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for args in [
            &[][..],
            &["--listen-unix"],
            &["--log-level", "loud", "--listen-unix", "x"],
            &["--frobnicate"],
            &["vsock-connect"],
            &["vsock-listen", "http"],
            &["vsock-connect", "5000", "extra"],
        ] {
            assert!(matches!(parse(args), Err(AgentError::Usage(_))), "{args:?}");
        }
    }
}
