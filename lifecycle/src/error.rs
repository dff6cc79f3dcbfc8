//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use boxlite_proto::FrameError;

/// Result of the runtime's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong managing boxes and talking to their guests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be connected.
    #[error(
        "cannot connect to {}: {source} (is the VM running, and is this its vsock socket or \
         the agent's Unix socket?)",
        path.display()
    )]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// A Unix socket path does not fit a socket address.
    #[error(
        "socket path {} is longer than the 107 bytes a Unix socket address holds; reach it \
         through a shorter symlink",
        path.display()
    )]
    PathTooLong {
        /// The socket.
        path: PathBuf,
    },
    /// The vsock device did not open the guest port (`CONNECT <port>` was not answered `OK`).
    #[error(
        "the vsock device at {} did not connect guest port {port} (reply {reply:?}); is the \
         guest agent up and listening on that port?",
        path.display()
    )]
    VsockRefused {
        /// The vsock device's socket.
        path: PathBuf,
        /// The guest port asked for.
        port: u32,
        /// What the device answered (empty when it closed the connection).
        reply: String,
    },
    /// Listening for the guest's readiness failed.
    #[error("cannot listen for the guest's readiness at {}: {source}", path.display())]
    Listen {
        /// The listener's path.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// Reading or writing a connection failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Something took longer than allowed.
    #[error("timed out after {after:?} {what}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// A command wrote more output than [`crate::ExecHandle::output_limited`] collects.
    #[error(
        "the command wrote more than {limit} bytes of output; read it with \
         ExecHandle::stream or next_output, or raise the limit with output_limited"
    )]
    OutputTooLarge {
        /// The limit, in bytes of stdout and stderr together.
        limit: usize,
    },
    /// The agent sent bytes that are not a valid frame.
    #[error("malformed frame from the guest agent: {0}")]
    Frame(FrameError),
    /// A request could not be encoded (it exceeds the frame size limit).
    #[error("cannot encode the request for the guest agent: {0}")]
    Request(FrameError),
    /// The agent speaks another protocol version.
    #[error(
        "the guest agent speaks protocol version {found}, this host speaks {expected}; build the \
         guest rootfs (scripts/build-rootfs.sh) with the boxlite-agent of this release"
    )]
    Version {
        /// The agent's version.
        found: u32,
        /// This host's version.
        expected: u32,
    },
    /// The agent refused the request or reported a failure.
    #[error("the guest agent reported: {message}")]
    Agent {
        /// The agent's message.
        message: String,
    },
    /// The connection ended early.
    #[error(
        "the guest agent closed the connection {context} (did the guest shut down or crash? \
         its console log says more)"
    )]
    Closed {
        /// When it happened.
        context: &'static str,
    },
    /// The agent sent a message that makes no sense at this point.
    #[error("unexpected message from the guest agent {context}: {event}")]
    Unexpected {
        /// When it happened.
        context: &'static str,
        /// The message, abbreviated.
        event: String,
    },
    /// A file or folder of the runtime's home could not be used.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// What was being done (`create`, `read`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// No box has this name or id prefix.
    #[error(
        "no box is named {query:?} or has an id starting with it (`boxlite ps -a` lists them)"
    )]
    NotFound {
        /// What was looked for.
        query: String,
    },
    /// An id prefix matches more than one box.
    #[error("{query:?} matches several boxes ({}); give more of the id", matches.join(", "))]
    Ambiguous {
        /// The prefix.
        query: String,
        /// The ids it matches.
        matches: Vec<String>,
    },
    /// Another box already has this name.
    #[error("a box named {name:?} already exists (id {id}); pick another name or remove it")]
    NameTaken {
        /// The name.
        name: String,
        /// The box that has it.
        id: String,
    },
    /// Box options that cannot work.
    #[error("invalid box options: {0}")]
    InvalidOptions(String),
    /// The box is in a state that does not allow the operation.
    #[error("cannot {action} box {id}: it is {state}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    InvalidState {
        /// The box.
        id: String,
        /// Its state.
        state: boxlite_proto::BoxState,
        /// What was refused.
        action: &'static str,
        /// What to do instead, if anything.
        hint: Option<&'static str>,
    },
    /// A runtime asset (shim, kernel, initramfs) was not found.
    #[error("{what} not found (looked at: {}); {build}", tried.join(", "))]
    AssetMissing {
        /// Which asset.
        what: &'static str,
        /// Where it was looked for.
        tried: Vec<String>,
        /// How to get it.
        build: &'static str,
    },
    /// The shim could not be spawned.
    #[error("cannot run the VMM {}: {source}", shim.display())]
    Spawn {
        /// The shim binary.
        shim: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A box failed to start; the report says why and where to look.
    #[error("box {id} failed to start at step `{step}`: {report}")]
    StartFailed {
        /// The box.
        id: String,
        /// The pipeline step that failed.
        step: &'static str,
        /// The crash report.
        report: String,
    },
    /// The shim exited while the guest was booting.
    #[error("the VMM exited before the guest was ready")]
    VmmExited,
    /// The state journal could not be written.
    #[error("cannot record the change in the state journal {}: {reason}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The box's stored options could not be read or written.
    #[error("the options of box {id} in {} are unusable: {reason}", path.display())]
    Options {
        /// The box.
        id: String,
        /// The options file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// A [`Error::File`] maker for `map_err`.
    pub(crate) fn file(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::File {
            action,
            path,
            source,
        }
    }
}
