//! The runtime's bookkeeping, no VM: `Runtime::open` and `list` over a home with 1,000 boxes,
//! and `create` (one fsync'd journal append, the box folder and its options file).

use std::time::Duration;

use boxlite_lifecycle::testing::TempDir;
use boxlite_lifecycle::{BoxOptions, Runtime, RuntimeOptions};
use criterion::{criterion_group, criterion_main, Criterion};

const BOXES: usize = 1000;

fn open(dir: &TempDir) -> Runtime {
    Runtime::open(RuntimeOptions {
        home: Some(dir.path().to_path_buf()),
        ..RuntimeOptions::default()
    })
    .expect("open the runtime")
}

fn bench(c: &mut Criterion) {
    let home = TempDir::new();
    let rt = open(&home);
    for _ in 0..BOXES {
        rt.create(BoxOptions::default()).expect("create a box");
    }
    let mut group = c.benchmark_group("runtime");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("open, 1000 boxes", |b| b.iter(|| open(&home)));
    group.bench_function("list, 1000 boxes", |b| b.iter(|| rt.list().expect("list")));
    let scratch = TempDir::new();
    let fresh = open(&scratch);
    group.bench_function("create (journal append + folder + options, fsync'd)", |b| {
        b.iter(|| fresh.create(BoxOptions::default()).expect("create"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
