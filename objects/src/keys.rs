//! Column-family names and fixed keys, in one place.
//!
//! Objects (chunks, files, trees, snapshots) are keyed by their 32-byte id. The engine's tables
//! use keys of their own making, documented where they are written.

/// Chunk bytes, keyed by [`crate::ChunkId`]. Stored in blob files (BlobDB) so compaction does
/// not rewrite them.
pub const CF_CHUNKS: &str = "chunks";
/// File objects, keyed by [`crate::FileId`].
pub const CF_FILES: &str = "files";
/// Trees, keyed by [`crate::TreeId`].
pub const CF_TREES: &str = "trees";
/// Snapshots, keyed by [`crate::SnapshotId`].
pub const CF_SNAPSHOTS: &str = "snapshots";
/// Refs: name (UTF-8) → snapshot id.
pub const CF_REFS: &str = "refs";
/// Store metadata: format version, chunker parameters.
pub const CF_META: &str = "meta";
/// The engine's index (stat cache and presence per path).
pub const CF_INDEX: &str = "index";
/// The engine's journal (operations and plans).
pub const CF_JOURNAL: &str = "journal";
/// The engine's conflict records.
pub const CF_CONFLICTS: &str = "conflicts";
/// The engine's small state records (mode, remote identity).
pub const CF_STATE: &str = "state";

/// Every column family, in creation order.
pub const ALL_CFS: &[&str] = &[
    CF_CHUNKS,
    CF_FILES,
    CF_TREES,
    CF_SNAPSHOTS,
    CF_REFS,
    CF_META,
    CF_INDEX,
    CF_JOURNAL,
    CF_CONFLICTS,
    CF_STATE,
];

/// Meta key: the store format version (u32 little-endian).
pub const META_FORMAT: &[u8] = b"format";
/// Meta key: the chunker parameters (three u32 little-endian: min, avg, max).
pub const META_CHUNKER: &[u8] = b"chunker";

/// Ref naming the last snapshot both sides agreed on.
pub const REF_BASE: &str = "base";
/// Ref naming the last observed remote snapshot.
pub const REF_REMOTE: &str = "remote";
