//! Exit files and crash reports: why a box's shim ended, told so a user can act on it.

use std::fmt;
use std::path::Path;

use boxlite_proto::{ExitRecord, ShimEnd, EXIT_FILE_NAME};

use crate::home::{read_limited, tail_lines, write_atomic, BoxDir};

/// Largest exit file read (they are a few hundred bytes).
const MAX_EXIT_FILE_LEN: u64 = 64 * 1024;
/// Lines of each log quoted in a report.
const TAIL_LINES: usize = 12;
/// The agent's console lines start with this.
const AGENT_MARK: &str = "[boxlite-agent";

/// The previous start's exit file, kept when a new start begins.
pub const PREVIOUS_EXIT_FILE: &str = "exit.previous";
/// The shim's log in a box's folder.
pub const SHIM_STDERR: &str = "shim.stderr";
/// The guest console in a box's folder.
pub const CONSOLE_LOG: &str = "console.log";

/// Reads an exit file; `None` when it is missing or not an exit record (logged).
pub fn read_exit(path: &Path) -> Option<ExitRecord> {
    let bytes = read_limited(path, MAX_EXIT_FILE_LEN).ok().flatten()?;
    match serde_json::from_slice(&bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            log::warn!("ignoring the unreadable exit file {}: {e}", path.display());
            None
        }
    }
}

/// Records a shim's end where the shim itself could not (it was killed by a signal).
pub fn write_exit(dir: &BoxDir, record: &ExitRecord) {
    let path = dir.file(EXIT_FILE_NAME);
    match serde_json::to_vec_pretty(record) {
        Ok(json) => {
            if let Err(e) = write_atomic(&path, &json, 0o644) {
                log::warn!("cannot record the shim's end: {e}");
            }
        }
        Err(e) => log::warn!("cannot encode the shim's end: {e}"),
    }
}

/// Moves an exit file left by an earlier shim aside to `exit.previous`.
pub fn retire_exit_file(dir: &BoxDir) {
    let path = dir.file(EXIT_FILE_NAME);
    if path.exists() {
        if let Err(e) = std::fs::rename(&path, dir.file(PREVIOUS_EXIT_FILE)) {
            log::warn!("cannot move {} aside: {e}", path.display());
        }
    }
}

/// How far the guest got, judged from its console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleStage {
    /// Nothing on the console: the kernel did not start (or printed nothing, being `quiet`).
    Empty,
    /// Kernel output only: the agent never spoke.
    KernelOnly,
    /// The agent wrote to the console.
    Agent,
}

/// Classifies console text.
pub fn classify_console(text: &str) -> ConsoleStage {
    if text.contains(AGENT_MARK) {
        ConsoleStage::Agent
    } else if text.trim().is_empty() {
        ConsoleStage::Empty
    } else {
        ConsoleStage::KernelOnly
    }
}

/// Why a box ended or failed, with the evidence.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// What the exit file says, if there is one.
    pub end: Option<ShimEnd>,
    /// How far the guest got.
    pub console: ConsoleStage,
    /// Whether the guest kernel panicked (its banner is on the console).
    pub kernel_panicked: bool,
    /// The last lines of `shim.stderr`.
    pub shim_tail: String,
    /// The last lines of `console.log`.
    pub console_tail: String,
    /// The box folder, where the files are.
    pub dir: String,
}

impl CrashReport {
    /// Gathers the report for the box in `dir`.
    pub fn gather(dir: &BoxDir) -> CrashReport {
        let console_tail = tail_lines(&dir.file(CONSOLE_LOG), TAIL_LINES);
        // Classify on more than the tail: the agent's first lines may have scrolled away.
        let console_text = tail_lines(&dir.file(CONSOLE_LOG), 2000);
        CrashReport {
            end: read_exit(&dir.file(EXIT_FILE_NAME)).map(|r| r.end),
            console: classify_console(&console_text),
            kernel_panicked: console_text.contains("Kernel panic - not syncing"),
            shim_tail: tail_lines(&dir.file(SHIM_STDERR), TAIL_LINES),
            console_tail,
            dir: dir.root().display().to_string(),
        }
    }

    /// One line: what happened and how far the guest got.
    pub fn summary(&self) -> String {
        let end = match &self.end {
            Some(end) => end.to_string(),
            None => "the VMM ended without an exit record".to_string(),
        };
        let stage = match (self.kernel_panicked, self.console) {
            (true, _) => "the guest kernel panicked",
            (false, ConsoleStage::Empty) => "the guest kernel printed nothing (did it start?)",
            (false, ConsoleStage::KernelOnly) => {
                "the kernel started but the guest agent never ran (check the initramfs or root image)"
            }
            (false, ConsoleStage::Agent) => "the guest agent had started",
        };
        format!("{end}; {stage}")
    }
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())?;
        for (name, tail) in [
            (SHIM_STDERR, &self.shim_tail),
            (CONSOLE_LOG, &self.console_tail),
        ] {
            if !tail.trim().is_empty() {
                write!(f, "\n--- last lines of {}/{name}:\n{tail}", self.dir)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxlite_proto::VmOutcome;

    fn dir() -> (crate::testing::TempDir, BoxDir) {
        let tmp = crate::testing::TempDir::new();
        let home = crate::home::Home::create(tmp.path().to_path_buf()).unwrap();
        let dir = home.box_dir("b0");
        dir.create().unwrap();
        (tmp, dir)
    }

    #[test]
    fn consoles_are_classified_by_how_far_the_guest_got() {
        assert_eq!(classify_console(""), ConsoleStage::Empty);
        assert_eq!(classify_console("\n  \n"), ConsoleStage::Empty);
        assert_eq!(
            classify_console("Linux version 6.1\n"),
            ConsoleStage::KernelOnly
        );
        assert_eq!(
            classify_console("Linux\n[boxlite-agent    0.001] INFO  listening\n"),
            ConsoleStage::Agent
        );
    }

    #[test]
    fn exit_files_that_are_garbage_truncated_or_newer_are_handled() {
        let (_tmp, dir) = dir();
        let path = dir.file(EXIT_FILE_NAME);
        let record = ExitRecord {
            pid: 7,
            ended_unix_ms: 1,
            end: ShimEnd::Vm {
                outcome: VmOutcome::GuestPanic,
                exit_code: 3,
            },
        };
        let json = serde_json::to_string(&record).unwrap();
        std::fs::write(&path, &json).unwrap();
        assert_eq!(read_exit(&path), Some(record.clone()));
        for cut in 0..json.len() {
            std::fs::write(&path, &json[..cut]).unwrap();
            assert_eq!(read_exit(&path), None, "cut at {cut}");
        }
        std::fs::write(&path, [0xff, 0x00, 0x13]).unwrap();
        assert_eq!(read_exit(&path), None);
        let newer = json.replacen('{', "{\"added_later\":[1,2],", 1);
        std::fs::write(&path, newer).unwrap();
        assert_eq!(read_exit(&path), Some(record));
        std::fs::write(&path, vec![b' '; 200_000]).unwrap();
        assert_eq!(read_exit(&path), None);
    }

    #[test]
    fn a_report_says_what_ended_how_far_the_guest_got_and_where_to_look() {
        let (_tmp, dir) = dir();
        std::fs::write(
            dir.file(CONSOLE_LOG),
            "Linux version\nKernel panic - not syncing: x\n",
        )
        .unwrap();
        std::fs::write(
            dir.file(SHIM_STDERR),
            "shim: exit: guest-panic (status 3)\n",
        )
        .unwrap();
        write_exit(
            &dir,
            &ExitRecord {
                pid: 1,
                ended_unix_ms: 2,
                end: ShimEnd::Vm {
                    outcome: VmOutcome::GuestPanic,
                    exit_code: 3,
                },
            },
        );
        let report = CrashReport::gather(&dir).to_string();
        assert!(report.contains("guest-panic"), "{report}");
        assert!(report.contains("the guest kernel panicked"), "{report}");
        assert!(report.contains("shim.stderr"), "{report}");
        assert!(report.contains("Kernel panic - not syncing: x"), "{report}");

        std::fs::remove_file(dir.file(EXIT_FILE_NAME)).unwrap();
        std::fs::write(dir.file(CONSOLE_LOG), "").unwrap();
        let report = CrashReport::gather(&dir).summary();
        assert!(report.contains("without an exit record"), "{report}");
        assert!(report.contains("printed nothing"), "{report}");
    }

    #[test]
    fn a_stale_exit_file_moves_to_exit_previous() {
        let (_tmp, dir) = dir();
        std::fs::write(dir.file(EXIT_FILE_NAME), "old").unwrap();
        retire_exit_file(&dir);
        assert!(!dir.file(EXIT_FILE_NAME).exists());
        assert_eq!(
            std::fs::read_to_string(dir.file(PREVIOUS_EXIT_FILE)).unwrap(),
            "old"
        );
    }
}
