//! How to turn one file's content into another's by moving what both hold and writing only
//! the rest: the plan behind patching a big remote file instead of sending it whole.
//!
//! Both contents are chunk lists (content-defined, so an edit moves few boundaries). A chunk
//! of the target that the base also holds is *kept* (copied from where the base has it);
//! every other range is *written* from the store. Kept ranges that follow each other in
//! both files are merged, so an unchanged file is one piece.

use std::collections::HashMap;

use crate::file::FileObject;
use crate::id::ChunkId;

/// One piece of the target, in target order; together they cover it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `len` bytes the base holds at `from`, going to `at` in the target.
    Keep {
        /// Offset in the base.
        from: u64,
        /// Offset in the target.
        at: u64,
        /// Length.
        len: u64,
    },
    /// The target's chunk `chunk` (of `len` bytes), written at `at`.
    Write {
        /// The chunk (its bytes come from the store).
        chunk: ChunkId,
        /// Offset in the target.
        at: u64,
        /// Length.
        len: u64,
    },
}

impl Piece {
    /// Where the piece starts in the target.
    pub fn at(&self) -> u64 {
        match *self {
            Piece::Keep { at, .. } | Piece::Write { at, .. } => at,
        }
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        match *self {
            Piece::Keep { len, .. } | Piece::Write { len, .. } => len,
        }
    }

    /// True for a piece of no bytes (never produced by [`plan`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where each piece of the base may be taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moves {
    /// A kept chunk may come from anywhere in the base (a copy into a new file).
    Anywhere,
    /// Only a chunk the base holds at the same offset is kept (a patch of the file in
    /// place, where moving bytes would overwrite what a later piece still needs).
    InPlace,
}

/// The pieces that make `target` out of `base`.
pub fn plan(base: &FileObject, target: &FileObject, moves: Moves) -> Vec<Piece> {
    let mut in_base: HashMap<ChunkId, u64> = HashMap::new();
    let mut at_offset: HashMap<u64, ChunkId> = HashMap::new();
    let mut off = 0u64;
    for (id, len) in &base.chunks {
        in_base.entry(*id).or_insert(off);
        at_offset.insert(off, *id);
        off += u64::from(*len);
    }
    let mut pieces: Vec<Piece> = Vec::new();
    let mut at = 0u64;
    for (id, len) in &target.chunks {
        let len = u64::from(*len);
        let from = match moves {
            Moves::Anywhere => in_base.get(id).copied(),
            Moves::InPlace => (at_offset.get(&at) == Some(id)).then_some(at),
        };
        let piece = match from {
            Some(from) => Piece::Keep { from, at, len },
            None => Piece::Write {
                chunk: *id,
                at,
                len,
            },
        };
        match (pieces.last_mut(), piece) {
            (
                Some(Piece::Keep {
                    from: f,
                    at: a,
                    len: l,
                }),
                Piece::Keep { from, at, len },
            ) if *f + *l == from && *a + *l == at => *l += len,
            _ => pieces.push(piece),
        }
        at += len;
    }
    pieces
}

/// Bytes the pieces write (the rest is kept).
pub fn written(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .filter(|p| matches!(p, Piece::Write { .. }))
        .map(Piece::len)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::ChunkerParams;
    use crate::id::FileId;

    fn object(data: &[u8]) -> (FileObject, HashMap<ChunkId, Vec<u8>>) {
        let mut chunks = Vec::new();
        let mut bytes = HashMap::new();
        for c in ChunkerParams::DEFAULT.chunks(data) {
            let c = c.expect("in memory");
            let id = ChunkId::of(&c);
            chunks.push((id, u32::try_from(c.len()).expect("small")));
            bytes.insert(id, c);
        }
        let object = FileObject {
            id: FileId(*blake3::hash(data).as_bytes()),
            size: data.len() as u64,
            chunks,
        };
        (object, bytes)
    }

    /// Builds the target as a patcher would: kept ranges from the base, the rest from chunks.
    /// With `Moves::InPlace` it starts from the base's bytes and writes over them, then cuts
    /// the length.
    fn apply(
        base: &[u8],
        pieces: &[Piece],
        bytes: &HashMap<ChunkId, Vec<u8>>,
        in_place: bool,
        size: u64,
    ) -> Vec<u8> {
        let mut out = if in_place { base.to_vec() } else { Vec::new() };
        for p in pieces {
            match *p {
                Piece::Keep { from, at, len } => {
                    if in_place {
                        assert_eq!(from, at, "in place keeps only what stays put");
                    } else {
                        assert_eq!(out.len() as u64, at, "pieces in target order");
                        out.extend_from_slice(&base[from as usize..(from + len) as usize]);
                    }
                }
                Piece::Write { chunk, at, len } => {
                    let data = &bytes[&chunk];
                    assert_eq!(data.len() as u64, len);
                    let at = at as usize;
                    if out.len() < at + data.len() {
                        out.resize(at + data.len(), 0);
                    }
                    out[at..at + data.len()].copy_from_slice(data);
                }
            }
        }
        out.truncate(size as usize);
        out
    }

    fn seeded(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    fn check(base: &[u8], target: &[u8]) -> (u64, u64) {
        let (b, _) = object(base);
        let (t, bytes) = object(target);
        let mut sent = Vec::new();
        for (moves, in_place) in [(Moves::Anywhere, false), (Moves::InPlace, true)] {
            let pieces = plan(&b, &t, moves);
            let mut at = 0;
            for p in &pieces {
                assert_eq!(p.at(), at, "pieces cover the target in order");
                assert!(!p.is_empty());
                at += p.len();
            }
            assert_eq!(at, t.size);
            assert_eq!(
                apply(base, &pieces, &bytes, in_place, t.size),
                target,
                "{moves:?}"
            );
            sent.push(written(&pieces));
        }
        (sent[0], sent[1])
    }

    #[test]
    fn one_byte_changed_writes_one_chunk_or_two() {
        let base = seeded(8 << 20, 7);
        let mut target = base.clone();
        target[3 << 20] ^= 1;
        let (anywhere, in_place) = check(&base, &target);
        assert!(anywhere > 0 && anywhere <= 2 * 256 * 1024, "{anywhere}");
        assert_eq!(anywhere, in_place, "nothing moved");
    }

    #[test]
    fn an_insertion_moves_the_rest_only_when_copying() {
        let base = seeded(4 << 20, 3);
        let mut target = base[..1 << 20].to_vec();
        target.extend_from_slice(b"inserted bytes");
        target.extend_from_slice(&base[1 << 20..]);
        let (anywhere, in_place) = check(&base, &target);
        assert!(anywhere <= 2 * 256 * 1024, "{anywhere}");
        // In place, everything after the insertion moved: written again.
        assert!(in_place >= 3 << 20, "{in_place}");
    }

    #[test]
    fn growing_shrinking_and_unrelated_contents() {
        let base = seeded(2 << 20, 11);
        let mut longer = base.clone();
        longer.extend_from_slice(&seeded(300_000, 5));
        check(&base, &longer);
        check(&longer, &base);
        check(&base, &base[..1000]);
        check(&base, &seeded(1 << 20, 99));
        check(&base, b"");
        check(b"", &base);
        let (same, _) = check(&base, &base);
        assert_eq!(same, 0);
        let (b, _) = object(&base);
        assert_eq!(plan(&b, &b, Moves::Anywhere).len(), 1, "one kept piece");
    }

    #[test]
    fn repeated_chunks_are_kept_from_the_first_copy() {
        let block = seeded(1 << 20, 21);
        let mut base = block.clone();
        base.extend_from_slice(&block);
        let mut target = block.clone();
        target.extend_from_slice(&seeded(1 << 20, 22));
        target.extend_from_slice(&block);
        check(&base, &target);
    }
}
