//! Progress reporting, for long work on a terminal. The engine reports; the cli draws.

/// Receives progress of long work.
pub trait Progress: Sync {
    /// A phase starts (`total` in bytes or items, 0 when unknown).
    fn start(&self, what: &str, total: u64);
    /// How far the current phase is.
    fn set(&self, done: u64);
    /// The current phase ended.
    fn finish(&self);
}

/// Reports nothing (scripts, cron, tests).
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn set(&self, _: u64) {}
    fn finish(&self) {}
}
