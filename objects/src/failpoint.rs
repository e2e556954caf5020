//! Crash points for tests: `CACHESYNC_FAILPOINT=NAME` makes the process kill itself with
//! SIGKILL when it reaches the point called NAME, so tests can show that a run killed at any
//! step leaves the workspace recoverable. Unset (always, in normal use) it costs one lookup of
//! a cached environment variable per point.
//!
//! `CACHESYNC_FAILPOINT_TRACE=FILE` appends the name of every point the process passes to
//! FILE, one per line: a test runs a command once so, then kills it at each point in turn.
//!
//! Points (N counts from 0):
//! - sync, pull, push, clone: `scanned` (both sides listed, nothing read), `fetching` (a
//!   changed remote file about to be read; the reads run in parallel), `before-landing`
//!   and `landed` (a new remote file, staged as it was read, about to be and just put in
//!   place in the workspace), `fetched` (changed remote files stored, nothing recorded),
//!   `remote-snapshot` (the scanned remote recorded), `planned` (plan journalled, no step
//!   run), `before-step:N` and `after-step:N` (step N of the plan), `mid-write:N` (part of
//!   step N's content written to the remote), `before-rename:N` (step N's temporary file
//!   written, not yet renamed into place), `exchanged` (a workspace file just exchanged
//!   with the one it replaces, what came out not yet looked at), `index-written` (every
//!   step done, the workspace synced and the index's new entries written),
//!   `before-commit` (refs not yet moved), `after-commit` (refs moved; cull and events to
//!   come).
//! - drop and cull: `drop-before-remove` (remote-only flags recorded, files not yet
//!   removed), `drop-aside:N` (the Nth file moved aside, not yet checked and removed),
//!   `drop-before-commit` (files removed, index not yet updated).
//! - resolve: `resolve-before-write`, `resolve-before-rename` (the resolution written under
//!   a temporary name), `resolve-before-commit` (in the workspace, not yet recorded).
//! - gc: `gc-before-commit` (garbage found, not yet deleted), `gc-before-compact` (deleted,
//!   space not yet given back).
//!
//! `CACHESYNC_PAUSE=NAME` with `CACHESYNC_PAUSE_FILE=PATH` instead pauses there: the process
//! creates PATH and waits (at most two minutes) until the test removes it, so a test can cut
//! the network at an exact moment.

use std::sync::OnceLock;

fn trace_file() -> Option<&'static std::sync::Mutex<std::fs::File>> {
    static TRACE: OnceLock<Option<std::sync::Mutex<std::fs::File>>> = OnceLock::new();
    TRACE
        .get_or_init(|| {
            let path = std::env::var_os("CACHESYNC_FAILPOINT_TRACE")?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
                .map(std::sync::Mutex::new)
        })
        .as_ref()
}

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

/// Pauses until `file` is removed. Once: every thread that reaches the point while the
/// pause holds waits with it, and none that comes after it was let go pauses again (a point
/// that several threads pass, such as `fetching`, would otherwise hold a late thread for the
/// whole deadline after the test resumed the run).
///
/// The file is created once, under a lock: a late thread that re-created it after the test
/// removed it would hold every thread (the first one too) until the deadline.
fn pause(file: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    static RELEASED: AtomicBool = AtomicBool::new(false);
    static CREATED: Mutex<bool> = Mutex::new(false);
    {
        let mut created = CREATED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if RELEASED.load(Ordering::SeqCst) {
            return;
        }
        if !*created {
            if std::fs::write(file, b"paused\n").is_err() {
                RELEASED.store(true, Ordering::SeqCst);
                return;
            }
            *created = true;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::path::Path::new(file).exists()
        && std::time::Instant::now() < deadline
        && !RELEASED.load(Ordering::SeqCst)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    RELEASED.store(true, Ordering::SeqCst);
}

/// Dies here (SIGKILL, no cleanup) if this is the configured point.
pub fn hit(name: &str) {
    if let Some(f) = trace_file() {
        use std::io::Write;
        let mut f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(f, "{name}");
    }
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
    if configured().is_some() || pause_point().is_some() || trace_file().is_some() {
        hit(&format!("{name}:{n}"));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// A thread that reaches the point just after the test let the run go must not pause
    /// it again: the pause file is not re-created, and every thread goes on at once.
    #[test]
    fn a_thread_arriving_after_the_release_does_not_pause_the_run_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("paused");
        let name = file.to_str().expect("utf-8").to_owned();
        let first = {
            let name = name.clone();
            std::thread::spawn(move || super::pause(&name))
        };
        let started = Instant::now();
        while !file.exists() {
            assert!(started.elapsed() < Duration::from_secs(10), "never paused");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The test lets the run go; a late thread arrives before the first one (asleep
        // between its looks) has seen it.
        std::fs::remove_file(&file).expect("resume");
        let late = Instant::now();
        super::pause(&name);
        assert!(
            late.elapsed() < Duration::from_secs(5),
            "the late thread paused"
        );
        assert!(!file.exists(), "the pause file came back");
        let joined = Instant::now();
        first.join().expect("first thread");
        assert!(
            joined.elapsed() < Duration::from_secs(5),
            "the first thread stayed paused"
        );
    }
}
