//! `prefetch`, for cron: refresh from the share (a pull), then make the workspace hold the
//! most wanted files that fit the budget, making room by culling less wanted ones.

use crate::cull::CULL_START_PERCENT;
use crate::error::Result;
use crate::workspace::Workspace;
use cachesync_objects::EntryKind;
use serde::Serialize;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

/// A file prefetch considers: priority, path, size, whether it is here.
type Candidate = (i32, Vec<u8>, u64, bool);

/// What `prefetch` did.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Remote-only files of the working set fetched, highest priority first.
    pub fetched: Vec<String>,
    /// Bytes read for them.
    pub bytes_read: u64,
    /// Working-set files left remote-only because the budget is reached.
    pub left_for_budget: usize,
    /// Conflicts open after the pull.
    pub conflicts: usize,
    /// The cache budget refused content the workspace had to hold during the pull (new
    /// files left remote-only do not count: that is the budget working).
    pub cache_full: bool,
    /// Files culled after it.
    pub culled: Vec<String>,
}

/// For cron: refreshes the remote snapshot and pulls (as `pull`), then makes the
/// workspace hold the most wanted files that fit under [`CULL_START_PERCENT`] of the
/// budget: pinned first, then by hoard priority (remote-only files are fetched only for
/// priorities above 0); less wanted clean files here leave to make room.
///
/// # Errors
/// [`crate::SyncError::Disconnected`] (and the other remote errors) when the remote is
/// not there: the workspace records the switch, nothing else happens.
pub fn run(ws: &mut Workspace, progress: &dyn crate::progress::Progress) -> Result<Outcome> {
    let opts = crate::sync::Options {
        command: crate::journal::OpKind::Prefetch,
        direction: crate::plan::Direction::Pull,
        paths: Vec::new(),
        dry_run: false,
        force: false,
        exact_paths: false,
    };
    let mut pulled = crate::sync::run(ws, &opts, progress)?;
    // A step of the pull failed (a full disk): that is the run's result. Entries that
    // cannot be read only make it incomplete: the working set is still fetched, then the
    // run says so.
    let incomplete = match pulled.failed.take() {
        Some(e) if pulled.skipped.is_empty() && !pulled.unreadable.is_empty() => Some(e),
        Some(e) => return Err(e),
        None => None,
    };
    let mut report = Outcome {
        conflicts: pulled.conflicts.len(),
        cache_full: pulled.cache_exhausted().is_some(),
        culled: pulled.culled,
        ..Outcome::default()
    };
    let (all, used) = prefetch_candidates(ws)?;
    // What fits: each file costs its workspace copy and its stored content.
    let here_bytes: u64 = all.iter().filter(|x| x.3).map(|x| 2 * x.2).sum();
    let overhead = used.saturating_sub(here_bytes);
    let limit = crate::cull::budget(ws).map(|b| b * CULL_START_PERCENT / 100);
    let mut room = limit.map(|l| l.saturating_sub(overhead));
    let mut keep: HashSet<Vec<u8>> = HashSet::new();
    for (prio, p, size, _) in &all {
        let fits = room.is_none_or(|r| 2 * size <= r);
        if fits || *prio == i32::MAX {
            room = room.map(|r| r.saturating_sub(2 * size));
            keep.insert(p.clone());
        }
    }
    // Make room: less wanted files here leave (clean ones only; drop refuses the rest).
    let leave: Vec<Vec<u8>> = if ws.config.culling {
        all.iter()
            .filter(|x| x.3 && !keep.contains(&x.1))
            .map(|x| x.1.clone())
            .collect()
    } else {
        Vec::new()
    };
    if !leave.is_empty() {
        let dropped = crate::presence::drop_as(ws, &leave, false)?;
        report
            .culled
            .extend(dropped.done.iter().map(|p| crate::paths::display(p)));
        crate::gc::run(ws)?;
    }
    let mut fetch = Vec::new();
    for (_, p, _, here) in &all {
        if *here {
            continue;
        }
        if keep.contains(p) {
            fetch.push(p.clone());
        } else {
            report.left_for_budget += 1;
        }
    }
    // One get for all of them (it rewrites the snapshots once, not once per file).
    if !fetch.is_empty() {
        let got = crate::presence::get(ws, &fetch)?;
        report.bytes_read += got.bytes_read;
        report
            .fetched
            .extend(got.done.iter().map(|p| crate::paths::display(p)));
    }
    if let Some(e) = incomplete {
        return Err(e);
    }
    Ok(report)
}

/// Every file that could be here, most wanted first: what is here already, and the
/// remote-only files of the working set (priority above 0); among equals, what is here
/// (most recently used first) before what would have to be fetched. With the cache's
/// use now.
fn prefetch_candidates(ws: &Workspace) -> Result<(Vec<Candidate>, u64)> {
    let base = ws.synced_base()?;
    let wset = ws.working_set();
    let local = crate::presence::scan_workspace(ws, &base)?;
    let used = crate::cull::cache_use(ws, &local.tree, &local.remote_only);
    let by_hand = crate::presence::load_by_hand(&ws.store)?;
    // Every file that could be here, most wanted first: what is here already, and the
    // remote-only files of the working set (priority above 0).
    let all: Vec<(i32, Vec<u8>, u64, bool)> = base
        .iter()
        .filter(|(_, e)| e.kind == EntryKind::File)
        .filter_map(|(p, e)| {
            let here = !local.remote_only.contains(p) && local.tree.contains_key(p);
            let prio = wset.priority(p);
            // A file dropped by hand stays remote-only unless it is pinned.
            let wanted = prio > 0 && (prio == i32::MAX || !by_hand.contains(p));
            (here || wanted).then(|| (prio, p.clone(), e.size, here))
        })
        .collect();
    // Most wanted first; among equals, what is here (most recently used first) before
    // what would have to be fetched.
    let atime = |p: &[u8]| {
        std::fs::symlink_metadata(crate::paths::under(&ws.root, p))
            .map(|m| m.atime() * 1_000_000_000 + m.atime_nsec())
            .unwrap_or(0)
    };
    let mut keyed: Vec<((i32, bool, i64), Candidate)> = all
        .into_iter()
        .map(|x| ((x.0, x.3, if x.3 { atime(&x.1) } else { 0 }), x))
        .collect();
    keyed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1 .1.cmp(&b.1 .1)));
    Ok((keyed.into_iter().map(|(_, x)| x).collect(), used))
}
