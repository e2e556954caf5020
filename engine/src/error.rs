//! The engine's errors, and the exit codes of DESIGN.md they map to.

use std::path::PathBuf;

use cachesync_objects::ObjectError;

/// The error classes scripts rely on (DESIGN.md's exit codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: anything else.
    Other,
    /// 2: bad usage.
    Usage,
    /// 3: the operation needs the remote, which is not reachable (or not the right one).
    Disconnected,
    /// 4: the content is not in the cache.
    DisconData,
    /// 5: a permission only the server could vouch for.
    DisconPerm,
    /// 6: the cache budget is exhausted, or the workspace's disk is full.
    DisconFull,
    /// 7: conflicts remain.
    Conflicted,
}

impl ErrorCode {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::Other => 1,
            ErrorCode::Usage => 2,
            ErrorCode::Disconnected => 3,
            ErrorCode::DisconData => 4,
            ErrorCode::DisconPerm => 5,
            ErrorCode::DisconFull => 6,
            ErrorCode::Conflicted => 7,
        }
    }

    /// The symbolic name used in JSON (`"code"`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Other => "EOTHER",
            ErrorCode::Usage => "EUSAGE",
            ErrorCode::Disconnected => "EDISCONNECTED",
            ErrorCode::DisconData => "EDISCONDATA",
            ErrorCode::DisconPerm => "EDISCONPERM",
            ErrorCode::DisconFull => "EDISCONFULL",
            ErrorCode::Conflicted => "ECONFLICTED",
        }
    }
}

/// What can go wrong in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The remote did not answer, or answered with a network-class error.
    #[error("the remote is not reachable: {reason}")]
    Disconnected {
        /// What failed, and how.
        reason: String,
    },
    /// The content is not in the cache and the remote cannot provide it now.
    #[error("{path}: its content is not in the cache and the remote is not reachable ({reason})")]
    NotCached {
        /// The path, displayable.
        path: String,
        /// Why the remote could not provide it.
        reason: String,
    },
    /// Bringing content into the workspace would exceed the cache budget.
    #[error("the cache budget is exhausted: {needed} bytes needed, the budget is {budget} bytes; {refused} file(s) were not brought in")]
    CacheFull {
        /// Bytes the cache would use.
        needed: u64,
        /// The budget.
        budget: u64,
        /// Files not brought into the workspace.
        refused: usize,
    },
    /// The workspace was disconnected by hand: nothing may touch the remote.
    #[error("this workspace is disconnected (by hand); nothing touches the remote until `cachesync connect`")]
    Offline,
    /// The directory at the remote path is not the remote this workspace was cloned from.
    #[error("the directory at the remote path is not this workspace's remote: {reason}")]
    RemoteIdentity {
        /// What did not match.
        reason: String,
    },
    /// The run would delete more than the configured share of files.
    #[error(
        "refusing to delete {count} of {total} files on the {side} side (more than {percent}%)"
    )]
    DeletionGuard {
        /// The side the deletions would be made on.
        side: crate::plan::Side,
        /// Deletions planned.
        count: usize,
        /// Files in the base snapshot.
        total: usize,
        /// The configured limit.
        percent: u32,
    },
    /// Conflicts remain after the run did everything else.
    #[error("{0} conflict(s) remain")]
    Conflicted(usize),
    /// No workspace here.
    #[error("not a cachesync workspace (or any parent up to /): {0}")]
    NotAWorkspace(PathBuf),
    /// Another cachesync process holds the workspace.
    #[error("another cachesync process ({holder}) is working on this workspace")]
    Locked {
        /// Who holds it, as recorded in the lock file.
        holder: String,
    },
    /// Bad input from the user.
    #[error("{0}")]
    Usage(String),
    /// A local I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A remote I/O error that is not network-class (permission, no space, ...).
    #[error("remote {path}: {source}")]
    RemoteIo {
        /// The remote path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file kept changing while it was read; it is left for a later run.
    #[error("{path} kept changing while it was read; it is left for the next run")]
    Unstable {
        /// The path, displayable.
        path: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ObjectError),
    /// A disk is full (or the quota used up): the workspace's (with its store) or the
    /// remote's. Made from the I/O and store errors that say so by [`SyncError::classified`].
    #[error("no space left on the {side} disk: {detail}")]
    NoSpace {
        /// Whose disk.
        side: Disk,
        /// The error as the system or the store gave it.
        detail: String,
    },
    /// A record of the store (a conflict, a journal operation, a state record) does not
    /// decode: it is an error, never taken for "no record" or for a default.
    #[error("{record} in the store cannot be read: {detail}")]
    DamagedRecord {
        /// Which record: its table and key, for people (`conflict record of PATH`,
        /// `journal operation 12`, `state record mode`).
        record: String,
        /// What the decoder said.
        detail: String,
    },
    /// The configuration is invalid.
    #[error("configuration {path}: {detail}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Whose disk is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disk {
    /// The disk that holds the workspace and its store.
    Workspace,
    /// The remote's (the server's) disk.
    Remote,
}

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Disk::Workspace => "workspace's",
            Disk::Remote => "remote's",
        })
    }
}

/// The engine's result type.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;

impl SyncError {
    /// The exit-code class of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SyncError::Disconnected { .. }
            | SyncError::RemoteIdentity { .. }
            | SyncError::Offline => ErrorCode::Disconnected,
            SyncError::Conflicted(_) => ErrorCode::Conflicted,
            SyncError::CacheFull { .. } => ErrorCode::DisconFull,
            SyncError::NoSpace {
                side: Disk::Workspace,
                ..
            } => ErrorCode::DisconFull,
            SyncError::NotCached { .. } => ErrorCode::DisconData,
            SyncError::Usage(_) => ErrorCode::Usage,
            _ => ErrorCode::Other,
        }
    }

    /// What the user can do next, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SyncError::Disconnected { .. } => {
                Some("check that the share is mounted and the server answers, then run the command again")
            }
            SyncError::RemoteIdentity { .. } => Some(
                "mount the share this workspace was cloned from at the same path; nothing was changed",
            ),
            SyncError::DeletionGuard { .. } => Some(
                "review the plan with `--dry-run`; if the deletions are intended, run again with `--force`",
            ),
            SyncError::Conflicted(_) => {
                Some("`cachesync status` lists them; your local files were kept as they are")
            }
            SyncError::Offline => Some("run `cachesync connect` to go back online"),
            SyncError::NotCached { .. } => Some(
                "run `cachesync get PATH` again once the remote is reachable",
            ),
            SyncError::CacheFull { .. } => Some(
                "everything else was synced; free space (`cachesync gc`) or raise budget_bytes in .cachesync/config.json",
            ),
            SyncError::NotAWorkspace(_) => Some("run `cachesync clone REMOTE DIR` first, or cd into a workspace"),
            SyncError::Locked { .. } => Some("wait for it to finish; a crashed run's lock is taken over automatically"),
            SyncError::Store(cachesync_objects::ObjectError::Db { .. }) if self.is_store_corruption() => Some(
                "a file of the store's database is damaged (named above), so the store cannot be opened; nothing damaged was served, and the workspace's files are untouched: see \"A damaged store\" in docs/reliability.md",
            ),
            SyncError::Store(e) if e.is_corruption() => Some(
                "run `cachesync fsck` to see what is damaged, and `cachesync fsck --repair` to fetch it again from the workspace or the remote",
            ),
            SyncError::NoSpace { side: Disk::Workspace, .. } => Some(
                "free space on the disk that holds the workspace (`cachesync gc` and `cachesync cull` give back store space), then run the command again; nothing was lost",
            ),
            SyncError::NoSpace { .. } => Some(
                "free space on the server's disk, then run the command again; your changes stay in the workspace",
            ),
            SyncError::DamagedRecord { .. } => Some(
                "nothing was changed; see \"A damaged store\" in docs/reliability.md",
            ),
            _ => None,
        }
    }

    /// True when a table or manifest file of the store's database is damaged (RocksDB found
    /// a checksum mismatch there): the store cannot be opened. A damaged chunk (a blob
    /// record, or bytes that do not hash to their id) is not this: `fsck --repair` fixes it.
    pub fn is_store_corruption(&self) -> bool {
        matches!(self, SyncError::Store(e @ cachesync_objects::ObjectError::Db { message, .. })
            if e.is_corruption() && (message.contains(".sst") || message.contains("MANIFEST")))
    }

    /// This error, as [`SyncError::NoSpace`] when it says a disk is full (a local I/O or
    /// store error: the workspace's; a remote I/O error: the remote's).
    #[must_use]
    pub fn classified(self) -> SyncError {
        let side = match &self {
            SyncError::Io { source, .. } if cachesync_objects::is_no_space_io(source) => {
                Disk::Workspace
            }
            SyncError::Store(e) if e.is_no_space() => Disk::Workspace,
            SyncError::RemoteIo { source, .. } if cachesync_objects::is_no_space_io(source) => {
                Disk::Remote
            }
            _ => return self,
        };
        SyncError::NoSpace {
            side,
            detail: self.to_string(),
        }
    }

    /// A [`SyncError::DamagedRecord`]: `record` names it, `detail` is the decoder's error.
    pub(crate) fn damaged(record: impl Into<String>, detail: impl std::fmt::Display) -> SyncError {
        SyncError::DamagedRecord {
            record: record.into(),
            detail: detail.to_string(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SyncError {
        SyncError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> std::io::Error {
        std::io::Error::from_raw_os_error(28)
    }

    #[test]
    fn a_full_disk_names_whose() {
        let local = SyncError::io("/w/f", enospc()).classified();
        assert!(matches!(
            local,
            SyncError::NoSpace {
                side: Disk::Workspace,
                ..
            }
        ));
        assert!(local
            .to_string()
            .starts_with("no space left on the workspace's disk: /w/f: "));
        assert_eq!(local.code(), ErrorCode::DisconFull);
        let remote = SyncError::RemoteIo {
            path: "f".into(),
            source: enospc(),
        }
        .classified();
        assert!(remote
            .to_string()
            .starts_with("no space left on the remote's disk: remote f: "));
        assert_eq!(remote.code(), ErrorCode::Other);
        assert_ne!(local.hint(), remote.hint());
    }

    #[test]
    fn a_damaged_record_says_which() {
        let e = SyncError::damaged("journal operation 4", "EOF while parsing");
        assert_eq!(
            e.to_string(),
            "journal operation 4 in the store cannot be read: EOF while parsing"
        );
        assert_eq!(e.code(), ErrorCode::Other);
        assert!(e.hint().is_some());
    }
}
