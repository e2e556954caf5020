use std::path::PathBuf;

use crate::id::{ChunkId, FileId, SnapshotId, TreeId};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// RocksDB itself failed (I/O, corruption it detected, a lock held by another process).
    #[error("store database error at {path}: {message}")]
    Db {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A chunk is missing.
    #[error("chunk {0} is missing from the store")]
    MissingChunk(ChunkId),
    /// A chunk's bytes do not hash to its id.
    #[error("chunk {0} is corrupt (its bytes do not match its hash)")]
    CorruptChunk(ChunkId),
    /// A file object is missing.
    #[error("file object {0} is missing from the store")]
    MissingFile(FileId),
    /// A file object's chunks do not add up to its hash or size.
    #[error("file object {id} is corrupt: {detail}")]
    CorruptFile {
        /// The file.
        id: FileId,
        /// What did not match.
        detail: String,
    },
    /// A tree is missing.
    #[error("tree {0} is missing from the store")]
    MissingTree(TreeId),
    /// A snapshot is missing.
    #[error("snapshot {0} is missing from the store")]
    MissingSnapshot(SnapshotId),
    /// Stored bytes could not be decoded.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// Which record.
        what: String,
        /// Why.
        detail: String,
    },
    /// The store was written by another format version.
    #[error(
        "the store at {path} has format version {found}, this cachesync reads version {expected}"
    )]
    Format {
        /// The database directory.
        path: PathBuf,
        /// The version on disk.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// Reading the content to ingest failed.
    #[error("reading content to store: {0}")]
    Read(#[source] std::io::Error),
    /// Writing content out failed.
    #[error("writing content out: {0}")]
    Write(#[source] std::io::Error),
}

/// The store's result type.
pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

impl ObjectError {
    /// True when the store could not be written because its disk is full (or the user's
    /// quota is used up).
    pub fn is_no_space(&self) -> bool {
        match self {
            ObjectError::Db { message, .. } => {
                message.contains("No space left on device")
                    || message.contains("Disk quota exceeded")
            }
            ObjectError::Read(e) | ObjectError::Write(e) => is_no_space_io(e),
            _ => false,
        }
    }

    /// True when the error says stored data is damaged (as opposed to missing or I/O).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            ObjectError::CorruptChunk(_)
                | ObjectError::CorruptFile { .. }
                | ObjectError::Decode { .. }
        ) || matches!(self, ObjectError::Db { message, .. } if message.contains("Corruption"))
    }
}

/// True when an I/O error says the disk is full or the quota used up (ENOSPC, EDQUOT).
pub fn is_no_space_io(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() || c == rustix::io::Errno::DQUOT.raw_os_error()
    )
}
