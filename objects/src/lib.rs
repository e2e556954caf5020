//! cachesync's content-addressed store.
//!
//! Everything cachesync knows about file contents lives here, written once and named by its
//! blake3 hash: chunks (cut by FastCDC), file objects (the chunk list of one file), trees (one
//! directory's sorted entries) and snapshots (a root tree, its parent and a time). Refs name
//! the snapshots the engine cares about (`base`, `remote`). Every read is verified against its
//! hash, so corruption is reported and never served.
//!
//! RocksDB is reached only through [`db`]; the column families and key prefixes are in
//! [`keys`]. The engine keeps its own records (index, journal, conflicts) in named tables of
//! the same database, through [`Table`], so that one write batch can change them and the refs
//! atomically.

pub mod chunker;
pub mod db;
pub mod encoding;
mod error;
pub mod failpoint;
pub mod file;
pub mod flat;
pub mod fsck;
pub mod id;
pub mod keys;
pub mod patch;
pub mod snapshot;
pub mod store;
pub mod tree;

pub use db::{Batch, Table};
pub use error::{is_no_space_io, ObjectError, Result};
pub use file::FileObject;
pub use flat::Flat;
pub use fsck::{FsckProblem, FsckReport};
pub use id::{ChunkId, FileId, SnapshotId, TreeId};
pub use snapshot::Snapshot;
pub use store::{GcReport, IngestStats, Store, FORMAT_VERSION};
pub use tree::{Entry, EntryKind, Name, Tree};
