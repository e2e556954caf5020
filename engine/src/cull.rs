//! Culling: when the cache is over its budget, the least wanted clean files leave the
//! workspace (they become remote-only) and their content leaves the store.
//!
//! Thresholds, as cachefilesd has them: automatic culling starts when the cache uses more
//! than [`CULL_START_PERCENT`] of its budget and stops once it is under [`CULL_TO_PERCENT`];
//! what had to be here is refused (EDISCONFULL) when it would take the cache over 100%. Candidates
//! are clean (as the base records them), materialized, unpinned files not in conflict, the
//! lowest hoard priority first and, among equals, the least recently used (atime) first.
//! Modified, provisional and conflicted files are never culled, nor chunks a kept conflict
//! variant still needs.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use cachesync_objects::{keys, EntryKind, FileId};
use serde::Serialize;

use crate::error::Result;
use crate::workspace::Workspace;

/// Automatic culling starts above this share of the budget.
pub const CULL_START_PERCENT: u64 = 90;
/// Culling stops under this share of the budget.
pub const CULL_TO_PERCENT: u64 = 80;

/// What `cull` did (or would do).
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// The budget, if any.
    pub budget: Option<u64>,
    /// Bytes the cache used before.
    pub used_before: u64,
    /// Bytes it uses after.
    pub used_after: u64,
    /// Files made remote-only, in the order they were chosen.
    pub dropped: Vec<String>,
    /// Why nothing was done, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The cache budget in force: `budget_bytes`, bounded by `budget_disk_percent` of the free
/// space on the workspace's disk plus what the cache already uses; none when neither is
/// set. Files a running sync staged count as free space: the budget is the one the run saw
/// before it read them.
pub fn budget(ws: &Workspace) -> Option<u64> {
    let disk = ws.config.budget_disk_percent.and_then(|pct| {
        let st = rustix::fs::statvfs(&ws.root).ok()?;
        let free = st.f_bavail.saturating_mul(st.f_frsize) + ws.staged_bytes();
        Some(ws.cache_bytes() + free / 100 * u64::from(pct))
    });
    match (ws.config.budget_bytes, disk) {
        (Some(b), Some(d)) => Some(b.min(d)),
        (b, d) => b.or(d),
    }
}

/// The cache's use: `.cachesync/` plus the regular files in the workspace.
pub fn cache_use(ws: &Workspace, local: &crate::scan::Flat, remote_only: &HashSet<Vec<u8>>) -> u64 {
    ws.cache_bytes() + files_bytes(local, remote_only)
}

/// Bytes of the regular files in the workspace `local` (remote-only ones are not there).
pub fn files_bytes(local: &crate::scan::Flat, remote_only: &HashSet<Vec<u8>>) -> u64 {
    local
        .iter()
        .filter(|(p, e)| e.kind == EntryKind::File && !remote_only.contains(*p))
        .map(|(_, e)| e.size)
        .sum()
}

/// Content ids only remote-only paths name: their content may leave the store.
pub fn collectable(ws: &Workspace) -> Result<HashSet<FileId>> {
    let remote_only = crate::presence::load(&ws.store)?;
    let mut only = HashSet::new();
    let mut needed = HashSet::new();
    for r in [keys::REF_BASE, keys::REF_REMOTE] {
        for (p, e) in ws.store.read_ref_flat(r)? {
            if let Some(f) = e.file {
                if remote_only.contains(&p) {
                    only.insert(f);
                } else {
                    needed.insert(f);
                }
            }
        }
    }
    Ok(only.difference(&needed).copied().collect())
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Only report what would go.
    pub dry_run: bool,
    /// Asked for by hand (`cachesync cull`): journalled as `cull`, for `undo`. A sync's cull
    /// is not: it belongs to the cache, as a mount's does, and `undo` after a sync means
    /// that sync.
    pub by_hand: bool,
}

/// Culls down to [`CULL_TO_PERCENT`] of the budget (see the module doc).
///
/// # Errors
/// Local scan, store and I/O errors.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Outcome> {
    let mut report = Outcome {
        budget: budget(ws),
        ..Outcome::default()
    };
    let Some(budget) = budget(ws) else {
        report.note = Some("no cache budget is set (clone --budget, or budget_bytes)".into());
        return Ok(report);
    };
    let base = ws.synced_base()?;
    let local = crate::presence::scan_workspace(ws, &base)?;
    if !opts.dry_run && !local.index_removals.is_empty() {
        // Index entries of files that are gone (a drop killed before it recorded its
        // work) name content that gc keeps for the workspace's sake.
        let mut batch = cachesync_objects::Batch::new();
        for p in &local.index_removals {
            crate::index::remove(&mut batch, p);
        }
        ws.store.commit(batch)?;
    }
    let mut used = cache_use(ws, &local.tree, &local.remote_only);
    report.used_before = used;
    report.used_after = used;
    let target = budget * CULL_TO_PERCENT / 100;
    if used <= target {
        report.note = Some("the cache is under its culling threshold".into());
        return Ok(report);
    }
    // The history (earlier versions kept for restore and undo) goes before any file does.
    if !opts.dry_run && !crate::gc::history(ws)?.is_empty() {
        crate::gc::collect(ws, false)?;
        used = cache_use(ws, &local.tree, &local.remote_only);
        report.used_after = used;
        if used <= target {
            report.note = Some("letting the history go made the room".into());
            return Ok(report);
        }
    }
    let candidates = cull_candidates(ws, &base, &local)?;
    let mut chosen = Vec::new();
    let mut estimate = used;
    for (p, size) in candidates {
        if estimate <= target {
            break;
        }
        // The workspace copy and (about) the stored content.
        estimate = estimate.saturating_sub(size * 2);
        chosen.push(p);
    }
    report.dropped = chosen.iter().map(|p| crate::paths::display(p)).collect();
    if opts.dry_run {
        return Ok(report);
    }
    if !chosen.is_empty() {
        let record = opts
            .by_hand
            .then(|| crate::presence::Record::of(crate::journal::OpKind::Cull));
        crate::presence::drop_with(ws, &chosen, &|_| false, record)?;
    }
    // Even with nothing left to drop: a cull killed after its drops left their content
    // in the store, and only a collection gives that space back.
    crate::gc::collect(ws, false)?;
    let local = crate::presence::scan_workspace(ws, &base)?;
    report.used_after = cache_use(ws, &local.tree, &local.remote_only);
    Ok(report)
}

/// The files culling would drop, in order, with their sizes (see the module doc).
///
/// # Errors
/// Store errors.
pub fn cull_candidates(
    ws: &Workspace,
    base: &crate::scan::Flat,
    local: &crate::scan::LocalScan,
) -> Result<Vec<(Vec<u8>, u64)>> {
    let wset = ws.working_set();
    let conflicted: HashSet<Vec<u8>> = crate::conflict::open(&ws.store)?
        .iter()
        .map(|r| r.path_bytes())
        .collect();
    let mut candidates: Vec<(i32, i64, Vec<u8>, u64)> = Vec::new();
    for (p, l) in &local.tree {
        if l.kind != EntryKind::File
            || local.remote_only.contains(p)
            || conflicted.contains(p)
            || wset.is_pinned(p)
            || !crate::reconcile::same(base.get(p), Some(l))
            || l.file.is_none_or(|f| !crate::presence::is_known(f))
        {
            continue;
        }
        let atime = std::fs::symlink_metadata(crate::paths::under(&ws.root, p))
            .map(|m| m.atime() * 1_000_000_000 + m.atime_nsec())
            .unwrap_or(0);
        candidates.push((wset.priority(p), atime, p.clone(), l.size));
    }
    candidates.sort();
    Ok(candidates.into_iter().map(|(_, _, p, s)| (p, s)).collect())
}

/// Culls when the cache is above [`CULL_START_PERCENT`] of its budget and culling is on.
///
/// # Errors
/// As [`run`].
pub fn cull_if_needed(ws: &Workspace, used: u64) -> Result<Option<Outcome>> {
    match budget(ws) {
        Some(b) if ws.config.culling && used * 100 > b * CULL_START_PERCENT => {
            // Content only remote-only files named (refused, or never cached) goes
            // first, and the history (earlier versions kept for restore and undo); files
            // are culled only if that was not enough.
            crate::gc::collect(ws, false)?;
            let base = ws.synced_base()?;
            let local = crate::presence::scan_workspace(ws, &base)?;
            if cache_use(ws, &local.tree, &local.remote_only) * 100 > b * CULL_START_PERCENT {
                let opts = Options {
                    dry_run: false,
                    by_hand: false,
                };
                run(ws, &opts).map(Some)
            } else {
                Ok(None)
            }
        }
        _ => Ok(None),
    }
}

/// What [`make_room`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// There is no budget, or `need` more bytes fit (after culling, if it culled): the
    /// cache's use now.
    Fits(u64),
    /// `need` more bytes do not fit even after culling every candidate (or culling is off):
    /// the use, the budget. Nothing was culled.
    Full(u64, u64),
}

/// Makes room for `need` more bytes under the budget, culling the least wanted clean files
/// (as [`run`] chooses them, `keep` spared) only if they free enough; records the `cache-full`
/// level (and its event) when they cannot.
///
/// # Errors
/// Local scan, store and I/O errors.
pub fn make_room(ws: &Workspace, need: u64, keep: &[u8]) -> Result<Room> {
    let Some(budget) = budget(ws) else {
        return Ok(Room::Fits(0));
    };
    let base = ws.synced_base()?;
    let local = crate::presence::scan_workspace(ws, &base)?;
    let mut used = cache_use(ws, &local.tree, &local.remote_only);
    if used.saturating_add(need) <= budget {
        return Ok(Room::Fits(used));
    }
    // The history (earlier versions kept for restore and undo) goes before any file does.
    if !crate::gc::history(ws)?.is_empty() {
        crate::gc::collect(ws, false)?;
        used = cache_use(ws, &local.tree, &local.remote_only);
        if used.saturating_add(need) <= budget {
            return Ok(Room::Fits(used));
        }
    }
    let mut chosen = Vec::new();
    let mut estimate = used;
    if ws.config.culling {
        for (p, size) in cull_candidates(ws, &base, &local)? {
            if estimate.saturating_add(need) <= budget {
                break;
            }
            if p.as_slice() != keep {
                estimate = estimate.saturating_sub(size * 2);
                chosen.push(p);
            }
        }
    }
    if chosen.is_empty() || estimate.saturating_add(need) > budget {
        crate::sync::budget::note_cache_level(
            ws,
            crate::events::CacheLevel::Full,
            used + need,
            budget,
        )?;
        return Ok(Room::Full(used, budget));
    }
    crate::presence::drop_as(ws, &chosen, false)?;
    crate::gc::run(ws)?;
    let local = crate::presence::scan_workspace(ws, &base)?;
    Ok(Room::Fits(cache_use(ws, &local.tree, &local.remote_only)))
}
