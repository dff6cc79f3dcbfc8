//! What the probe-guest test files share: the shim under test and where the probes are.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use boxlite_proto::VmOutcome;

/// The `boxlite-shim` binary built for these tests.
pub const SHIM: &str = env!("CARGO_BIN_EXE_boxlite-shim");

/// The two probe builds: PVH entry, and the Linux 64-bit boot protocol.
pub const PROTOCOLS: [&str; 2] = ["probe-pvh", "probe-linux64"];

/// The path of probe guest `name`, from BOXLITE_PROBE_DIR or the probe workspace's release
/// output; fails the test with the build command when it is missing.
pub fn probe(name: &str) -> PathBuf {
    let dir = std::env::var_os("BOXLITE_PROBE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../guest/probe/target/x86_64-unknown-none/release")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "probe guest {} is missing: build it with scripts/build-probes.sh (or set BOXLITE_PROBE_DIR)",
        path.display()
    );
    path
}

/// The shim booting probe `kernel` with `probe=<scenario>` in 64 MiB, stdin closed, console
/// and log piped; callers add their flags.
pub fn probe_command(kernel: &str, scenario: &str) -> Command {
    let mut command = Command::new(SHIM);
    command
        .arg("--kernel")
        .arg(probe(kernel))
        .args(["--cmdline", &format!("probe={scenario}"), "--mem-mib", "64"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// How one shim run ended: its outcome (from the exit status), console (stdout) and log
/// (stderr), with assertions that show both on failure.
pub struct Run {
    /// The outcome the exit status stands for.
    pub outcome: Option<VmOutcome>,
    /// The guest console.
    pub console: String,
    /// The shim's log.
    pub log: String,
}

impl Run {
    /// Asserts the VM ended with `outcome`.
    pub fn expect(&self, outcome: VmOutcome) -> &Run {
        assert_eq!(
            self.outcome,
            Some(outcome),
            "console:\n{}\nlog:\n{}",
            self.console,
            self.log
        );
        self
    }

    /// The console lines, without carriage returns.
    pub fn lines(&self) -> Vec<&str> {
        self.console
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .collect()
    }

    /// Asserts the console has exactly this line.
    pub fn has_line(&self, line: &str) -> &Run {
        assert!(
            self.lines().contains(&line),
            "no line {line:?} in console:\n{}\nlog:\n{}",
            self.console,
            self.log
        );
        self
    }
}
