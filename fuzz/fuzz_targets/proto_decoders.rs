//! Every decoder of `boxlite-proto` on the same arbitrary bytes: agent frames (`Hello`,
//! `Request`, `ExecInput`, `Event`, `Ready`), the streaming `FrameReader`, the shim
//! configuration frame, exit records (the JSON of the exit file), journal records and the
//! whole-journal decoder, and the VM outcome's exit-code mapping.
//!
//! Oracles, besides "never panics":
//! - round trip: whatever decodes re-encodes, and the re-encoding decodes to an equal value
//!   (encoding must not lose anything a decoder accepted, else a record read back from disk or
//!   the wire would change meaning when written out again);
//! - `FrameReader` fed in chunks yields exactly the frames `decode_frame` finds walking the
//!   same stream header by header, and fails exactly where that walk fails;
//! - `decode_journal`: the intact prefix it reports decodes alone to the same records with no
//!   damage, and "no damage" means it consumed every byte.

#![no_main]

use std::fmt::Debug;

use boxlite_proto::agent::{Event, ExecInput, FrameReader, Hello, Ready, Request};
use boxlite_proto::journal::{decode_journal, encode_record};
use boxlite_proto::{
    decode_frame, encode_frame, frame_payload_len, BoxState, ExitRecord, JournalRecord, LogLevel,
    ShimConfig, VmOutcome, FRAME_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `bytes` as one frame of `T`; a value that decodes must survive a round trip.
fn frame_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(value) = decode_frame::<T>(bytes) {
        let again = encode_frame(&value).expect("a decoded value re-encodes");
        let back = decode_frame::<T>(&again).expect("a re-encoded frame decodes");
        assert_eq!(back, value, "frame round trip changed the value");
    }
}

/// The version-checked decoders: `from_frame` after `to_frame` gives the same value back.
fn versioned_round_trips(bytes: &[u8]) {
    if let Ok(hello) = Hello::from_frame(bytes) {
        let again = hello.to_frame().expect("a decoded hello re-encodes");
        assert_eq!(Hello::from_frame(&again).expect("decodes"), hello);
    }
    if let Ok(ready) = Ready::from_frame(bytes) {
        let again = ready.to_frame().expect("a decoded ready re-encodes");
        assert_eq!(Ready::from_frame(&again).expect("decodes"), ready);
    }
    if let Ok(config) = ShimConfig::from_frame(bytes) {
        let again = config.to_frame().expect("a decoded config re-encodes");
        assert_eq!(ShimConfig::from_frame(&again).expect("decodes"), config);
    }
}

/// What a correct stream splitter must find: frames one after another, each announced by
/// its header, until the bytes run out (`Ok`) or a header or payload is refused (`Err`).
fn frames_by_walking<T: DeserializeOwned>(mut stream: &[u8]) -> (Vec<T>, bool) {
    let mut frames = Vec::new();
    while let Some(header) = stream.first_chunk::<FRAME_HEADER_LEN>() {
        let Ok(len) = frame_payload_len(*header) else {
            return (frames, true);
        };
        let Some(frame) = stream.get(..FRAME_HEADER_LEN + len) else {
            break;
        };
        match decode_frame(frame) {
            Ok(value) => frames.push(value),
            Err(_) => return (frames, true),
        }
        stream = &stream[frame.len()..];
    }
    (frames, false)
}

/// Feeds `stream` to a `FrameReader` `chunk` bytes at a time, taking every frame as soon as
/// it is complete, and compares with [`frames_by_walking`].
fn frame_reader_agrees<T: DeserializeOwned + PartialEq + Debug>(stream: &[u8], chunk: usize) {
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    let mut failed = false;
    'feed: for piece in stream.chunks(chunk) {
        reader.push(piece);
        loop {
            match reader.next_frame::<T>() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    let (expected, expected_failure) = frames_by_walking::<T>(stream);
    assert_eq!(frames, expected, "FrameReader split the stream differently");
    assert_eq!(failed, expected_failure, "FrameReader failed elsewhere");
    if !failed {
        let consumed: usize = stream.len() - reader.buffered();
        let (again, _) = frames_by_walking::<T>(&stream[..consumed]);
        assert_eq!(again.len(), frames.len(), "buffered() miscounts");
    }
}

/// The journal decoder's consistency, and the round trip of every record it accepted.
fn journal_consistent(bytes: &[u8]) {
    let decoded = decode_journal(bytes);
    assert!(decoded.valid_len <= bytes.len());
    assert_eq!(
        decoded.damage.is_none(),
        decoded.valid_len == bytes.len(),
        "damage must be reported exactly when bytes are left over"
    );
    let prefix = decode_journal(&bytes[..decoded.valid_len]);
    assert_eq!(prefix.records, decoded.records);
    assert_eq!(prefix.damage, None);
    let mut again = Vec::new();
    for record in &decoded.records {
        again.extend(encode_record(record).expect("a decoded record re-encodes"));
    }
    let back = decode_journal(&again);
    assert_eq!(
        back.records, decoded.records,
        "journal round trip changed records"
    );
    assert_eq!((back.valid_len, back.damage), (again.len(), None));
}

/// The exit file is JSON; whatever parses must serialise and parse back the same.
fn exit_json_round_trip(bytes: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<ExitRecord>(bytes) {
        let again = serde_json::to_vec(&record).expect("a parsed record serialises");
        let back: ExitRecord = serde_json::from_slice(&again).expect("and parses again");
        assert_eq!(back, record);
    }
}

fuzz_target!(|data: &[u8]| {
    frame_round_trip::<Hello>(data);
    frame_round_trip::<Request>(data);
    frame_round_trip::<ExecInput>(data);
    frame_round_trip::<Event>(data);
    frame_round_trip::<Ready>(data);
    frame_round_trip::<ShimConfig>(data);
    frame_round_trip::<ExitRecord>(data);
    frame_round_trip::<JournalRecord>(data);
    frame_round_trip::<BoxState>(data);
    versioned_round_trips(data);
    if let Some((&first, stream)) = data.split_first() {
        let chunk = 1 + usize::from(first % 64);
        frame_reader_agrees::<ExecInput>(stream, chunk);
        frame_reader_agrees::<Event>(stream, chunk);
        if let Some(outcome) = VmOutcome::from_exit_code(first) {
            assert_eq!(
                outcome.exit_code(),
                first,
                "exit code mapping is not one to one"
            );
        }
    }
    journal_consistent(data);
    exit_json_round_trip(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LogLevel::parse(text);
    }
});
