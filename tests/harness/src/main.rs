//! `boxlite-harness`: runs the harness e2e tier (see `boxlite-harness help`).

use std::process::ExitCode;

use boxlite_harness::cli::{self, Command};
use boxlite_harness::error::HarnessError;
use boxlite_harness::tier;

fn main() -> ExitCode {
    let result = cli::parse(std::env::args_os().skip(1)).and_then(|command| match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Command::List(args) => tier::list(&args),
        Command::Run(args) => tier::run(&args),
        Command::GuestInitrd(args) => tier::write_guest_initrd(&args),
    });
    match result {
        Ok(code) => code,
        Err(e @ (HarnessError::Usage(_) | HarnessError::NoCaseSelected { .. })) => {
            eprintln!("boxlite-harness: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("boxlite-harness: error: {e}");
            ExitCode::from(tier::EXIT_FAILED)
        }
    }
}
