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
pub mod scan;
pub mod state_keys;
pub mod status;
pub mod sync;
#[cfg(test)]
mod three_way;
pub mod timed;
pub mod variants;
pub mod workset;
pub mod workspace;

pub use error::{Disk, ErrorCode, Result, SyncError};
pub use progress::{NoProgress, Progress};
pub use workspace::Workspace;

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
