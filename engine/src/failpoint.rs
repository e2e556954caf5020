//! Crash points for tests: `CACHESYNC_FAILPOINT=NAME` makes the process kill itself with
//! SIGKILL when it reaches the point called NAME, so tests can show that a run killed at any
//! step leaves the workspace recoverable. Unset (always, in normal use) it costs one lookup of
//! a cached environment variable per point.
//!
//! Points: `before-step:N` and `after-step:N` (step N of the plan, from 0), `mid-write:N`
//! (part of step N's content written to the remote), `before-rename:N` (step N's temporary
//! file written, not yet renamed into place), `before-commit` (every step done, refs not yet
//! moved), `drop-before-remove` (drop's remote-only flags recorded, files not yet removed).
//!
//! `CACHESYNC_PAUSE=NAME` with `CACHESYNC_PAUSE_FILE=PATH` instead pauses there: the process
//! creates PATH and waits (at most two minutes) until the test removes it, so a test can cut
//! the network at an exact moment.

use std::sync::OnceLock;

fn configured() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var("CACHESYNC_FAILPOINT").ok())
        .as_deref()
}

fn pause_point() -> Option<&'static (String, String)> {
    static PAUSE: OnceLock<Option<(String, String)>> = OnceLock::new();
    PAUSE
        .get_or_init(|| {
            let point = std::env::var("CACHESYNC_PAUSE").ok()?;
            let file = std::env::var("CACHESYNC_PAUSE_FILE").ok()?;
            Some((point, file))
        })
        .as_ref()
}

fn pause(file: &str) {
    if std::fs::write(file, b"paused\n").is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::path::Path::new(file).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Dies here (SIGKILL, no cleanup) if this is the configured point.
pub fn hit(name: &str) {
    if let Some((point, file)) = pause_point() {
        if point == name {
            pause(file);
        }
    }
    if configured() == Some(name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// [`hit`] for a numbered point, formatting the name only when a point is configured.
pub fn hit_n(name: &str, n: usize) {
    if configured().is_some() || pause_point().is_some() {
        hit(&format!("{name}:{n}"));
    }
}
