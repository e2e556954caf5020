//! The index: per path, the local stat cache that lets an unchanged workspace be checked with
//! `lstat` alone, as `git status` does.
//!
//! An entry records the stat fields seen when the file's content was last hashed, the content
//! id, and when it was recorded. A file whose stat fields all match is taken as unchanged,
//! except when it is *racy*: modified within [`RACY_WINDOW_NS`] before it was recorded, when
//! a later write within the timestamp granularity could leave the stat unchanged. Racy files
//! are hashed again (and re-recorded, so they stop being racy).

use cachesync_objects::{keys, Batch, FileId, Store};

use crate::error::Result;

/// A modification this close before the recording time makes the entry untrustworthy.
pub const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// The stat cache of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Size.
    pub size: u64,
    /// mtime, ns.
    pub mtime_ns: i64,
    /// ctime, ns.
    pub ctime_ns: i64,
    /// Inode number (local file system: stable).
    pub ino: u64,
    /// Full st_mode.
    pub mode: u32,
    /// Content id.
    pub file: FileId,
    /// When it was recorded, ns.
    pub recorded_ns: i64,
}

/// An entry's stat fields without its content id: what the applier keeps of each file it
/// writes, whose content is its plan step's (48 bytes, where a path and a whole entry were
/// about 160 at a million files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size.
    pub size: u64,
    /// mtime, ns.
    pub mtime_ns: i64,
    /// ctime, ns.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Full st_mode.
    pub mode: u32,
    /// When it was taken, ns.
    pub recorded_ns: i64,
}

impl Stat {
    /// The stat of `md`, taken now.
    pub fn of(md: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            mode: md.mode(),
            recorded_ns: crate::now_ns(),
        }
    }

    /// The index entry of a file with this stat and content `file`.
    pub fn with_file(self, file: FileId) -> IndexEntry {
        IndexEntry {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            mode: self.mode,
            file,
            recorded_ns: self.recorded_ns,
        }
    }
}

impl IndexEntry {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(76);
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.mtime_ns.to_le_bytes());
        v.extend_from_slice(&self.ctime_ns.to_le_bytes());
        v.extend_from_slice(&self.ino.to_le_bytes());
        v.extend_from_slice(&self.mode.to_le_bytes());
        v.extend_from_slice(self.file.as_bytes());
        v.extend_from_slice(&self.recorded_ns.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<IndexEntry> {
        if v.len() != 76 {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        Some(IndexEntry {
            size: u64_at(0),
            mtime_ns: u64_at(8) as i64,
            ctime_ns: u64_at(16) as i64,
            ino: u64_at(24),
            mode: u32::from_le_bytes(v[32..36].try_into().expect("4 bytes")),
            file: FileId::from_slice(&v[36..68])?,
            recorded_ns: u64_at(68) as i64,
        })
    }

    /// True when `other`'s stat fields match and the entry is not racy.
    pub fn still_valid(&self, other: &IndexEntry) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.ino == other.ino
            && self.mode == other.mode
            && self.mtime_ns.saturating_add(RACY_WINDOW_NS) < self.recorded_ns
    }
}

/// The index in memory: the stat cache of every file, by path. Hashed with foldhash (seeded
/// per process, as std's SipHash is, so names chosen to collide cannot be prepared in
/// advance): a walk looks up every path in it, and SipHash was a twentieth of a status.
///
/// An [`indexmap::IndexMap`]: its entries are one list, and its table holds an 8-byte slot
/// each. A `HashMap` held whole entries in its table, sized to the next power of two: 220 MB
/// at a million files (heaptrack), the largest thing a no-change sync held.
pub type Index = indexmap::IndexMap<Vec<u8>, IndexEntry, foldhash::fast::RandomState>;

/// Loads the whole index (one ordered scan).
///
/// # Errors
/// Store errors.
pub fn load(store: &Store) -> Result<Index> {
    // Inserted as read: RocksDB cannot say how many keys there are (its estimate is 0 when
    // table statistics are not loaded at open, as here), and growing costs a copy of the
    // list and a new table of slots, whose hashes the entries keep.
    let mut out = Index::default();
    store.table(keys::CF_INDEX).for_each_prefix(b"", |k, v| {
        if let Some(e) = IndexEntry::decode(v) {
            out.insert(k.to_vec(), e);
        }
        true
    })?;
    Ok(out)
}

/// The entry of one path (one read), as [`load`] would give it.
///
/// # Errors
/// Store errors.
pub fn get(store: &Store, path: &[u8]) -> Result<Option<IndexEntry>> {
    Ok(store
        .table(keys::CF_INDEX)
        .get(path)?
        .and_then(|v| IndexEntry::decode(&v)))
}

/// Adds "record `entry` for `path`" to a batch.
pub fn put(batch: &mut Batch, path: &[u8], entry: &IndexEntry) {
    batch.put(keys::CF_INDEX, path, &entry.encode());
}

/// Adds "forget `path`" to a batch.
pub fn remove(batch: &mut Batch, path: &[u8]) {
    batch.delete(keys::CF_INDEX, path);
}
