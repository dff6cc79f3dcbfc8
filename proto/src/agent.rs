//! The guest agent protocol: how the host runs commands inside a boxlite guest.
//!
//! # Transport
//!
//! The agent (`boxlite-agent`, PID 1 of the guest) listens on vsock port [`AGENT_PORT`]. The host
//! reaches it through the vsock device's Unix socket with Firecracker's handshake
//! (`CONNECT 2695\n` → `OK <host port>\n`), after which the connection is a plain byte stream.
//! When the agent is ready it connects to the host (CID [`HOST_CID`]) on port [`READY_PORT`]
//! (bridged by the vsock device to the Unix listener `<uds>_2696`) and writes one [`Ready`] frame.
//!
//! Every message is one length-prefixed postcard frame ([`crate::frame`]); payloads larger than
//! [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN) are refused before they are read.
//!
//! # One connection, one request
//!
//! The host opens a connection per request and starts it with a [`Hello`] carrying
//! [`AGENT_PROTOCOL_VERSION`] and the [`Request`]:
//!
//! * [`Request::Ping`]: the agent answers [`Event::Pong`] and closes.
//! * [`Request::Shutdown`]: the agent answers [`Event::ShuttingDown`], then stops every process,
//!   syncs, unmounts and reboots the guest (which ends the VM).
//! * [`Request::Exec`]: the agent runs the command. The host may then send [`ExecInput`] frames
//!   (stdin data, stdin close, signals); the agent sends, in order: [`Event::Started`] once the
//!   process exists, any number of [`Event::Stdout`] / [`Event::Stderr`] chunks (each at most
//!   [`OUTPUT_CHUNK_LEN`] bytes), and exactly one terminal event: [`Event::Exited`],
//!   [`Event::Signaled`] or [`Event::Error`]. Then it closes the connection. A command that
//!   cannot be found gets no `Started`: a message on stderr and `Exited { code: 127 }` (126 when it
//!   exists but cannot be executed), like a shell. The process lives as long as its connection:
//!   if the host goes away first, the agent kills the process group with `SIGKILL`.
//!
//! Concurrent commands use concurrent connections.
//!
//! # Errors
//!
//! A frame that is malformed, oversized, out of place or of another protocol version makes the
//! agent send [`Event::Error`] and close that connection (killing its process, if any); other
//! connections are not affected.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::frame::{decode_frame, encode_frame, frame_payload_len, FrameError, FRAME_HEADER_LEN};

/// Version of the agent protocol; bumped on any incompatible change. It is the first field of
/// [`Hello`] and [`Ready`] so that either side can name the other's version even when the rest of
/// the message is unreadable to it.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

/// Guest vsock port the agent listens on (BoxLite's `box.sock`).
pub const AGENT_PORT: u32 = 2695;

/// Host vsock port the agent connects to once it is ready (BoxLite's `ready.sock`).
pub const READY_PORT: u32 = 2696;

/// The host's vsock context id, as seen from the guest.
pub const HOST_CID: u32 = 2;

/// Largest chunk of output the agent puts in one [`Event::Stdout`] or [`Event::Stderr`].
pub const OUTPUT_CHUNK_LEN: usize = 32 * 1024;

/// Largest chunk of input a host should put in one [`ExecInput::Stdin`] (the agent accepts up to
/// [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN); smaller chunks keep memory and latency low on both sides).
pub const STDIN_CHUNK_LEN: usize = 64 * 1024;

/// First frame of every connection, host → guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`AGENT_PROTOCOL_VERSION`].
    pub version: u32,
    /// What the host wants from this connection.
    pub request: Request,
}

/// The request a connection carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness check: answered by [`Event::Pong`].
    Ping,
    /// Run a command; the connection then carries its input and output.
    Exec(ExecRequest),
    /// Stop every process, sync, unmount and reboot the guest (which ends the VM).
    Shutdown,
}

/// A command to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in the `PATH` of [`ExecRequest::env`].
    pub argv: Vec<String>,
    /// The whole environment of the process (nothing is inherited from the agent). When it has
    /// no `PATH`, the agent adds a standard one so that commands can be found.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` runs in the agent's (`/` in the guest).
    pub cwd: Option<String>,
    /// User id to run as; `None` keeps the agent's (root in the guest).
    pub uid: Option<u32>,
    /// Group id to run as; `None` keeps the agent's.
    pub gid: Option<u32>,
    /// Whether the host will send stdin. `false` gives the process `/dev/null`.
    pub stdin: bool,
    /// Wall-clock limit: past it the agent kills the process group with `SIGKILL` and reports
    /// the end with `timed_out: true`.
    pub timeout_ms: Option<u64>,
}

impl ExecRequest {
    /// A request to run `argv` with an empty environment, no stdin, no timeout, as the agent's
    /// user in its working directory.
    pub fn new<I, S>(argv: I) -> ExecRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            uid: None,
            gid: None,
            stdin: false,
            timeout_ms: None,
        }
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ExecRequest {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> ExecRequest {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets the user and group ids.
    pub fn user(mut self, uid: u32, gid: u32) -> ExecRequest {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }

    /// Asks for a stdin pipe (fed with [`ExecInput::Stdin`]).
    pub fn with_stdin(mut self) -> ExecRequest {
        self.stdin = true;
        self
    }

    /// Sets the wall-clock limit in milliseconds.
    pub fn timeout_ms(mut self, timeout_ms: u64) -> ExecRequest {
        self.timeout_ms = Some(timeout_ms);
        self
    }
}

/// Frames the host may send on an exec connection after its [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecInput {
    /// Bytes for the process's stdin (dropped when the request had `stdin: false`).
    Stdin(#[serde(with = "bytes")] Vec<u8>),
    /// Close the process's stdin once the bytes sent before are written.
    StdinClose,
    /// Send a signal to the process group of the command (ignored once it has exited).
    Kill {
        /// Signal number, 1..=64; anything else is a protocol error.
        signal: i32,
    },
}

/// Frames the agent sends, guest → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The agent's [`AGENT_PROTOCOL_VERSION`].
        version: u32,
        /// The agent's name and release, e.g. `boxlite-agent 0.1.0`.
        agent: String,
    },
    /// The command's process exists.
    Started {
        /// Its pid in the guest; it also leads its own process group.
        pid: u32,
    },
    /// A chunk of the command's stdout.
    Stdout(#[serde(with = "bytes")] Vec<u8>),
    /// A chunk of the command's stderr.
    Stderr(#[serde(with = "bytes")] Vec<u8>),
    /// The command exited (terminal).
    Exited {
        /// Its exit code.
        code: i32,
        /// Whether the agent had killed it for exceeding [`ExecRequest::timeout_ms`].
        timed_out: bool,
    },
    /// The command was killed by a signal (terminal).
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether the agent had killed it for exceeding [`ExecRequest::timeout_ms`].
        timed_out: bool,
    },
    /// Answer to [`Request::Shutdown`]: the guest is going down.
    ShuttingDown,
    /// The request failed or the host broke the protocol (terminal).
    Error {
        /// What went wrong, for a human.
        message: String,
    },
}

/// The frame the agent writes on [`READY_PORT`] once it serves [`AGENT_PORT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The agent's [`AGENT_PROTOCOL_VERSION`].
    pub version: u32,
    /// The agent's name and release, e.g. `boxlite-agent 0.1.0`.
    pub agent: String,
}

/// Why an agent protocol message could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentWireError {
    /// The bytes are not a valid frame of the expected message.
    Frame(FrameError),
    /// The peer speaks another protocol version.
    Version {
        /// Version the peer announced.
        found: u32,
        /// Version this side speaks ([`AGENT_PROTOCOL_VERSION`]).
        expected: u32,
    },
}

impl fmt::Display for AgentWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentWireError::Frame(e) => write!(f, "malformed agent protocol frame: {e}"),
            AgentWireError::Version { found, expected } => write!(
                f,
                "agent protocol version {found} is not supported (this side speaks version \
                 {expected}); build the guest rootfs with the boxlite-agent of the same release \
                 as the host runtime"
            ),
        }
    }
}

impl core::error::Error for AgentWireError {}

impl From<FrameError> for AgentWireError {
    fn from(e: FrameError) -> AgentWireError {
        AgentWireError::Frame(e)
    }
}

/// Decodes a frame whose payload starts with a protocol version: the version is checked first,
/// so a peer of another version is named as such even if the rest is unreadable.
fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AgentWireError> {
    let header = bytes
        .first_chunk::<FRAME_HEADER_LEN>()
        .ok_or(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
            available: bytes.len(),
        })?;
    let len = frame_payload_len(*header)?;
    let payload = bytes.get(FRAME_HEADER_LEN..).unwrap_or_default();
    let payload = payload.get(..len).unwrap_or(payload);
    if let Ok((found, _)) = postcard::take_from_bytes::<u32>(payload) {
        if found != AGENT_PROTOCOL_VERSION {
            return Err(AgentWireError::Version {
                found,
                expected: AGENT_PROTOCOL_VERSION,
            });
        }
    }
    Ok(decode_frame(bytes)?)
}

impl Hello {
    /// A hello at the current protocol version.
    pub fn new(request: Request) -> Hello {
        Hello {
            version: AGENT_PROTOCOL_VERSION,
            request,
        }
    }

    /// Encodes the hello as one frame.
    pub fn to_frame(&self) -> Result<Vec<u8>, AgentWireError> {
        Ok(encode_frame(self)?)
    }

    /// Decodes and version-checks a hello frame.
    pub fn from_frame(bytes: &[u8]) -> Result<Hello, AgentWireError> {
        decode_versioned(bytes)
    }
}

impl Ready {
    /// A ready message at the current protocol version.
    pub fn new(agent: impl Into<String>) -> Ready {
        Ready {
            version: AGENT_PROTOCOL_VERSION,
            agent: agent.into(),
        }
    }

    /// Encodes the message as one frame.
    pub fn to_frame(&self) -> Result<Vec<u8>, AgentWireError> {
        Ok(encode_frame(self)?)
    }

    /// Decodes and version-checks a ready frame.
    pub fn from_frame(bytes: &[u8]) -> Result<Ready, AgentWireError> {
        decode_versioned(bytes)
    }
}

/// Splits a byte stream into frames as its bytes arrive (for non-blocking readers).
///
/// An oversized frame is refused as soon as its header is in, before its payload is buffered.
/// Decoded frames are skipped with a read offset; the consumed prefix is dropped once per
/// [`push`](Self::push), so decoding is linear in the bytes pushed whatever the chunk size.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Where the next undecoded frame starts in `buf`.
    start: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Decodes the next complete frame, if one is buffered.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let end = FRAME_HEADER_LEN + frame_payload_len(*header)?;
        let Some(frame) = rest.get(..end) else {
            return Ok(None);
        };
        let value = decode_frame(frame)?;
        self.start += end;
        Ok(Some(value))
    }
}

/// Serde helpers that carry a `Vec<u8>` as one byte string (a length and the raw bytes) instead
/// of a sequence of numbers, so output chunks encode and decode at memcpy speed.
mod bytes {
    use alloc::vec::Vec;
    use core::fmt;

    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor)
    }

    struct ByteBufVisitor;

    impl<'de> Visitor<'de> for ByteBufVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_FRAME_LEN;
    use alloc::string::ToString;
    use alloc::vec;

    fn exec_hello() -> Hello {
        Hello::new(Request::Exec(
            ExecRequest::new(["sh", "-c", "echo hello"])
                .env("PATH", "/bin")
                .cwd("/tmp")
                .user(1000, 1000)
                .with_stdin()
                .timeout_ms(5000),
        ))
    }

    #[test]
    fn hello_round_trips_for_every_request() {
        for hello in [
            exec_hello(),
            Hello::new(Request::Ping),
            Hello::new(Request::Shutdown),
        ] {
            let bytes = hello.to_frame().unwrap();
            assert_eq!(Hello::from_frame(&bytes).unwrap(), hello);
        }
    }

    #[test]
    fn exec_request_builder_sets_every_field() {
        let Request::Exec(req) = exec_hello().request else {
            panic!("not an exec request");
        };
        assert_eq!(req.argv, ["sh", "-c", "echo hello"]);
        assert_eq!(req.env, [("PATH".to_string(), "/bin".to_string())]);
        assert_eq!(req.cwd.as_deref(), Some("/tmp"));
        assert_eq!((req.uid, req.gid), (Some(1000), Some(1000)));
        assert!(req.stdin);
        assert_eq!(req.timeout_ms, Some(5000));
    }

    #[test]
    fn events_and_inputs_round_trip() {
        let events = [
            Event::Pong {
                version: AGENT_PROTOCOL_VERSION,
                agent: "boxlite-agent 0.1.0".to_string(),
            },
            Event::Started { pid: 42 },
            Event::Stdout(b"out\0\xff".to_vec()),
            Event::Stderr(Vec::new()),
            Event::Exited {
                code: 127,
                timed_out: false,
            },
            Event::Signaled {
                signal: 9,
                timed_out: true,
            },
            Event::ShuttingDown,
            Event::Error {
                message: "no".to_string(),
            },
        ];
        for event in events {
            let bytes = encode_frame(&event).unwrap();
            assert_eq!(decode_frame::<Event>(&bytes).unwrap(), event);
        }
        for input in [
            ExecInput::Stdin(vec![0, 1, 2, 255]),
            ExecInput::StdinClose,
            ExecInput::Kill { signal: 15 },
        ] {
            let bytes = encode_frame(&input).unwrap();
            assert_eq!(decode_frame::<ExecInput>(&bytes).unwrap(), input);
        }
    }

    #[test]
    fn output_chunks_are_carried_as_raw_bytes() {
        let chunk = vec![0xabu8; OUTPUT_CHUNK_LEN];
        let bytes = encode_frame(&Event::Stdout(chunk.clone())).unwrap();
        // Header, variant tag, a 3-byte varint length, then the bytes themselves.
        assert_eq!(bytes.len(), FRAME_HEADER_LEN + 1 + 3 + OUTPUT_CHUNK_LEN);
        assert_eq!(decode_frame::<Event>(&bytes).unwrap(), Event::Stdout(chunk));
    }

    #[test]
    fn ready_round_trips() {
        let ready = Ready::new("boxlite-agent 0.1.0");
        let bytes = ready.to_frame().unwrap();
        assert_eq!(Ready::from_frame(&bytes).unwrap(), ready);
    }

    #[test]
    fn every_truncation_of_a_hello_is_an_error() {
        let bytes = exec_hello().to_frame().unwrap();
        for cut in 0..bytes.len() {
            assert!(Hello::from_frame(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn other_versions_are_refused_even_when_the_rest_is_unreadable() {
        let mut hello = exec_hello();
        hello.version = 7;
        let err = Hello::from_frame(&hello.to_frame().unwrap()).unwrap_err();
        assert_eq!(
            err,
            AgentWireError::Version {
                found: 7,
                expected: AGENT_PROTOCOL_VERSION
            }
        );
        assert!(err.to_string().contains("version 7"));

        // A future version whose body this side cannot parse: still a version error.
        let future = encode_frame(&(99u32, [0xffu8; 3])).unwrap();
        assert_eq!(
            Ready::from_frame(&future),
            Err(AgentWireError::Version {
                found: 99,
                expected: AGENT_PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn oversized_and_garbage_frames_are_refused() {
        let mut header = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec();
        header.push(AGENT_PROTOCOL_VERSION as u8);
        assert_eq!(
            Hello::from_frame(&header),
            Err(AgentWireError::Frame(FrameError::TooLarge(
                MAX_FRAME_LEN + 1
            )))
        );
        // Right version, unknown request variant.
        let garbage = [2, 0, 0, 0, AGENT_PROTOCOL_VERSION as u8, 200];
        assert!(matches!(
            Hello::from_frame(&garbage),
            Err(AgentWireError::Frame(FrameError::Payload(_)))
        ));
    }

    #[test]
    fn frame_reader_reassembles_frames_split_anywhere() {
        let frames = [
            encode_frame(&ExecInput::Stdin(vec![7; 1000])).unwrap(),
            encode_frame(&ExecInput::Kill { signal: 2 }).unwrap(),
            encode_frame(&ExecInput::StdinClose).unwrap(),
        ];
        let stream: Vec<u8> = frames.concat();
        for split in [1, 3, 5, 64, stream.len()] {
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for piece in stream.chunks(split) {
                reader.push(piece);
                while let Some(input) = reader.next_frame::<ExecInput>().unwrap() {
                    got.push(input);
                }
            }
            assert_eq!(reader.buffered(), 0);
            assert_eq!(
                got,
                [
                    ExecInput::Stdin(vec![7; 1000]),
                    ExecInput::Kill { signal: 2 },
                    ExecInput::StdinClose
                ]
            );
        }
    }

    #[test]
    fn frame_reader_decodes_many_small_frames_pushed_in_large_chunks() {
        let frames: Vec<ExecInput> = (0..20_000u32)
            .map(|i| ExecInput::Stdin(i.to_le_bytes().repeat(1 + (i % 5) as usize)))
            .collect();
        let stream: Vec<u8> = frames
            .iter()
            .flat_map(|f| encode_frame(f).unwrap())
            .collect();
        for chunk in [1 << 16, 1 << 20, stream.len()] {
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.push(piece);
                // The frames decoded before this push are gone from the buffer.
                assert_eq!(reader.start, 0);
                while let Some(input) = reader.next_frame::<ExecInput>().unwrap() {
                    got.push(input);
                }
            }
            assert_eq!(reader.buffered(), 0);
            assert_eq!(got, frames, "chunk {chunk}");
        }
    }

    #[test]
    fn frame_reader_refuses_an_oversized_header_before_its_payload() {
        let mut reader = FrameReader::new();
        reader.push(&((MAX_FRAME_LEN + 1) as u32).to_le_bytes());
        assert_eq!(
            reader.next_frame::<ExecInput>(),
            Err(FrameError::TooLarge(MAX_FRAME_LEN + 1))
        );
        let mut reader = FrameReader::new();
        reader.push(&[3, 0, 0, 0, 9, 9, 9]);
        assert!(matches!(
            reader.next_frame::<ExecInput>(),
            Err(FrameError::Payload(_))
        ));
    }
}
