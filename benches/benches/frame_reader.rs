//! `FrameReader` throughput: 4 MiB of small frames pushed in large chunks (as a host reading a
//! busy agent's socket sees them).

use boxlite_proto::agent::{ExecInput, FrameReader};
use boxlite_proto::encode_frame;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// 4 MiB of 64-byte stdin frames.
fn stream() -> Vec<u8> {
    let frame = encode_frame(&ExecInput::Stdin(vec![7; 57])).unwrap();
    let count = (4 << 20) / frame.len();
    frame.repeat(count)
}

fn decode(stream: &[u8], chunk: usize) -> usize {
    let mut reader = FrameReader::new();
    let mut frames = 0;
    for piece in stream.chunks(chunk) {
        reader.push(piece);
        while let Some(input) = reader.next_frame::<ExecInput>().unwrap() {
            assert!(matches!(input, ExecInput::Stdin(_)));
            frames += 1;
        }
    }
    frames
}

fn frame_reader(c: &mut Criterion) {
    let stream = stream();
    let mut group = c.benchmark_group("frame_reader");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.sample_size(10);
    for chunk in [64 << 10, 1 << 20] {
        group.bench_function(format!("{} KiB chunks", chunk >> 10), |b| {
            b.iter(|| decode(&stream, chunk))
        });
    }
    group.finish();
}

criterion_group!(benches, frame_reader);
criterion_main!(benches);
