//! The boxlite host runtime.
//!
//! [`GuestSession`] talks to the guest agent (`boxlite-agent`, PID 1 of every boxlite guest)
//! through the VM's vsock device, or directly over a Unix socket in tests: it runs commands with
//! streamed input and output ([`ExecHandle`]), checks liveness and shuts the guest down.
//! [`ReadyListener`] receives the agent's readiness signal. The wire protocol is
//! [`boxlite_proto::agent`].

#![deny(missing_docs)]

mod error;
mod guest_session;
mod overlay;
mod ready;
mod wire;

pub use boxlite_proto::agent::ExecRequest;
pub use error::{Error, Result};
pub use guest_session::{
    AgentInfo, ExecControl, ExecHandle, ExecOutput, ExitStatus, GuestSession, Output, Termination,
    DEFAULT_TIMEOUT,
};
pub use overlay::{base_format, create_overlay};
pub use ready::{ready_listener_path, wait_ready, ReadyListener};
