//! The workspace configuration: `.cachesync/config.json`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};

/// The config format this build writes and reads; a newer one is refused. (Version 1 is the
/// first: when it changes, older ones will be migrated here.)
pub const CONFIG_VERSION: u32 = 1;

/// A workspace's settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The config format version.
    pub version: u32,
    /// The remote directory (absolute).
    pub remote: PathBuf,
    /// How long one remote call may take before the remote counts as disconnected.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The deletion guard: a run may delete at most this share (percent) of the files on
    /// either side without `--force`.
    #[serde(default = "default_max_delete_percent")]
    pub max_delete_percent: u32,
    /// Remote directory listings in flight at once during a scan.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Pinned paths (files or whole directories, relative to the workspace root): always
    /// materialized, never culled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
    /// The hoard profile: `"GLOB PRIORITY"` rules (globset globs, e.g. `"src/** 100"`,
    /// `"*.iso 0"`: `*` also matches `/`, a glob without `/` matches the name at any depth);
    /// a path's priority is the highest of the rules it matches, 50 when none does.
    /// Prefetch fetches by priority; culling drops the lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hoard: Vec<String>,
    /// Directories never cached: their files stay remote-only unless asked for with `get`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub never_cache: Vec<String>,
    /// Directories always cached: the same as pinning them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub always_cache: Vec<String>,
    /// Also bound the budget by this share (percent) of the free space on the workspace's
    /// disk, plus what `.cachesync/` already uses; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_disk_percent: Option<u32>,
    /// Culling (dropping clean, unpinned, least-wanted files when the cache is over its
    /// budget); on unless set to false.
    #[serde(default = "default_true")]
    pub culling: bool,
    /// How long the variants of a resolved conflict stay available (`gc` drops older
    /// resolved records, and the content only they kept).
    #[serde(default = "default_keep_resolved_days")]
    pub keep_resolved_days: u32,
    /// `gc` keeps the snapshots (and their content) of this many of the last operations
    /// that changed what both sides agree on, for `restore --at` and `log PATH`.
    #[serde(default = "default_keep_operations")]
    pub keep_operations: u32,
    /// ... and of every such operation of the last this many days.
    #[serde(default = "default_keep_operations_days")]
    pub keep_operations_days: u32,
    /// The cache budget in bytes (the store plus the files in the workspace); none when
    /// absent. A pull that would exceed it is refused with EDISCONFULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
    /// A shell command run for every event, with the event's JSON on standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Show each event worth a person's attention as a desktop notification (see
    /// [`crate::notify`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notifications: bool,
    /// Before a run writes over or removes a remote file that the workspace changed, read
    /// that file again and compare its content with the base, instead of trusting its size
    /// and mtime: a server edit that kept both (`cp -p`, `tar x`, `rsync -t`) is then a
    /// conflict, not a silent overwrite. Costs one read of each such file; on unless set to
    /// false.
    #[serde(default = "default_true")]
    pub verify_before_overwrite: bool,
    /// How a big file (8 MiB or more) that the share holds in its base version goes there
    /// when it changed here: `auto` (patched: copied on the server and patched where the
    /// share can copy on the server, patched in place elsewhere), `copy`, `in-place`, or
    /// `off` (always written whole). A patch needs `verify_before_overwrite`.
    #[serde(default)]
    pub patch_big_files: PatchBigFiles,
    /// What `connect` does once the remote answers: `sync` (pull and push everything) or
    /// `none` (only switch the mode; later commands do what they are asked).
    #[serde(default = "default_on_reconnect")]
    pub on_reconnect: String,
    /// While `cachesync mount` serves the workspace, it syncs every this many seconds (0:
    /// never by itself); unset: [`VIEW_SYNC_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_sync_seconds: Option<u64>,
}

/// How a changed big file goes to the share (see `sync/patch.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchBigFiles {
    /// `copy` where the share copies on the server, `in-place` elsewhere.
    #[default]
    Auto,
    /// A temporary copied on the server, patched, renamed over the file (atomic).
    Copy,
    /// The file patched where it is, journalled (readers may see it half-patched).
    InPlace,
    /// Written whole.
    Off,
}

/// How often a mounted view syncs by itself when the config does not say.
pub const VIEW_SYNC_SECONDS: u64 = 300;

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_delete_percent() -> u32 {
    50
}
fn default_parallel() -> usize {
    16
}
fn default_true() -> bool {
    true
}
fn default_keep_resolved_days() -> u32 {
    30
}
fn default_keep_operations() -> u32 {
    20
}
fn default_keep_operations_days() -> u32 {
    7
}
fn default_on_reconnect() -> String {
    "sync".into()
}

impl Config {
    /// A new config for `remote` with the defaults.
    pub fn new(remote: PathBuf) -> Config {
        Config {
            version: CONFIG_VERSION,
            remote,
            timeout_ms: default_timeout_ms(),
            max_delete_percent: default_max_delete_percent(),
            parallel: default_parallel(),
            hook: None,
            notifications: false,
            budget_bytes: None,
            keep_resolved_days: default_keep_resolved_days(),
            keep_operations: default_keep_operations(),
            keep_operations_days: default_keep_operations_days(),
            pins: Vec::new(),
            hoard: Vec::new(),
            never_cache: Vec::new(),
            always_cache: Vec::new(),
            budget_disk_percent: None,
            culling: true,
            verify_before_overwrite: true,
            patch_big_files: PatchBigFiles::Auto,
            on_reconnect: default_on_reconnect(),
            view_sync_seconds: None,
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`SyncError::Config`] when it is unreadable, malformed, or from a newer cachesync.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| SyncError::Config {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let config: Config = serde_json::from_str(&text).map_err(|e| SyncError::Config {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if config.version > CONFIG_VERSION {
            return Err(SyncError::Config {
                path: path.to_path_buf(),
                detail: format!(
                    "written by a newer cachesync (config version {}, this one reads {})",
                    config.version, CONFIG_VERSION
                ),
            });
        }
        if config
            .budget_disk_percent
            .is_some_and(|p| p == 0 || p > 100)
        {
            return Err(SyncError::Config {
                path: path.to_path_buf(),
                detail: "budget_disk_percent must be 1..=100".into(),
            });
        }
        if config.max_delete_percent > 100 || config.parallel == 0 {
            return Err(SyncError::Config {
                path: path.to_path_buf(),
                detail: "max_delete_percent must be 0..=100 and parallel at least 1".into(),
            });
        }
        if let Err(detail) = crate::workset::WorkingSet::new(&config) {
            return Err(SyncError::Config {
                path: path.to_path_buf(),
                detail,
            });
        }
        if !matches!(config.on_reconnect.as_str(), "sync" | "none") {
            return Err(SyncError::Config {
                path: path.to_path_buf(),
                detail: format!(
                    "on_reconnect must be \"sync\" or \"none\", not {:?}",
                    config.on_reconnect
                ),
            });
        }
        Ok(config)
    }

    /// Writes the config (atomically: temporary file, then rename).
    ///
    /// # Errors
    /// [`SyncError::Io`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a config always serializes");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(|e| SyncError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| SyncError::io(path, e))
    }
}
