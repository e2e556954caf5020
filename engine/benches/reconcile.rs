//! Micro-benchmarks over 100,000 paths of what every sync and status does after its scans:
//! the three-way reconcile and the plan, the two-way walk of a status's per-side changes,
//! and the ignore rules applied to a stored tree; and the walk of a workspace of 10,000
//! files, whole (entries, content from the index) and for stats only (what a status that
//! gives its last answer again does). `make bench` runs them (`cargo bench -p
//! cachesync-engine`).

#![allow(missing_docs)]

use std::hint::black_box;

use cachesync_engine::ignore_rules::IgnoreRules;
use cachesync_engine::index::Index;
use cachesync_engine::plan::{Direction, Plan};
use cachesync_engine::reconcile::{reconcile, zip2};
use cachesync_engine::scan::{scan_local, scan_stats, Flat, Listings};
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

/// The workspace walks over 10,000 files (in 100 directories, dated an hour back so that
/// the index vouches for each), in the page cache.
fn bench_walk(c: &mut Criterion) {
    const FILES: u32 = 10_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("ws");
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for i in 0..FILES {
        let d = root.join(format!("d{:02}", i % 100));
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = d.join(format!("f{i:05}.txt"));
        std::fs::write(&p, format!("file {i}\n")).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("date");
    }
    let store = cachesync_objects::Store::create(&dir.path().join("store")).expect("store");
    let rules = IgnoreRules::load(&root).expect("rules");
    let first = scan_local(&root, &rules, &store, &Index::default()).expect("first walk");
    let index: Index = first.index_updates.into_iter().collect();
    let mut g = c.benchmark_group("workspace walk, 10k files");
    g.throughput(Throughput::Elements(u64::from(FILES)));
    g.sample_size(20);
    g.bench_function("entries, content from the index", |b| {
        b.iter(|| scan_local(&root, &rules, &store, &index).expect("walk"));
    });
    g.bench_function("stats only, and their digest", |b| {
        b.iter(|| {
            scan_stats(&root, &rules, &store, None, 0, None)
                .expect("walk")
                .prints
                .digest()
        });
    });
    // Every directory's listing kept by a first walk, as a status keeps them.
    let listed = scan_stats(&root, &rules, &store, None, 0, Some(&Listings::default()))
        .expect("listing walk")
        .listed;
    Listings::write(dir.path(), &listed);
    let listings = Listings::read(dir.path());
    assert_eq!(listings.len(), listed.len(), "the listings read back");
    g.bench_function("stats only, directories from their listings", |b| {
        b.iter(|| {
            scan_stats(&root, &rules, &store, None, 0, Some(&listings))
                .expect("walk")
                .prints
                .digest()
        });
    });
    g.finish();
}

criterion_group!(benches, bench, bench_status, bench_walk);
criterion_main!(benches);
