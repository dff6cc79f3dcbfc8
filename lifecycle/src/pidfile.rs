//! `shim.pid`: the shim's pid and its process start time, so that a reused pid is never
//! mistaken for the box's shim.
//!
//! The file holds one line, `<pid> <start time>`, the start time being field 22 of
//! `/proc/<pid>/stat` (clock ticks since boot). A file with only a pid (older writers) gives a
//! [`Identity::Legacy`] identity. The file is the source of truth; a pid in the journal is a
//! cache of it.

use std::path::Path;

use crate::error::Result;
use crate::home::{read_limited, write_atomic};

/// Name of the pid file in a box's folder.
pub const PID_FILE: &str = "shim.pid";

/// What a pid file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidRecord {
    /// The shim's pid.
    pub pid: u32,
    /// Its start time, when recorded.
    pub start_time: Option<u64>,
}

/// Whether the process a pid file names is still the box's shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Alive, and its start time matches: it is the shim.
    Verified(u32),
    /// Alive, but the file has no start time to compare: probably the shim.
    Legacy(u32),
    /// Missing, dead, a zombie, or another process that reuses the pid.
    Absent,
}

impl Identity {
    /// The live shim's pid, if any.
    pub fn pid(self) -> Option<u32> {
        match self {
            Identity::Verified(pid) | Identity::Legacy(pid) => Some(pid),
            Identity::Absent => None,
        }
    }
}

/// State and start time of a live process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was the state; field 22 is 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

/// The start time of process `pid`, if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// Records `pid` (and its start time) in `path`, atomically.
pub fn write(path: &Path, pid: u32) -> Result<PidRecord> {
    let record = PidRecord {
        pid,
        start_time: start_time(pid),
    };
    let line = match record.start_time {
        Some(start) => format!("{pid} {start}\n"),
        None => format!("{pid}\n"),
    };
    write_atomic(path, line.as_bytes(), 0o644)?;
    Ok(record)
}

/// Parses a pid file's text; `None` for anything that is not a pid file.
pub fn parse(text: &str) -> Option<PidRecord> {
    let mut words = text.split_whitespace();
    let pid: u32 = words.next()?.parse().ok().filter(|&pid| pid > 0)?;
    let start_time = match words.next() {
        Some(word) => Some(word.parse().ok()?),
        None => None,
    };
    words
        .next()
        .is_none()
        .then_some(PidRecord { pid, start_time })
}

/// Reads a pid file; a missing or unreadable one is `None` (logged when corrupt).
pub fn read(path: &Path) -> Option<PidRecord> {
    let bytes = read_limited(path, 256).ok().flatten()?;
    let record = parse(&String::from_utf8_lossy(&bytes));
    if record.is_none() {
        log::warn!("ignoring the corrupt pid file {}", path.display());
    }
    record
}

/// Checks whether the process `record` names is still the one that was recorded.
pub fn identity(record: PidRecord) -> Identity {
    match (proc_stat(record.pid), record.start_time) {
        (None, _) => Identity::Absent,
        (Some(('Z' | 'X', _)), _) => Identity::Absent,
        (Some((_, now)), Some(then)) if now == then => Identity::Verified(record.pid),
        (Some(_), Some(_)) => Identity::Absent,
        (Some(_), None) => Identity::Legacy(record.pid),
    }
}

/// The identity of the shim a box folder's pid file names.
pub fn identity_at(path: &Path) -> Identity {
    read(path).map_or(Identity::Absent, identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_live_process_verifies() {
        let tmp = crate::testing::TempDir::new();
        let path = tmp.path().join(PID_FILE);
        let me = std::process::id();
        let record = write(&path, me).unwrap();
        assert!(record.start_time.is_some());
        assert_eq!(identity_at(&path), Identity::Verified(me));
    }

    #[test]
    fn another_start_time_is_pid_reuse() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        let reused = PidRecord {
            pid: me,
            start_time: Some(start + 1),
        };
        assert_eq!(identity(reused), Identity::Absent);
    }

    #[test]
    fn a_file_without_start_time_is_legacy() {
        let me = std::process::id();
        let record = parse(&format!("{me}\n")).unwrap();
        assert_eq!(identity(record), Identity::Legacy(me));
    }

    #[test]
    fn zombies_and_dead_processes_are_absent() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        let record = PidRecord {
            pid,
            start_time: start_time(pid),
        };
        // Not reaped yet: a zombie once it has exited.
        while proc_stat(pid).is_some_and(|(state, _)| state != 'Z') {
            std::thread::yield_now();
        }
        assert_eq!(identity(record), Identity::Absent);
        child.wait().unwrap();
        assert_eq!(identity(record), Identity::Absent);
    }

    #[test]
    fn garbage_is_not_a_pid_file() {
        for text in ["", "x", "0", "-1 5", "12 x", "12 13 14", "99999999999"] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(
            parse("12 34\n"),
            Some(PidRecord {
                pid: 12,
                start_time: Some(34)
            })
        );
        let tmp = crate::testing::TempDir::new();
        let path = tmp.path().join(PID_FILE);
        std::fs::write(&path, [0xff; 4000]).unwrap();
        assert_eq!(identity_at(&path), Identity::Absent);
    }
}
