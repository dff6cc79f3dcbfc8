//! `boxlite`: run commands in boxes. See `boxlite --help`.

mod args;
mod box_dir;
mod error;
mod run;

use std::process::ExitCode;

use boxlite_lifecycle::GuestSession;

use crate::args::Command;
use crate::error::CliError;

/// Status for usage errors and failures of boxlite itself (a command's own status passes
/// through unchanged).
const EXIT_BOXLITE_ERROR: u8 = 125;

/// Leaves with a command's status, or reports boxlite's own failure.
fn finish(result: Result<i32, CliError>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(u8::try_from(status.clamp(0, 255)).unwrap_or(u8::MAX)),
        Err(e) => {
            eprintln!("boxlite: {e}");
            ExitCode::from(EXIT_BOXLITE_ERROR)
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv, |key| std::env::var(key).ok()) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => finish(run::run(&args)),
        Ok(Command::Exec { vsock, exec }) => {
            finish(run::exec_in(&GuestSession::vsock(vsock), &exec))
        }
        Ok(Command::WaitReady { vsock, timeout }) => {
            finish(run::wait_ready_at(&vsock, timeout).map(|()| 0))
        }
        Ok(Command::Shutdown { vsock }) => finish(
            GuestSession::vsock(vsock)
                .shutdown()
                .map(|()| 0)
                .map_err(CliError::from),
        ),
        Err(e) => {
            eprintln!("boxlite: {e}\nRun 'boxlite --help' for usage.");
            ExitCode::from(EXIT_BOXLITE_ERROR)
        }
    }
}
