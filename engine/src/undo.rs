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

use cachesync_objects::{Entry, Flat};
use serde::Serialize;

use crate::error::{Result, SyncError};
use crate::journal::{OpKind, OpRecord};
use crate::paths::{display, hex, under};
use crate::progress::Progress;
use crate::restore::{content_is_stored, same_version, settled, write_all};
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
            .find(|o| o.base_after.is_some())
            .ok_or_else(|| SyncError::Usage("no operation has changed anything yet".into()))?,
    };
    if op.base_after.is_none() {
        return Err(SyncError::Usage(format!(
            "operation {} ({}) changed nothing both sides agree on: there is nothing to undo",
            op.id,
            op.command.as_str()
        )));
    }
    if op.command == OpKind::Clone || op.base_before.is_none() {
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

fn same(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_version(a, b),
        _ => false,
    }
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
                path_hex: std::str::from_utf8(&p).is_err().then(|| hex(&p)),
                action: "undone",
                reason: None,
            });
            continue;
        }
        let reason = if !same(now.get(p.as_slice()), b1) {
            Some(format!(
                "changed since operation {} by a later operation",
                op.id
            ))
        } else if !settled(&abs, b1, b0, false) {
            Some("changed here since, not yet sent".to_string())
        } else {
            None
        };
        out.push(PathPlan {
            path: display(&p),
            path_hex: std::str::from_utf8(&p).is_err().then(|| hex(&p)),
            action: match (&reason, b0) {
                (Some(_), _) => "left",
                (None, Some(_)) => "restore",
                (None, None) => "remove",
            },
            reason,
        });
    }
    Ok(out)
}

fn path_of(p: &PathPlan) -> Vec<u8> {
    crate::paths::path_bytes(&p.path, p.path_hex.as_deref()).unwrap_or_default()
}

/// Takes operation `opts.op` back on both sides (see the module's documentation).
///
/// # Errors
/// [`SyncError::Usage`] (nothing changed) when the operation is unknown, changed nothing,
/// is the first copy, or its snapshots or a file's content are no longer in the store;
/// [`SyncError::Offline`] and friends when the share cannot be written; the push's errors.
pub fn run(ws: &mut Workspace, opts: &Options, progress: &dyn Progress) -> Result<Outcome> {
    let op = target(ws, opts.op)?;
    let before = flat_of(ws, op.base_before.as_deref(), op.id)?;
    let after = flat_of(ws, op.base_after.as_deref(), op.id)?;
    let paths = plan(ws, &op, &before, &after)?;
    let mut outcome = Outcome {
        undone: op.id,
        command: op.command.as_str(),
        paths,
        push: None,
    };
    let acted: Vec<Vec<u8>> = outcome
        .paths
        .iter()
        .filter(|p| p.action == "restore" || p.action == "remove")
        .map(path_of)
        .collect();
    if opts.dry_run || acted.is_empty() {
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
    crate::failpoint::hit("undo-before-local");
    // What it made goes first: a directory it made where a file was comes out of the way.
    remove_made(ws, &acted, &before)?;
    write_all(ws, &ws.root, &restored, true)?;
    let mut batch = cachesync_objects::Batch::new();
    for p in &acted {
        crate::index::remove(&mut batch, p);
    }
    ws.store.commit(batch)?;
    crate::failpoint::hit("undo-before-push");
    let push = crate::sync::Options {
        command: OpKind::Undo,
        direction: crate::plan::Direction::Push,
        paths: acted,
        dry_run: false,
        // The deletions are the operation's own, named by the journal, not a scan's guess.
        force: true,
    };
    outcome.push = Some(crate::sync::run(ws, &push, progress)?);
    Ok(outcome)
}

/// Removes from the workspace what the operation made (the paths `before` lacks), deepest
/// first; a directory holding something else since is kept.
fn remove_made(ws: &Workspace, acted: &[Vec<u8>], before: &Flat) -> Result<()> {
    for p in acted
        .iter()
        .rev()
        .filter(|p| before.get(p.as_slice()).is_none())
    {
        let abs = under(&ws.root, p);
        let gone = match std::fs::symlink_metadata(&abs) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&abs),
            Ok(_) => std::fs::remove_file(&abs),
            Err(_) => Ok(()),
        };
        match gone {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(e) => return Err(SyncError::io(&abs, e)),
        }
    }
    Ok(())
}
