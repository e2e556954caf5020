//! pull, push and sync: scan, reconcile, plan, journal, apply with preconditions, commit.

use crate::conflict::ConflictRecord;
use crate::error::{Result, SyncError};
use crate::ignore_rules::TMP_PREFIX;
use crate::journal::{self};
use crate::plan::{Direction, Plan, Side};
use crate::progress::Progress;
use crate::workspace::Workspace;

pub(crate) mod ahead;
pub(crate) mod apply;
pub(crate) mod apply_plan;
pub(crate) mod budget;
pub(crate) mod commit;
pub(crate) mod guard;
pub mod land;
pub(crate) mod patch;
pub(crate) mod prepare;
pub(crate) mod record;
pub(crate) mod recover;
pub mod stage;
pub(crate) mod trees;

pub(crate) use trees::Trees;

/// A big file patched on the share: only what changed was sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Patched {
    /// The file (lossy for display).
    pub path: String,
    /// `copy` (a copy on the server, patched, renamed over the file) or `in-place`.
    pub how: &'static str,
    /// Its size.
    pub size: u64,
    /// Bytes sent to the share.
    pub bytes_sent: u64,
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The command, for the journal (clone, pull, push, sync, prefetch).
    pub command: journal::OpKind,
    /// Which way.
    pub direction: Direction,
    /// Only these paths (and what is under them); empty = everything.
    pub paths: Vec<Vec<u8>>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Override the deletion guard.
    pub force: bool,
    /// `paths` are exactly the paths to change (and the directories they need), not what is
    /// under them (`undo`, which names each path it takes back).
    pub exact_paths: bool,
}

/// What a run did (or, for a dry run, would do).
#[derive(Debug, Default)]
pub struct Outcome {
    /// The journal operation (0 for a dry run).
    pub op: u64,
    /// The plan.
    pub plan: Plan,
    /// Steps applied.
    pub applied: usize,
    /// Of which to the workspace.
    pub applied_local: usize,
    /// Of which to the remote.
    pub applied_remote: usize,
    /// Paths skipped because a side changed during the run (synced next time), or because
    /// their step failed (those are in `failed` too).
    pub skipped: Vec<(Vec<u8>, String)>,
    /// The first error a step failed with (a full disk, an I/O error): the run went on with
    /// the other steps, and the failed ones are tried again next time, but the run did not
    /// finish its work, so the command fails with this error's exit code.
    pub failed: Option<SyncError>,
    /// Open conflicts after the run.
    pub conflicts: Vec<ConflictRecord>,
    /// Automatic resolutions worth telling (modify/delete, kept directories).
    pub notices: Vec<String>,
    /// Warnings (files that kept changing, leftovers that could not be removed).
    pub warnings: Vec<String>,
    /// Bytes written to the remote.
    pub bytes_up: u64,
    /// Bytes read from the remote.
    pub bytes_down: u64,
    /// Bytes read, chunked and hashed (local files and remote ones).
    pub bytes_ingested: u64,
    /// Bytes of new chunks written to the store (before compression).
    pub bytes_stored: u64,
    /// Interrupted operations this run abandoned.
    pub recovered: Vec<u64>,
    /// Big files patched on the share instead of sent whole (see `sync/patch.rs`).
    pub patched: Vec<Patched>,
    /// The cache budget refused content: bytes needed, the budget, files not brought in
    /// (new ones are remote-only).
    pub cache_full: Option<(u64, u64, usize)>,
    /// Of the files refused, those the workspace had to hold: a newer version of a file here,
    /// or a pinned (or always-cache) file. Only these make the cache full (EDISCONFULL); new
    /// files left remote-only are the budget working.
    pub cache_required: usize,
    /// The cache's use after the plan, when there is a budget.
    pub cache_used: Option<u64>,
    /// Files culled after the run (the cache was above its culling threshold).
    pub culled: Vec<String>,
    /// Remote entries that could not be read: left as they are on both sides; the run is
    /// incomplete (`failed` says so when no step failed).
    pub unreadable: Vec<crate::scan::Unreadable>,
}

/// Runs a pull, push or sync (see [`Options`]).
///
/// # Errors
/// [`SyncError::Disconnected`] / [`SyncError::RemoteIdentity`] when the remote is not
/// there, [`SyncError::DeletionGuard`], store and I/O errors. Conflicts are not errors
/// here: they are in the report.
pub fn run(ws: &mut Workspace, opts: &Options, progress: &dyn Progress) -> Result<Outcome> {
    ws.require_remote()?;
    if opts.command != journal::OpKind::Undo && !opts.dry_run {
        if let Some(op) = crate::undo::pending(ws)? {
            return Err(SyncError::Usage(format!(
                "the undo of operation {op} was interrupted after it wrote the workspace: \
                 `cachesync undo {op}` finishes it (a sync now would send half of it)"
            )));
        }
    }
    let before = ws.store.ingested();
    let result = sync_inner(ws, opts, progress);
    let mut report = ws.track(result)?;
    if report.failed.is_none() {
        report.failed = crate::scan::unreadable_error(&report.unreadable);
    }
    let after = ws.store.ingested();
    report.bytes_ingested = after.0 - before.0;
    report.bytes_stored = after.1 - before.1;
    if !opts.dry_run {
        if let Some(used) = report.cache_used {
            if let Some(c) = crate::cull::cull_if_needed(ws, used)? {
                report.culled = c.dropped;
            }
        }
    }
    Ok(report)
}

fn sync_inner(ws: &mut Workspace, opts: &Options, progress: &dyn Progress) -> Result<Outcome> {
    let remote = ws.remote()?;
    let mut report = Outcome::default();
    // Identity first: nothing is changed on a directory that is not our remote. An
    // interrupted operation is recovered (which may remove its temporaries on the remote)
    // after the check and before the scans; otherwise the check runs beside the scans.
    let check = || crate::identity::check(&remote, &ws.config.remote, &ws.identity);
    // Whether this run may write on the remote: a pull too makes (and removes) a temporary
    // directory there to read the server's clock; a dry run leaves it untouched.
    let writes = !opts.dry_run;
    // New files are staged in the workspace as they are read when the run may write them
    // there, and all of them (a run for some paths writes only those).
    let stages = writes && opts.direction.allows(Side::Local) && opts.paths.is_empty();
    if writes && !stages {
        // What a killed run left staged (a run that stages removes it itself).
        crate::sync::stage::remove_leftovers(ws);
    }
    // A patch in place left half done is finished first (or left to the reconcile when the
    // file changed meanwhile), so that the scan never takes a half-patched file for an edit.
    let leftovers = !opts.dry_run
        && (!journal::unfinished(&ws.store)?.is_empty()
            || !crate::sync::patch::pending(&ws.store)?.is_empty());
    let mut trees = if leftovers {
        check()?;
        recover_leftovers(ws, &remote, &mut report)?;
        crate::sync::trees::scan_all(ws, &remote, progress, (writes, stages), || Ok(()))?
    } else {
        crate::sync::trees::scan_all(ws, &remote, progress, (writes, stages), check)?
    };
    crate::release_freed_memory();
    // The staged files go to disk while the plan is made and applied (the apply is one
    // thread), instead of all of them in the `syncfs` before the commit.
    let writeback = (trees.stage.as_ref())
        .filter(|stage| !stage.is_empty())
        .map(|_| crate::localfs::Writeback::start(&ws.root));
    report.bytes_down = trees.remote.bytes;
    report.warnings.extend(trees.local.warnings.iter().cloned());
    report
        .warnings
        .extend(trees.remote.warnings.iter().cloned());
    report.unreadable = trees.remote.unreadable.clone();
    let (changes, mut new_remote_only) =
        crate::sync::prepare::changes(ws, &trees, &opts.paths, opts.exact_paths)?;
    trees.let_go_of_remote(ws, opts.direction.allows(Side::Remote))?;
    let mut plan = Plan::build(changes, opts.direction);
    crate::sync::guard::guard_and_notices(ws, opts, &trees, &plan, &mut report)?;
    if opts.dry_run {
        report.conflicts = crate::sync::prepare::expected_conflicts(ws, &plan)?;
        report.plan = plan;
        return Ok(report);
    }

    let over_budget = crate::sync::budget::fit_budget(
        ws,
        &trees,
        &mut plan,
        &mut new_remote_only,
        opts.direction,
        &mut report,
    )?;

    trees.let_go_of_remote(ws, plan.steps.iter().any(|s| s.side == Side::Remote))?;
    let op = crate::sync::record::journal_plan(ws, opts, &plan, &trees, &remote, &mut report)?;
    crate::release_freed_memory();
    let applied = crate::sync::apply_plan::apply_plan(
        ws,
        &remote,
        &trees,
        &plan,
        op.id,
        &over_budget,
        &mut report,
        progress,
    )?;
    crate::release_freed_memory();
    if let Some(writeback) = writeback {
        // It saw first any failure to write the staged files back: the commit's own
        // `syncfs` would not.
        let written_back = writeback.finish();
        if report.applied_local > 0 {
            written_back.map_err(|e| SyncError::io(&ws.root, e))?;
        }
    }
    let fatal = crate::sync::commit::commit_run(
        ws,
        opts,
        trees,
        &plan,
        applied,
        &new_remote_only,
        op,
        &mut report,
    )?;
    // What was put in place as it was read is recorded now, or was removed.
    let _ = std::fs::remove_file(ws.meta_dir().join(crate::sync::land::LOG));
    report.plan = plan;
    match fatal {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// What a killed run left: its operation abandoned (its temporaries removed, what it moved
/// to lost+found recorded), and a patch in place it left half done finished or rolled back.
///
/// # Errors
/// Store and remote errors.
fn recover_leftovers(
    ws: &Workspace,
    remote: &crate::timed::TimedRemote,
    report: &mut Outcome,
) -> Result<()> {
    report.recovered = crate::sync::recover::recover(ws, remote)?;
    for left in crate::sync::patch::finish_pending(ws, remote)? {
        use crate::sync::patch::Leftover;
        match left {
            Leftover::Finished(_) => {}
            Leftover::LeftAlone(path) => report.warnings.push(format!(
                "{}: an interrupted patch was not finished: the file changed on the \
                 server meanwhile (both versions are kept if they differ)",
                crate::paths::display(&path)
            )),
            Leftover::RolledBack(path, why) => report.warnings.push(format!(
                "{}: an interrupted patch could not be finished ({why}): the file on \
                 the server was put back as it was before",
                crate::paths::display(&path)
            )),
        }
    }
    Ok(())
}

/// The temporary name step `i` of operation `op` writes before renaming into `path`.
pub fn temp_name(ws: &Workspace, op: u64, i: usize, path: &[u8]) -> Vec<u8> {
    crate::journal::temporary_name(&temp_prefix(ws), op, i, path)
}

/// What this workspace's temporaries are named by (see [`temp_name`]).
pub fn temp_prefix(ws: &Workspace) -> String {
    format!("{TMP_PREFIX}{}", ws.workspace_id)
}

pub(super) fn summary(plan: &Plan, report: &Outcome) -> String {
    let mut s = format!(
        "{} of {} step(s) applied: {} to the workspace, {} to the remote",
        report.applied,
        plan.steps.len(),
        report.applied_local,
        report.applied_remote
    );
    if !report.conflicts.is_empty() {
        s.push_str(&format!("; {} conflict(s)", report.conflicts.len()));
    }
    if !report.skipped.is_empty() {
        s.push_str(&format!("; {} skipped", report.skipped.len()));
    }
    s
}

impl Outcome {
    /// The cache figures (needed, budget, files refused) when the budget refused content the
    /// workspace had to hold (see [`Outcome::cache_required`]): the run's EDISCONFULL.
    pub fn cache_exhausted(&self) -> Option<(u64, u64, usize)> {
        self.cache_full.filter(|_| self.cache_required > 0)
    }
}
