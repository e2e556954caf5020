//! `undo`: an operation taken back on both sides. Every path the operation changed returns,
//! in the workspace and on the share, to the version both sides agreed on before it (its
//! `base_before` snapshot): what it removed or overwrote comes back, what it created goes.
//!
//! Two phases, the shared mechanisms each time:
//! 1. **In the workspace**, as `restore` writes: each path's earlier version written (or the
//!    path removed), only where the workspace still holds what the operation left;
//! 2. **On the share**, a push of exactly those paths (journalled as `undo`): each remote
//!    write checks that the share still holds what the operation left; a path someone
//!    changed there since becomes a conflict, both versions kept.
//!
//! A path changed since the operation, by a later operation or here and not yet sent, is
//! left as it is and reported. What the operation brought stays in the store, in its
//! snapshot: `restore PATH --at OP` gives it back.

pub mod local;

use cachesync_objects::{Entry, Flat};
use serde::Serialize;

use crate::error::{Result, SyncError};
use crate::journal::{OpKind, OpRecord};
use crate::paths::{display, under};
use crate::progress::Progress;
use crate::restore::{content_is_stored, settled, write_all, Into};
use crate::workspace::Workspace;

/// What to undo.
#[derive(Debug, Default)]
pub struct Options {
    /// The operation (default: the last one that changed what both sides agree on).
    pub op: Option<u64>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
}

/// What undo does to one path.
#[derive(Debug, Serialize)]
pub struct PathPlan {
    /// The path, displayable.
    pub path: String,
    /// Its bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `restore` (the earlier version written back), `remove` (the operation made it),
    /// `undone` (as it was before already: an undo run again), or `left` (changed since:
    /// not touched).
    pub action: &'static str,
    /// Why it is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The path's bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// What undo did (or, dry, would do).
#[derive(Debug)]
pub struct Outcome {
    /// The operation taken back.
    pub undone: u64,
    /// Its command.
    pub command: &'static str,
    /// Every path it changed, and what undo does with it.
    pub paths: Vec<PathPlan>,
    /// The push that put the earlier versions on the share (none for a dry run, or when
    /// nothing was left to do).
    pub push: Option<crate::sync::Outcome>,
    /// Whether the operation changed what both sides agree on (a sync, not a `get` or a
    /// `resolve`): what it left can be restored with `restore --at`.
    pub both_sides: bool,
}

impl Outcome {
    /// The paths left as they are.
    pub fn left(&self) -> usize {
        self.paths.iter().filter(|p| p.action == "left").count()
    }
}

/// The operation to undo: `at`, or the last that moved the base.
fn target(ws: &Workspace, at: Option<u64>) -> Result<OpRecord> {
    let ops = crate::journal::all(&ws.store)?;
    let op = match at {
        Some(id) => ops.into_iter().find(|o| o.id == id).ok_or_else(|| {
            SyncError::Usage(format!(
                "the journal has no operation {id} (`cachesync log` lists them)"
            ))
        })?,
        None => ops
            .into_iter()
            .rev()
            .find(OpRecord::changed_anything)
            .ok_or_else(|| SyncError::Usage("no operation has changed anything yet".into()))?,
    };
    if !op.changed_anything() {
        return Err(SyncError::Usage(format!(
            "operation {} ({}) changed no file: there is nothing to undo",
            op.id,
            op.command.as_str()
        )));
    }
    if op.command == OpKind::Resolve && op.local_paths.is_none() {
        return Err(SyncError::Usage(format!(
            "operation {} settled a conflict before resolve kept what undo needs to open it \
             again: settle the path again with `cachesync resolve`; every version stays in \
             the store (`cachesync log PATH`, `cachesync restore PATH --at OP`)",
            op.id
        )));
    }
    if op.command == OpKind::Clone || (op.base_before.is_none() && op.local_paths.is_none()) {
        return Err(SyncError::Usage(format!(
            "operation {} is the first copy: undoing it would empty both sides; not done",
            op.id
        )));
    }
    Ok(op)
}

/// A snapshot named by the journal, as a flat tree.
fn flat_of(ws: &Workspace, hex_id: Option<&str>, op: u64) -> Result<Flat> {
    let sid = hex_id
        .and_then(cachesync_objects::SnapshotId::from_hex)
        .ok_or_else(|| SyncError::Usage(format!("operation {op} names no snapshot")))?;
    let snap = ws.store.snapshot(sid).map_err(|_| {
        SyncError::Usage(format!(
            "the snapshots of operation {op} are no longer in the store (`cachesync gc` \
             collected them; see keep_operations and keep_operations_days): it cannot be undone"
        ))
    })?;
    Ok(ws.store.read_flat(snap.root)?)
}

/// The same version, as a sync judges it (a remote-only file's content, not here, by its
/// size and time).
fn same(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    crate::reconcile::same(a, b)
}

/// Every path whose version differs between `before` and `after`, in path order.
fn changed(before: &Flat, after: &Flat) -> Vec<Vec<u8>> {
    let mut paths: Vec<Vec<u8>> = before
        .keys()
        .chain(after.keys())
        .filter(|p| !same(before.get(p.as_slice()), after.get(p.as_slice())))
        .cloned()
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The plan: each changed path restored, removed, or left with its reason.
fn plan(ws: &Workspace, op: &OpRecord, before: &Flat, after: &Flat) -> Result<Vec<PathPlan>> {
    let now = ws.store.read_ref_flat(cachesync_objects::keys::REF_BASE)?;
    let mut out = Vec::new();
    for p in changed(before, after) {
        let (b0, b1) = (before.get(p.as_slice()), after.get(p.as_slice()));
        let abs = under(&ws.root, &p);
        let here_as_before = match std::fs::symlink_metadata(&abs) {
            Err(_) => b0.is_none(),
            Ok(md) => b0.is_some_and(|e| crate::restore::is_version(&abs, &md, e)),
        };
        if here_as_before && same(now.get(p.as_slice()), b0) {
            // Undone already (an undo run again after it was interrupted past its commit).
            out.push(PathPlan {
                path: display(&p),
                path_hex: crate::paths::hex_unless_utf8(&p),
                action: "undone",
                reason: None,
                bytes: p,
            });
            continue;
        }
        let reason = if !same(now.get(p.as_slice()), b1) {
            Some(format!(
                "changed since operation {} by a later operation",
                op.id
            ))
        } else if crate::restore::symlink_on_the_way(&ws.root, &p)
            .is_some_and(|up| !made_a_directory_again(&out, before, &up))
        {
            Some("a directory on its way is a symlink here now".to_string())
        } else if !settled(&abs, b1, b0, false) {
            Some("changed here since, not yet sent".to_string())
        } else if holds_others(&abs, &p, b0, after) {
            Some("a directory holding files made here since".to_string())
        } else {
            None
        };
        out.push(PathPlan {
            path: display(&p),
            path_hex: crate::paths::hex_unless_utf8(&p),
            action: match (&reason, b0) {
                (Some(_), _) => "left",
                (None, Some(_)) => "restore",
                (None, None) => "remove",
            },
            reason,
            bytes: p,
        });
    }
    Ok(out)
}

/// Whether the undo planned so far (`out`) puts back at `up` the directory it was before the
/// operation (a symlink the operation made in its place goes).
fn made_a_directory_again(out: &[PathPlan], before: &Flat, up: &[u8]) -> bool {
    before
        .get(up)
        .is_some_and(|e| e.kind == cachesync_objects::EntryKind::Dir)
        && out
            .iter()
            .any(|p| p.bytes.as_slice() == up && p.action == "restore")
}

/// Whether the workspace's directory `abs` (at `path`), which must go or become something
/// else (`b0` is not a directory), holds anything the operation did not leave there.
fn holds_others(abs: &std::path::Path, path: &[u8], b0: Option<&Entry>, after: &Flat) -> bool {
    if b0.is_some_and(|e| e.kind == cachesync_objects::EntryKind::Dir) {
        return false;
    }
    let Ok(list) = std::fs::read_dir(abs) else {
        return false;
    };
    list.flatten().any(|child| {
        let name = child.file_name();
        let mut p = path.to_vec();
        p.push(b'/');
        p.extend_from_slice(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::as_bytes(
            name.as_os_str(),
        ));
        after.get(p.as_slice()).is_none()
    })
}

/// The operation an interrupted undo was taking back, if one was (see
/// [`crate::state_keys::UNDO_PENDING`]).
///
/// # Errors
/// Store errors.
pub fn pending(ws: &Workspace) -> Result<Option<u64>> {
    Ok(ws
        .store
        .table(cachesync_objects::keys::CF_STATE)
        .get(crate::state_keys::UNDO_PENDING)?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
}

fn set_pending(ws: &Workspace, op: Option<u64>) -> Result<()> {
    let mut batch = cachesync_objects::Batch::new();
    match op {
        Some(id) => batch.put(
            cachesync_objects::keys::CF_STATE,
            crate::state_keys::UNDO_PENDING,
            id.to_string().as_bytes(),
        ),
        None => batch.delete(
            cachesync_objects::keys::CF_STATE,
            crate::state_keys::UNDO_PENDING,
        ),
    }
    Ok(ws.store.commit(batch)?)
}

/// Takes operation `opts.op` back on both sides (see the module's documentation).
///
/// # Errors
/// [`SyncError::Usage`] (nothing changed) when the operation is unknown, changed nothing,
/// is the first copy, or its snapshots or a file's content are no longer in the store, or
/// the undo of another operation was interrupted; [`SyncError::Offline`] and friends when
/// the share cannot be written; the push's errors.
pub fn run(ws: &mut Workspace, opts: &Options, progress: &dyn Progress) -> Result<Outcome> {
    let op = target(ws, opts.op)?;
    if let Some(other) = pending(ws)?.filter(|&o| o != op.id) {
        return Err(SyncError::Usage(format!(
            "the undo of operation {other} was interrupted: `cachesync undo {other}` finishes it first"
        )));
    }
    if op.local_paths.is_some() {
        let op = crate::journal::with_plan(&ws.store, op)?;
        return local::run(ws, &op, opts.dry_run);
    }
    let before = flat_of(ws, op.base_before.as_deref(), op.id)?;
    let after = flat_of(ws, op.base_after.as_deref(), op.id)?;
    let paths = plan(ws, &op, &before, &after)?;
    let mut outcome = Outcome {
        undone: op.id,
        command: op.command.as_str(),
        paths,
        push: None,
        both_sides: true,
    };
    let acted: Vec<Vec<u8>> = outcome
        .paths
        .iter()
        .filter(|p| p.action == "restore" || p.action == "remove")
        .map(|p| p.bytes.clone())
        .collect();
    if opts.dry_run || (acted.is_empty() && pending(ws)?.is_none()) {
        return Ok(outcome);
    }
    // Both sides are written: nothing starts while the share is out of reach by hand.
    ws.require_remote()?;
    if ws.mode()?.is_disconnected() {
        return Err(SyncError::Usage(
            "the workspace is disconnected: undo writes both sides; `cachesync connect` first"
                .into(),
        ));
    }
    let restored: Vec<(&Vec<u8>, &Entry)> = acted
        .iter()
        .filter_map(|p| before.get(p.as_slice()).map(|e| (p, e)))
        .collect();
    content_is_stored(ws, &restored)?;
    // From here until the share is written, no sync may send half of it.
    set_pending(ws, Some(op.id))?;
    crate::failpoint::hit("undo-before-local");
    let meanwhile = write_locally(ws, &acted, &restored, &before, &after)?;
    for p in &mut outcome.paths {
        if meanwhile.contains(&p.bytes) {
            p.action = "left";
            p.reason = Some("changed here while the undo ran".into());
        }
    }
    let acted: Vec<Vec<u8>> = acted
        .into_iter()
        .filter(|p| !meanwhile.contains(p))
        .collect();
    let mut batch = cachesync_objects::Batch::new();
    for p in &acted {
        crate::index::remove(&mut batch, p);
    }
    ws.store.commit(batch)?;
    crate::failpoint::hit("undo-before-push");
    if !acted.is_empty() {
        let push = crate::sync::Options {
            command: OpKind::Undo,
            direction: crate::plan::Direction::Push,
            paths: acted,
            dry_run: false,
            // The deletions are the operation's own, named by the journal, not a scan's
            // guess; and the paths are exactly those, not what is under them.
            force: true,
            exact_paths: true,
        };
        outcome.push = Some(crate::sync::run(ws, &push, progress)?);
    }
    set_pending(ws, None)?;
    Ok(outcome)
}

/// The workspace's side of the undo: what the operation made where something else comes
/// back goes first, then the earlier versions are written, then the rest of what it made
/// goes. The paths found changed meanwhile, left as they are, are returned.
fn write_locally(
    ws: &Workspace,
    acted: &[Vec<u8>],
    restored: &[(&Vec<u8>, &Entry)],
    before: &Flat,
    after: &Flat,
) -> Result<Vec<Vec<u8>>> {
    let made: Vec<&Vec<u8>> = acted
        .iter()
        .filter(|p| before.get(p.as_slice()).is_none())
        .collect();
    // Under a path that comes back as something other than a directory (a directory the
    // operation made where a file was).
    let in_the_way = |p: &[u8]| {
        restored.iter().any(|(r, e)| {
            e.kind != cachesync_objects::EntryKind::Dir
                && p != r.as_slice()
                && crate::paths::is_within(p, r)
        })
    };
    let (first, last): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
        made.into_iter().partition(|p| in_the_way(p));
    let mut left = remove_made(ws, &first, after)?;
    let written = write_all(ws, &Into::Workspace(after), restored)?;
    left.extend(
        restored
            .iter()
            .filter(|(p, _)| written.left.contains(&display(p)))
            .map(|(p, _)| (*p).clone()),
    );
    crate::failpoint::hit("undo-restored");
    left.extend(remove_made(ws, &last, after)?);
    Ok(left)
}

/// Removes from the workspace what the operation made (`paths`, in path order), deepest
/// first: a file moved aside, checked to be what the operation left, then deleted (put back
/// if it changed meanwhile); a directory only when empty. The paths left are returned.
fn remove_made(ws: &Workspace, paths: &[&Vec<u8>], after: &Flat) -> Result<Vec<Vec<u8>>> {
    let mut left = Vec::new();
    for p in paths.iter().rev() {
        let abs = under(&ws.root, p);
        let Ok(md) = std::fs::symlink_metadata(&abs) else {
            continue;
        };
        if md.is_dir() {
            match std::fs::remove_dir(&abs) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => left.push((*p).clone()),
                Err(e) => return Err(SyncError::io(&abs, e)),
            }
            continue;
        }
        let aside = ws.temp_beside(p, "undo");
        crate::localfs::rename_no_replace(&abs, &aside)
            .or_else(|e| {
                if crate::localfs::flags_unsupported(&e) {
                    std::fs::rename(&abs, &aside)
                } else {
                    Err(e)
                }
            })
            .map_err(|e| SyncError::io(&abs, e))?;
        if settled(&aside, after.get(p.as_slice()), None, false) {
            std::fs::remove_file(&aside).map_err(|e| SyncError::io(&aside, e))?;
        } else {
            // Changed meanwhile: back under its name (or, taken meanwhile too, kept beside).
            if crate::localfs::rename_no_replace(&aside, &abs).is_err() {
                let mut kept = abs.clone().into_os_string();
                kept.push(".kept-by-undo");
                std::fs::rename(&aside, &kept).map_err(|e| SyncError::io(&aside, e))?;
            }
            left.push((*p).clone());
        }
    }
    Ok(left)
}
