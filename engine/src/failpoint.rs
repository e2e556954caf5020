//! Crash points for tests: `CACHESYNC_FAILPOINT=NAME` makes the process kill itself with
//! SIGKILL when it reaches the point called NAME, so tests can show that a run killed at any
//! step leaves the workspace recoverable. Unset (always, in normal use) it costs one lookup of
//! a cached environment variable per point.
//!
//! Points: `before-step:N` and `after-step:N` (step N of the plan, from 0), `before-rename:N`
//! (step N's temporary file written, not yet renamed into place), `before-commit` (every
//! step done, refs not yet moved).

use std::sync::OnceLock;

fn configured() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var("CACHESYNC_FAILPOINT").ok())
        .as_deref()
}

/// Dies here (SIGKILL, no cleanup) if this is the configured point.
pub fn hit(name: &str) {
    if configured() == Some(name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// [`hit`] for a numbered point, formatting the name only when a point is configured.
pub fn hit_n(name: &str, n: usize) {
    if let Some(point) = configured() {
        if point == format!("{name}:{n}") {
            hit(point);
        }
    }
}
