//! Micro-benchmarks over 100,000 paths of what every sync and status does after its scans:
//! the three-way reconcile and the plan, the two-way walk of a status's per-side changes,
//! and the ignore rules applied to a stored tree. `make bench` runs them (`cargo bench -p
//! cachesync-engine`).

#![allow(missing_docs)]

use std::hint::black_box;

use cachesync_engine::ignore_rules::IgnoreRules;
use cachesync_engine::plan::{Direction, Plan};
use cachesync_engine::reconcile::{reconcile, zip2};
use cachesync_engine::scan::Flat;
use cachesync_objects::{Entry, EntryKind, FileId};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PATHS: u32 = 100_000;

/// 100,000 files in directories of 50.
fn tree() -> Flat {
    let mut flat = Flat::new();
    for i in 0..PATHS {
        if i % 50 == 0 {
            let dir = format!("dir{:05}", i / 50);
            let mut e = Entry::new(dir.as_bytes(), EntryKind::Dir);
            e.mode = 0o755;
            flat.insert(dir.into_bytes(), e);
        }
        let name = format!("file{i:06}.txt");
        let path = format!("dir{:05}/{name}", i / 50);
        let mut e = Entry::new(name.as_bytes(), EntryKind::File);
        e.mode = 0o644;
        e.size = u64::from(i % 8192);
        e.mtime_ns = 1_700_000_000_000_000_000 + i64::from(i);
        e.file = Some(FileId::of(&i.to_le_bytes()));
        flat.insert(path.into_bytes(), e);
    }
    flat
}

/// `base` with every `every`-th file given new content.
fn edited(base: &Flat, every: usize, salt: u8) -> Flat {
    let mut out = base.clone();
    for (n, (_, e)) in out.iter_mut().enumerate() {
        if e.kind == EntryKind::File && n % every == 0 {
            e.file = Some(FileId::of(&[salt, (n % 251) as u8]));
            e.mtime_ns += 1;
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let base = tree();
    let mut g = c.benchmark_group("reconcile, 100k paths");
    g.throughput(Throughput::Elements(u64::from(PATHS)));
    g.sample_size(20);
    g.bench_function("no change", |b| {
        b.iter(|| reconcile(black_box(&base), &base, &base));
    });
    let local = edited(&base, 97, 1);
    let remote = edited(&base, 89, 2);
    g.bench_function("1% changed on each side, then plan", |b| {
        b.iter(|| {
            let changes = reconcile(black_box(&base), &local, &remote);
            Plan::build(changes, Direction::Both)
        });
    });
    g.finish();
}

/// What `status` does per side (base against the workspace, base against the remote), and
/// what it does to a stored tree before using it (the ignore rules, applied as a walk with
/// today's rules would).
fn bench_status(c: &mut Criterion) {
    let base = tree();
    let local = edited(&base, 97, 1);
    let mut g = c.benchmark_group("status passes, 100k paths");
    g.throughput(Throughput::Elements(u64::from(PATHS)));
    g.sample_size(20);
    g.bench_function("zip2 of base and a side, 1% changed", |b| {
        b.iter(|| {
            zip2(black_box(&base), &local)
                .filter(|(_, x, y)| x != y)
                .count()
        });
    });
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(".cachesyncignore"),
        "target/\n*.o\n/build\n",
    )
    .expect("ignore file");
    let rules = IgnoreRules::load(dir.path()).expect("rules");
    g.bench_function("ignore rules over a stored tree", |b| {
        b.iter_batched(
            || base.clone(),
            |mut t| {
                rules.retain_unignored(&mut t);
                t
            },
            criterion::BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench, bench_status);
criterion_main!(benches);
