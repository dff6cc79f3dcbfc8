//! The shared entry of the structured targets.

use std::fmt::Debug;

use crate::fds::{assert_no_fd_leak, open_fds};

/// Runs one input: prints it first when `FUZZ_SHOW` is set (to read a crash's input), and
/// with `check_fds` holds the run to the fd-leak oracle.
pub fn run_input<T: Debug>(input: T, check_fds: bool, run: impl FnOnce(T)) {
    if std::env::var_os("FUZZ_SHOW").is_some() {
        eprintln!("SHOW {input:?}");
    }
    let before = check_fds.then(open_fds);
    run(input);
    if let Some(before) = before {
        assert_no_fd_leak(before);
    }
}
