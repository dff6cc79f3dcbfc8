//! Length-prefixed postcard frames.
//!
//! A frame is a little-endian `u32` payload length followed by that many bytes of postcard. The
//! explicit length lets a reader take exactly one message from a stream it does not own (a pipe
//! that stays open, a socket) and refuse an oversized one before allocating for it.

use alloc::vec::Vec;
use core::fmt;

use serde::{de::DeserializeOwned, Serialize};

/// Bytes in the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest payload accepted by [`decode_frame`]. Configurations are a few hundred bytes; anything
/// near this limit is a corrupt or hostile writer.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header or the announced payload.
    Truncated {
        /// Bytes needed to complete the frame.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The announced payload is larger than [`MAX_FRAME_LEN`].
    TooLarge(usize),
    /// Bytes were left over after the payload.
    TrailingBytes(usize),
    /// The payload is not a valid postcard encoding of the expected type.
    Payload(postcard::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => {
                write!(f, "truncated frame: need {needed} bytes, have {available}")
            }
            FrameError::TooLarge(len) => {
                write!(
                    f,
                    "frame payload of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit"
                )
            }
            FrameError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the frame"),
            FrameError::Payload(e) => write!(f, "invalid frame payload: {e}"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Encodes `value` as one frame.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let payload = postcard::to_allocvec(value).map_err(FrameError::Payload)?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    // The length fits: it was checked against MAX_FRAME_LEN (< u32::MAX) above.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Reads the payload length announced by a frame header, refusing oversized frames.
pub fn frame_payload_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes exactly one frame that fills `bytes`.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let header: [u8; FRAME_HEADER_LEN] = bytes
        .get(..FRAME_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
            available: bytes.len(),
        })?;
    let len = frame_payload_len(header)?;
    let body = &bytes[FRAME_HEADER_LEN..];
    if body.len() < len {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN + len,
            available: bytes.len(),
        });
    }
    if body.len() > len {
        return Err(FrameError::TrailingBytes(body.len() - len));
    }
    postcard::from_bytes(body).map_err(FrameError::Payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    #[test]
    fn round_trips_a_value() {
        let value = (7u32, String::from("box"));
        let bytes = encode_frame(&value).unwrap();
        assert_eq!(&bytes[..4], &((bytes.len() - 4) as u32).to_le_bytes());
        assert_eq!(decode_frame::<(u32, String)>(&bytes).unwrap(), value);
    }

    #[test]
    fn refuses_truncated_header_and_body() {
        assert_eq!(
            decode_frame::<u32>(&[1, 0]),
            Err(FrameError::Truncated {
                needed: 4,
                available: 2
            })
        );
        assert_eq!(
            decode_frame::<u32>(&[5, 0, 0, 0, 1]),
            Err(FrameError::Truncated {
                needed: 9,
                available: 5
            })
        );
    }

    #[test]
    fn refuses_oversized_frames_before_reading_them() {
        let header = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
        assert_eq!(
            frame_payload_len(header),
            Err(FrameError::TooLarge(MAX_FRAME_LEN + 1))
        );
        assert_eq!(
            decode_frame::<u32>(&header),
            Err(FrameError::TooLarge(MAX_FRAME_LEN + 1))
        );
    }

    #[test]
    fn refuses_trailing_bytes_and_garbage() {
        let mut bytes = encode_frame(&1u8).unwrap();
        bytes.push(0);
        assert_eq!(
            decode_frame::<u8>(&bytes),
            Err(FrameError::TrailingBytes(1))
        );
        // A string whose announced length runs past the payload.
        let garbage = vec![2, 0, 0, 0, 0x7f, b'a'];
        assert!(matches!(
            decode_frame::<String>(&garbage),
            Err(FrameError::Payload(_))
        ));
    }
}
