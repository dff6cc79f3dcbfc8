//! The host runtime's readers of on-disk state, on arbitrary file contents: the state journal
//! (torn, corrupt or crafted records), each box's `shim.pid`, exit file, `options.json`,
//! `console.log` and `shim.stderr`, all read through the public entry points a user calls:
//! `Runtime::open` (journal replay and recovery of every box whose shim may still run),
//! `Runtime::list` and `Runtime::get`.
//!
//! Oracles, besides "never panics" and "never kills or signals anything" (recovery only reads
//! `/proc` for the pids it finds):
//! - after an open the journal is intact: a damaged tail was cut, everything appended since
//!   is whole (else the next process would lose the records after the damage);
//! - recovery is idempotent: opening the same home again succeeds and lists exactly what the
//!   first open listed (recovery must settle every box it can the first time, and record it).

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use boxlite_fuzz::input::run_input;
use boxlite_lifecycle::{Runtime, RuntimeOptions};
use boxlite_proto::journal::{decode_journal, encode_record};
use boxlite_proto::{BoxState, ExitRecord, JournalRecord, ShimEnd, VmOutcome};
use libfuzzer_sys::fuzz_target;
use vmm_sys_util::tempdir::TempDir;

/// Hex ids, as the runtime makes them; records with other ids must be ignored.
const BOX_IDS: [&str; 3] = [
    "0123456789abcdef01234567",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
    "f00d",
];
const STATES: [BoxState; 6] = [
    BoxState::Configured,
    BoxState::Starting,
    BoxState::Running,
    BoxState::Stopping,
    BoxState::Stopped,
    BoxState::Failed,
];

#[derive(Arbitrary, Debug)]
struct Input {
    journal: Journal,
    boxes: Vec<BoxFiles>,
    /// Names or id prefixes a user looks up.
    lookups: Vec<String>,
}

#[derive(Arbitrary, Debug)]
enum Journal {
    Raw(Vec<u8>),
    /// Well-formed records, then anything (a torn append, garbage), cut short or not.
    Records {
        records: Vec<Record>,
        tail: Vec<u8>,
        cut: Option<u16>,
    },
}

#[derive(Arbitrary, Debug)]
enum Record {
    Created {
        id: Id,
        name: Option<String>,
        created_unix_ms: u64,
    },
    State {
        id: Id,
        state: u8,
        pid: Option<Pid>,
        reason: Option<String>,
        boot_id: BootId,
    },
    Removed {
        id: Id,
    },
}

#[derive(Arbitrary, Debug)]
enum Id {
    Box(u8),
    Any(String),
}

impl Id {
    fn get(self) -> String {
        match self {
            Id::Box(n) => BOX_IDS[usize::from(n) % BOX_IDS.len()].to_string(),
            Id::Any(id) => id,
        }
    }
}

/// A pid a record or a pid file names: this process (alive), init (alive, not ours), one that
/// cannot exist, or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pid {
    Me,
    Init,
    Impossible,
    Any(u32),
}

impl Pid {
    fn get(self) -> u32 {
        match self {
            Pid::Me => std::process::id(),
            Pid::Init => 1,
            Pid::Impossible => 4_194_305,
            Pid::Any(pid) => pid,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum BootId {
    /// This boot: the box was not interrupted by a host reboot.
    Current,
    Missing,
    Any(String),
}

/// The files in one box's folder.
#[derive(Arbitrary, Debug)]
struct BoxFiles {
    id: Id,
    pid_file: Option<PidFile>,
    exit_file: Option<ExitFile>,
    options: Option<Vec<u8>>,
    console_log: Option<Vec<u8>>,
    shim_stderr: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum PidFile {
    /// `<pid> <start time>` (the start time usually wrong), or `<pid>` alone.
    Line {
        pid: Pid,
        start_time: Option<u64>,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ExitFile {
    /// A well-formed record, as the shim or the reaper writes it.
    Record {
        pid: Pid,
        ended_unix_ms: u64,
        end: End,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum End {
    Vm {
        outcome: u8,
        exit_code: u8,
    },
    Error {
        message: String,
        exit_code: u8,
    },
    Panic {
        message: String,
        location: Option<String>,
    },
    Signal(i32),
}

fn current_boot_id() -> Option<String> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            Some(id.trim().to_string())
        })
        .clone()
}

fn journal_record(record: Record) -> JournalRecord {
    match record {
        Record::Created {
            id,
            name,
            created_unix_ms,
        } => JournalRecord::Created {
            id: id.get(),
            name,
            created_unix_ms,
        },
        Record::State {
            id,
            state,
            pid,
            reason,
            boot_id,
        } => JournalRecord::State {
            id: id.get(),
            state: STATES[usize::from(state) % STATES.len()],
            pid: pid.map(Pid::get),
            reason,
            boot_id: match boot_id {
                BootId::Current => current_boot_id(),
                BootId::Missing => None,
                BootId::Any(id) => Some(id),
            },
        },
        Record::Removed { id } => JournalRecord::Removed { id: id.get() },
    }
}

fn journal_bytes(journal: Journal) -> Vec<u8> {
    match journal {
        Journal::Raw(bytes) => bytes,
        Journal::Records { records, tail, cut } => {
            let mut bytes = Vec::new();
            for record in records {
                // A record too large to frame is simply not written.
                if let Ok(framed) = encode_record(&journal_record(record)) {
                    bytes.extend(framed);
                }
            }
            bytes.extend(tail);
            if let Some(cut) = cut {
                bytes.truncate(bytes.len().saturating_sub(usize::from(cut)));
            }
            bytes
        }
    }
}

fn exit_bytes(file: ExitFile) -> Vec<u8> {
    let (pid, ended_unix_ms, end) = match file {
        ExitFile::Raw(bytes) => return bytes,
        ExitFile::Record {
            pid,
            ended_unix_ms,
            end,
        } => (pid, ended_unix_ms, end),
    };
    let end = match end {
        End::Vm { outcome, exit_code } => ShimEnd::Vm {
            outcome: VmOutcome::ALL[usize::from(outcome) % VmOutcome::ALL.len()],
            exit_code,
        },
        End::Error { message, exit_code } => ShimEnd::Error { message, exit_code },
        End::Panic { message, location } => ShimEnd::Panic { message, location },
        End::Signal(signal) => ShimEnd::Signal { signal },
    };
    let record = ExitRecord {
        pid: pid.get(),
        ended_unix_ms,
        end,
    };
    serde_json::to_vec_pretty(&record).expect("an exit record serialises")
}

/// Lays the home out as the fuzzer describes it; returns the lookups. A box folder that
/// cannot be made (an id that is not a file name, a folder made already) is left out.
fn lay_out(home: &Path, input: Input) -> Vec<String> {
    std::fs::write(home.join("journal"), journal_bytes(input.journal)).expect("writable");
    for files in input.boxes {
        let id = files.id.get();
        // Folders only for ids that are one plain name: the harness must not write outside
        // the home (the journal may still name any id; the runtime has to ignore those).
        let plain = !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\0']);
        let dir = home.join("boxes").join(id);
        if !plain || std::fs::create_dir(&dir).is_err() {
            continue;
        }
        let write = |name: &str, bytes: Vec<u8>| {
            let _ = std::fs::write(dir.join(name), bytes);
        };
        match files.pid_file {
            Some(PidFile::Line { pid, start_time }) => {
                let line = match start_time {
                    Some(start) => format!("{} {start}\n", pid.get()),
                    None => format!("{}\n", pid.get()),
                };
                write("shim.pid", line.into_bytes());
            }
            Some(PidFile::Raw(bytes)) => write("shim.pid", bytes),
            None => {}
        }
        if let Some(exit) = files.exit_file {
            write("exit", exit_bytes(exit));
        }
        for (name, bytes) in [
            ("options.json", files.options),
            ("console.log", files.console_log),
            ("shim.stderr", files.shim_stderr),
        ] {
            if let Some(bytes) = bytes {
                write(name, bytes);
            }
        }
    }
    input.lookups
}

fn open(home: &Path) -> boxlite_lifecycle::Result<Runtime> {
    Runtime::open(RuntimeOptions {
        home: Some(home.to_path_buf()),
        ..RuntimeOptions::default()
    })
}

fn run(input: Input) {
    // tmpfs when there is one: the journal fsyncs on every append.
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let home = TempDir::new_with_prefix(format!("{base}/boxlite-fuzz-home")).expect("a folder");
    let home = home.as_path();
    std::fs::create_dir_all(home.join("boxes")).expect("writable");
    let lookups = lay_out(home, input);

    let Ok(runtime) = open(home) else {
        return;
    };
    let first = runtime.list();
    for query in &lookups {
        let _ = runtime.get(query);
    }
    drop(runtime);

    let journal = std::fs::read(home.join("journal")).expect("the journal is still there");
    let decoded = decode_journal(&journal);
    assert_eq!(decoded.damage, None, "the journal was left damaged");

    let runtime = open(home).expect("a home that opened once opens again");
    let second = runtime.list();
    if let (Ok(first), Ok(second)) = (&first, &second) {
        assert_eq!(
            first, second,
            "a second recovery changed what the runtime reports"
        );
    }
}

fuzz_target!(|input: Input| run_input(input, false, run));
