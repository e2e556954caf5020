//! `gc`: resolved conflict records older than `keep_resolved_days` dropped, then every
//! object nothing refers to any more collected (the content only remote-only files name
//! included), and the space given back.

use crate::error::Result;
use crate::workspace::Workspace;
use cachesync_objects::keys;

/// What `gc` removed.
#[derive(Debug)]
pub struct Outcome {
    /// The store objects removed.
    pub store: cachesync_objects::GcReport,
    /// Resolved conflict records dropped (older than `keep_resolved_days`).
    pub conflict_records: usize,
}

/// Removes store objects nothing refers to any more. Kept: everything reachable from the
/// `base` and `remote` snapshots and from the snapshots of the recent operations
/// ([`history`]), every variant of every open conflict and of every
/// conflict resolved less than `keep_resolved_days` ago (older resolved records are
/// dropped first, with their variants), and the content the index names (local changes
/// not yet pushed).
///
/// # Errors
/// Store errors (gc refuses to run on a store it cannot read completely).
pub fn run(ws: &Workspace) -> Result<Outcome> {
    collect(ws, true)
}

/// [`run`], the history let go too (`keep_history` false): what a cache over its budget does
/// before it culls files (see `cull.rs`).
///
/// # Errors
/// As [`run`].
pub fn collect(ws: &Workspace, keep_history: bool) -> Result<Outcome> {
    let cutoff = crate::now_ns() - i64::from(ws.config.keep_resolved_days) * 86_400 * 1_000_000_000;
    let mut keep: Vec<cachesync_objects::FileId> = Vec::new();
    let mut drop = cachesync_objects::Batch::new();
    let mut dropped = 0;
    for r in crate::conflict::all(&ws.store)? {
        let expired = r.state == crate::conflict::ConflictState::Resolved
            && r.resolved_ns.unwrap_or(r.since_ns) < cutoff;
        if expired {
            drop.delete(keys::CF_CONFLICTS, &r.path_bytes());
            dropped += 1;
        } else {
            keep.extend(r.files());
        }
    }
    ws.store.commit(drop)?;
    keep.extend(crate::index::load(&ws.store)?.values().map(|e| e.file));
    // A patch in place left unfinished is finished (or checked) from both contents.
    for p in crate::sync::patch::pending(&ws.store)? {
        keep.extend(
            [&p.base, &p.target]
                .into_iter()
                .filter_map(|h| cachesync_objects::FileId::from_hex(h)),
        );
    }
    let (mut snapshots, files) = if keep_history {
        (history(ws)?, history_files(ws)?)
    } else {
        (Vec::new(), Vec::new())
    };
    keep.extend(files);
    // An undo interrupted between its phases finishes from what its operation names, even
    // with the history let go.
    if let Some(op) = pending_undo(ws)? {
        snapshots.extend(snapshots_of(&op));
        keep.extend(files_of(ws, op)?);
    }
    let collectable = crate::cull::collectable(ws)?;
    Ok(Outcome {
        store: ws.store.gc_keeping(&snapshots, &keep, &collectable)?,
        conflict_records: dropped,
    })
}

/// The operation an interrupted undo is taking back, if one is.
fn pending_undo(ws: &Workspace) -> Result<Option<crate::journal::OpRecord>> {
    let Some(id) = crate::undo::pending(ws)? else {
        return Ok(None);
    };
    Ok(crate::journal::all(&ws.store)?
        .into_iter()
        .find(|op| op.id == id))
}

/// The snapshots an operation names.
fn snapshots_of(op: &crate::journal::OpRecord) -> Vec<cachesync_objects::SnapshotId> {
    [op.base_before.as_deref(), op.base_after.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(cachesync_objects::SnapshotId::from_hex)
        .collect()
}

/// The content an operation's `settle` steps name.
fn files_of(
    ws: &Workspace,
    op: crate::journal::OpRecord,
) -> Result<Vec<cachesync_objects::FileId>> {
    if op.local_paths.is_none() {
        return Ok(Vec::new());
    }
    let op = crate::journal::with_plan(&ws.store, op)?;
    Ok(crate::undo::local::steps_of(&op)?
        .iter()
        .flat_map(crate::undo::local::LocalStep::files)
        .collect())
}

/// The snapshots kept for `restore --at` and `log PATH`: before and after each of the last
/// `keep_operations` operations that moved the base, and of every one of the last
/// `keep_operations_days` days.
///
/// # Errors
/// Store errors.
pub fn history(ws: &Workspace) -> Result<Vec<cachesync_objects::SnapshotId>> {
    Ok(kept_operations(ws)?.iter().flat_map(snapshots_of).collect())
}

/// The operations whose snapshots [`history`] keeps.
fn kept_operations(ws: &Workspace) -> Result<Vec<crate::journal::OpRecord>> {
    let since =
        crate::now_ns() - i64::from(ws.config.keep_operations_days) * 86_400 * 1_000_000_000;
    let mut moved: Vec<crate::journal::OpRecord> = crate::journal::all(&ws.store)?
        .into_iter()
        .filter(|op| op.base_after.is_some())
        .collect();
    let last = moved
        .len()
        .saturating_sub(ws.config.keep_operations as usize);
    let mut i = 0;
    moved.retain(|op| {
        i += 1;
        i > last || op.started_ns >= since
    });
    Ok(moved)
}

/// The content that undoing the kept operations which settled a conflict writes back (what
/// the workspace held before the resolution, and the resolution): no snapshot names it.
///
/// # Errors
/// Store errors; a plan that does not decode.
pub fn history_files(ws: &Workspace) -> Result<Vec<cachesync_objects::FileId>> {
    let mut out = Vec::new();
    for op in kept_operations(ws)? {
        out.extend(files_of(ws, op)?);
    }
    Ok(out)
}
