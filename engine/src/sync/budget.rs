//! Step 8b of a run: the cache budget after the plan (see also `trees.rs`, which leaves
//! out new files that do not fit before they are read).

use std::collections::HashSet;

use cachesync_objects::{keys, EntryKind};

use crate::error::{Result, SyncError};
use crate::events::CacheLevel;
use crate::paths::display;
use crate::plan::{Direction, Op, Plan, Side, Step};
use crate::reconcile::Outcome;
use crate::state_keys;
use crate::workspace::Workspace;

use super::{Outcome as Report, Trees};

/// Step 8b: the content a run brings into the workspace must fit the cache budget (new
/// files the scan left unread already count). A new file that does not fit stays
/// remote-only (`new_remote_only`) and the plan is built again without it; a newer version
/// of a file here that does not fit is returned, for the apply to skip. The report gets
/// `cache_used`, `cache_full` and `cache_required`.
///
/// # Errors
/// Store errors, and the hook's when the cache level changes.
pub(super) fn fit_budget(
    ws: &Workspace,
    trees: &Trees,
    plan: &mut Plan,
    new_remote_only: &mut Vec<Vec<u8>>,
    direction: Direction,
    report: &mut Report,
) -> Result<HashSet<usize>> {
    let wset = ws.working_set();
    // The cache budget: content brought into the workspace must fit.
    let mut over_budget: HashSet<usize> = HashSet::new();
    let mut full: Option<u64> = None;
    if let Some(budget) = crate::cull::budget(ws) {
        // What the cache will hold: what it holds without this run's downloads (a
        // download that is not brought in is collected again), plus, for each file
        // brought in, its copy here and its content in the store. Most wanted first.
        let mut used = crate::cull::cache_use(ws, &trees.local.tree, &trees.local.remote_only)
            .saturating_sub(trees.remote.bytes);
        let mut writes: Vec<(i32, &Step)> = plan
            .steps
            .iter()
            .filter(|s| s.side == Side::Local && matches!(s.op, Op::Write))
            .map(|s| (wset.priority(&s.path), s))
            .collect();
        writes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.path.cmp(&b.1.path)));
        for (_, s) in writes {
            let grow = 2 * s.target.as_ref().map_or(0, |t| t.size);
            let shrink = 2 * s.expect.as_ref().map_or(0, |e| e.size);
            let next = (used + grow).saturating_sub(shrink);
            if next > budget {
                over_budget.insert(s.change);
                full = Some(full.unwrap_or(0).max(next));
            } else {
                used = next;
            }
        }
        // New files left remote-only before they were read count as refused too.
        if trees.deferred.for_budget > 0 {
            full = Some(full.unwrap_or(0).max(trees.deferred.needed));
        }
        let level = if full.is_some() {
            CacheLevel::Full
        } else if used * 10 > budget * 9 {
            CacheLevel::NearlyFull
        } else {
            CacheLevel::Ok
        };
        note_cache_level(ws, level, full.unwrap_or(used), budget)?;
        report.cache_used = Some(used);
    }
    // New files that do not fit stay remote-only (listed, not here): that is the budget
    // working. Other refused content (a newer version of a file here) is left for a
    // later run, and that, or a pinned file that does not fit, is the cache being full.
    let refused_count = over_budget.len() + trees.deferred.for_budget;
    report.cache_required = trees.deferred.required;
    if !over_budget.is_empty() {
        let mut changes = std::mem::take(&mut plan.changes);
        let mut still = HashSet::new();
        for i in over_budget.drain() {
            let c = &mut changes[i];
            let new_file = c.local.is_none()
                && matches!(&c.outcome, Outcome::Resolved(Some(t)) if t.kind == EntryKind::File);
            if !new_file || wset.is_pinned(&c.path) {
                report.cache_required += 1;
            }
            if new_file {
                if let Outcome::Resolved(t) = &c.outcome {
                    c.local = t.clone();
                }
                new_remote_only.push(c.path.clone());
            } else {
                still.insert(i);
            }
        }
        *plan = Plan::build(changes, direction);
        over_budget = still;
    }
    if let Some(needed) = full {
        report.cache_full = Some((needed, crate::cull::budget(ws).unwrap_or(0), refused_count));
    }
    Ok(over_budget)
}

/// Records the cache level and emits an event when it changes to one of the full levels
/// (nearly full above 90% of the budget, full when content was refused).
///
/// # Errors
/// Store and event-log errors; [`SyncError::DamagedRecord`] when the recorded level is
/// not one.
pub(crate) fn note_cache_level(
    ws: &Workspace,
    level: CacheLevel,
    used: u64,
    budget: u64,
) -> Result<()> {
    let state = ws.store.table(keys::CF_STATE);
    let before = match state.get(state_keys::CACHE_LEVEL)? {
        None => CacheLevel::Ok,
        Some(v) => CacheLevel::from_name(&v).ok_or_else(|| {
            SyncError::damaged(
                "the state record `cache-level`",
                format!("{:?} is not a cache level", display(&v)),
            )
        })?,
    };
    if before == level {
        return Ok(());
    }
    state.put(state_keys::CACHE_LEVEL, level.as_str().as_bytes())?;
    let Some(kind) = level.event() else {
        return Ok(());
    };
    crate::events::emit(
        &ws.meta_dir(),
        &crate::events::Outlets::of(&ws.config),
        &crate::events::Event {
            time_ns: crate::now_ns(),
            kind,
            workspace: ws.root.display().to_string(),
            reason: Some(format!("{used} of {budget} bytes")),
            path: None,
            manual: None,
        },
    )
}
