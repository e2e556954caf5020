//! Micro-benchmarks of the store's hot paths: chunking, hashing, ingest, tree encoding,
//! snapshots, and working out a big file's patch.
//! `make bench` runs them (`cargo bench -p cachesync-objects`); throughput is per core.
//!
//! "bare" is the floor the store is measured against: FastCDC (2020, 16/64/256 KiB) over the
//! buffer with blake3 of each chunk, nothing stored. The store's ingest adds the whole-file
//! hash, the chunk lookups and writes (RocksDB BlobDB, lz4).

#![allow(missing_docs)]

use std::hint::black_box;

use cachesync_objects::chunker::ChunkerParams;
use cachesync_objects::{Entry, EntryKind, FileId, Store, Tree};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fastcdc::v2020::FastCDC;

const BUFFER: usize = 64 << 20;

/// Incompressible bytes (xorshift), as most of a store's new data is after lz4.
fn random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn chunking_and_hashing(c: &mut Criterion) {
    let data = random(BUFFER, 1);
    let p = ChunkerParams::DEFAULT;
    let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
    let mut g = c.benchmark_group("chunk+hash");
    g.throughput(Throughput::Bytes(BUFFER as u64));
    g.sample_size(10);
    g.bench_function("fastcdc only", |b| {
        b.iter(|| FastCDC::new(&data, min, avg, max).count());
    });
    g.bench_function("blake3 only (one thread)", |b| {
        b.iter(|| blake3::hash(black_box(&data)));
    });
    g.bench_function("bare: fastcdc + blake3 per chunk", |b| {
        b.iter(|| {
            FastCDC::new(&data, min, avg, max).fold(0u8, |acc, ch| {
                acc ^ blake3::hash(&data[ch.offset..ch.offset + ch.length]).as_bytes()[0]
            })
        });
    });
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let data = random(BUFFER, 2);
    let mut g = c.benchmark_group("store ingest");
    g.throughput(Throughput::Bytes(BUFFER as u64));
    g.sample_size(10);
    // New content: every chunk is written (a fresh store per iteration, made untimed).
    g.bench_function("new content", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::create(&dir.path().join("store")).expect("create the store");
                (dir, store)
            },
            |(dir, store)| {
                store.ingest(&data[..]).expect("ingest");
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    // Known content: chunked and hashed, every chunk already stored (a re-scan of a touched
    // but unchanged file).
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(&dir.path().join("store")).expect("create the store");
    store.ingest(&data[..]).expect("ingest");
    g.bench_function("known content", |b| {
        b.iter(|| store.ingest(&data[..]).expect("ingest"));
    });
    g.finish();
}

/// 1,000 small files (100 B to 8 KiB, 4 MiB in all), as a first copy of many small files
/// stores them: one `ingest` each, or one `ingest_many` of 64 at a time (the fetch's batch).
fn small_files(c: &mut Criterion) {
    let files: Vec<Vec<u8>> = (0..1000u64)
        .map(|i| random(100 + (i as usize * 7_919) % 8_092, i + 10))
        .collect();
    let fresh = || {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("store")).expect("create the store");
        (dir, store)
    };
    let mut g = c.benchmark_group("store ingest, 1000 small files");
    g.throughput(Throughput::Elements(files.len() as u64));
    g.sample_size(10);
    g.bench_function("ingest, one file at a time", |b| {
        b.iter_batched(
            fresh,
            |(dir, store)| {
                for f in &files {
                    store.ingest(&f[..]).expect("ingest");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("ingest_many, 64 at a time", |b| {
        b.iter_batched(
            fresh,
            |(dir, store)| {
                for batch in files.chunks(64) {
                    let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    store.ingest_many(&slices).expect("ingest");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn trees(c: &mut Criterion) {
    let mut tree = Tree::default();
    for i in 0..1000u32 {
        let mut e = Entry::new(format!("file-{i:05}.txt").as_bytes(), EntryKind::File);
        e.size = u64::from(i) * 100;
        e.mtime_ns = 1_700_000_000_000_000_000 + i64::from(i);
        e.mode = 0o644;
        e.file = Some(FileId::of(&i.to_le_bytes()));
        tree.entries.push(e);
    }
    let bytes = tree.encode();
    let mut g = c.benchmark_group("tree, 1000 entries");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("encode", |b| b.iter(|| black_box(&tree).encode()));
    g.bench_function("decode", |b| {
        b.iter(|| Tree::decode(black_box(&bytes)).expect("decode"))
    });
    g.bench_function("id", |b| b.iter(|| black_box(&tree).id()));
    g.finish();
}

/// A snapshot of 100,000 files in 2,000 directories (20 of 100 directories of 50 files)
/// written whole, as a commit writes the new base and the remote snapshot; the second and
/// later writes find every tree already stored.
fn flat_trees(c: &mut Criterion) {
    let mut flat = cachesync_objects::Flat::new();
    for d in 0..2000u32 {
        let top = format!("top{:02}", d / 100);
        let dir = format!("{top}/dir{d:04}");
        for p in [&top, &dir] {
            let mut e = Entry::new(
                p.rsplit('/').next().expect("a name").as_bytes(),
                EntryKind::Dir,
            );
            e.mode = 0o755;
            flat.insert(p.as_bytes().to_vec(), e);
        }
        for f in 0..50u32 {
            let name = format!("file-{f:03}.txt");
            let mut e = Entry::new(name.as_bytes(), EntryKind::File);
            e.size = u64::from(f) * 100;
            e.mode = 0o644;
            e.file = Some(FileId::of(&(d * 100 + f).to_le_bytes()));
            flat.insert(format!("{dir}/{name}").into_bytes(), e);
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(&dir.path().join("store")).expect("store");
    let mut g = c.benchmark_group("snapshot of 100,000 files");
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.bench_function("write_flat", |b| {
        b.iter(|| store.write_flat(black_box(&flat)).expect("write"));
    });
    g.finish();
}

/// What a push of a big file with one byte changed works out before it writes: the pieces
/// that make the new content out of the share's (`patch::plan`), for a 2 GiB file of
/// 64 KiB chunks (32,768) with one chunk in the middle changed, both ways a patch is made.
fn patch_plan(c: &mut Criterion) {
    use cachesync_objects::patch::{plan, Moves};
    use cachesync_objects::{ChunkId, FileObject};
    let chunks: Vec<(ChunkId, u32)> = (0..32_768u32)
        .map(|i| (ChunkId::of(&i.to_le_bytes()), 64 << 10))
        .collect();
    let base = FileObject {
        id: FileId::of(b"base"),
        size: 2 << 30,
        chunks,
    };
    let mut target = base.clone();
    target.id = FileId::of(b"target");
    target.chunks[16_384].0 = ChunkId::of(b"changed");
    let mut g = c.benchmark_group("patch plan, 2 GiB, one chunk changed");
    g.throughput(Throughput::Elements(32_768));
    for (name, moves) in [("copy", Moves::Anywhere), ("in place", Moves::InPlace)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let pieces = plan(black_box(&base), black_box(&target), moves);
                assert_eq!(pieces.len(), 3, "kept, written, kept");
                pieces
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    chunking_and_hashing,
    ingest,
    small_files,
    trees,
    flat_trees,
    patch_plan
);
criterion_main!(benches);
