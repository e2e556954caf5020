//! Events: every mode switch, conflict needing resolution and cache-nearly-full condition.
//!
//! Each event is one line of JSON appended to `.cachesync/events.jsonl` (`events` shows them,
//! `events --follow` streams them) and, when the workspace config names a hook command, passed
//! to it on standard input (`sh -c HOOK`), e.g. to show a desktop notification. The hook runs
//! detached, with its output discarded; cachesync waits for it at most [`HOOK_WAIT`], so a
//! slow hook never holds up a sync.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};

/// How long a hook may take before cachesync stops waiting for it.
pub const HOOK_WAIT: Duration = Duration::from_secs(5);

/// The events file inside `.cachesync/`.
pub const EVENTS_FILE: &str = "events.jsonl";

/// One event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// When, ns since the epoch.
    pub time_ns: i64,
    /// `disconnected`, `connected`, `conflict`, `cache-nearly-full`, `cache-full`.
    pub kind: String,
    /// The workspace root.
    pub workspace: String,
    /// Why (mode switches), or what (conflicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The path concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For mode switches: by hand (`true`) or automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<bool>,
}

/// Appends `event` to the log and runs the hook, if any.
///
/// # Errors
/// [`SyncError::Io`] when the log cannot be written (a hook that fails is not an error).
pub fn emit(meta_dir: &Path, hook: Option<&str>, event: &Event) -> Result<()> {
    let line = serde_json::to_string(event).expect("events serialize");
    let path = meta_dir.join(EVENTS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| SyncError::io(&path, e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| SyncError::io(&path, e))?;
    if let Some(hook) = hook.filter(|h| !h.trim().is_empty()) {
        run_hook(hook, &line);
    }
    Ok(())
}

fn run_hook(hook: &str, json: &str) {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(hook)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json.as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let deadline = Instant::now() + HOOK_WAIT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    // Left running: it is the user's program, and it no longer holds anything of ours.
}

/// Every event in the log, oldest first (malformed lines are skipped).
///
/// # Errors
/// [`SyncError::Io`] when the log exists but cannot be read.
pub fn read_all(meta_dir: &Path) -> Result<Vec<Event>> {
    let path = meta_dir.join(EVENTS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SyncError::io(&path, e)),
    }
}
