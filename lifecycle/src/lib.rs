//! The boxlite host runtime.
//!
//! A [`Runtime`] manages the boxes of one home folder: [`Runtime::create`] records a box,
//! [`BoxHandle::start`] boots it (one `boxlite-shim` process per box, its config on stdin),
//! [`BoxHandle::exec`] runs commands in it with streamed input and output, and
//! [`BoxHandle::stop`] / [`Runtime::remove`] end it. Boxes survive the process that made them
//! when detached, and every process that opens the same home sees the same boxes: their state
//! lives in an append-only journal ([`boxlite_proto::journal`]) and in each box's folder
//! (`shim.pid` with the process start time, the shim's exit file, its logs).
//!
//! ```no_run
//! use boxlite_lifecycle::{BoxOptions, ExecRequest, Runtime, RuntimeOptions};
//!
//! let rt = Runtime::open(RuntimeOptions::default())?;
//! let b = rt.create(BoxOptions { name: Some("demo".into()), ..BoxOptions::default() })?;
//! let out = b.run(ExecRequest::new(["echo", "hello"]))?;
//! assert_eq!(out.stdout, b"hello\n");
//! b.stop()?;
//! rt.remove("demo", false)?;
//! # Ok::<(), boxlite_lifecycle::Error>(())
//! ```
//!
//! Lower down, [`GuestSession`] talks to a guest agent directly (over a VM's vsock socket or, in
//! tests, the agent's Unix socket) and [`ReadyListener`] receives the agent's readiness signal.

#![deny(missing_docs)]

mod assets;
mod boxes;
mod crash;
mod error;
mod guest_session;
mod home;
mod journal;
mod options;
mod overlay;
mod pidfile;
mod ready;
mod runtime;
mod start;
mod stop;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod wire;

pub use assets::Assets;
pub use boxes::{BoxHandle, BoxInfo, BoxMetrics, StartTimings};
pub use boxlite_proto::agent::ExecRequest;
pub use boxlite_proto::{BoxState, ExitRecord, ShimEnd};
pub use crash::{classify_console, ConsoleStage, CrashReport};
pub use error::{Error, Result};
pub use guest_session::{
    AgentInfo, ExecControl, ExecHandle, ExecOutput, ExitStatus, GuestSession, Output, Termination,
    DEFAULT_OUTPUT_LIMIT, DEFAULT_TIMEOUT,
};
pub use options::{BoxOptions, Disk, Root, DEFAULT_READY_TIMEOUT};
pub use overlay::{base_format, create_overlay};
pub use pidfile::{Identity, PidRecord};
pub use ready::{ready_listener_path, wait_ready, ReadyListener};
pub use runtime::{Runtime, RuntimeOptions, Timeouts};
