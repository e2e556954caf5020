//! What a program sees: the engine's errors as errno values.
//!
//! | condition | errno | strerror | when |
//! |---|---|---|---|
//! | EDISCONDATA | `ENODATA` (61) | No data available | the content of a remote-only file is needed (open for reading, a partial write, a rename) and the share is not there or did not answer within the timeout |
//! | EDISCONFULL | `ENOSPC` (28) | No space left on device | the cache budget (or the disk) cannot take the content |
//! | EDISCONPERM | — | — | not from the view: writes go to the workspace, and the next sync finds a change the share refuses (a permission conflict) |
//! | disconnected | — | — | never an error by itself: everything the cache holds keeps working |
//!
//! `ENODATA` is distinct from `ENOENT` (the file exists: `stat` and `ls` show it) and from
//! `EIO` (nothing is broken: the share is away).

use cachesync_engine::SyncError;
use fuser::Errno;

/// The errno a program gets for EDISCONDATA.
pub const EDISCONDATA: Errno = Errno::ENODATA;
/// The errno a program gets for EDISCONFULL.
pub const EDISCONFULL: Errno = Errno::ENOSPC;

/// The errno for an engine error.
pub fn of_error(e: &SyncError) -> Errno {
    match e {
        SyncError::NotCached { .. } | SyncError::Disconnected { .. } | SyncError::Offline => {
            EDISCONDATA
        }
        SyncError::CacheFull { .. } | SyncError::NoSpace { .. } => EDISCONFULL,
        SyncError::Io { source, .. } => of_io(source),
        SyncError::Usage(_) => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

/// The errno of an I/O error (EIO when it has none).
pub fn of_io(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}
