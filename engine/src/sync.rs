//! pull, push and sync: scan, reconcile, plan, journal, apply with preconditions, commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;

use cachesync_objects::{keys, Batch, EntryKind, Snapshot, Store};

use crate::conflict::{self, ConflictKind, ConflictRecord, ConflictState};
use crate::error::{Result, SyncError};
use crate::events::CacheLevel;
use crate::ignore_rules::TMP_PREFIX;
use crate::index::{self};
use crate::journal::{self, OpRecord, OpState, TempRecord};
use crate::paths::{display, hex, is_within, split_parent, under};
use crate::plan::{Direction, Op, Plan, Side, Step};
use crate::progress::Progress;
use crate::reconcile::Outcome;
use crate::state_keys;
use crate::workspace::Workspace;

mod apply;
mod prepare;
mod recover;
mod trees;

use apply::{refused_by_server, Applier, StepError};
pub(crate) use prepare::Prepared;
use prepare::{conflict_record_for, guard};
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
        let mut trees = if !opts.dry_run && !journal::unfinished(&self.store)?.is_empty() {
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
        let wset = self.working_set();
        let guarded = if opts.force {
            Ok(())
        } else {
            guard(&plan, &trees.base, self.config.max_delete_percent)
        };
        if let Err(e) = guarded {
            if !opts.dry_run {
                return Err(e);
            }
            report
                .warnings
                .push(format!("{e}: without --force, this run would stop here"));
        }
        for c in &plan.changes {
            if c.modify_delete {
                report.notices.push(format!(
                    "{}: modified on one side and deleted on the other; the modified version was kept",
                    display(&c.path)
                ));
            }
            if c.merged {
                report.notices.push(format!(
                    "{}: edited on both sides in different places; the edits were merged",
                    display(&c.path)
                ));
            }
            if c.dir_kept {
                report.notices.push(format!(
                    "{}: deleted on one side, but the other side changed files inside it; the directory was kept",
                    display(&c.path)
                ));
            }
        }
        if opts.dry_run {
            report.conflicts = self.expected_conflicts(&plan)?;
            report.plan = plan;
            return Ok(report);
        }

        // The cache budget: content brought into the workspace must fit.
        let mut over_budget: HashSet<usize> = HashSet::new();
        let mut full: Option<u64> = None;
        if let Some(budget) = self.budget() {
            // What the cache will hold: what it holds without this run's downloads (a
            // download that is not brought in is collected again), plus, for each file
            // brought in, its copy here and its content in the store. Most wanted first.
            let mut used = self
                .cache_use(&trees.local.tree, &trees.local.remote_only)
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
            self.note_cache_level(level, full.unwrap_or(used), budget)?;
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
            plan = Plan::build(changes, opts.direction);
            over_budget = still;
        }

        let op_id = journal::next_id(&self.store)?;
        report.op = op_id;
        let mut op = OpRecord {
            id: op_id,
            command: opts.command.clone(),
            started_ns: crate::now_ns(),
            finished_ns: None,
            state: OpState::Running,
            summary: String::new(),
            // Written to the journal from `plan` itself (see `write_planned`).
            plan: Vec::new(),
            temporaries: Vec::new(),
            steps_done: 0,
            error: None,
        };
        for (i, s) in plan.steps.iter().enumerate() {
            if matches!(s.op, Op::Write | Op::Symlink) {
                op.temporaries.push(TempRecord {
                    side: s.side,
                    path_hex: hex(&self.temp_name(op_id, i, &s.path)),
                });
            }
        }
        journal::write_planned(&self.store, &op, crate::plan::Records(&plan.steps))?;
        crate::failpoint::hit("planned");
        // Our own leftovers on the remote from earlier runs.
        let mine = format!("{TMP_PREFIX}{}.", self.workspace_id);
        for t in &trees.remote.temporaries {
            if split_parent(t).1.starts_with(mine.as_bytes()) {
                let _ = remote.remove_file(t);
            }
        }

        let mut applier = Applier {
            ws: self,
            remote: &remote,
            racy: &trees.racy,
            op: op_id,
            local_results: HashMap::new(),
            remote_results: HashMap::new(),
            bytes_up: 0,
            stashed: HashMap::new(),
        };
        let mut failed: HashSet<usize> = HashSet::new();
        let mut denied: HashSet<usize> = HashSet::new();
        let mut fatal: Option<SyncError> = None;
        // Directories this run did not make (their step was skipped or failed): nothing is
        // written under them (it would land in whatever is there now, or fail on a
        // temporary name), and the next run takes them up with what is there.
        let mut unmade: Vec<Vec<u8>> = Vec::new();
        let total = plan.steps.len() as u64;
        progress.start("applying", total);
        for (i, step) in plan.steps.iter().enumerate() {
            if failed.contains(&step.change) {
                if step.op == Op::Mkdir {
                    unmade.push(step.path.clone());
                }
                continue;
            }
            if let Some(dir) = unmade.iter().find(|d| is_within(&step.path, d)) {
                failed.insert(step.change);
                report.skipped.push((
                    step.path.clone(),
                    format!(
                        "not written: the directory {} was not made; the next run takes it up",
                        display(dir)
                    ),
                ));
                if step.op == Op::Mkdir {
                    unmade.push(step.path.clone());
                }
                continue;
            }
            if over_budget.contains(&step.change) {
                failed.insert(step.change);
                report.skipped.push((
                    step.path.clone(),
                    "not brought in: the cache budget is exhausted".into(),
                ));
                continue;
            }
            crate::failpoint::hit_n("before-step", i);
            match applier.apply(i, step) {
                Ok(()) => {
                    report.applied += 1;
                    match step.side {
                        Side::Local => report.applied_local += 1,
                        Side::Remote => report.applied_remote += 1,
                    }
                    journal::mark_step(&self.store, op_id, i as u32)?;
                    crate::failpoint::hit_n("after-step", i);
                }
                Err(StepError::Precondition(why)) => {
                    failed.insert(step.change);
                    report.skipped.push((step.path.clone(), why));
                }
                Err(StepError::Fatal(e @ SyncError::Disconnected { .. })) => {
                    fatal = Some(e);
                    break;
                }
                Err(StepError::Fatal(SyncError::RemoteIo { source, .. }))
                    if step.side == Side::Remote && refused_by_server(&source) =>
                {
                    // The server said no: the local change is kept and becomes a permission
                    // conflict, never a lost change.
                    failed.insert(step.change);
                    denied.insert(step.change);
                    report.skipped.push((
                        step.path.clone(),
                        format!("the server refused it ({source}); kept as a permission conflict"),
                    ));
                }
                Err(StepError::Fatal(e)) => {
                    let e = e.classified();
                    failed.insert(step.change);
                    report.skipped.push((step.path.clone(), e.to_string()));
                    report.failed.get_or_insert(e);
                }
            }
            if step.op == Op::Mkdir && failed.contains(&step.change) {
                unmade.push(step.path.clone());
            }
            progress.set(i as u64 + 1);
        }
        progress.finish();
        report.bytes_up = applier.bytes_up;
        let (local_results, remote_results, stashed) = (
            applier.local_results,
            applier.remote_results,
            applier.stashed,
        );
        // Steps not reached because the remote went away count as failed.
        if fatal.is_some() {
            let reached = report.applied + report.skipped.len();
            for s in plan.steps.iter().skip(reached) {
                failed.insert(s.change);
            }
        }

        // New base, remote snapshot, index and conflicts, committed atomically.
        let mut batch = Batch::new();
        // The scanned trees are not needed after this: they become the new ones, and the
        // edits say whether anything moved (no copy of 100,000 entries to compare with).
        let mut new_base = std::mem::take(&mut trees.base);
        let mut base_moved = false;
        let mut new_remote = std::mem::take(&mut trees.remote.tree);
        let mut remote_moved = false;
        for (path, result) in &remote_results {
            remote_moved |= match result {
                Some(e) => new_remote.insert(path.clone(), e.clone()).as_ref() != Some(e),
                None => new_remote.remove(path).is_some(),
            };
        }
        for (path, ie) in &trees.local.index_updates {
            index::put(&mut batch, path, ie);
        }
        for path in &trees.local.index_removals {
            index::remove(&mut batch, path);
        }
        for (path, result) in &local_results {
            match result {
                Some(ie) => index::put(&mut batch, path, ie),
                None => index::remove(&mut batch, path),
            }
        }
        let existing: BTreeMap<Vec<u8>, ConflictRecord> = conflict::open(&self.store)?
            .into_iter()
            .map(|r| (r.path_bytes(), r))
            .collect();
        let mut open_now = BTreeMap::new();
        let mut fresh_conflicts = Vec::new();
        let mut merged_paths: HashSet<Vec<u8>> = HashSet::new();
        for (i, c) in plan.changes.iter().enumerate() {
            let conflict_kind = match &c.outcome {
                Outcome::Conflict(kind) => Some(*kind),
                Outcome::Resolved(_) if denied.contains(&i) => Some(ConflictKind::Permission),
                Outcome::Resolved(_) => None,
            };
            match (&c.outcome, conflict_kind) {
                (_, Some(kind)) => {
                    let (r, fresh) = conflict_record_for(&existing, c, kind);
                    if fresh {
                        fresh_conflicts.push(r.clone());
                    }
                    conflict::put(&mut batch, &r);
                    open_now.insert(c.path.clone(), r);
                }
                (Outcome::Conflict(_), None) => unreachable!("a conflict always has a kind"),
                (Outcome::Resolved(target), None) => {
                    let local_ok = !c.needs_local()
                        || (opts.direction.allows(Side::Local) && !failed.contains(&i));
                    let remote_ok = !c.needs_remote()
                        || (opts.direction.allows(Side::Remote) && !failed.contains(&i));
                    if let Some(lf) = stashed.get(&c.path) {
                        let mut r = conflict::record(
                            &c.path,
                            c.conflict_kind().unwrap_or(ConflictKind::Type),
                            c.base.as_ref(),
                            c.local.as_ref(),
                            c.remote.as_ref(),
                        );
                        r.lost_found = Some(display(lf));
                        r.lost_found_hex = Some(hex(lf));
                        r.resolution = Some(format!(
                            "the server's version is in the workspace; yours was moved to {}",
                            display(lf)
                        ));
                        fresh_conflicts.push(r.clone());
                        conflict::put(&mut batch, &r);
                        open_now.insert(c.path.clone(), r);
                        report.notices.push(match &c.remote {
                            Some(r) => format!(
                                "{}: a {} on the server and a {} here; the server's is kept, yours was moved to {}",
                                display(&c.path),
                                r.kind.as_str(),
                                c.local.as_ref().map_or("nothing", |e| e.kind.as_str()),
                                display(lf)
                            ),
                            None => format!(
                                "{}: the server folds case and already holds this name in another case; yours was moved to {}",
                                display(&c.path),
                                display(lf)
                            ),
                        });
                    }
                    if local_ok && remote_ok && c.merged {
                        merged_paths.insert(c.path.clone());
                        let mut r = conflict::record(
                            &c.path,
                            ConflictKind::Content,
                            c.base.as_ref(),
                            c.local.as_ref(),
                            c.remote.as_ref(),
                        );
                        r.state = ConflictState::Resolved;
                        r.resolved = conflict::Variant::of(target.as_ref());
                        r.resolution = Some("merged automatically".into());
                        r.resolved_ns = Some(crate::now_ns());
                        conflict::put(&mut batch, &r);
                    }
                    if local_ok && remote_ok && trees.local.reappeared.contains(&c.path) {
                        crate::presence::clear(&mut batch, &c.path);
                    }
                    if local_ok && remote_ok {
                        base_moved |= match target {
                            Some(e) => {
                                new_base.insert(c.path.clone(), e.clone()).as_ref() != Some(e)
                            }
                            None => new_base.remove(&c.path).is_some(),
                        };
                    }
                }
            }
        }
        let filtered =
            |p: &[u8]| opts.paths.is_empty() || opts.paths.iter().any(|f| is_within(p, f));
        for p in &trees.local.materialized {
            crate::presence::clear(&mut batch, p);
        }
        for p in &new_remote_only {
            if new_base.contains_key(p) {
                crate::presence::set_remote_only(&mut batch, p);
            }
        }
        for p in &trees.local.remote_only {
            if new_base.get(p).is_none_or(|e| e.kind != EntryKind::File) {
                crate::presence::clear(&mut batch, p);
            }
        }
        for (path, mut r) in existing {
            // A lost+found record stays open while its copy is still there.
            if let Some(lf) = r.lost_found_path() {
                let copy = under(&self.root, &lf);
                if copy.symlink_metadata().is_ok() {
                    if !open_now.contains_key(&path) {
                        open_now.insert(path.clone(), r);
                    }
                    continue;
                }
                // The copy is gone: tidy the directories that held it, if now empty.
                let top = self.root.join(crate::ignore_rules::LOST_FOUND);
                let mut dir = copy.parent().map(Path::to_path_buf);
                while let Some(d) = dir {
                    if !d.starts_with(&top) || fs::remove_dir(&d).is_err() {
                        break;
                    }
                    dir = d.parent().map(Path::to_path_buf);
                }
            }
            if !open_now.contains_key(&path) && !merged_paths.contains(&path) && filtered(&path) {
                r.state = ConflictState::Resolved;
                r.resolution
                    .get_or_insert_with(|| "both sides agree again".into());
                r.resolved_ns = Some(crate::now_ns());
                conflict::put(&mut batch, &r);
            }
        }
        report.conflicts = open_now.into_values().collect();
        let now = crate::now_ns();
        let racy_now = crate::racy::after_writes(&trees.racy, &remote_results, trees.started_ns);
        crate::racy::put(&mut batch, &trees.racy, &racy_now);
        if base_moved || self.store.get_ref(keys::REF_BASE)?.is_none() {
            let root = self.store.write_flat(&new_base)?;
            let snap = Snapshot {
                root,
                parent: self.store.get_ref(keys::REF_BASE)?,
                time_ns: now,
                description: format!("base after {} (op {op_id})", opts.command),
            };
            let id = self.store.put_snapshot(&snap)?;
            Store::set_ref_in(&mut batch, keys::REF_BASE, id);
        }
        if remote_moved || self.store.get_ref(keys::REF_REMOTE)?.is_none() {
            let root = self.store.write_flat(&new_remote)?;
            let snap = Snapshot {
                root,
                parent: self.store.get_ref(keys::REF_REMOTE)?,
                time_ns: now,
                description: format!("remote as seen by {} (op {op_id})", opts.command),
            };
            let id = self.store.put_snapshot(&snap)?;
            Store::set_ref_in(&mut batch, keys::REF_REMOTE, id);
        }
        op.finished_ns = Some(crate::now_ns());
        op.steps_done = report.applied as u64;
        // Unreadable entries make the run incomplete, in the journal too.
        if report.failed.is_none() {
            report.failed = crate::scan::unreadable_error(&report.unreadable);
        }
        op.state = if fatal.is_some() || report.failed.is_some() {
            OpState::Failed
        } else {
            OpState::Done
        };
        op.error = fatal
            .as_ref()
            .or(report.failed.as_ref())
            .map(|e| e.to_string());
        op.summary = summary(&plan, &report);
        journal::put(&mut batch, &op);
        if report.applied_local > 0 {
            // Make the workspace's new files durable before the base says they are there: a
            // power cut must not leave an empty file the next run would take for an edit.
            let root = fs::File::open(&self.root).map_err(|e| SyncError::io(&self.root, e))?;
            rustix::fs::syncfs(&root).map_err(|e| SyncError::io(&self.root, e.into()))?;
        }
        crate::failpoint::hit("before-commit");
        self.store.commit(batch)?;
        crate::failpoint::hit("after-commit");
        for c in &fresh_conflicts {
            crate::events::emit(
                &self.meta_dir(),
                self.config.hook.as_deref(),
                &crate::events::Event {
                    time_ns: now,
                    kind: crate::events::EventKind::Conflict,
                    workspace: self.root.display().to_string(),
                    reason: Some(format!("{} conflict; both versions kept", c.kind)),
                    path: Some(c.path.clone()),
                    manual: None,
                },
            )?;
        }
        report.plan = plan;
        if let Some(needed) = full {
            report.cache_full = Some((needed, self.budget().unwrap_or(0), refused_count));
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Records the cache level and emits an event when it changes to one of the full levels
    /// (nearly full above 90% of the budget, full when content was refused).
    ///
    /// # Errors
    /// Store and event-log errors; [`SyncError::DamagedRecord`] when the recorded level is
    /// not one.
    fn note_cache_level(&self, level: CacheLevel, used: u64, budget: u64) -> Result<()> {
        let state = self.store.table(keys::CF_STATE);
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
            &self.meta_dir(),
            self.config.hook.as_deref(),
            &crate::events::Event {
                time_ns: crate::now_ns(),
                kind,
                workspace: self.root.display().to_string(),
                reason: Some(format!("{used} of {budget} bytes")),
                path: None,
                manual: None,
            },
        )
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

fn summary(plan: &Plan, report: &SyncReport) -> String {
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
