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

/// What an event is about, written as its name (`disconnected`, `connected`, `conflict`,
/// `cache-nearly-full`, `cache-full`, `not-cached`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The workspace switched to disconnected.
    Disconnected,
    /// The workspace switched to connected.
    Connected,
    /// A conflict needs the user.
    Conflict,
    /// The cache went above 90% of its budget.
    CacheNearlyFull,
    /// Content did not fit in the cache budget.
    CacheFull,
    /// A program asked for the content of a remote-only file that the share could not give
    /// (disconnected, or no answer within the timeout): EDISCONDATA.
    NotCached,
}

impl EventKind {
    /// The name used in the log and output.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Disconnected => "disconnected",
            EventKind::Connected => "connected",
            EventKind::Conflict => "conflict",
            EventKind::CacheNearlyFull => "cache-nearly-full",
            EventKind::CacheFull => "cache-full",
            EventKind::NotCached => "not-cached",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The cache's level against its budget, as the last pull or sync left it: kept in the
/// `cache-level` state record as its name, in ASCII. A change to one of the two full levels
/// is an event of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheLevel {
    /// Within 90% of the budget.
    Ok,
    /// Above 90% of the budget in force.
    NearlyFull,
    /// Content did not fit.
    Full,
}

impl CacheLevel {
    /// The name stored in the state record.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheLevel::Ok => "ok",
            CacheLevel::NearlyFull => "cache-nearly-full",
            CacheLevel::Full => "cache-full",
        }
    }

    /// The level a state record names, if it names one.
    pub fn from_name(name: &[u8]) -> Option<CacheLevel> {
        [CacheLevel::Ok, CacheLevel::NearlyFull, CacheLevel::Full]
            .into_iter()
            .find(|l| l.as_str().as_bytes() == name)
    }

    /// The event a change to this level emits (none for `ok`).
    pub fn event(self) -> Option<EventKind> {
        match self {
            CacheLevel::Ok => None,
            CacheLevel::NearlyFull => Some(EventKind::CacheNearlyFull),
            CacheLevel::Full => Some(EventKind::CacheFull),
        }
    }
}

/// One event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// When, ns since the epoch.
    pub time_ns: i64,
    /// What it is about.
    pub kind: EventKind,
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

/// Where an event goes besides the log: the workspace's hook command, and the desktop's
/// notifications (see [`crate::notify`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outlets {
    /// The hook command (`hook` in the config).
    pub hook: Option<String>,
    /// Desktop notifications on (`notifications` in the config).
    pub notify: bool,
}

impl Outlets {
    /// A workspace's, from its config.
    pub fn of(config: &crate::config::Config) -> Outlets {
        Outlets {
            hook: config.hook.clone(),
            notify: config.notifications,
        }
    }
}

/// Appends `event` to the log, runs the hook, if any, and shows a desktop notification,
/// if on.
///
/// # Errors
/// [`SyncError::Io`] when the log cannot be written (a hook or a notification that fails is
/// not an error).
pub fn emit(meta_dir: &Path, outlets: &Outlets, event: &Event) -> Result<()> {
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
    if let Some(hook) = outlets.hook.as_deref().filter(|h| !h.trim().is_empty()) {
        run_hook(hook, &line);
    }
    if outlets.notify {
        crate::notify::show(event);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_levels_keep_their_names() {
        for (kind, name) in [
            (EventKind::Disconnected, "disconnected"),
            (EventKind::Connected, "connected"),
            (EventKind::Conflict, "conflict"),
            (EventKind::CacheNearlyFull, "cache-nearly-full"),
            (EventKind::CacheFull, "cache-full"),
        ] {
            assert_eq!(kind.as_str(), name);
            assert_eq!(format!("{kind:<13}|"), format!("{name:<13}|"));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<EventKind>(&json).expect("parses"),
                kind
            );
        }
        for level in [CacheLevel::Ok, CacheLevel::NearlyFull, CacheLevel::Full] {
            assert_eq!(
                CacheLevel::from_name(level.as_str().as_bytes()),
                Some(level)
            );
            assert_eq!(
                level.event().map(EventKind::as_str),
                Some(level.as_str()).filter(|n| *n != "ok")
            );
        }
        assert_eq!(CacheLevel::from_name(b"full"), None);
    }

    #[test]
    fn the_log_reads_back_what_was_emitted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let line = "{\"time_ns\":1,\"kind\":\"cache-full\",\"workspace\":\"/w\",\"reason\":\"2 of 1 bytes\"}";
        std::fs::write(dir.path().join(EVENTS_FILE), format!("{line}\nnot json\n")).expect("write");
        let events = read_all(dir.path()).expect("read");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::CacheFull);
        assert_eq!(serde_json::to_string(&events[0]).expect("serializes"), line);
    }
}
