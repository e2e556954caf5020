//! Hostile input for the store's decoders (part of the fault suite): every record read back
//! from disk (a tree, a snapshot, a file object) may have been damaged or forged. Decoding
//! arbitrary bytes, and valid encodings with bytes flipped, cut short or extended, must never
//! panic; whatever still decodes must encode again to bytes that decode to the same thing.

use cachesync_objects::{
    ChunkId, Entry, EntryKind, FileId, FileObject, Snapshot, SnapshotId, Tree, TreeId,
};
use proptest::prelude::*;

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    // Every byte but `/` and NUL, up to 255 bytes (the longest name Linux allows).
    proptest::collection::vec(1u8..=255, 1..=255).prop_map(|n| {
        let n: Vec<u8> = n
            .into_iter()
            .map(|b| if b == b'/' { b'_' } else { b })
            .collect();
        if n == b"." || n == b".." {
            b"dot".to_vec()
        } else {
            n
        }
    })
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    proptest::collection::vec(
        (
            arb_name(),
            0usize..7,
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        0..12,
    )
    .prop_map(|items| {
        let mut entries: Vec<Entry> = items
            .into_iter()
            .map(|(name, k, mode, mtime, size, extra)| {
                let kind = [
                    EntryKind::File,
                    EntryKind::Dir,
                    EntryKind::Symlink,
                    EntryKind::Fifo,
                    EntryKind::Socket,
                    EntryKind::CharDevice,
                    EntryKind::BlockDevice,
                ][k];
                let mut e = Entry::new(&name, kind);
                e.mode = mode & 0o7777;
                e.mtime_ns = mtime;
                e.size = size;
                match kind {
                    EntryKind::File => e.file = Some(FileId::of(&extra)),
                    EntryKind::Dir => e.tree = Some(Box::new(TreeId::of(&extra))),
                    EntryKind::Symlink => e.target = extra,
                    EntryKind::CharDevice | EntryKind::BlockDevice => e.rdev = size,
                    _ => {}
                }
                e
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        Tree { entries }
    })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<[u8; 8]>(),
        proptest::option::of(any::<[u8; 8]>()),
        any::<i64>(),
        ".{0,80}",
    )
        .prop_map(|(root, parent, time_ns, description)| Snapshot {
            root: TreeId::of(&root),
            parent: parent.map(|p| SnapshotId::of(&p)),
            time_ns,
            description,
        })
}

fn arb_file() -> impl Strategy<Value = FileObject> {
    proptest::collection::vec((any::<[u8; 8]>(), 1u32..=262_144), 0..30).prop_map(|chunks| {
        let size: u64 = chunks.iter().map(|(_, n)| u64::from(*n)).sum();
        FileObject {
            id: FileId::of(&size.to_le_bytes()),
            size,
            chunks: chunks
                .into_iter()
                .map(|(seed, n)| (ChunkId::of(&seed), n))
                .collect(),
        }
    })
}

/// A valid encoding damaged: bytes flipped, cut short or extended.
fn damaged(bytes: Vec<u8>, flips: &[(usize, u8)], cut: usize, tail: &[u8]) -> Vec<u8> {
    let mut b = bytes;
    for &(at, x) in flips {
        if !b.is_empty() {
            let i = at % b.len();
            b[i] ^= x.max(1);
        }
    }
    if cut > 0 && cut < b.len() {
        b.truncate(b.len() - cut);
    }
    b.extend_from_slice(tail);
    b
}

/// 512 cases, or 20000 with `CACHESYNC_FAULTS=all` (`make faults`).
fn cases() -> u32 {
    if std::env::var("CACHESYNC_FAULTS").as_deref() == Ok("all") {
        20000
    } else {
        512
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn trees_round_trip_and_damaged_trees_never_panic(
        tree in arb_tree(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in 0usize..16,
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let bytes = tree.encode();
        prop_assert_eq!(Tree::decode(&bytes).expect("a valid tree decodes"), tree.clone());
        // Same entries, same bytes, whatever the order they were given in.
        let mut reversed = tree;
        reversed.entries.reverse();
        prop_assert_eq!(reversed.encode(), bytes.clone());
        // Noise after a valid header.
        let mut with_magic = b"CSTR\x01".to_vec();
        with_magic.extend_from_slice(&tail);
        with_magic.extend_from_slice(&bytes[bytes.len() / 2..]);
        let _ = Tree::decode(&with_magic);
        if let Ok(t) = Tree::decode(&damaged(bytes, &flips, cut, &tail)) {
            prop_assert_eq!(Tree::decode(&t.encode()).expect("re-encoded"), t);
        }
    }

    #[test]
    fn snapshots_round_trip_and_damaged_snapshots_never_panic(
        snap in arb_snapshot(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in 0usize..16,
        tail in proptest::collection::vec(any::<u8>(), 0..8),
        noise in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let bytes = snap.encode();
        prop_assert_eq!(Snapshot::decode(&bytes).expect("a valid snapshot decodes"), snap);
        if let Ok(s) = Snapshot::decode(&damaged(bytes, &flips, cut, &tail)) {
            prop_assert_eq!(Snapshot::decode(&s.encode()).expect("re-encoded"), s);
        }
        let _ = Snapshot::decode(&noise);
    }

    #[test]
    fn file_objects_round_trip_and_damaged_ones_never_panic(
        file in arb_file(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in 0usize..16,
        tail in proptest::collection::vec(any::<u8>(), 0..8),
        noise in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let bytes = file.encode();
        let id = file.id;
        prop_assert_eq!(FileObject::decode(id, &bytes).expect("a valid file decodes"), file);
        let _ = FileObject::decode(id, &damaged(bytes, &flips, cut, &tail));
        let _ = FileObject::decode(id, &noise);
    }
}
