//! [`Runtime`]: the boxes of one home, shared safely by every thread and process that opens it.
//!
//! The in-memory index is a cache of the state journal. Every operation takes the journal's
//! lock, applies what other processes appended meanwhile, checks the box's state, appends its
//! own records and releases the lock; slow work (booting, stopping) happens outside the lock,
//! between two such short transactions. No daemon is involved.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boxlite_proto::{BoxState, JournalRecord};

use crate::assets::Assets;
use crate::boxes::BoxHandle;
use crate::crash::{read_exit, CrashReport};
use crate::error::{Error, Result};
use crate::home::{random_id, Home};
use crate::journal::{CatchUp, Journal};
use crate::options::{BoxOptions, OPTIONS_FILE};
use crate::pidfile::{self, Identity, PID_FILE};

/// How a runtime is opened.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The home folder; `None` is `$BOXLITE_HOME`, else `$XDG_DATA_HOME/boxlite`, else
    /// `~/.local/share/boxlite`.
    pub home: Option<PathBuf>,
    /// Explicit asset paths (the rest are searched).
    pub assets: Assets,
    /// How long each step of stopping a box may take.
    pub timeouts: Timeouts,
}

/// Limits of the stop sequence and of talking to the agent.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long the agent may take to answer a request (shutdown, ping, exec start).
    pub agent: Duration,
    /// How long the guest may take to power off after the agent's shutdown.
    pub guest_shutdown: Duration,
    /// How long the shim may take to stop after SIGTERM.
    pub terminate: Duration,
    /// How long a SIGKILLed shim may take to disappear.
    pub kill: Duration,
    /// How often a waiting step looks again.
    pub poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            agent: Duration::from_secs(5),
            guest_shutdown: Duration::from_secs(10),
            terminate: Duration::from_secs(5),
            kill: Duration::from_secs(5),
            poll: Duration::from_millis(10),
        }
    }
}

/// What the journal says about one box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: String,
    pub name: Option<String>,
    pub created_unix_ms: u64,
    pub state: BoxState,
    pub pid: Option<u32>,
    pub reason: Option<String>,
    pub boot_id: Option<String>,
}

impl Entry {
    fn snapshot(&self) -> [JournalRecord; 2] {
        [
            JournalRecord::Created {
                id: self.id.clone(),
                name: self.name.clone(),
                created_unix_ms: self.created_unix_ms,
            },
            state_record(
                &self.id,
                self.state,
                self.pid,
                self.reason.clone(),
                self.boot_id.clone(),
            ),
        ]
    }
}

/// The boxes by id.
pub(crate) type Index = HashMap<String, Entry>;

/// Whether `id` can be a box id: the ids this runtime makes are hex. Anything else in the
/// journal (a crafted or damaged record) would become a path under the home, e.g. `../..`,
/// so it is ignored.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn apply(index: &mut Index, record: JournalRecord) {
    let id = match &record {
        JournalRecord::Created { id, .. }
        | JournalRecord::State { id, .. }
        | JournalRecord::Removed { id } => id,
    };
    if !valid_id(id) {
        log::warn!("state journal: ignoring a record for the impossible box id {id:?}");
        return;
    }
    match record {
        JournalRecord::Created {
            id,
            name,
            created_unix_ms,
        } => {
            index.insert(
                id.clone(),
                Entry {
                    id,
                    name,
                    created_unix_ms,
                    state: BoxState::Configured,
                    pid: None,
                    reason: None,
                    boot_id: None,
                },
            );
        }
        JournalRecord::State {
            id,
            state,
            pid,
            reason,
            boot_id,
        } => match index.get_mut(&id) {
            Some(entry) => {
                entry.state = state;
                entry.pid = pid;
                entry.reason = reason;
                entry.boot_id = boot_id;
            }
            None => log::warn!("state journal: a state for unknown box {id}; ignored"),
        },
        JournalRecord::Removed { id } => {
            index.remove(&id);
        }
    }
}

/// Applies what another process appended (or, after a compaction, the whole new file).
fn catch_up(index: &mut Index, news: CatchUp) {
    let records = match news {
        CatchUp::Tail(records) => records,
        CatchUp::Reset(records) => {
            index.clear();
            records
        }
    };
    records.into_iter().for_each(|r| apply(index, r));
}

/// A state change record stamped with this boot.
pub(crate) fn state_record(
    id: &str,
    state: BoxState,
    pid: Option<u32>,
    reason: Option<String>,
    boot_id: Option<String>,
) -> JournalRecord {
    JournalRecord::State {
        id: id.to_string(),
        state,
        pid,
        reason,
        boot_id: boot_id.or_else(current_boot_id),
    }
}

/// Whether a box may go from `from` to `to`.
pub(crate) fn allowed(from: BoxState, to: BoxState) -> bool {
    use BoxState::*;
    matches!(
        (from, to),
        (Configured | Stopped | Failed, Starting)
            | (Starting, Running | Stopping | Stopped | Failed)
            | (Running, Stopping | Stopped | Failed)
            | (Stopping, Stopped | Failed)
    )
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); `$BOXLITE_BOOT_ID` replaces it in tests
/// that fake a host reboot.
pub(crate) fn current_boot_id() -> Option<String> {
    if let Some(id) = std::env::var_os("BOXLITE_BOOT_ID") {
        return Some(id.to_string_lossy().into_owned());
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub home: Home,
    pub assets: Assets,
    pub timeouts: Timeouts,
    journal: Mutex<Journal>,
    index: Mutex<Index>,
    /// Write ends of the watchdog pipes of the non-detached boxes this process started:
    /// dropping the runtime closes them, which stops those boxes.
    pub watchdogs: Mutex<HashMap<String, OwnedFd>>,
    /// Boxes whose shim this process spawned and has not reaped yet (its reaper thread also
    /// writes the exit file of a shim killed by a signal). Until then the box is not settled.
    pub reaping: Arc<Mutex<HashSet<String>>>,
}

/// Locks past poisoning (the tree's one policy: `boxlite_proto::sync`).
pub(crate) use boxlite_proto::sync::lock;

/// The boxes of one home folder. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl Runtime {
    /// Opens the home and recovers its boxes: a box whose shim is still alive stays as it is
    /// (reattached: commands reach it at once); one whose shim is gone becomes Stopped (clean
    /// end) or Failed (with its crash report); after a host reboot every active box is Stopped.
    pub fn open(options: RuntimeOptions) -> Result<Runtime> {
        let root = options.home.map_or_else(default_home, Ok)?;
        let home = Home::create(root)?;
        let journal = Journal::open(&home.journal(), &home.journal_lock())?;
        let runtime = Runtime {
            inner: Arc::new(Inner {
                home,
                assets: options.assets,
                timeouts: options.timeouts,
                journal: Mutex::new(journal),
                index: Mutex::new(Index::new()),
                watchdogs: Mutex::new(HashMap::new()),
                reaping: Arc::new(Mutex::new(HashSet::new())),
            }),
        };
        runtime.recover()?;
        Ok(runtime)
    }

    /// The home folder.
    pub fn home(&self) -> &std::path::Path {
        self.inner.home.root()
    }

    /// Runs `f` under the journal lock on the current index; appends the records it returns.
    pub(crate) fn transact<T>(
        &self,
        f: impl FnOnce(&Index) -> Result<(Vec<JournalRecord>, T)>,
    ) -> Result<T> {
        let mut journal = lock(&self.inner.journal);
        let mut locked = journal.lock()?;
        let mut index = lock(&self.inner.index);
        catch_up(&mut index, locked.catch_up()?);
        let (records, out) = f(&index)?;
        if !records.is_empty() {
            locked.append(&records)?;
            records.into_iter().for_each(|r| apply(&mut index, r));
        }
        Ok(out)
    }

    /// The journal entry of box `id`, current.
    pub(crate) fn entry(&self, id: &str) -> Result<Entry> {
        self.transact(|index| {
            let entry = index.get(id).cloned().ok_or_else(|| Error::NotFound {
                query: id.to_string(),
            })?;
            Ok((Vec::new(), entry))
        })
    }

    /// Moves box `id` to `to` if the transition is allowed from its current state; returns
    /// the state it was in.
    pub(crate) fn set_state(
        &self,
        id: &str,
        to: BoxState,
        pid: Option<u32>,
        reason: Option<String>,
        action: &'static str,
    ) -> Result<BoxState> {
        self.transact(|index| {
            let entry = index.get(id).ok_or_else(|| Error::NotFound {
                query: id.to_string(),
            })?;
            if !allowed(entry.state, to) {
                return Err(Error::InvalidState {
                    id: id.to_string(),
                    state: entry.state,
                    action,
                    hint: None,
                });
            }
            Ok((vec![state_record(id, to, pid, reason, None)], entry.state))
        })
    }

    /// Creates a box (state Configured) without starting it.
    pub fn create(&self, options: BoxOptions) -> Result<BoxHandle> {
        options.validate()?;
        let id = random_id()?;
        let dir = self.inner.home.box_dir(&id);
        self.transact(|index| {
            if let Some(name) = &options.name {
                if let Some(other) = index.values().find(|e| e.name.as_ref() == Some(name)) {
                    return Err(Error::NameTaken {
                        name: name.clone(),
                        id: other.id.clone(),
                    });
                }
            }
            // Under the lock, so no other process can take the name meanwhile.
            dir.create()?;
            if let Err(e) = options.save(&dir.file(OPTIONS_FILE)) {
                let _ = std::fs::remove_dir_all(dir.root());
                return Err(e);
            }
            let record = JournalRecord::Created {
                id: id.clone(),
                name: options.name.clone(),
                created_unix_ms: now_unix_ms(),
            };
            Ok((vec![record], ()))
        })?;
        Ok(BoxHandle::new(self.clone(), id))
    }

    /// Finds a box by exact name, then exact id, then unique id prefix.
    pub fn get(&self, id_or_name: &str) -> Result<BoxHandle> {
        let id = self.transact(|index| Ok((Vec::new(), lookup(index, id_or_name)?)))?;
        Ok(BoxHandle::new(self.clone(), id))
    }

    /// Every box, oldest first, with its state brought up to date.
    pub fn list(&self) -> Result<Vec<crate::boxes::BoxInfo>> {
        let mut entries: Vec<Entry> =
            self.transact(|index| Ok((Vec::new(), index.values().cloned().collect())))?;
        entries.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        let mut infos = Vec::with_capacity(entries.len());
        for entry in entries {
            let handle = BoxHandle::new(self.clone(), entry.id.clone());
            match handle.info() {
                Ok(info) => infos.push(info),
                // Removed by another process meanwhile.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(infos)
    }

    /// Brings box `id`'s state up to date with its shim: an active box whose shim is gone
    /// becomes Stopped or Failed. A box that is Starting with no pid file yet is being spawned
    /// by some process and is left alone.
    pub(crate) fn refresh(&self, id: &str) -> Result<Entry> {
        let entry = self.entry(id)?;
        if !entry.state.is_active() {
            return Ok(entry);
        }
        let dir = self.inner.home.box_dir(id);
        let pid_file = dir.file(PID_FILE);
        let rebooted = entry.boot_id.is_some() && entry.boot_id != current_boot_id();
        if !rebooted {
            match pidfile::read(&pid_file) {
                None if entry.state == BoxState::Starting => return Ok(entry),
                Some(record) if pidfile::identity(record) != Identity::Absent => {
                    // A live shim beside an exit file: the file is an earlier shim's.
                    let exit = dir.file(boxlite_proto::EXIT_FILE_NAME);
                    if read_exit(&exit).is_some_and(|e| e.pid != record.pid) {
                        crate::crash::retire_exit_file(&dir);
                    }
                    return Ok(entry);
                }
                _ => {}
            }
        }
        let (state, reason) = if rebooted {
            (
                BoxState::Stopped,
                Some("the host rebooted while the box ran".to_string()),
            )
        } else {
            ended_state(&dir)
        };
        if lock(&self.inner.reaping).contains(id) {
            // Our reaper has not recorded the end yet: settle it on a later look.
            return Ok(entry);
        }
        let _ = std::fs::remove_file(&pid_file);
        lock(&self.inner.watchdogs).remove(id);
        self.transact(|index| match index.get(id) {
            // Still what we looked at: nobody else settled it meanwhile.
            Some(now) if now.state == entry.state && now.pid == entry.pid => {
                Ok((vec![state_record(id, state, None, reason, None)], ()))
            }
            _ => Ok((Vec::new(), ())),
        })?;
        self.entry(id)
    }

    fn recover(&self) -> Result<()> {
        let active: Vec<String> = self.transact(|index| {
            let ids = index.values().filter(|e| e.state.is_active());
            Ok((Vec::new(), ids.map(|e| e.id.clone()).collect()))
        })?;
        for id in active {
            self.refresh(&id)?;
        }
        self.compact_if_worth_it()
    }

    /// Rewrites the journal as one snapshot when most of it is history.
    fn compact_if_worth_it(&self) -> Result<()> {
        let mut journal = lock(&self.inner.journal);
        let mut locked = journal.lock()?;
        let mut index = lock(&self.inner.index);
        // Catch up first: compaction must include what others appended.
        catch_up(&mut index, locked.catch_up()?);
        if locked.len() <= 64 + 4 * index.len() {
            return Ok(());
        }
        let mut entries: Vec<&Entry> = index.values().collect();
        entries.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        let snapshot: Vec<JournalRecord> = entries.iter().flat_map(|e| e.snapshot()).collect();
        log::debug!(
            "compacting the state journal: {} records -> {}",
            locked.len(),
            snapshot.len()
        );
        locked.compact(&snapshot)
    }

    /// Removes box `id_or_name` and its folder. An active box is refused unless `force`, which
    /// kills it first.
    pub fn remove(&self, id_or_name: &str, force: bool) -> Result<()> {
        let handle = self.get(id_or_name)?;
        let entry = self.refresh(handle.id())?;
        if entry.state.is_active() {
            if !force {
                return Err(Error::InvalidState {
                    id: entry.id,
                    state: entry.state,
                    action: "remove",
                    hint: Some("stop it first, or force the removal"),
                });
            }
            handle.kill()?;
        }
        let id = handle.id().to_string();
        let dir = self.inner.home.box_dir(&id);
        self.transact(|index| {
            match index.get(&id) {
                None => return Err(Error::NotFound { query: id.clone() }),
                Some(e) if e.state.is_active() => {
                    return Err(Error::InvalidState {
                        id: id.clone(),
                        state: e.state,
                        action: "remove",
                        hint: Some("another process started it again"),
                    })
                }
                Some(_) => {}
            }
            Ok((vec![JournalRecord::Removed { id: id.clone() }], ()))
        })?;
        dir.remove_socket_link();
        std::fs::remove_dir_all(dir.root()).map_err(Error::file("remove", dir.root()))
    }
}

/// How a box whose shim is gone ended, from its exit file.
fn ended_state(dir: &crate::home::BoxDir) -> (BoxState, Option<String>) {
    match read_exit(&dir.file(boxlite_proto::EXIT_FILE_NAME)) {
        Some(record) if record.end.is_clean() => (BoxState::Stopped, None),
        _ => (BoxState::Failed, Some(CrashReport::gather(dir).summary())),
    }
}

/// The id of the box `query` names.
fn lookup(index: &Index, query: &str) -> Result<String> {
    if let Some(entry) = index.values().find(|e| e.name.as_deref() == Some(query)) {
        return Ok(entry.id.clone());
    }
    if index.contains_key(query) {
        return Ok(query.to_string());
    }
    let mut matches: Vec<String> = if query.is_empty() {
        Vec::new()
    } else {
        index
            .keys()
            .filter(|id| id.starts_with(query))
            .cloned()
            .collect()
    };
    matches.sort();
    match matches.len() {
        0 => Err(Error::NotFound {
            query: query.to_string(),
        }),
        1 => Ok(matches.remove(0)),
        _ => Err(Error::Ambiguous {
            query: query.to_string(),
            matches,
        }),
    }
}

/// `$BOXLITE_HOME`, else `$XDG_DATA_HOME/boxlite`, else `~/.local/share/boxlite`.
fn default_home() -> Result<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("BOXLITE_HOME")
        .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("boxlite")))
        .or_else(|| env("HOME").map(|d| d.join(".local/share/boxlite")))
        .ok_or_else(|| {
            Error::InvalidOptions("no home folder: set BOXLITE_HOME or HOME".to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use BoxState::*;

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        let all = [Configured, Starting, Running, Stopping, Stopped, Failed];
        let allowed_pairs = [
            (Configured, Starting),
            (Stopped, Starting),
            (Failed, Starting),
            (Starting, Running),
            (Starting, Stopping),
            (Starting, Stopped),
            (Starting, Failed),
            (Running, Stopping),
            (Running, Stopped),
            (Running, Failed),
            (Stopping, Stopped),
            (Stopping, Failed),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    allowed(from, to),
                    allowed_pairs.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn records_with_impossible_ids_are_ignored() {
        let mut index = Index::new();
        for id in ["../../etc", "", "abc/def", "ABCDEFx", &"a".repeat(65)] {
            apply(
                &mut index,
                JournalRecord::Created {
                    id: id.into(),
                    name: None,
                    created_unix_ms: 0,
                },
            );
        }
        assert!(index.is_empty());
        apply(
            &mut index,
            JournalRecord::Created {
                id: "0123abcdef".into(),
                name: None,
                created_unix_ms: 0,
            },
        );
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn lookup_prefers_names_then_ids_then_unique_prefixes() {
        let mut index = Index::new();
        for (id, name) in [
            ("abc123", Some("abc")),
            ("abd456", None),
            ("ffee00", Some("web")),
        ] {
            apply(
                &mut index,
                JournalRecord::Created {
                    id: id.into(),
                    name: name.map(Into::into),
                    created_unix_ms: 0,
                },
            );
        }
        // "abc" is a name and also a prefix of another id: the name wins.
        assert_eq!(lookup(&index, "abc").unwrap(), "abc123");
        assert_eq!(lookup(&index, "web").unwrap(), "ffee00");
        assert_eq!(lookup(&index, "abd").unwrap(), "abd456");
        match lookup(&index, "ab") {
            Err(Error::Ambiguous { matches, .. }) => assert_eq!(matches, ["abc123", "abd456"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(lookup(&index, "zz"), Err(Error::NotFound { .. })));
        apply(
            &mut index,
            JournalRecord::Removed {
                id: "abd456".into(),
            },
        );
        assert_eq!(lookup(&index, "ab").unwrap(), "abc123");
    }
}
