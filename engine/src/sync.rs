//! pull, push and sync: scan, reconcile, plan, journal, apply with preconditions, commit.

use crate::conflict::ConflictRecord;
use crate::error::{Result, SyncError};
use crate::ignore_rules::TMP_PREFIX;
use crate::journal::{self};
use crate::paths::split_parent;
use crate::plan::{Direction, Plan};
use crate::progress::Progress;
use crate::workspace::Workspace;

mod apply;
mod apply_plan;
mod budget;
mod commit;
mod guard;
mod prepare;
mod record;
mod recover;
mod trees;

pub(crate) use prepare::Prepared;
pub(crate) use trees::Trees;

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The command name, for the journal (`clone`, `pull`, `push`, `sync`).
    pub command: String,
    /// Which way.
    pub direction: Direction,
    /// Only these paths (and what is under them); empty = everything.
    pub paths: Vec<Vec<u8>>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Override the deletion guard.
    pub force: bool,
}

/// What a run did (or, for a dry run, would do).
#[derive(Debug, Default)]
pub struct SyncReport {
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

impl Workspace {
    /// Runs a pull, push or sync (see [`SyncOptions`]).
    ///
    /// # Errors
    /// [`SyncError::Disconnected`] / [`SyncError::RemoteIdentity`] when the remote is not
    /// there, [`SyncError::DeletionGuard`], store and I/O errors. Conflicts are not errors
    /// here: they are in the report.
    pub fn sync(&mut self, opts: &SyncOptions, progress: &dyn Progress) -> Result<SyncReport> {
        self.require_remote()?;
        let before = self.store.ingested();
        let result = self.sync_inner(opts, progress);
        let mut report = self.track(result)?;
        if report.failed.is_none() {
            report.failed = crate::scan::unreadable_error(&report.unreadable);
        }
        let after = self.store.ingested();
        report.bytes_ingested = after.0 - before.0;
        report.bytes_stored = after.1 - before.1;
        if !opts.dry_run {
            if let Some(used) = report.cache_used {
                if let Some(c) = self.cull_if_needed(used)? {
                    report.culled = c.dropped;
                }
            }
        }
        Ok(report)
    }

    fn sync_inner(&mut self, opts: &SyncOptions, progress: &dyn Progress) -> Result<SyncReport> {
        let remote = self.remote()?;
        let mut report = SyncReport::default();
        // Identity first: nothing is changed on a directory that is not our remote. An
        // interrupted operation is recovered (which may remove its temporaries on the remote)
        // after the check and before the scans; otherwise the check runs beside the scans.
        let check = || crate::identity::check(&remote, &self.config.remote, &self.identity);
        let trees = if !opts.dry_run && !journal::unfinished(&self.store)?.is_empty() {
            check()?;
            report.recovered = self.recover(&remote)?;
            self.scan_all(&remote, progress, || Ok(()))?
        } else {
            self.scan_all(&remote, progress, check)?
        };
        report.bytes_down = trees.remote.bytes;
        report.warnings.extend(trees.local.warnings.iter().cloned());
        report
            .warnings
            .extend(trees.remote.warnings.iter().cloned());
        report.unreadable = trees.remote.unreadable.clone();
        let Prepared {
            mut plan,
            mut new_remote_only,
        } = self.prepare(&trees, &opts.paths, opts.direction)?;
        self.guard_and_notices(opts, &trees, &plan, &mut report)?;
        if opts.dry_run {
            report.conflicts = self.expected_conflicts(&plan)?;
            report.plan = plan;
            return Ok(report);
        }

        let over_budget = self.fit_budget(
            &trees,
            &mut plan,
            &mut new_remote_only,
            opts.direction,
            &mut report,
        )?;

        let op = self.journal_plan(opts, &plan, &trees, &remote, &mut report)?;
        let applied = self.apply_plan(
            &remote,
            &trees,
            &plan,
            op.id,
            &over_budget,
            &mut report,
            progress,
        )?;
        let fatal = self.commit_run(
            opts,
            trees,
            &plan,
            applied,
            &new_remote_only,
            op,
            &mut report,
        )?;
        report.plan = plan;
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The temporary name step `i` of operation `op` writes before renaming into `path`.
    pub fn temp_name(&self, op: u64, i: usize, path: &[u8]) -> Vec<u8> {
        let (parent, _) = split_parent(path);
        crate::paths::join(
            parent,
            format!("{TMP_PREFIX}{}.{op}.{i}", self.workspace_id).as_bytes(),
        )
    }
}

pub(super) fn summary(plan: &Plan, report: &SyncReport) -> String {
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

impl SyncReport {
    /// The cache figures (needed, budget, files refused) when the budget refused content the
    /// workspace had to hold (see [`SyncReport::cache_required`]): the run's EDISCONFULL.
    pub fn cache_exhausted(&self) -> Option<(u64, u64, usize)> {
        self.cache_full.filter(|_| self.cache_required > 0)
    }
}
