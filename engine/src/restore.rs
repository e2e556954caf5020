//! `restore`: a path, or a directory tree, as it was after an operation, from the base
//! snapshot that operation left (the version both sides agreed on then). It is written into
//! the workspace as a local change, which the next sync sends, or into another directory.
//!
//! Nothing is lost: in the workspace, a path whose current version is not the one both sides
//! last agreed on (a change not yet sent) is not written over; the restore is refused and
//! says which paths, unless the version restored is that very one.

use std::path::{Path, PathBuf};

use cachesync_objects::{Entry, EntryKind, Flat};

use crate::error::{Result, SyncError};
use crate::journal::OpRecord;
use crate::paths::{display, under};
use crate::workspace::Workspace;

/// What to restore, from when, to where.
#[derive(Debug)]
pub struct Options {
    /// Paths relative to the workspace root (files or directories).
    pub paths: Vec<Vec<u8>>,
    /// The operation whose agreed state is restored.
    pub at: u64,
    /// Write under this directory (`DEST/PATH`) instead of into the workspace.
    pub to: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Each path written, displayable, in order.
    pub written: Vec<String>,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// The base snapshot operation `at` left, as a flat tree.
///
/// # Errors
/// [`SyncError::Usage`] when the journal has no such operation, the operation left no
/// snapshot, or `gc` collected it.
pub fn tree_after(ws: &Workspace, at: u64) -> Result<(OpRecord, Flat)> {
    let op = crate::journal::all(&ws.store)?
        .into_iter()
        .find(|op| op.id == at)
        .ok_or_else(|| {
            SyncError::Usage(format!(
                "the journal has no operation {at} (`cachesync log` lists them)"
            ))
        })?;
    let sid = op
        .base_after
        .as_deref()
        .and_then(cachesync_objects::SnapshotId::from_hex)
        .ok_or_else(|| {
            SyncError::Usage(format!(
                "operation {at} ({}) left no snapshot to restore from: it did not change what \
                 both sides agree on (`cachesync log PATH` lists the operations that changed a path)",
                op.command.as_str()
            ))
        })?;
    let snap = ws.store.snapshot(sid).map_err(|_| {
        SyncError::Usage(format!(
            "the snapshot operation {at} left is no longer in the store (`cachesync gc` \
             collected it; see gc's keep_operations and keep_operations_days)"
        ))
    })?;
    let flat = ws.store.read_flat(snap.root)?;
    Ok((op, flat))
}

/// The entries of `path` and everything under it in `tree`, parents first.
fn entries_of<'t>(tree: &'t Flat, path: &[u8]) -> Vec<(&'t Vec<u8>, &'t Entry)> {
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    tree.range(path.to_vec()..)
        .take_while(|(p, _)| p.starts_with(path))
        .filter(|(p, _)| p.as_slice() == path || p.starts_with(&prefix))
        .collect()
}

/// Restores `opts.paths` as they were after operation `opts.at`.
///
/// # Errors
/// [`SyncError::Usage`] (nothing written) when the operation, its snapshot, a path in it,
/// or the content of a file is missing, when a workspace path holds a change not yet sent,
/// or when a file under `--to` is there already; store and I/O errors.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Outcome> {
    let (_, tree) = tree_after(ws, opts.at)?;
    let mut chosen: Vec<(&Vec<u8>, &Entry)> = Vec::new();
    for p in &opts.paths {
        let found = entries_of(&tree, p);
        if found.is_empty() {
            return Err(SyncError::Usage(format!(
                "{} was not there after operation {} (`cachesync log {}` lists its versions)",
                display(p),
                opts.at,
                display(p)
            )));
        }
        chosen.extend(found);
    }
    chosen.sort_by(|a, b| a.0.cmp(b.0));
    chosen.dedup_by(|a, b| a.0 == b.0);
    content_is_stored(ws, &chosen)?;
    match &opts.to {
        Some(dest) => {
            nothing_there(dest, &chosen)?;
            write_all(ws, dest, &chosen, false)
        }
        None => {
            let base = ws.store.read_ref_flat(cachesync_objects::keys::REF_BASE)?;
            nothing_unsent(ws, &base, &chosen)?;
            let out = write_all(ws, &ws.root, &chosen, true)?;
            // The next scan reads each restored path afresh.
            let mut batch = cachesync_objects::Batch::new();
            for (p, _) in &chosen {
                crate::index::remove(&mut batch, p);
            }
            ws.store.commit(batch)?;
            Ok(out)
        }
    }
}

/// Refuses, naming them, files whose content the store no longer holds.
pub(crate) fn content_is_stored(ws: &Workspace, chosen: &[(&Vec<u8>, &Entry)]) -> Result<()> {
    let mut missing = Vec::new();
    for (p, e) in chosen {
        if let (EntryKind::File, Some(id)) = (e.kind, e.file) {
            if !ws.store.has_file(id)? {
                missing.push(display(p));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(SyncError::Usage(format!(
        "the content of {} file(s) of that version is no longer in the store, nothing was \
         written: {}",
        missing.len(),
        missing.join(", ")
    )))
}

/// Refuses, naming them, files `--to` would write over.
fn nothing_there(dest: &Path, chosen: &[(&Vec<u8>, &Entry)]) -> Result<()> {
    let there: Vec<String> = chosen
        .iter()
        .filter(|(p, e)| {
            e.kind != EntryKind::Dir && std::fs::symlink_metadata(under(dest, p)).is_ok()
        })
        .map(|(p, _)| display(p))
        .collect();
    if there.is_empty() {
        return Ok(());
    }
    Err(SyncError::Usage(format!(
        "{} is there already under {}, nothing was written: {}",
        if there.len() == 1 { "a file" } else { "files" },
        dest.display(),
        there.join(", ")
    )))
}

/// Whether the workspace's file at `abs` (`md`: its metadata, not followed) is the version
/// `e`: a file by its content (read and hashed: its id is its blake3, so an edit that kept
/// the size and the modification time is still seen), a symlink by its target, a directory
/// by its kind.
pub(crate) fn is_version(abs: &Path, md: &std::fs::Metadata, e: &Entry) -> bool {
    match e.kind {
        EntryKind::Dir => md.is_dir(),
        EntryKind::Symlink => {
            md.file_type().is_symlink()
                && std::fs::read_link(abs).is_ok_and(|t| {
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::as_bytes(t.as_os_str())
                        == e.target.as_slice()
                })
        }
        EntryKind::File if md.is_file() && md.len() == e.size => {
            let Some(want) = e.file else {
                return e.size == 0;
            };
            let mut hasher = blake3::Hasher::new();
            std::fs::File::open(abs)
                .and_then(|f| hasher.update_reader(f).map(drop))
                .is_ok()
                && hasher.finalize().as_bytes() == want.as_bytes()
        }
        _ => false,
    }
}

/// Whether writing `restored` at `abs` loses nothing: the workspace holds there the version
/// both sides last agreed on (`agreed`), or `restored` already, or (with `absent_ok`)
/// nothing.
pub(crate) fn settled(
    abs: &Path,
    agreed: Option<&Entry>,
    restored: Option<&Entry>,
    absent_ok: bool,
) -> bool {
    match std::fs::symlink_metadata(abs) {
        // Absent: as agreed, or as it is to be, or (restore) nothing there to lose.
        Err(_) => absent_ok || agreed.is_none() || restored.is_none(),
        Ok(md) => {
            agreed.is_some_and(|e| is_version(abs, &md, e))
                || restored.is_some_and(|e| is_version(abs, &md, e))
        }
    }
}

/// Refuses, naming them, workspace paths holding a change not yet sent.
fn nothing_unsent(ws: &Workspace, base: &Flat, chosen: &[(&Vec<u8>, &Entry)]) -> Result<()> {
    let unsent: Vec<String> = chosen
        .iter()
        .filter(|(p, e)| !settled(&under(&ws.root, p), base.get(p.as_slice()), Some(e), true))
        .map(|(p, _)| display(p))
        .collect();
    if unsent.is_empty() {
        return Ok(());
    }
    Err(SyncError::Usage(format!(
        "{} changes not yet sent, nothing was written: {} (sync them first, or restore \
         --to DIR to write elsewhere)",
        if unsent.len() == 1 {
            "a path holds"
        } else {
            "paths hold"
        },
        unsent.join(", ")
    )))
}

/// Writes each entry under `root`, parents first: directories made, files and symlinks
/// under a temporary name then renamed over what is there, with their mode and times.
pub(crate) fn write_all(
    ws: &Workspace,
    root: &Path,
    chosen: &[(&Vec<u8>, &Entry)],
    in_workspace: bool,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    for (p, e) in chosen {
        let abs = under(root, p);
        let tmp = if in_workspace {
            ws.temp_beside(p, "restore")
        } else {
            let mut t = abs.clone().into_os_string();
            t.push(".cachesync-restore.tmp");
            PathBuf::from(t)
        };
        // In the workspace, what stands in the way was checked to be the version both
        // sides agreed on: a file where a directory comes back, an empty directory where a
        // file does.
        let there = std::fs::symlink_metadata(&abs).ok();
        if in_workspace {
            match &there {
                Some(md) if e.kind == EntryKind::Dir && !md.is_dir() => std::fs::remove_file(&abs),
                Some(md) if e.kind != EntryKind::Dir && md.is_dir() => std::fs::remove_dir(&abs),
                _ => Ok(()),
            }
            .map_err(|err| SyncError::io(&abs, err))?;
        }
        match (e.kind, e.file) {
            (EntryKind::Dir, _) => {
                std::fs::create_dir_all(&abs).map_err(|err| SyncError::io(&abs, err))?;
                std::fs::set_permissions(
                    &abs,
                    std::os::unix::fs::PermissionsExt::from_mode(e.mode & 0o7777),
                )
                .map_err(|err| SyncError::io(&abs, err))?;
            }
            (EntryKind::File, file) => {
                crate::localfs::write_temp(
                    &tmp,
                    |f| match file {
                        Some(id) => ws
                            .store
                            .read_file(id, f)
                            .map(|_| ())
                            .map_err(SyncError::from),
                        None => Ok(()),
                    },
                    e.mode,
                    Some(e.mtime_ns),
                    false,
                )?;
                crate::localfs::rename_into_place(&tmp, &abs, false)?;
                out.bytes += e.size;
            }
            (EntryKind::Symlink, _) => {
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&e.target),
                    &tmp,
                )
                .map_err(|err| SyncError::io(&tmp, err))?;
                crate::localfs::rename_into_place(&tmp, &abs, false)?;
            }
            // Devices, fifos and sockets are not restored: they hold no content.
            _ => continue,
        }
        out.written.push(display(p));
    }
    Ok(out)
}

/// One version of a path: an operation that changed it, and what it left.
#[derive(Debug, serde::Serialize)]
pub struct Version {
    /// The operation's number.
    pub op: u64,
    /// Its command (`sync`, `pull`, `resolve`...).
    pub command: &'static str,
    /// When it started, ns since the epoch.
    pub started_ns: i64,
    /// `added`, `modified`, `mode` (permissions only) or `deleted`.
    pub change: &'static str,
    /// What it left: `file`, `dir`, `symlink`... (absent when deleted).
    pub kind: Option<&'static str>,
    /// Its size in bytes (files and symlinks).
    pub size: Option<u64>,
    /// The content's id (a file's blake3 in hex), when it is a file.
    pub hash: Option<String>,
    /// Its permission bits.
    pub mode: Option<u32>,
}

pub(crate) fn same_version(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.file == b.file
        && a.target == b.target
        && a.tree == b.tree
        && (a.kind == EntryKind::Dir || a.size == b.size)
}

/// The entry of `path` in the snapshot `sid` names (`None`: absent there); `Err(())` when
/// the snapshot was collected.
fn entry_in(
    ws: &Workspace,
    sid: Option<&str>,
    path: &[u8],
) -> Result<std::result::Result<Option<Entry>, ()>> {
    let Some(sid) = sid.and_then(cachesync_objects::SnapshotId::from_hex) else {
        return Ok(Ok(None));
    };
    let Ok(snap) = ws.store.snapshot(sid) else {
        return Ok(Err(()));
    };
    if path.is_empty() {
        // The whole tree: one entry standing for it, its root's id.
        let mut root = Entry::new(b"", EntryKind::Dir);
        root.tree = Some(Box::new(snap.root));
        return Ok(Ok(Some(root)));
    }
    // Read from its parent's entries, which keep a directory's subtree id: a directory's
    // version changes with anything under it.
    let (parent, name) = crate::paths::split_parent(path);
    Ok(Ok(ws.store.children_at(snap.root, parent)?.and_then(
        |entries| entries.into_iter().find(|e| e.name.as_slice() == name),
    )))
}

/// The operations that changed `path` (or, for a directory, anything under it), oldest
/// first, from the journal and the snapshots the store still holds.
///
/// # Errors
/// Store errors.
pub fn history(ws: &Workspace, path: &[u8]) -> Result<Vec<Version>> {
    let mut out = Vec::new();
    for op in crate::journal::all(&ws.store)? {
        if op.base_after.is_none() {
            continue;
        }
        let (Ok(before), Ok(after)) = (
            entry_in(ws, op.base_before.as_deref(), path)?,
            entry_in(ws, op.base_after.as_deref(), path)?,
        ) else {
            continue; // collected by gc: that version is gone
        };
        let change = match (&before, &after) {
            (None, None) => continue,
            (Some(b), Some(a)) if same_version(b, a) => continue,
            (None, Some(_)) => "added",
            (Some(_), None) => "deleted",
            (Some(b), Some(a))
                if b.kind == a.kind
                    && b.file == a.file
                    && b.target == a.target
                    && b.tree == a.tree =>
            {
                "mode"
            }
            (Some(_), Some(_)) => "modified",
        };
        out.push(Version {
            op: op.id,
            command: op.command.as_str(),
            started_ns: op.started_ns,
            change,
            kind: after.as_ref().map(|e| e.kind.as_str()),
            size: after
                .as_ref()
                .filter(|e| e.kind != EntryKind::Dir)
                .map(|e| e.size),
            hash: after.as_ref().and_then(|e| e.file).map(|id| id.to_hex()),
            mode: after.as_ref().map(|e| e.mode & 0o7777),
        });
    }
    Ok(out)
}
