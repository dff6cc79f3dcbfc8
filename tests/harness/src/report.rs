//! What the runner prints and saves: one line per case, details for failures, and the closing
//! `tier harness: N passed, M failed, K skipped` line.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::console::Timeline;

/// How many console lines a failure shows.
pub const TAIL_LINES: usize = 30;

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `HARNESS-TEST-EXIT 0` was seen.
    Pass,
    /// Anything else; the reason.
    Fail(String),
    /// The case did not run; why.
    Skip(String),
}

/// Everything known about one case after it ran (or was skipped).
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// QEMU spawn → QEMU gone.
    pub total: Duration,
    /// Events seen on the console.
    pub timeline: Timeline,
    /// The saved console log (absent when QEMU never started).
    pub console_log: Option<PathBuf>,
    /// The per-test 9p share as saved on this machine.
    pub work_dir: Option<PathBuf>,
    /// The last [`TAIL_LINES`] console lines.
    pub tail: Vec<String>,
    /// Remarks that do not change the outcome (e.g. QEMU had to be killed after the test exit).
    pub notes: Vec<String>,
}

impl CaseResult {
    /// A case that never started.
    pub fn skipped(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            outcome: Outcome::Skip(reason.into()),
            total: Duration::ZERO,
            timeline: Timeline::default(),
            console_log: None,
            work_dir: None,
            tail: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Seconds with one decimal, e.g. `4.2s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `PASS name  total 4.2s  (outer init 1.0s, shim spawn → guest /init 1.5s)`, the name padded
/// to `width`.
pub fn result_line(r: &CaseResult, width: usize) -> String {
    let status = match r.outcome {
        Outcome::Pass => "PASS",
        Outcome::Fail(_) => "FAIL",
        Outcome::Skip(_) => "SKIP",
    };
    if let Outcome::Skip(reason) = &r.outcome {
        return format!("{status} {:width$}  ({reason})", r.name);
    }
    let mut phases = Vec::new();
    if let Some(d) = r.timeline.outer_init() {
        phases.push(format!("outer init {}", secs(d)));
    }
    if let Some(d) = r.timeline.shim_to_guest_init() {
        phases.push(format!("shim spawn → guest /init {}", secs(d)));
    }
    let mut line = format!("{status} {:width$}  total {}", r.name, secs(r.total));
    if !phases.is_empty() {
        let _ = write!(line, "  ({})", phases.join(", "));
    }
    line
}

/// The failure block of a failed case: reason, notes, log paths and the console's last lines.
pub fn failure_details(r: &CaseResult) -> Option<String> {
    let Outcome::Fail(reason) = &r.outcome else {
        return None;
    };
    let mut s = format!("--- FAIL {}: {reason}\n", r.name);
    for note in &r.notes {
        let _ = writeln!(s, "    note: {note}");
    }
    if let Some(log) = &r.console_log {
        let _ = writeln!(s, "    console log: {}", log.display());
    }
    if let Some(work) = &r.work_dir {
        let _ = writeln!(s, "    work dir:    {}", work.display());
    }
    if !r.tail.is_empty() {
        let _ = writeln!(s, "    last {} console lines:", r.tail.len());
        for line in &r.tail {
            let _ = writeln!(s, "    | {line}");
        }
    }
    Some(s)
}

/// The closing line, exactly `tier harness: N passed, M failed, K skipped`.
pub fn tier_line(results: &[CaseResult]) -> String {
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
    format!(
        "tier harness: {} passed, {} failed, {} skipped",
        count(|o| *o == Outcome::Pass),
        count(|o| matches!(o, Outcome::Fail(_))),
        count(|o| matches!(o, Outcome::Skip(_))),
    )
}

/// The full report: result lines, failure details, then the tier line (no trailing newline
/// after it).
pub fn render(results: &[CaseResult]) -> String {
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for r in results {
        let _ = writeln!(s, "{}", result_line(r, width));
    }
    for details in results.iter().filter_map(failure_details) {
        let _ = write!(s, "\n{details}");
    }
    let _ = write!(s, "\n{}", tier_line(results));
    s
}

/// Per-case timelines (ms since QEMU spawn) for the summary file.
pub fn render_timelines(results: &[CaseResult]) -> String {
    let mut s = String::new();
    for r in results.iter().filter(|r| !r.timeline.events.is_empty()) {
        let _ = writeln!(s, "{}:", r.name);
        for (at, event) in &r.timeline.events {
            let _ = writeln!(s, "  {:>8} ms  {event}", at.as_millis());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, outcome: Outcome, lines: &[(u64, &str)]) -> CaseResult {
        let mut r = CaseResult::skipped(name, "");
        r.outcome = outcome;
        r.total = Duration::from_millis(4200);
        for (ms, line) in lines {
            r.timeline.observe(Duration::from_millis(*ms), line);
        }
        r
    }

    #[test]
    fn pass_line_with_phases() {
        let r = result(
            "boot-pvh-to-init",
            Outcome::Pass,
            &[
                (1000, "HARNESS-OUTER-INIT"),
                (1200, "HARNESS-MARK shim-spawn"),
                (2700, "guest| BOXLITE-GUEST-INIT-OK"),
            ],
        );
        assert_eq!(
            result_line(&r, 20),
            "PASS boot-pvh-to-init      total 4.2s  (outer init 1.0s, shim spawn → guest /init 1.5s)"
        );
    }

    #[test]
    fn lines_without_phases_and_skips() {
        let r = result("host-kvm", Outcome::Fail("x".into()), &[]);
        assert_eq!(result_line(&r, 8), "FAIL host-kvm  total 4.2s");
        let s = CaseResult::skipped("a", "tier not run");
        assert_eq!(result_line(&s, 3), "SKIP a    (tier not run)");
    }

    #[test]
    fn failure_block() {
        let mut r = result("memory-size", Outcome::Fail("test exited 1".into()), &[]);
        r.console_log = Some("/r/memory-size/console.log".into());
        r.tail = vec!["line one".into(), "HARNESS-TEST-EXIT 1".into()];
        let d = failure_details(&r).unwrap();
        assert!(d.starts_with("--- FAIL memory-size: test exited 1\n"));
        assert!(d.contains("console log: /r/memory-size/console.log"));
        assert!(d.contains("last 2 console lines:\n    | line one\n    | HARNESS-TEST-EXIT 1\n"));
        assert_eq!(failure_details(&result("p", Outcome::Pass, &[])), None);
    }

    #[test]
    fn tier_line_is_last_and_exact() {
        let results = vec![
            result("a", Outcome::Pass, &[]),
            result("b", Outcome::Fail("boom".into()), &[]),
            result("c", Outcome::Pass, &[]),
            CaseResult::skipped("d", "no kvm"),
        ];
        let text = render(&results);
        assert_eq!(
            text.lines().last(),
            Some("tier harness: 2 passed, 1 failed, 1 skipped")
        );
        assert!(text.contains("--- FAIL b: boom"));
        assert_eq!(
            tier_line(&[]),
            "tier harness: 0 passed, 0 failed, 0 skipped"
        );
    }

    #[test]
    fn timelines() {
        let r = result("a", Outcome::Pass, &[(1500, "HARNESS-TEST-EXIT 0")]);
        assert_eq!(render_timelines(&[r]), "a:\n      1500 ms  test exit 0\n");
    }
}
