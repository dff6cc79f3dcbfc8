//! Records of the box state journal, and their on-disk framing.
//!
//! The journal is an append-only file of records. Each record is framed as a little-endian `u32`
//! payload length, a little-endian `u32` CRC-32 (IEEE) of the payload, and the postcard payload.
//! [`decode_journal`] returns every whole, intact record from the start of the file and where
//! the intact part ends, so the reader can cut a torn or corrupt tail without losing anything
//! before it. The codec is `no_std`; file handling lives in the host runtime.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::frame::FrameError;

/// Bytes of framing before each record's payload: length, then CRC-32.
pub const RECORD_HEADER_LEN: usize = 8;

/// Largest record payload accepted. Records are a few dozen bytes; a length beyond this is
/// corruption, not a record.
pub const MAX_RECORD_LEN: usize = 64 * 1024;

/// The states of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxState {
    /// Recorded, never started (or removed from a start before its shim was spawned).
    Configured,
    /// Its shim is being spawned and the guest is booting.
    Starting,
    /// The guest agent is ready.
    Running,
    /// It is being stopped.
    Stopping,
    /// It ended cleanly, or the host rebooted under it.
    Stopped,
    /// It failed to start or ended abnormally; the record carries the reason.
    Failed,
}

impl BoxState {
    /// A lower-case name for display (`running`, `failed`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            BoxState::Configured => "configured",
            BoxState::Starting => "starting",
            BoxState::Running => "running",
            BoxState::Stopping => "stopping",
            BoxState::Stopped => "stopped",
            BoxState::Failed => "failed",
        }
    }

    /// Whether a shim may be alive in this state.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            BoxState::Starting | BoxState::Running | BoxState::Stopping
        )
    }
}

impl core::fmt::Display for BoxState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One change to the set of boxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalRecord {
    /// A box was created (state [`BoxState::Configured`]).
    Created {
        /// Its id.
        id: String,
        /// Its name, if it has one.
        name: Option<String>,
        /// Creation time, milliseconds since the Unix epoch.
        created_unix_ms: u64,
    },
    /// A box changed state.
    State {
        /// Its id.
        id: String,
        /// The new state.
        state: BoxState,
        /// The shim's pid while one runs (a cache: the box's `shim.pid` is the truth).
        pid: Option<u32>,
        /// Why it failed or stopped, for [`BoxState::Failed`] and abnormal stops.
        reason: Option<String>,
        /// The boot the state was recorded in (`/proc/sys/kernel/random/boot_id`).
        boot_id: Option<String>,
    },
    /// A box was removed.
    Removed {
        /// Its id.
        id: String,
    },
}

/// Frames `record` for appending to the journal.
pub fn encode_record(record: &JournalRecord) -> Result<Vec<u8>, FrameError> {
    let payload = postcard::to_allocvec(record).map_err(FrameError::Payload)?;
    if payload.len() > MAX_RECORD_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    // Fits: checked against MAX_RECORD_LEN above.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Why the journal's intact part ended before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailDamage {
    /// The last record is cut short (a write that did not finish).
    Torn,
    /// A record's length is impossible.
    BadLength(usize),
    /// A record's checksum does not match its payload.
    BadChecksum,
    /// A record's checksum matches but it does not decode (written by another version?).
    Undecodable,
}

impl core::fmt::Display for TailDamage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TailDamage::Torn => f.write_str("the last record is incomplete"),
            TailDamage::BadLength(len) => write!(f, "a record claims {len} bytes"),
            TailDamage::BadChecksum => f.write_str("a record's checksum does not match"),
            TailDamage::Undecodable => f.write_str("a record does not decode"),
        }
    }
}

/// What [`decode_journal`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Every intact record, in order.
    pub records: Vec<JournalRecord>,
    /// Bytes from the start that hold exactly those records.
    pub valid_len: usize,
    /// Why decoding stopped before the end, if it did.
    pub damage: Option<TailDamage>,
}

/// Decodes records from the start of `bytes` until the end or the first damaged record.
pub fn decode_journal(bytes: &[u8]) -> Decoded {
    let mut records = Vec::new();
    let mut at = 0;
    let damage = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        let Some((header, body)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            break Some(TailDamage::Torn);
        };
        let (len_bytes, crc_bytes) = header.split_at(4);
        let len = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(crc_bytes.try_into().unwrap_or_default());
        if len > MAX_RECORD_LEN {
            break Some(TailDamage::BadLength(len));
        }
        let Some(payload) = body.get(..len) else {
            break Some(TailDamage::Torn);
        };
        if crc32fast::hash(payload) != crc {
            break Some(TailDamage::BadChecksum);
        }
        match postcard::from_bytes::<JournalRecord>(payload) {
            Ok(record) => records.push(record),
            Err(_) => break Some(TailDamage::Undecodable),
        }
        at += RECORD_HEADER_LEN + len;
    };
    Decoded {
        records,
        valid_len: at,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn records() -> Vec<JournalRecord> {
        vec![
            JournalRecord::Created {
                id: "0123456789abcdef".to_string(),
                name: Some("web".to_string()),
                created_unix_ms: 1_700_000_000_000,
            },
            JournalRecord::State {
                id: "0123456789abcdef".to_string(),
                state: BoxState::Running,
                pid: Some(4242),
                reason: None,
                boot_id: Some("b00t".to_string()),
            },
            JournalRecord::Removed {
                id: "0123456789abcdef".to_string(),
            },
        ]
    }

    fn journal() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for record in records() {
            bytes.extend(encode_record(&record).unwrap());
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    #[test]
    fn records_round_trip() {
        let (bytes, _) = journal();
        let decoded = decode_journal(&bytes);
        assert_eq!(decoded.records, records());
        assert_eq!(decoded.valid_len, bytes.len());
        assert_eq!(decoded.damage, None);
    }

    #[test]
    fn a_cut_at_every_byte_keeps_every_whole_record_before_it() {
        let (bytes, ends) = journal();
        for cut in 0..bytes.len() {
            let decoded = decode_journal(&bytes[..cut]);
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(decoded.records, records()[..whole], "cut at {cut}");
            let valid = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(decoded.valid_len, valid, "cut at {cut}");
            let expected = (cut != valid).then_some(TailDamage::Torn);
            assert_eq!(decoded.damage, expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_loses_only_that_record_and_what_follows() {
        let (bytes, ends) = journal();
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let decoded = decode_journal(&damaged);
                let hit = ends.iter().position(|&end| byte < end).unwrap();
                assert_eq!(
                    decoded.records,
                    records()[..hit],
                    "bit {bit} of byte {byte}"
                );
                assert!(decoded.damage.is_some(), "bit {bit} of byte {byte}");
            }
        }
    }

    #[test]
    fn impossible_lengths_are_damage_not_allocations() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0; 16]);
        let decoded = decode_journal(&bytes);
        assert!(decoded.records.is_empty());
        assert_eq!(
            decoded.damage,
            Some(TailDamage::BadLength(u32::MAX as usize))
        );
    }
}
