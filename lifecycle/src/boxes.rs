//! [`BoxHandle`]: one box: start, stop, run commands, and what it is doing.

use std::path::PathBuf;

use boxlite_proto::{BoxState, ExitRecord, EXIT_FILE_NAME};
use serde::{Deserialize, Serialize};

use crate::crash::read_exit;
use crate::error::{Error, Result};
use crate::guest_session::{ExecHandle, ExecOutput, GuestSession};
use crate::home::{read_limited, BoxDir};
use crate::options::{BoxOptions, OPTIONS_FILE};
use crate::pidfile::{self, PID_FILE};
use crate::runtime::Runtime;
use crate::ExecRequest;

/// Name of the start timings file in a box's folder.
pub(crate) const TIMINGS_FILE: &str = "timings.json";

/// A box of a [`Runtime`], by id. Cheap to clone; the box's state lives in the home, so a
/// handle never goes stale: every call looks at the current state.
#[derive(Debug, Clone)]
pub struct BoxHandle {
    pub(crate) rt: Runtime,
    pub(crate) id: String,
}

/// A box's record, as [`BoxHandle::info`] and [`Runtime::list`] report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoxInfo {
    /// Its id.
    pub id: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// Its state.
    pub state: BoxState,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Its shim's pid while one runs.
    pub pid: Option<u32>,
    /// Why it failed or stopped abnormally.
    pub reason: Option<String>,
    /// How its last shim ended.
    pub exit: Option<ExitRecord>,
    /// Its options (with the environment's values hidden); `None` when its options file is
    /// unreadable (the box can still be listed and removed).
    pub options: Option<BoxOptions>,
    /// Its folder.
    pub dir: PathBuf,
}

/// How long each step of the last start took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StartTimings {
    /// Laying out the box folder and its disks.
    pub layout_ms: f64,
    /// Spawning the shim and handing it its config.
    pub spawn_ms: f64,
    /// From the spawned shim to the guest agent's readiness (VM build, kernel, agent).
    pub ready_ms: f64,
    /// Connecting to the agent and its first answer.
    pub connect_ms: f64,
}

impl StartTimings {
    /// The whole start.
    pub fn total_ms(&self) -> f64 {
        self.layout_ms + self.spawn_ms + self.ready_ms + self.connect_ms
    }
}

/// Resource use of a running box's shim (the VMM and the guest's memory and vCPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BoxMetrics {
    /// Average CPU use since the shim started, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the shim, in bytes (guest memory it has touched included).
    pub rss_bytes: Option<u64>,
    /// The last start's stage timings.
    pub start: Option<StartTimings>,
}

impl BoxHandle {
    pub(crate) fn new(rt: Runtime, id: String) -> BoxHandle {
        BoxHandle { rt, id }
    }

    /// The box's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn dir(&self) -> BoxDir {
        self.rt.inner.home.box_dir(&self.id)
    }

    /// The box's options, as stored.
    pub fn options(&self) -> Result<BoxOptions> {
        BoxOptions::load(&self.id, &self.dir().file(OPTIONS_FILE))
    }

    /// The box's current state (brought up to date with its shim).
    pub fn state(&self) -> Result<BoxState> {
        Ok(self.rt.refresh(&self.id)?.state)
    }

    /// Everything known about the box.
    pub fn info(&self) -> Result<BoxInfo> {
        let entry = self.rt.refresh(&self.id)?;
        let dir = self.dir();
        let options = match self.options() {
            Ok(mut options) => {
                for (_, value) in &mut options.env {
                    *value = "<hidden>".to_string();
                }
                Some(options)
            }
            Err(e) => {
                log::warn!("{e}");
                None
            }
        };
        Ok(BoxInfo {
            pid: if entry.state.is_active() {
                pidfile::read(&dir.file(PID_FILE)).map(|r| r.pid)
            } else {
                None
            },
            id: entry.id,
            name: entry.name,
            state: entry.state,
            created_unix_ms: entry.created_unix_ms,
            reason: entry.reason,
            exit: read_exit(&dir.file(EXIT_FILE_NAME)),
            options,
            dir: dir.root().to_path_buf(),
        })
    }

    /// CPU and memory of the box's shim from `/proc`, and the last start's timings.
    pub fn metrics(&self) -> Result<BoxMetrics> {
        let dir = self.dir();
        let start = read_limited(&dir.file(TIMINGS_FILE), 4096)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let live = pidfile::identity_at(&dir.file(PID_FILE)).pid();
        let (cpu_percent, rss_bytes) = live.map_or((None, None), proc_usage);
        Ok(BoxMetrics {
            cpu_percent,
            rss_bytes,
            start,
        })
    }

    /// The guest session of the running box.
    pub(crate) fn session(&self) -> Result<GuestSession> {
        Ok(GuestSession::vsock(self.dir().vsock_socket()?)
            .with_timeout(self.rt.inner.timeouts.agent))
    }

    /// Runs a command in the box, starting the box first when it is Configured, Stopped or
    /// Failed. The command's environment is the box's plus its own; its working directory is
    /// its own, else the box's.
    pub fn exec(&self, mut request: ExecRequest) -> Result<ExecHandle> {
        match self.state()? {
            BoxState::Running => {}
            BoxState::Configured | BoxState::Stopped | BoxState::Failed => self.start()?,
            state => {
                return Err(Error::InvalidState {
                    id: self.id.clone(),
                    state,
                    action: "run a command in",
                    hint: Some("wait until it is running"),
                })
            }
        }
        let options = self.options()?;
        let mut env = options.env;
        for (key, value) in request.env.drain(..) {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
        request.env = env;
        if request.cwd.is_none() {
            request.cwd = options.working_dir;
        }
        self.session()?.exec(request)
    }

    /// Runs a command and collects its output and exit status.
    pub fn run(&self, request: ExecRequest) -> Result<ExecOutput> {
        self.exec(request)?.output()
    }
}

/// Average CPU percent since start, and RSS, of process `pid`.
fn proc_usage(pid: u32) -> (Option<f64>, Option<u64>) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|at| stat[at + 1..].split_whitespace().collect())
        .unwrap_or_default();
    // After the command name, index 0 is field 3: utime is field 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    let cpu = match (field(14), field(15), field(22), uptime) {
        (Some(u), Some(s), Some(start), Some(up)) if ticks > 0 => {
            let ticks = ticks as f64;
            let alive = up - start / ticks;
            (alive > 0.0).then(|| 100.0 * (u + s) / ticks / alive)
        }
        _ => None,
    };
    let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page.max(0) as u64);
    (cpu, rss)
}
