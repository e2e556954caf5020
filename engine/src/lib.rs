//! cachesync's sync engine.
//!
//! A workspace (a local directory with `.cachesync/` at its root) caches a remote directory
//! reached through plain file-system calls. A sync scans both sides ([`scan`]), reconciles them
//! against the base snapshot ([`reconcile`]), plans the steps ([`plan`]), writes the plan to the
//! journal ([`journal`]), applies it step by step with preconditions ([`sync`]) and commits the
//! new base snapshot, index and conflict records in one atomic write.

pub mod check;
pub mod config;
pub mod conflict;
pub mod connect;
pub mod cull;
pub mod diff;
mod error;
pub mod events;
pub use cachesync_objects::failpoint;
pub mod fs_remote;
pub mod fsck;
pub mod fsmonitor;
pub mod gc;
pub mod identity;
pub mod ignore_rules;
pub mod index;
pub mod journal;
pub mod localfs;
pub mod lock;
pub mod ls;
pub mod merge;
pub mod mode;
pub mod mount;
pub mod notify;
mod path_set;
pub mod paths;
pub mod plan;
pub mod prefetch;
pub mod presence;
pub mod progress;
pub mod racy;
pub mod reconcile;
pub mod registry;
pub mod remote;
pub mod remote_process;
pub mod repair;
pub mod resolve;
pub mod restore;
pub mod scan;
pub mod state_keys;
pub mod status;
pub mod sync;
#[cfg(test)]
mod three_way;
pub mod timed;
pub mod undo;
pub mod variants;
pub mod workset;
pub mod workspace;

pub use error::{Disk, ErrorCode, Result, SyncError};
pub use progress::{NoProgress, Progress};
pub use workspace::Workspace;

/// Frees `value` on a thread of its own, off the caller's way: the trees of 100,000 entries a
/// status holds took a sixteenth of it to free, after its answer was ready. A command that
/// exits right after never waits for it; a process that lives on frees it all the same.
pub(crate) fn drop_aside<T: Send + 'static>(value: T) {
    if let Err(e) = std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || drop(value))
    {
        // No thread to be had: freed here (the value went with the failed spawn).
        drop(e);
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Gives the memory the allocator holds freed back to the system. A run's phases free much
/// of what the one before built (the scan's lists, the journal's serialized plan), often on
/// other threads, whose glibc arenas keep it: 40–55 MB of a first copy's 270–290 MB peak
/// (100,000 files). Called between phases; a few milliseconds each.
pub(crate) fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas to the
    // system; it touches no memory in use.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod drop_tests {
    /// What is put aside is freed, on another thread.
    #[test]
    fn a_value_put_aside_is_freed_on_another_thread() {
        struct Tell(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Tell {
            fn drop(&mut self) {
                self.0
                    .send(std::thread::current().id())
                    .expect("the test waits");
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        super::drop_aside(Tell(tx));
        let freed_on = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("freed within a minute");
        assert_ne!(freed_on, std::thread::current().id());
    }
}
