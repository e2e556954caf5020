//! The per-user registry of workspaces, for `connect`/`disconnect --all` and `--server HOST`.
//!
//! A text file, one absolute workspace path per line, at
//! `$XDG_CONFIG_HOME/cachesync/workspaces` (or `~/.config/cachesync/workspaces`). `clone`
//! adds to it just before it renames the new `.cachesync/` into place, so a workspace is
//! never left unregistered; entries whose workspace is gone (or never came: a clone killed
//! in between) are dropped when it is read.

use std::path::{Path, PathBuf};

use crate::error::{Result, SyncError};

/// Where the registry lives; `None` when neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("cachesync").join("workspaces"))
}

/// Where a running page (`cachesync ui`) leaves its address, token included (mode 0600):
/// `$XDG_RUNTIME_DIR/cachesync/ui.url`, else beside the registry. `None` when neither
/// directory is known.
pub fn page_url_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(run) => PathBuf::from(run).join("cachesync"),
        None => path()?.parent()?.to_path_buf(),
    };
    Some(dir.join("ui.url"))
}

/// The address a running page left, if one left it (see [`page_url_file`]).
pub fn page_url() -> Option<String> {
    let text = std::fs::read_to_string(page_url_file()?).ok()?;
    let url = text.trim();
    url.starts_with("http://").then(|| url.to_string())
}

fn read(file: &Path) -> Vec<PathBuf> {
    std::fs::read(file)
        .map(|bytes| {
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(l))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write(file: &Path, list: &[PathBuf]) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SyncError::io(dir, e))?;
    }
    let mut text = Vec::new();
    for p in list {
        text.extend_from_slice(crate::paths::bytes(p));
        text.push(b'\n');
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| SyncError::io(&tmp, e))?;
    std::fs::rename(&tmp, file).map_err(|e| SyncError::io(file, e))
}

/// Adds a workspace (idempotent). Without a HOME, nothing is recorded.
///
/// # Errors
/// [`SyncError::Io`] when the registry cannot be written.
pub fn add(root: &Path) -> Result<()> {
    let Some(file) = path() else { return Ok(()) };
    let mut list = read(&file);
    if !list.iter().any(|p| p == root) {
        list.push(root.to_path_buf());
        write(&file, &list)?;
    }
    Ok(())
}

/// The registered workspaces that still exist (stale entries are dropped from the file).
///
/// # Errors
/// [`SyncError::Io`] when the registry cannot be rewritten.
pub fn list() -> Result<Vec<PathBuf>> {
    let Some(file) = path() else {
        return Ok(Vec::new());
    };
    let all = read(&file);
    let live = present(&all);
    if live.len() != all.len() {
        write(&file, &live)?;
    }
    Ok(live)
}

/// The registered workspaces that exist now, the registry left as it is: for a reader that
/// looks again and again (the page), to which a workspace on a disk mounted late, or away
/// for a moment, must not be lost.
pub fn present_now() -> Vec<PathBuf> {
    path().map(|file| present(&read(&file))).unwrap_or_default()
}

fn present(all: &[PathBuf]) -> Vec<PathBuf> {
    all.iter()
        .filter(|p| {
            p.join(crate::ignore_rules::META_DIR)
                .join("config.json")
                .is_file()
        })
        .cloned()
        .collect()
}
