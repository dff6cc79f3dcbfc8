//! `boxlite-shim`: one process runs one VM. The host runtime writes the VM's configuration on
//! stdin (never argv or the environment, which other users can read in /proc), the shim runs the
//! VM and exits with a status that says how it ended ([`boxlite_proto::VmOutcome::exit_code`]).

mod args;
mod logger;
mod privileges;
mod seccomp;
mod signals;
mod supervision;

use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxlite_proto::blocking::read_frame;
use boxlite_proto::{ShimConfig, ShimEnd, VmOutcome, EXIT_USAGE};
use boxlite_vmm_core::ThreadHooks;

use crate::args::Command;

fn usage_error(message: &str) -> ExitCode {
    eprintln!("boxlite-shim: {message}\nRun 'boxlite-shim --help' for usage.");
    ExitCode::from(EXIT_USAGE)
}

/// Reads one config frame from stdin: the length prefix first, so an oversized announcement is
/// refused before anything is allocated for it.
fn read_config(input: &mut impl Read) -> Result<ShimConfig, String> {
    let frame = read_frame(input, None)
        .map_err(|e| format!("cannot read the shim config from stdin: {e}"))?
        .ok_or("stdin ended before the shim config")?;
    ShimConfig::from_frame(&frame).map_err(|e| e.to_string())
}

/// Runs the VM of `config` and records how it ended in the exit file, if one is asked for.
fn run(config: ShimConfig, start: Instant) -> ExitCode {
    // Before any thread exists: setsid, closing inherited descriptors, the watchdog check.
    if let Err(e) = supervision::prepare(&config.supervision) {
        return usage_error(&e);
    }
    supervision::arm_exit_file(config.supervision.exit_file.clone());
    let end = run_vm(config, start);
    let code = match &end {
        ShimEnd::Vm { exit_code, .. } | ShimEnd::Error { exit_code, .. } => *exit_code,
        ShimEnd::Panic { .. } | ShimEnd::Signal { .. } => VmOutcome::VmmError.exit_code(),
    };
    supervision::record_end(end);
    ExitCode::from(code)
}

fn vmm_error(message: String) -> ShimEnd {
    log::error!("{message}");
    ShimEnd::Error {
        message,
        exit_code: VmOutcome::VmmError.exit_code(),
    }
}

fn run_vm(config: ShimConfig, start: Instant) -> ShimEnd {
    logger::init(config.log_level, start);
    // Before any thread exists, so every thread inherits the mask.
    if let Err(e) = signals::block_shutdown_signals() {
        return vmm_error(format!("cannot block SIGTERM/SIGINT: {e}"));
    }
    let vmm = match boxlite_vmm_core::build_vm(&config.vm) {
        Ok(vmm) => vmm,
        Err(e) => return vmm_error(e.to_string()),
    };
    // The VM's files and sockets are open: what the shim may do from here on shrinks.
    if let Err(e) = privileges::drop_after_setup() {
        return vmm_error(e);
    }
    let confine = |kind| config.seccomp.then_some(kind);
    if !config.seccomp {
        log::warn!("seccomp is off (--no-seccomp): the VMM's threads are not confined");
    } else if let Err(e) = seccomp::report_refused_calls() {
        return vmm_error(e);
    }
    if let Err(e) = vmm
        .shutdown_handle()
        .map_err(io::Error::other)
        .and_then(|handle| signals::forward_to(handle, confine(seccomp::ThreadKind::Worker)))
    {
        return vmm_error(format!("cannot watch for shutdown signals: {e}"));
    }
    if config.supervision.watchdog {
        let uds = config.vm.vsock.as_ref().map(|v| v.uds_path.clone());
        let stop_timeout = Duration::from_millis(u64::from(config.supervision.stop_timeout_ms));
        if let Err(e) = vmm
            .shutdown_handle()
            .map_err(io::Error::other)
            .and_then(|handle| {
                supervision::watch(
                    handle,
                    uds,
                    stop_timeout,
                    confine(seccomp::ThreadKind::Worker),
                )
            })
        {
            return vmm_error(format!("cannot watch the watchdog pipe: {e}"));
        }
    }
    let hooks = if config.seccomp {
        ThreadHooks {
            vcpu: Some(Arc::new(|| seccomp::confine(seccomp::ThreadKind::Vcpu))),
            event_loop: Some(Arc::new(|| {
                seccomp::confine(seccomp::ThreadKind::EventLoop)
            })),
        }
    } else {
        ThreadHooks::default()
    };
    match vmm.run_with(&hooks) {
        Ok(exit) => {
            let _ = io::stdout().flush();
            let outcome = exit.end.outcome;
            log::info!("exit: {outcome} (status {})", outcome.exit_code());
            ShimEnd::Vm {
                outcome,
                exit_code: outcome.exit_code(),
            }
        }
        Err(e) => vmm_error(e.to_string()),
    }
}

fn main() -> ExitCode {
    let start = Instant::now();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("boxlite-shim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::EncodeConfig(config)) => match config.to_frame() {
            Ok(bytes) => match io::stdout().lock().write_all(&bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => usage_error(&format!("cannot write the config to stdout: {e}")),
            },
            Err(e) => usage_error(&e.to_string()),
        },
        Ok(Command::Run(config)) => run(config, start),
        Ok(Command::RunFromStdin) => {
            let mut stdin = io::stdin().lock();
            if stdin.is_terminal() {
                return usage_error(
                    "no flags given and stdin is a terminal: send a config on stdin or use flags",
                );
            }
            match read_config(&mut stdin) {
                Ok(config) => run(config, start),
                Err(e) => usage_error(&e),
            }
        }
        Err(e) => usage_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxlite_proto::{ConsoleConfig, LogLevel, VmConfig, MAX_FRAME_LEN};

    fn config() -> ShimConfig {
        ShimConfig::new(
            VmConfig {
                kernel: "/k".into(),
                initrd: None,
                cmdline: "console=ttyS0".into(),
                mem_mib: 64,
                vcpus: 1,
                console: ConsoleConfig::default(),
                disks: Vec::new(),
                vsock: None,
            },
            LogLevel::Info,
        )
    }

    #[test]
    fn reads_exactly_one_frame_and_leaves_the_rest() {
        let mut bytes = config().to_frame().unwrap();
        bytes.extend_from_slice(b"trailing");
        let mut input = io::Cursor::new(bytes);
        assert_eq!(read_config(&mut input).unwrap(), config());
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "trailing");
    }

    #[test]
    fn refuses_empty_short_oversized_and_garbage_input() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "stdin ended before the shim config"),
            (vec![10, 0, 0, 0, 1], "ended 5 bytes into a frame"),
            (
                ((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec(),
                "exceeds",
            ),
            (vec![3, 0, 0, 0, 0xff, 0xff, 0xff], "malformed"),
        ];
        for (bytes, needle) in cases {
            let err = read_config(&mut io::Cursor::new(bytes.clone())).unwrap_err();
            assert!(err.contains(needle), "{bytes:?}: {err}");
        }
    }
}
