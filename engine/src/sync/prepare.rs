//! Steps 7 and 8 of a run: from the three trees to the plan, the one answer `status`, the
//! dry run and the sync share, and the conflicts that plan leaves open; then the deletion
//! guard.

use std::collections::{BTreeMap, HashSet};

use cachesync_objects::EntryKind;

use crate::conflict::{self, ConflictKind, ConflictRecord};
use crate::error::{Result, SyncError};
use crate::paths::is_within;
use crate::plan::{Direction, Op, Plan, Side};
use crate::reconcile::{reconcile, Change, Outcome};
use crate::scan::Flat;
use crate::workspace::Workspace;

use super::Trees;

/// What a run would do with the scanned `trees`: reconcile, then the adjustments every
/// run makes (only `paths`, if any; new files that stay remote-only; remote-only files
/// following the server; automatic merges; case clashes; paths that kept changing or
/// could not be read left out), then the plan in `direction`. `status`, the dry run and
/// the sync all start from this one answer, so what `status` says is pending is what
/// `sync` does.
///
/// # Errors
/// Store errors (reading the variants an automatic merge needs).
pub(crate) fn prepare(
    ws: &Workspace,
    trees: &Trees,
    paths: &[Vec<u8>],
    direction: Direction,
) -> Result<Plan> {
    let (changes, _) = changes(ws, trees, paths, false)?;
    Ok(Plan::build(changes, direction))
}

/// What [`prepare`] builds its plan from: the changes, and the new files that stay
/// remote-only (never-cache, or left out by the budget). Nothing after it reads the
/// remote's tree (see [`Trees::let_go_of_remote`]).
///
/// # Errors
/// As [`prepare`].
pub(crate) fn changes(
    ws: &Workspace,
    trees: &Trees,
    paths: &[Vec<u8>],
    exact: bool,
) -> Result<(Vec<Change>, Vec<Vec<u8>>)> {
    let mut changes = reconcile(
        &without(&trees.base, &trees.local.reappeared),
        &trees.local.tree,
        trees.remote_tree(),
    );
    if !paths.is_empty() {
        // The paths asked for (with what is under them, unless `exact`), and the new
        // directories they need to exist in.
        changes.retain(|c| {
            paths.iter().any(|p| {
                (if exact {
                    c.path == *p
                } else {
                    is_within(&c.path, p)
                }) || (is_within(p, &c.path)
                    && c.result()
                        .and_then(|r| r.as_ref())
                        .is_some_and(|e| e.kind == EntryKind::Dir))
            })
        });
    }
    // A new file under a never-cache directory stays remote-only.
    let wset = ws.working_set();
    let mut new_remote_only: Vec<Vec<u8>> = Vec::new();
    for c in changes.iter_mut() {
        let fresh_file = c.local.is_none()
            && c.base.is_none()
            && matches!(&c.outcome, Outcome::Resolved(Some(t)) if t.kind == EntryKind::File);
        if fresh_file && (wset.is_never_cached(&c.path) || trees.deferred.paths.contains(&c.path)) {
            if let Outcome::Resolved(t) = &c.outcome {
                c.local = t.clone();
            }
            new_remote_only.push(c.path.clone());
        }
    }
    // A remote-only file follows the server without its content coming here.
    for c in changes.iter_mut() {
        if trees.local.remote_only.contains(&c.path) {
            if let Outcome::Resolved(t) = &c.outcome {
                if t.as_ref().is_none_or(|e| e.kind == EntryKind::File) {
                    c.local = t.clone();
                } else {
                    // Replaced on the server by a directory or a symlink: nothing of
                    // ours is here, so the server's is simply created.
                    c.local = None;
                }
            }
        }
    }
    crate::merge::auto_merge(ws, &mut changes)?;
    if ws.identity.case_insensitive {
        crate::reconcile::settle_case_clashes(&mut changes, trees.remote_tree());
    }
    // Files that kept changing while they were read, and entries that could not be read
    // (in `unstable` too), are left for the next run.
    let unstable: Vec<&Vec<u8>> = trees
        .local
        .unstable
        .iter()
        .chain(&trees.remote.unstable)
        .collect();
    changes.retain(|c| !unstable.iter().any(|u| is_within(&c.path, u)));
    Ok((changes, new_remote_only))
}

/// The conflicts that will be open after a run of `plan`: each conflict of the plan, with
/// its recorded record when that is the same conflict; a recorded one whose path the plan
/// still changes (a write the server refused last time: whether it refuses again is only
/// known when it is tried); and every lost+found record whose copy is still there. A
/// recorded conflict whose path the plan leaves alone is settled by the run. `status` and
/// the dry run both answer with this.
///
/// # Errors
/// Store errors.
pub(crate) fn expected_conflicts(ws: &Workspace, plan: &Plan) -> Result<Vec<ConflictRecord>> {
    let existing: BTreeMap<Vec<u8>, ConflictRecord> = conflict::open(&ws.store)?
        .into_iter()
        .map(|r| (r.path_bytes(), r))
        .collect();
    let mut out = BTreeMap::new();
    for c in &plan.changes {
        match c.conflict_kind() {
            Some(kind) => {
                out.insert(c.path.clone(), conflict_record_for(&existing, c, kind).0);
            }
            None => {
                if let Some(r) = existing.get(&c.path).filter(|r| r.lost_found.is_none()) {
                    out.insert(c.path.clone(), r.clone());
                }
            }
        }
    }
    for (path, r) in existing {
        if r.lost_found.is_some() && r.lost_found_present(&ws.root) {
            out.entry(path).or_insert(r);
        }
    }
    Ok(out.into_values().collect())
}

/// The record a conflict of `kind` at change `c` gets: the open one already there, when it
/// is the same conflict (same kind, client and server; a client being edited by hand with
/// `resolve --edit` counts as the same), else a fresh one (`true`).
pub(super) fn conflict_record_for(
    existing: &BTreeMap<Vec<u8>, ConflictRecord>,
    c: &crate::reconcile::Change,
    kind: ConflictKind,
) -> (ConflictRecord, bool) {
    let fresh = conflict::record(
        &c.path,
        kind,
        c.base.as_deref(),
        c.local.as_deref(),
        c.remote.as_deref(),
    );
    let same = existing.get(&c.path).filter(|old| {
        (old.client == fresh.client || old.resolution.as_deref() == Some("editing"))
            && old.server == fresh.server
            && old.kind == fresh.kind
    });
    match same {
        Some(old) => (old.clone(), false),
        None => (fresh, true),
    }
}

/// `base` without `paths` (remote-only paths where something new was written here):
/// `base` itself, not a copy, when there are none (nearly always; a copy of the base of
/// 100,000 files was a twentieth of a status and 30 MB of every sync).
pub(crate) fn without<'a>(base: &'a Flat, paths: &HashSet<Vec<u8>>) -> std::borrow::Cow<'a, Flat> {
    if paths.is_empty() {
        return std::borrow::Cow::Borrowed(base);
    }
    std::borrow::Cow::Owned(
        base.iter()
            .filter(|(p, _)| !paths.contains(*p))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect(),
    )
}

/// The deletion guard: refuses a plan that deletes more than `percent` of the base's files
/// on either side (and more than one file).
pub(super) fn guard(plan: &Plan, base: &Flat, percent: u32) -> Result<()> {
    let total = base.values().filter(|e| e.kind != EntryKind::Dir).count();
    for side in [Side::Local, Side::Remote] {
        let count = plan
            .steps
            .iter()
            .filter(|s| {
                s.side == side
                    && s.op == Op::Remove
                    && s.expect.as_ref().is_some_and(|e| e.kind != EntryKind::Dir)
                    && plan.changes[s.change].result().is_some_and(|r| r.is_none())
            })
            .count();
        if count > 1 && count * 100 > total * percent as usize {
            return Err(SyncError::DeletionGuard {
                side,
                count,
                total,
                percent,
            });
        }
    }
    Ok(())
}
