//! The workspace lock: one cachesync process per workspace at a time.
//!
//! An advisory `flock` on `.cachesync/lock`; the kernel releases it when the holder dies, so a
//! crashed run (even `kill -9`) never locks the user out. The file also records the holder's
//! pid and boot id, for the message the second process prints.
//!
//! `clone` takes it in the directory it builds under a temporary name before renaming it to
//! `.cachesync/`: a flock belongs to the open file, not to its path, so the lock is held from
//! the first moment to the last, and a second clone finding that directory sees it held.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Result, SyncError};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: File,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl WorkspaceLock {
    /// Takes the lock at `path`, failing at once if another live process holds it.
    ///
    /// # Errors
    /// [`SyncError::Locked`] when held; [`SyncError::Io`] otherwise.
    pub fn acquire(path: &Path) -> Result<WorkspaceLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| SyncError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().replace('\n', ", ");
                return Err(SyncError::Locked {
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(SyncError::io(path, e)),
        }
        // A stale record from a crashed run is simply overwritten: the flock is the truth.
        let record = format!("pid {}\nboot {}\n", std::process::id(), boot_id());
        file.set_len(0).map_err(|e| SyncError::io(path, e))?;
        file.rewind().map_err(|e| SyncError::io(path, e))?;
        file.write_all(record.as_bytes())
            .map_err(|e| SyncError::io(path, e))?;
        Ok(WorkspaceLock { _file: file })
    }
}
