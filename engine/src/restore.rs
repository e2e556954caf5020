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
    /// Paths left as they are: changed while the restore ran (nothing was written over).
    pub left: Vec<String>,
}

/// The last operation that changed what both sides agree on and had finished by `time_ns`
/// (ns since the epoch): what `restore --at DATE` restores from.
///
/// # Errors
/// [`SyncError::Usage`] when none had; store errors.
pub fn op_at(ws: &Workspace, time_ns: i64) -> Result<u64> {
    crate::journal::all(&ws.store)?
        .into_iter()
        .filter(|op| op.base_after.is_some() && op.finished_ns.unwrap_or(op.started_ns) <= time_ns)
        .map(|op| op.id)
        .next_back()
        .ok_or_else(|| {
            SyncError::Usage(
                "no operation that changed anything had finished by then (`cachesync log` lists them)"
                    .into(),
            )
        })
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
    if let Some(dest) = &opts.to {
        let inside = std::fs::canonicalize(dest)
            .unwrap_or_else(|_| dest.clone())
            .starts_with(std::fs::canonicalize(&ws.root).unwrap_or_else(|_| ws.root.clone()));
        if inside {
            return Err(SyncError::Usage(format!(
                "--to {}: that is inside the workspace; restore into the workspace without \
                 --to, or give a directory outside it",
                dest.display()
            )));
        }
    }
    let mut chosen: Vec<(&Vec<u8>, &Entry)> = Vec::new();
    for p in &opts.paths {
        let found = if p.is_empty() {
            tree.iter().collect() // the whole tree
        } else {
            entries_of(&tree, p)
        };
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
    // The directories they are in, as the operation left them, where they are missing: all
    // of them under --to, those gone from the workspace here.
    let wanted: Vec<&Vec<u8>> = chosen.iter().map(|(p, _)| *p).collect();
    for p in wanted {
        let mut up = p.as_slice();
        while let Some(i) = up.iter().rposition(|&b| b == b'/') {
            up = &up[..i];
            let missing =
                opts.to.is_some() || std::fs::symlink_metadata(under(&ws.root, up)).is_err();
            if let Some((a, e)) = tree.get_key_value(up).filter(|_| missing) {
                chosen.push((a, e));
            }
        }
    }
    chosen.sort_by(|a, b| a.0.cmp(b.0));
    chosen.dedup_by(|a, b| a.0 == b.0);
    content_is_stored(ws, &chosen)?;
    match &opts.to {
        Some(dest) => {
            nothing_there(dest, &chosen)?;
            write_all(ws, &Into::Elsewhere(dest), &chosen)
        }
        None => {
            let base = ws.store.read_ref_flat(cachesync_objects::keys::REF_BASE)?;
            nothing_unsent(ws, &base, &chosen)?;
            let out = write_all(ws, &Into::Workspace(&base), &chosen)?;
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
    let mut never = Vec::new();
    for (p, e) in chosen {
        if let (EntryKind::File, Some(id)) = (e.kind, e.file) {
            if id == cachesync_objects::FileId::NOT_CACHED {
                never.push(display(p));
            } else if !ws.store.has_file(id)? {
                missing.push(display(p));
            }
        }
    }
    if !never.is_empty() {
        return Err(SyncError::Usage(format!(
            "{} file(s) of that version were remote-only, never brought here, so their \
             content was never in the store; nothing was written: {}",
            never.len(),
            never.join(", ")
        )));
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
/// `e`: a file by its mode and content (read and hashed: its id is its blake3, so an edit
/// that kept the size and the modification time is still seen), a symlink by its target, a
/// directory by its kind.
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
        EntryKind::File
            if md.is_file()
                && md.len() == e.size
                && std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777
                    == e.mode & 0o7777 =>
        {
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

/// Whether a directory on the way to `path` under `root` is a symlink (a write there would
/// land outside the workspace, or elsewhere in it).
pub(crate) fn through_symlink(root: &Path, path: &[u8]) -> bool {
    symlink_on_the_way(root, path).is_some()
}

/// The first directory on the way to `path` under `root` that is a symlink, if one is.
pub(crate) fn symlink_on_the_way(root: &Path, path: &[u8]) -> Option<Vec<u8>> {
    let mut at = Vec::new();
    for name in path
        .split(|&b| b == b'/')
        .collect::<Vec<_>>()
        .split_last()
        .map_or(&[][..], |(_, up)| up)
    {
        if !at.is_empty() {
            at.push(b'/');
        }
        at.extend_from_slice(name);
        if std::fs::symlink_metadata(under(root, &at)).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(at);
        }
    }
    None
}

/// Refuses, naming them, workspace paths holding a change not yet sent.
fn nothing_unsent(ws: &Workspace, base: &Flat, chosen: &[(&Vec<u8>, &Entry)]) -> Result<()> {
    let unsent: Vec<String> = chosen
        .iter()
        .filter(|(p, e)| {
            !settled(&under(&ws.root, p), base.get(p.as_slice()), Some(e), true)
                || through_symlink(&ws.root, p)
        })
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

/// Puts `tmp` at `abs` if what is there is still `acceptable`, with no window between the
/// check and the rename where the file system allows it (as the sync puts a file in place):
/// no-replace where nothing is, else an exchange, then a look at what came out, put back if
/// it is not acceptable. `Ok(false)`: left, because something changed there meanwhile.
fn place(tmp: &Path, abs: &Path, acceptable: &dyn Fn(&Path) -> bool) -> Result<bool> {
    let there = std::fs::symlink_metadata(abs).is_ok();
    let placed = if there {
        crate::localfs::exchange(tmp, abs)
    } else {
        crate::localfs::rename_no_replace(tmp, abs)
    };
    match placed {
        Ok(()) => {}
        Err(e) if crate::localfs::flags_unsupported(&e) => {
            if there && !acceptable(abs) {
                let _ = std::fs::remove_file(tmp);
                return Ok(false);
            }
            std::fs::rename(tmp, abs).map_err(|e| SyncError::io(abs, e))?;
            return Ok(true);
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound
            ) =>
        {
            let _ = std::fs::remove_file(tmp);
            return Ok(false);
        }
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            return Err(SyncError::io(abs, e));
        }
    }
    if !there {
        return Ok(true);
    }
    crate::failpoint::hit("restore-exchanged");
    // What came out of the exchange is at `tmp` now.
    if acceptable(tmp) {
        std::fs::remove_file(tmp).map_err(|e| SyncError::io(tmp, e))?;
        return Ok(true);
    }
    crate::localfs::exchange(tmp, abs).map_err(|e| SyncError::io(abs, e))?;
    std::fs::remove_file(tmp).map_err(|e| SyncError::io(tmp, e))?;
    Ok(false)
}

/// Where the entries go: the workspace, each path put in place only over the version both
/// sides agreed on (`agreed`) or the one restored, or another directory.
pub(crate) enum Into<'a> {
    /// The workspace, with the agreed tree to check what is replaced against.
    Workspace(&'a Flat),
    /// Another directory (nothing there was checked to be free).
    Elsewhere(&'a Path),
}

/// Writes each entry, parents first: directories made (writable by their owner until the
/// end, when their own modes are set, deepest first), files and symlinks under a temporary
/// name then put in place with their mode and times ([`place`]).
pub(crate) fn write_all(
    ws: &Workspace,
    into: &Into<'_>,
    chosen: &[(&Vec<u8>, &Entry)],
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    for (p, e) in chosen {
        let (abs, tmp) = match into {
            Into::Workspace(_) => (under(&ws.root, p), ws.temp_beside(p, "restore")),
            Into::Elsewhere(dest) => {
                let abs = under(dest, p);
                let mut t = abs.clone().into_os_string();
                t.push(".cachesync-restore.tmp");
                (abs, PathBuf::from(t))
            }
        };
        let acceptable = |at: &Path| match into {
            Into::Workspace(agreed) => settled(at, agreed.get(p.as_slice()), Some(e), true),
            Into::Elsewhere(_) => false,
        };
        // In the workspace, what stands in the way was checked to be the agreed version: a
        // file where a directory comes back, an empty directory where a file does.
        if let (Into::Workspace(_), Ok(md)) = (into, std::fs::symlink_metadata(&abs)) {
            if e.kind == EntryKind::Dir && !md.is_dir() && acceptable(&abs) {
                std::fs::remove_file(&abs).map_err(|err| SyncError::io(&abs, err))?;
            } else if e.kind != EntryKind::Dir && md.is_dir() {
                match std::fs::remove_dir(&abs) {
                    Ok(()) => {}
                    Err(_) => {
                        out.left.push(display(p));
                        continue;
                    }
                }
            }
        }
        let placed = match e.kind {
            EntryKind::Dir => {
                std::fs::create_dir_all(&abs).map_err(|err| SyncError::io(&abs, err))?;
                let owner = std::os::unix::fs::PermissionsExt::from_mode(e.mode & 0o7777 | 0o700);
                std::fs::set_permissions(&abs, owner).map_err(|err| SyncError::io(&abs, err))?;
                dirs.push((abs, e.mode & 0o7777));
                true
            }
            EntryKind::File => {
                crate::localfs::write_temp(
                    &tmp,
                    |f| match e.file {
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
                place(&tmp, &abs, &acceptable)?
            }
            EntryKind::Symlink => {
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&e.target),
                    &tmp,
                )
                .map_err(|err| SyncError::io(&tmp, err))?;
                place(&tmp, &abs, &acceptable)?
            }
            // Devices, fifos and sockets are not restored: they hold no content.
            _ => continue,
        };
        if placed {
            if e.kind == EntryKind::File {
                out.bytes += e.size;
            }
            out.written.push(display(p));
        } else {
            out.left.push(display(p));
        }
    }
    for (dir, mode) in dirs.iter().rev() {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .map_err(|err| SyncError::io(dir, err))?;
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
