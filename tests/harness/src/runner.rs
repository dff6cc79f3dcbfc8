//! Runs cases: each in a fresh QEMU with its own 9p work directory, `jobs` at a time, every
//! console line timestamped on this machine's clock and saved.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::case::Case;
use crate::console::{clean_line, Event, Timeline};
use crate::error::{HarnessError, Result};
use crate::interrupt;
use crate::qemu::{Qemu, QemuConfig};
use crate::report::{CaseResult, Outcome, TAIL_LINES};

/// How long QEMU may take to exit after `HARNESS-TEST-EXIT` before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How often a waiting worker checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

/// What every case run shares.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// How to start the test host.
    pub qemu: QemuConfig,
    /// Where each case gets `<name>/console.log`, `<name>/work/`, `<name>/qemu.stderr`.
    pub report_dir: PathBuf,
    /// Cases run at the same time.
    pub jobs: usize,
}

/// Runs `cases` and returns their results in the same order. `progress` is called (on the
/// calling thread) as each case finishes. Once a test host reports no `/dev/kvm`, or after
/// Ctrl-C, the cases not yet started are skipped.
pub fn run_cases(
    cases: &[Case],
    settings: &RunSettings,
    mut progress: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    let queue = Mutex::new(cases.iter().enumerate().collect::<VecDeque<_>>());
    let stop_reason: Mutex<Option<String>> = Mutex::new(None);
    let mut results: Vec<Option<CaseResult>> = vec![None; cases.len()];
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| {
        for _ in 0..settings.jobs.clamp(1, cases.len().max(1)) {
            let tx = tx.clone();
            let (queue, stop_reason) = (&queue, &stop_reason);
            scope.spawn(move || loop {
                let Some((index, case)) = lock(queue).pop_front() else {
                    break;
                };
                let stop = lock(stop_reason).clone();
                let result = match stop {
                    Some(reason) => CaseResult::skipped(&case.name, reason),
                    None if interrupt::requested() => {
                        CaseResult::skipped(&case.name, "interrupted")
                    }
                    None => run_case(case, settings),
                };
                if result.timeline.no_kvm().is_some() {
                    lock(stop_reason)
                        .get_or_insert_with(|| "not run: the test host has no /dev/kvm".to_owned());
                }
                if tx.send((index, result)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (index, result) in rx {
            progress(&result);
            results[index] = Some(result);
        }
    });
    results
        .into_iter()
        .zip(cases)
        .map(|(r, case)| r.unwrap_or_else(|| CaseResult::skipped(&case.name, "not run")))
        .collect()
}

/// Locks a mutex, ignoring poisoning (a panicked worker must not stop the others).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How the wait for QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// QEMU closed its console (exited).
    Exited,
    /// The case's timeout passed.
    TimedOut,
    /// QEMU kept running after the test's exit line.
    Lingered,
    /// Ctrl-C.
    Interrupted,
}

/// Runs one case in a fresh QEMU.
pub fn run_case(case: &Case, settings: &RunSettings) -> CaseResult {
    let case_dir = settings.report_dir.join(&case.name);
    let mut result = CaseResult::skipped(&case.name, "");
    result.outcome = match prepare_case_dir(case, &case_dir) {
        Ok(()) => match watch(case, settings, &case_dir, &mut result) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Fail(e.to_string()),
        },
        Err(e) => Outcome::Fail(format!("cannot prepare {}: {e}", case_dir.display())),
    };
    result
}

/// Empties `<report>/<case>/` and puts the case script at `work/test.sh`.
fn prepare_case_dir(case: &Case, case_dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(case_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(HarnessError::file("remove", case_dir, e)),
    }
    let work = case_dir.join("work");
    std::fs::create_dir_all(&work).map_err(|e| HarnessError::file("create directory", &work, e))?;
    let script = work.join("test.sh");
    std::fs::copy(&case.path, &script)
        .map_err(|e| HarnessError::file("copy the case to", &script, e))?;
    Ok(())
}

/// Starts QEMU, follows its console until it ends, and decides the outcome.
fn watch(
    case: &Case,
    settings: &RunSettings,
    case_dir: &Path,
    result: &mut CaseResult,
) -> Result<Outcome> {
    let console_path = case_dir.join("console.log");
    let stderr_path = case_dir.join("qemu.stderr");
    let work = case_dir.join("work");
    let mut console =
        File::create(&console_path).map_err(|e| HarnessError::file("create", &console_path, e))?;
    let stderr =
        File::create(&stderr_path).map_err(|e| HarnessError::file("create", &stderr_path, e))?;
    result.console_log = Some(console_path.clone());
    result.work_dir = Some(work.clone());

    let start = Instant::now();
    let (mut qemu, stdout) = Qemu::spawn(&settings.qemu, &work, stderr)?;
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut raw = Vec::new();
            match stdout.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send((Instant::now(), raw)).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut write_error = None;
    let mut handle = |at: Instant, raw: &[u8], timeline: &mut Timeline| -> bool {
        let line = clean_line(raw);
        let rel = at.saturating_duration_since(start);
        if let Err(e) = writeln!(console, "[{:>8.3}] {line}", rel.as_secs_f64()) {
            write_error.get_or_insert(e);
        }
        let exited = matches!(timeline.observe(rel, &line), Some(Event::TestExit(_)));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
        exited
    };

    let deadline = start + case.timeout;
    let mut exit_deadline: Option<Instant> = None;
    let end = loop {
        if interrupt::requested() {
            break End::Interrupted;
        }
        let now = Instant::now();
        let limit = exit_deadline.map_or(deadline, |d| d.min(deadline));
        if now >= limit {
            break if exit_deadline.is_some_and(|d| now >= d) {
                End::Lingered
            } else {
                End::TimedOut
            };
        }
        match rx.recv_timeout((limit - now).min(POLL)) {
            Ok((at, raw)) => {
                if handle(at, &raw, &mut result.timeline) {
                    exit_deadline.get_or_insert(Instant::now() + EXIT_GRACE);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break End::Exited,
        }
    };
    if end != End::Exited {
        qemu.kill();
    }
    let status = qemu.wait();
    result.total = start.elapsed();
    // QEMU is gone, so the reader reaches EOF: take what it still had.
    for (at, raw) in rx.iter() {
        handle(at, &raw, &mut result.timeline);
    }
    let _ = reader.join();
    result.tail = tail.into_iter().collect();
    if let Some(e) = write_error {
        result
            .notes
            .push(format!("could not write {}: {e}", console_path.display()));
    }
    let qemu_stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let qemu_stderr: Vec<&str> = qemu_stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(5)
        .collect();
    if !qemu_stderr.is_empty() {
        result
            .notes
            .push(format!("QEMU stderr: {}", qemu_stderr.join(" / ")));
    }
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    Ok(decide(
        end,
        &result.timeline,
        case.timeout,
        &status,
        &mut result.notes,
    ))
}

/// The outcome of a run from how it ended and what its console said.
fn decide(
    end: End,
    timeline: &Timeline,
    timeout: Duration,
    qemu_status: &str,
    notes: &mut Vec<String>,
) -> Outcome {
    if let Some(reason) = timeline.no_kvm() {
        return Outcome::Skip(format!("test host has no /dev/kvm: {reason}"));
    }
    match end {
        End::Interrupted => return Outcome::Skip("interrupted".into()),
        End::TimedOut => {
            let last = timeline
                .events
                .last()
                .map(|(at, e)| format!("; last event: {e} at {:.1}s", at.as_secs_f64()))
                .unwrap_or_else(|| "; no harness event seen".into());
            return Outcome::Fail(format!(
                "timed out after {}s, QEMU killed{last}",
                timeout.as_secs()
            ));
        }
        End::Lingered => notes.push(format!(
            "QEMU was still running {}s after HARNESS-TEST-EXIT and was killed",
            EXIT_GRACE.as_secs()
        )),
        End::Exited => {}
    }
    let failures = timeline.failures();
    match timeline.test_exit() {
        Some(0) if failures.is_empty() => Outcome::Pass,
        Some(0) => Outcome::Fail(format!(
            "test exited 0 but reported: {}",
            failures.join("; ")
        )),
        Some(code) if failures.is_empty() => Outcome::Fail(format!("test exited {code}")),
        Some(code) => Outcome::Fail(format!("test exited {code}: {}", failures.join("; "))),
        None => {
            let mut reason = format!("QEMU ended ({qemu_status}) without HARNESS-TEST-EXIT");
            if let Some(panic) = timeline.host_panic() {
                reason.push_str(&format!("; test host: {panic}"));
            } else if timeline.outer_init().is_none() {
                reason.push_str("; the test host never reached its /init");
            }
            if !failures.is_empty() {
                reason.push_str(&format!("; {}", failures.join("; ")));
            }
            Outcome::Fail(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(lines: &[&str]) -> Timeline {
        let mut t = Timeline::default();
        for (i, l) in lines.iter().enumerate() {
            t.observe(Duration::from_secs(i as u64), l);
        }
        t
    }

    fn outcome(end: End, lines: &[&str]) -> Outcome {
        decide(
            end,
            &timeline(lines),
            Duration::from_secs(60),
            "exit status: 0",
            &mut Vec::new(),
        )
    }

    #[test]
    fn pass_needs_exit_zero_and_no_failure() {
        assert_eq!(
            outcome(End::Exited, &["HARNESS-OUTER-INIT", "HARNESS-TEST-EXIT 0"]),
            Outcome::Pass
        );
        assert!(matches!(
            outcome(End::Exited, &["HARNESS-FAIL x", "HARNESS-TEST-EXIT 0"]),
            Outcome::Fail(r) if r.contains("reported: x")
        ));
        assert_eq!(
            outcome(
                End::Exited,
                &[
                    "HARNESS-FAIL shim exit: expected '3', got '0'",
                    "HARNESS-TEST-EXIT 1"
                ]
            ),
            Outcome::Fail("test exited 1: shim exit: expected '3', got '0'".into())
        );
    }

    #[test]
    fn endings_without_exit_line() {
        assert!(matches!(
            outcome(End::Exited, &[]),
            Outcome::Fail(r) if r.contains("never reached its /init")
        ));
        assert!(matches!(
            outcome(End::Exited, &["HARNESS-OUTER-INIT", "Kernel panic - not syncing: Attempted to kill init!"]),
            Outcome::Fail(r) if r.contains("Attempted to kill init")
        ));
        assert!(matches!(
            outcome(End::TimedOut, &["HARNESS-OUTER-INIT", "HARNESS-MARK shim-spawn"]),
            Outcome::Fail(r) if r.starts_with("timed out after 60s") && r.contains("last event: mark shim-spawn at 1.0s")
        ));
        assert_eq!(
            outcome(End::Interrupted, &[]),
            Outcome::Skip("interrupted".into())
        );
    }

    #[test]
    fn no_kvm_skips_and_lingering_is_a_note() {
        assert!(matches!(
            outcome(
                End::Exited,
                &["HARNESS-NO-KVM missing", "HARNESS-TEST-EXIT 125"]
            ),
            Outcome::Skip(_)
        ));
        let mut notes = Vec::new();
        let o = decide(
            End::Lingered,
            &timeline(&["HARNESS-TEST-EXIT 0"]),
            Duration::from_secs(1),
            "",
            &mut notes,
        );
        assert_eq!(o, Outcome::Pass);
        assert_eq!(notes.len(), 1);
    }
}
