//! pull, push and sync: scan, reconcile, plan, journal, apply with preconditions, commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cachesync_objects::{keys, Batch, Entry, EntryKind, Snapshot, Store};

use crate::conflict::{self, ConflictKind, ConflictRecord, ConflictState};
use crate::error::{Result, SyncError};
use crate::events::CacheLevel;
use crate::fs_remote::entry_from_metadata;
use crate::ignore_rules::TMP_PREFIX;
use crate::index::{self, IndexEntry};
use crate::journal::{self, OpRecord, OpState, TempRecord};
use crate::paths::{display, hex, is_within, split_parent, under};
use crate::plan::{Direction, Op, Plan, Side, Step};
use crate::progress::Progress;
use crate::reconcile::{reconcile, Outcome};
use crate::scan::{tree_entry, Flat, LocalScan, RemoteScan};
use crate::state_keys;
use crate::timed::TimedRemote;
use crate::workspace::Workspace;

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

/// The three trees of a run.
pub(crate) struct Trees {
    pub base: Flat,
    pub local: LocalScan,
    /// The remote as scanned, which is also what the remote ref names after the scan (the
    /// commit compares with it).
    pub remote: RemoteScan,
    /// Its racy paths (see [`crate::racy`]), as recorded.
    pub racy: HashSet<Vec<u8>>,
    /// When the scan started (the racy window is measured from it).
    pub started_ns: i64,
    /// New remote files left remote-only without being read.
    pub deferred: Deferred,
}

/// What [`Workspace::prepare`] decided.
pub(crate) struct Prepared {
    /// The plan, with every change it was built from.
    pub plan: Plan,
    /// New files that stay remote-only (never-cache, or left out by the budget).
    pub new_remote_only: Vec<Vec<u8>>,
}

/// New remote files a run leaves remote-only without reading them (see
/// [`Workspace::defer_new_files`]).
#[derive(Default)]
pub(crate) struct Deferred {
    /// Their paths.
    pub paths: HashSet<Vec<u8>>,
    /// How many of them the budget left out (the others are never-cache).
    pub for_budget: usize,
    /// The cache's use had they all been brought in, as far as the budget check went.
    pub needed: u64,
    /// Of those, pinned (or always-cache) ones: the cache is full.
    pub required: usize,
}

impl Workspace {
    /// Abandons operations a killed run left behind: removes their temporary files and marks
    /// them abandoned. The reconcile that follows finishes their work.
    ///
    /// # Errors
    /// Store errors.
    pub fn recover(&self, remote: &TimedRemote) -> Result<Vec<u64>> {
        let mut done = Vec::new();
        for mut op in journal::unfinished(&self.store)? {
            for t in &op.temporaries {
                let rel: Vec<u8> = (0..t.path_hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&t.path_hex[i * 2..i * 2 + 2], 16).ok())
                    .collect();
                if t.side == Side::Local {
                    let _ = fs::remove_file(under(&self.root, &rel));
                } else if !remote.pool().is_tripped() {
                    let _ = remote.remove_file(&rel);
                }
            }
            // A copy moved to lost+found before the run died has no record yet: make one,
            // so it is listed and reported like any other.
            let mut batch = Batch::new();
            for step in &op.plan {
                if step["op"] != "to-lost+found" {
                    continue;
                }
                let path: Vec<u8> = match step["path_hex"].as_str() {
                    Some(h) => (0..h.len() / 2)
                        .filter_map(|i| u8::from_str_radix(&h[i * 2..i * 2 + 2], 16).ok())
                        .collect(),
                    None => step["path"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec(),
                };
                let lf = crate::paths::join(
                    format!("{}/{}", crate::ignore_rules::LOST_FOUND, op.id).as_bytes(),
                    &path,
                );
                if under(&self.root, &lf).symlink_metadata().is_ok() {
                    let mut r = conflict::record(&path, ConflictKind::Type, None, None, None);
                    r.lost_found = Some(display(&lf));
                    r.lost_found_hex = Some(hex(&lf));
                    r.resolution = Some(format!(
                        "an interrupted run moved your version to {}",
                        display(&lf)
                    ));
                    conflict::put(&mut batch, &r);
                }
            }
            self.store.commit(batch)?;
            op.steps_done = journal::steps_marked(&self.store, op.id)?;
            op.state = OpState::Abandoned;
            op.finished_ns = Some(crate::now_ns());
            op.summary = format!(
                "interrupted after {} of {} steps; abandoned, the next run reconciled again",
                op.steps_done,
                op.plan.len()
            );
            // With its plan: a record from before plans had their own key carries it inline,
            // and the header alone would lose it.
            journal::write_planned(&self.store, &op, &op.plan)?;
            done.push(op.id);
        }
        Ok(done)
    }

    /// Scans both sides. The remote scan stores the content of changed remote files.
    pub(crate) fn scan_all(
        &self,
        remote: &TimedRemote,
        progress: &dyn Progress,
        alongside: impl FnOnce() -> Result<()> + Send,
    ) -> Result<Trees> {
        let started_ns = crate::now_ns();
        let rules = self.rules()?;
        let base = self.synced_base()?;
        let previous_remote = self.store.read_ref_flat(keys::REF_REMOTE)?;
        let previous_racy = crate::racy::load(&self.store)?;
        // The workspace scan, the remote walk and `alongside` (the identity check) overlap:
        // over a distant link the walk is round trips, the local scan is disk. Only reading
        // happens before `alongside` has succeeded (files changed on the remote are fetched
        // after it).
        progress.start("scanning workspace and remote", 0);
        let (local, walked, checked) = std::thread::scope(|s| {
            let local = s.spawn(|| self.scan_workspace(&base));
            let checked = s.spawn(alongside);
            let walked = crate::scan::walk_remote(remote, &rules, self.config.parallel);
            (
                local.join().expect("the workspace scan does not panic"),
                walked,
                checked.join().expect("the identity check does not panic"),
            )
        });
        progress.finish();
        checked?;
        let walked = walked?;
        let local = local?;
        // A remote file a push would write over or remove is read again, whatever its stat
        // says: a server edit that kept size and mtime (`cp -p`, `tar x`, `rsync -t`) is
        // seen before anything is planned, so it becomes a conflict, never a silent loss.
        let overwritten = if self.config.verify_before_overwrite {
            changed_content(&base, &local.tree)
        } else {
            HashSet::new()
        };
        let must_read: std::borrow::Cow<HashSet<Vec<u8>>> = if overwritten.is_empty() {
            std::borrow::Cow::Borrowed(&previous_racy)
        } else {
            std::borrow::Cow::Owned(previous_racy.union(&overwritten).cloned().collect())
        };
        // New files the workspace will not hold (never-cache, or over the budget) are not
        // read from the share: they stay remote-only, listed with their stat.
        let deferred = self.defer_new_files(&walked.entries, &rules, &base, &local);
        let not_read: std::borrow::Cow<HashSet<Vec<u8>>> = if deferred.paths.is_empty() {
            std::borrow::Cow::Borrowed(&local.remote_only)
        } else {
            std::borrow::Cow::Owned(local.remote_only.union(&deferred.paths).cloned().collect())
        };
        let started = std::sync::atomic::AtomicBool::new(false);
        let report = |done: u64, total: u64| {
            if !started.swap(true, std::sync::atomic::Ordering::SeqCst) {
                progress.start("fetching changed remote files", total);
            }
            progress.set(done);
        };
        let remote_scan = crate::scan::fetch_changed(
            remote,
            walked,
            &rules,
            &self.store,
            &previous_remote,
            &must_read,
            &not_read,
            self.config.parallel,
            &report,
        );
        progress.finish();
        drop((must_read, not_read));
        let remote_scan = remote_scan?;
        crate::failpoint::hit("fetched");
        if let Some(root) = remote.stat(b"")? {
            self.save_remote_root_perm(&root)?;
        }
        // The last observed remote state: a later scan reads only what changed since (and
        // what was racy). Once saved, it is what the commit compares with (so it is not
        // written twice).
        let racy = crate::racy::after_scan(&remote_scan, &previous_racy, started_ns);
        let mut batch = Batch::new();
        crate::racy::put(&mut batch, &previous_racy, &racy);
        if remote_scan.tree != previous_remote {
            let root = self.store.write_flat(&remote_scan.tree)?;
            let snap = Snapshot {
                root,
                parent: self.store.get_ref(keys::REF_REMOTE)?,
                time_ns: crate::now_ns(),
                description: "remote as scanned".into(),
            };
            let id = self.store.put_snapshot(&snap)?;
            Store::set_ref_in(&mut batch, keys::REF_REMOTE, id);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
            crate::failpoint::hit("remote-snapshot");
        }
        drop(previous_remote);
        Ok(Trees {
            base,
            local,
            remote: remote_scan,
            racy,
            started_ns,
            deferred,
        })
    }

    /// Which files new on the share (known to neither the base nor the workspace) a run
    /// leaves remote-only, decided before anything is read: those under a never-cache
    /// directory, and, under a cache budget, the least wanted ones that do not fit (each
    /// costs its copy here and its content in the store; pinned and always-cache files come
    /// first, and one of them that does not fit is the cache being full: EDISCONFULL).
    fn defer_new_files(
        &self,
        listed: &crate::scan::Listing,
        rules: &crate::ignore_rules::IgnoreRules,
        base: &Flat,
        local: &LocalScan,
    ) -> Deferred {
        let wset = self.working_set();
        let mut new_files: Vec<(i32, &Vec<u8>, u64)> = listed
            .iter()
            .filter(|(p, r)| {
                r.kind == EntryKind::File
                    && !crate::ignore_rules::IgnoreRules::is_internal(p)
                    && !rules.is_ignored(p, false)
                    && !base.contains_key(p)
                    && !local.tree.contains_key(p)
            })
            .map(|(p, r)| (wset.priority(p), p, r.size))
            .collect();
        let mut out = Deferred::default();
        let budget = self.budget();
        if budget.is_none() && !new_files.iter().any(|f| f.0 == i32::MIN) {
            return out;
        }
        new_files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut used = self.cache_use(&local.tree, &local.remote_only);
        for (prio, path, size) in new_files {
            if prio == i32::MIN {
                out.paths.insert(path.clone());
                continue;
            }
            let next = used + 2 * size;
            match budget {
                Some(b) if next > b => {
                    out.paths.insert(path.clone());
                    out.for_budget += 1;
                    out.needed = out.needed.max(next);
                    if prio == i32::MAX {
                        out.required += 1;
                    }
                }
                _ => used = next,
            }
        }
        out
    }

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
        &self,
        trees: &Trees,
        paths: &[Vec<u8>],
        direction: Direction,
    ) -> Result<Prepared> {
        let mut changes = reconcile(
            &without(&trees.base, &trees.local.reappeared),
            &trees.local.tree,
            &trees.remote.tree,
        );
        if !paths.is_empty() {
            // The paths asked for, and the new directories they need to exist in.
            changes.retain(|c| {
                paths.iter().any(|p| {
                    is_within(&c.path, p)
                        || (is_within(p, &c.path)
                            && c.result()
                                .and_then(|r| r.as_ref())
                                .is_some_and(|e| e.kind == EntryKind::Dir))
                })
            });
        }
        // A new file under a never-cache directory stays remote-only.
        let wset = self.working_set();
        let mut new_remote_only: Vec<Vec<u8>> = Vec::new();
        for c in changes.iter_mut() {
            let fresh_file = c.local.is_none()
                && c.base.is_none()
                && matches!(&c.outcome, Outcome::Resolved(Some(t)) if t.kind == EntryKind::File);
            if fresh_file
                && (wset.is_never_cached(&c.path) || trees.deferred.paths.contains(&c.path))
            {
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
        self.auto_merge(&mut changes)?;
        if self.identity.case_insensitive {
            crate::reconcile::settle_case_clashes(&mut changes, &trees.remote.tree);
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
        Ok(Prepared {
            plan: Plan::build(changes, direction),
            new_remote_only,
        })
    }

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

/// The base's files whose content the workspace no longer holds at their path (edited,
/// removed, replaced by something else): the remote files a push would write over or remove.
fn changed_content(base: &Flat, local: &Flat) -> HashSet<Vec<u8>> {
    base.iter()
        .filter(|(p, b)| {
            b.kind == EntryKind::File
                && local
                    .get(*p)
                    .is_none_or(|l| l.kind != EntryKind::File || l.file != b.file)
        })
        .map(|(p, _)| p.clone())
        .collect()
}

impl SyncReport {
    /// The cache figures (needed, budget, files refused) when the budget refused content the
    /// workspace had to hold (see [`SyncReport::cache_required`]): the run's EDISCONFULL.
    pub fn cache_exhausted(&self) -> Option<(u64, u64, usize)> {
        self.cache_full.filter(|_| self.cache_required > 0)
    }
}

/// The record a conflict of `kind` at change `c` gets: the open one already there, when it
/// is the same conflict (same kind, client and server; a client being edited by hand with
/// `resolve --edit` counts as the same), else a fresh one (`true`).
fn conflict_record_for(
    existing: &BTreeMap<Vec<u8>, ConflictRecord>,
    c: &crate::reconcile::Change,
    kind: ConflictKind,
) -> (ConflictRecord, bool) {
    let fresh = conflict::record(
        &c.path,
        kind,
        c.base.as_ref(),
        c.local.as_ref(),
        c.remote.as_ref(),
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

impl Workspace {
    /// The conflicts that will be open after a run of `plan`: each conflict of the plan, with
    /// its recorded record when that is the same conflict; a recorded one whose path the plan
    /// still changes (a write the server refused last time: whether it refuses again is only
    /// known when it is tried); and every lost+found record whose copy is still there. A
    /// recorded conflict whose path the plan leaves alone is settled by the run. `status` and
    /// the dry run both answer with this.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn expected_conflicts(&self, plan: &Plan) -> Result<Vec<ConflictRecord>> {
        let existing: BTreeMap<Vec<u8>, ConflictRecord> = conflict::open(&self.store)?
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
            if r.lost_found.is_some() && r.lost_found_present(&self.root) {
                out.entry(path).or_insert(r);
            }
        }
        Ok(out.into_values().collect())
    }
}

/// `base` without `paths` (remote-only paths where something new was written here).
pub(crate) fn without(base: &Flat, paths: &HashSet<Vec<u8>>) -> Flat {
    if paths.is_empty() {
        return base.clone();
    }
    base.iter()
        .filter(|(p, _)| !paths.contains(*p))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect()
}

/// True for the errors by which a server refuses a write (not a network failure).
fn refused_by_server(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(
            e.raw_os_error(),
            Some(libc::EROFS | libc::EPERM | libc::EACCES)
        )
}

/// The deletion guard: refuses a plan that deletes more than `percent` of the base's files
/// on either side (and more than one file).
fn guard(plan: &Plan, base: &Flat, percent: u32) -> Result<()> {
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
                side: side.as_str(),
                count,
                total,
                percent,
            });
        }
    }
    Ok(())
}

enum StepError {
    /// The target is no longer in the state the plan expects: skip, sync next time.
    Precondition(String),
    /// The step failed.
    Fatal(SyncError),
}

impl From<SyncError> for StepError {
    fn from(e: SyncError) -> StepError {
        StepError::Fatal(e)
    }
}

struct Applier<'a> {
    ws: &'a Workspace,
    remote: &'a TimedRemote,
    /// Remote paths whose stat cannot vouch for their content (see [`crate::racy`]).
    racy: &'a HashSet<Vec<u8>>,
    op: u64,
    local_results: HashMap<Vec<u8>, Option<IndexEntry>>,
    remote_results: HashMap<Vec<u8>, Option<Entry>>,
    bytes_up: u64,
    /// Local paths moved to lost+found, and where to.
    stashed: HashMap<Vec<u8>, Vec<u8>>,
}

/// True when what is there now is what the plan saw (kind, and for files size and mtime, for
/// symlinks the target).
fn matches(now: Option<&Entry>, expect: Option<&Entry>) -> bool {
    match (now, expect) {
        (None, None) => true,
        (Some(n), Some(e)) => {
            n.kind == e.kind
                && match e.kind {
                    EntryKind::File => n.size == e.size && n.mtime_ns == e.mtime_ns,
                    EntryKind::Symlink => n.target == e.target,
                    _ => true,
                }
        }
        _ => false,
    }
}

fn local_entry(path: &Path, name: &[u8]) -> std::io::Result<Option<Entry>> {
    match fs::symlink_metadata(path) {
        Ok(md) => {
            let mut e = tree_entry(&entry_from_metadata(name, &md));
            if e.kind == EntryKind::Symlink {
                use std::os::unix::ffi::OsStrExt;
                e.target = fs::read_link(path)?.as_os_str().as_bytes().to_vec();
            }
            Ok(Some(e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The skip for a workspace path that is no longer as the plan saw it.
fn changed_here(path: &[u8]) -> StepError {
    StepError::Precondition(format!(
        "{} changed in the workspace during the sync; the next run takes it up",
        display(path)
    ))
}

/// A create that found something at its path (made there since the check) is a change the
/// next run takes up; other errors are errors.
fn exists_is_change(e: std::io::Error, path: &[u8], abs: &Path) -> StepError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        changed_here(path)
    } else {
        StepError::Fatal(SyncError::io(abs, e))
    }
}

/// A remote step that found its path taken (or its target gone) since the check: a change
/// the next run takes up. Other errors are errors.
fn taken_is_change(e: SyncError, path: &[u8]) -> StepError {
    match &e {
        SyncError::RemoteIo { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound
            ) =>
        {
            changed_there(path)
        }
        _ => StepError::Fatal(e),
    }
}

/// The skip for a remote path that is no longer as the plan saw it.
fn changed_there(path: &[u8]) -> StepError {
    StepError::Precondition(format!(
        "{} changed on the remote during the sync; the next run takes it up",
        display(path)
    ))
}

impl Applier<'_> {
    fn apply(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        match step.side {
            Side::Local => self.apply_local(i, step),
            Side::Remote => self.apply_remote(i, step),
        }
    }

    fn check_local(&self, path: &[u8], expect: Option<&Entry>) -> Result<(), StepError> {
        let abs = under(&self.ws.root, path);
        let now = local_entry(&abs, split_parent(path).1).map_err(|e| SyncError::io(&abs, e))?;
        if matches(now.as_ref(), expect) {
            Ok(())
        } else {
            Err(changed_here(path))
        }
    }

    fn record_local(&mut self, path: &[u8], target: &Entry) -> Result<(), StepError> {
        if target.kind != EntryKind::File {
            self.local_results.insert(path.to_vec(), None);
            return Ok(());
        }
        let abs = under(&self.ws.root, path);
        let md = fs::symlink_metadata(&abs).map_err(|e| SyncError::io(&abs, e))?;
        let ie = IndexEntry {
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            mode: md.mode(),
            file: target.file.expect("file entries have content"),
            recorded_ns: crate::now_ns(),
        };
        self.local_results.insert(path.to_vec(), Some(ie));
        Ok(())
    }

    fn apply_local(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let root = &self.ws.root;
        let abs = under(root, &step.path);
        let io = |e: std::io::Error| StepError::Fatal(SyncError::io(&abs, e));
        let target = step.target.as_ref();
        match step.op {
            Op::Stash => {
                self.check_local(&step.path, step.expect.as_ref())?;
                let dest_rel = crate::paths::join(
                    format!("{}/{}", crate::ignore_rules::LOST_FOUND, self.op).as_bytes(),
                    &step.path,
                );
                let dest = under(root, &dest_rel);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                fs::rename(&abs, &dest).map_err(io)?;
                self.stashed.insert(step.path.clone(), dest_rel);
                Ok(())
            }
            Op::Write | Op::Symlink => {
                let t = target.expect("writes have a target");
                let tmp_rel = self.ws.temp_name(self.op, i, &step.path);
                let tmp = under(root, &tmp_rel);
                if t.kind == EntryKind::File {
                    let id = t.file.expect("file entries have content");
                    crate::localfs::write_temp(
                        &tmp,
                        |f| Ok(self.ws.store.read_file(id, f).map(drop)?),
                        t.mode,
                        Some(t.mtime_ns),
                        false,
                    )?;
                } else {
                    let _ = fs::remove_file(&tmp);
                    use std::os::unix::ffi::OsStrExt;
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&t.target), &tmp)
                        .map_err(io)?;
                }
                if let Err(e) = self.check_local(&step.path, step.expect.as_ref()) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                crate::failpoint::hit_n("before-rename", i);
                self.place_local(&tmp, &step.path, step.expect.as_ref())?;
                self.record_local(&step.path, t)
            }
            Op::Mkdir => {
                self.check_local(&step.path, None)?;
                let t = target.expect("mkdir has a target");
                fs::create_dir(&abs).map_err(|e| exists_is_change(e, &step.path, &abs))?;
                fs::set_permissions(&abs, fs::Permissions::from_mode(t.mode | 0o700))
                    .map_err(io)?;
                Ok(())
            }
            Op::Mknod => {
                self.check_local(&step.path, None)?;
                let t = target.expect("mknod has a target");
                crate::fs_remote::mknod(&abs, t.kind, t.mode, t.rdev)
                    .map_err(|e| exists_is_change(e, &step.path, &abs))?;
                Ok(())
            }
            Op::SetMode => {
                self.check_local(&step.path, step.expect.as_ref())?;
                let t = target.expect("chmod has a target");
                let md = fs::symlink_metadata(&abs).map_err(io)?;
                if md.is_file() && md.nlink() > 1 {
                    // Another name shares this inode, and a chmod would change it too (the
                    // next run would push a mode change nobody made): this name gets a copy
                    // of its own, with the new mode.
                    let tmp = under(root, &self.ws.temp_name(self.op, i, &step.path));
                    crate::localfs::write_temp(
                        &tmp,
                        |f| {
                            let mut src = fs::File::open(&abs).map_err(|e| SyncError::io(&abs, e))?;
                            std::io::copy(&mut src, f).map_err(|e| SyncError::io(&abs, e))?;
                            Ok(())
                        },
                        t.mode,
                        Some(md.mtime() * 1_000_000_000 + md.mtime_nsec()),
                        false,
                    )?;
                    self.place_local(&tmp, &step.path, step.expect.as_ref())?;
                } else {
                    fs::set_permissions(&abs, fs::Permissions::from_mode(t.mode)).map_err(io)?;
                }
                self.record_local(&step.path, t)
            }
            Op::Rename => {
                let from = step.from.as_deref().expect("renames have a source");
                self.check_local(from, step.expect.as_ref())?;
                self.check_local(&step.path, None)?;
                let t = target.expect("renames have a target");
                let source = under(root, from);
                match crate::localfs::rename_no_replace(&source, &abs) {
                    Err(e) if crate::localfs::flags_unsupported(&e) => {
                        fs::rename(&source, &abs).map_err(io)?
                    }
                    r => r.map_err(|e| exists_is_change(e, &step.path, &abs))?,
                }
                if t.kind != EntryKind::Symlink {
                    fs::set_permissions(&abs, fs::Permissions::from_mode(t.mode)).map_err(io)?;
                }
                self.local_results.insert(from.to_vec(), None);
                self.record_local(&step.path, t)
            }
            Op::Remove => {
                self.check_local(&step.path, step.expect.as_ref())?;
                let is_dir = step
                    .expect
                    .as_ref()
                    .is_some_and(|e| e.kind == EntryKind::Dir);
                let r = if is_dir {
                    fs::remove_dir(&abs)
                } else {
                    fs::remove_file(&abs)
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                        return Err(StepError::Precondition(format!(
                            "{} was not removed: it still holds files (ignored ones, or new ones)",
                            display(&step.path)
                        )))
                    }
                    Err(e) => return Err(io(e)),
                }
                self.local_results.insert(step.path.clone(), None);
                Ok(())
            }
        }
    }

    /// Puts the temporary file `tmp` at `path` in the workspace only if what is there is
    /// still `expect`, with no window between the check and the rename where the file
    /// system allows it: no-replace where the path must be free, and where something is
    /// replaced an exchange, then a look at what came out (put back if it is not what the
    /// plan saw). On a file system without either, a plain rename after the check.
    fn place_local(&mut self, tmp: &Path, path: &[u8], expect: Option<&Entry>) -> Result<(), StepError> {
        let abs = under(&self.ws.root, path);
        let io = |e: std::io::Error| StepError::Fatal(SyncError::io(&abs, e));
        let placed = match expect {
            None => crate::localfs::rename_no_replace(tmp, &abs),
            Some(_) => crate::localfs::exchange(tmp, &abs),
        };
        match placed {
            Ok(()) => {}
            Err(e) if crate::localfs::flags_unsupported(&e) => {
                return fs::rename(tmp, &abs).map_err(io);
            }
            Err(e) => {
                let _ = fs::remove_file(tmp);
                // Taken meanwhile (no-replace), or gone meanwhile (exchange).
                return Err(match e.kind() {
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound => {
                        changed_here(path)
                    }
                    _ => io(e),
                });
            }
        }
        let Some(expect) = expect else { return Ok(()) };
        // What came out of the exchange is at `tmp` now.
        let out = local_entry(tmp, split_parent(path).1).map_err(io)?;
        if matches(out.as_ref(), Some(expect)) {
            return fs::remove_file(tmp).map_err(io);
        }
        // Something new was there: it goes back to its name, and ours is dropped (the next
        // run reconciles what is there). Should that fail, it is never left under a
        // temporary name (those are removed as ours): it goes to lost+found.
        if crate::localfs::exchange(tmp, &abs).is_ok() {
            let _ = fs::remove_file(tmp);
            return Err(changed_here(path));
        }
        let dest_rel = crate::paths::join(
            format!("{}/{}", crate::ignore_rules::LOST_FOUND, self.op).as_bytes(),
            path,
        );
        let dest = under(&self.ws.root, &dest_rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        fs::rename(tmp, &dest).map_err(io)?;
        self.stashed.insert(path.to_vec(), dest_rel);
        Ok(())
    }

    /// [`Applier::place_local`] on the remote: the temporary file `tmp` goes to `path` only if
    /// what is there is still `expect`, atomically where the file system can rename with
    /// flags; elsewhere (sshfs) the check just made stands, and a plain rename follows it.
    fn place_remote(&self, tmp: &[u8], path: &[u8], expect: Option<&Entry>) -> Result<(), StepError> {
        let remote = self.remote;
        let placed = remote.rename_atomic(tmp, path, expect.is_some());
        let atomic = match placed {
            Ok(done) => done,
            Err(e) => {
                let _ = remote.remove_file(tmp);
                return Err(taken_is_change(e, path));
            }
        };
        if !atomic {
            remote.rename(tmp, path)?;
            return Ok(());
        }
        let Some(expect) = expect else { return Ok(()) };
        // What came out of the exchange is at `tmp` now: it must be what the plan saw.
        if let Err(check) = self.check_remote(tmp, Some(expect)) {
            // Put back what the server holds now; ours goes. It is never left under a
            // temporary name (those are removed as ours): if the exchange back fails, a
            // plain rename puts it back over ours.
            if matches!(remote.rename_atomic(tmp, path, true), Ok(true)) {
                remote.remove_file(tmp)?;
            } else {
                remote.rename(tmp, path)?;
            }
            return Err(match check {
                StepError::Precondition(_) => changed_there(path),
                fatal => fatal,
            });
        }
        remote.remove_file(tmp)?;
        Ok(())
    }

    fn check_remote(&self, path: &[u8], expect: Option<&Entry>) -> Result<(), StepError> {
        let now = self.remote.stat(path)?.map(|r| tree_entry(&r));
        // A racy file's stat cannot tell an edit made in the same second: its content must
        // still be the one expected (remote-only content was never read: nothing to compare).
        let racy_content = expect
            .filter(|e| e.kind == EntryKind::File && self.racy.contains(path))
            .and_then(|e| e.file)
            .filter(|f| crate::presence::is_known(*f));
        if matches(now.as_ref(), expect)
            && racy_content.map_or(Ok(true), |id| self.remote_holds(path, id))?
        {
            Ok(())
        } else {
            Err(changed_there(path))
        }
    }

    fn record_remote(&mut self, path: &[u8], target: &Entry) -> Result<(), StepError> {
        let stat = self.remote.stat(path)?;
        let entry = stat.map(|r| {
            let mut e = tree_entry(&r);
            e.file = target.file;
            // A symlink just made whose target the share will not read back (sshfs refuses
            // `..` and absolute targets): it holds the target written.
            if r.target_errno.is_some() && e.kind == EntryKind::Symlink {
                e.target = target.target.clone();
            }
            e
        });
        self.remote_results.insert(path.to_vec(), entry);
        Ok(())
    }

    /// Whether the remote file at `path` holds the content `id` (read whole and hashed).
    fn remote_holds(&self, path: &[u8], id: cachesync_objects::FileId) -> Result<bool, StepError> {
        let mut reader = self.remote.open(path)?;
        let held = crate::racy::holds(&mut reader, id);
        // The reader keeps the engine error behind a failed read (timeout, outage).
        if let Some(e) = reader.error.take() {
            return Err(StepError::Fatal(e));
        }
        held.map_err(|source| {
            StepError::Fatal(SyncError::RemoteIo {
                path: display(path).into(),
                source,
            })
        })
    }

    /// Writes the content of `t` to the remote file `tmp` (step `i`), checking that what was
    /// sent hashes to the file's id.
    fn write_remote_file(&mut self, i: usize, tmp: &[u8], t: &Entry) -> Result<(), StepError> {
        let mut w = self.remote.create(tmp)?;
        let id = t.file.expect("file entries have content");
        let object = self
            .ws
            .store
            .file_object(id)
            .map_err(SyncError::from)?
            .ok_or(SyncError::Store(
                cachesync_objects::ObjectError::MissingFile(id),
            ))?;
        let mut whole = blake3::Hasher::new();
        for (n, (cid, _)) in object.chunks.iter().enumerate() {
            let data = self.ws.store.chunk(*cid).map_err(SyncError::from)?;
            whole.update(&data);
            self.bytes_up += data.len() as u64;
            w.write_all(data)?;
            if n == 0 {
                crate::failpoint::hit_n("mid-write", i);
            }
        }
        if whole.finalize().as_bytes() != id.as_bytes() {
            return Err(StepError::Fatal(SyncError::Store(
                cachesync_objects::ObjectError::CorruptFile {
                    id,
                    detail: "content does not hash to the file's id".into(),
                },
            )));
        }
        w.finish(t.mode, t.mtime_ns)?;
        Ok(())
    }

    fn apply_remote(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let remote = self.remote;
        let target = step.target.as_ref();
        match step.op {
            Op::Stash => Err(StepError::Fatal(SyncError::Usage(
                "internal: nothing is moved to lost+found on the remote".into(),
            ))),
            Op::Write | Op::Symlink => {
                let t = target.expect("writes have a target");
                let tmp = self.ws.temp_name(self.op, i, &step.path);
                let _ = remote.remove_file(&tmp);
                // A failed write (a full disk, a dropped link) takes its temporary with it,
                // unless the remote is unreachable (the next run removes it then).
                let written = if t.kind == EntryKind::File {
                    self.write_remote_file(i, &tmp, t)
                } else {
                    remote.symlink(&t.target, &tmp).map_err(StepError::from)
                };
                if let Err(e) = written {
                    if !remote.pool().is_tripped() {
                        let _ = remote.remove_file(&tmp);
                    }
                    return Err(e);
                }
                if let Err(e) = self.check_remote(&step.path, step.expect.as_ref()) {
                    let _ = remote.remove_file(&tmp);
                    return Err(e);
                }
                crate::failpoint::hit_n("before-rename", i);
                self.place_remote(&tmp, &step.path, step.expect.as_ref())?;
                self.record_remote(&step.path, t)
            }
            Op::Mkdir => {
                self.check_remote(&step.path, None)?;
                let t = target.expect("mkdir has a target");
                remote
                    .mkdir(&step.path, t.mode | 0o700)
                    .map_err(|e| taken_is_change(e, &step.path))?;
                self.record_remote(&step.path, t)
            }
            Op::Mknod => {
                self.check_remote(&step.path, None)?;
                let t = target.expect("mknod has a target");
                remote.mknod(&step.path, t.kind, t.mode, t.rdev)?;
                self.record_remote(&step.path, t)
            }
            Op::SetMode => {
                self.check_remote(&step.path, step.expect.as_ref())?;
                let t = target.expect("chmod has a target");
                remote.set_mode(&step.path, t.mode)?;
                self.record_remote(&step.path, t)
            }
            Op::Rename => {
                let from = step.from.as_deref().expect("renames have a source");
                self.check_remote(from, step.expect.as_ref())?;
                // A case-only rename on a remote that folds case finds its own source there.
                let case_only =
                    self.ws.identity.case_insensitive && from.eq_ignore_ascii_case(&step.path);
                if !case_only {
                    self.check_remote(&step.path, None)?;
                }
                let t = target.expect("renames have a target");
                let atomic = !case_only
                    && remote
                        .rename_atomic(from, &step.path, false)
                        .map_err(|e| taken_is_change(e, &step.path))?;
                if !atomic {
                    remote.rename(from, &step.path)?;
                }
                if t.kind != EntryKind::Symlink
                    && step.expect.as_ref().is_some_and(|e| e.mode != t.mode)
                {
                    remote.set_mode(&step.path, t.mode)?;
                }
                self.remote_results.insert(from.to_vec(), None);
                self.record_remote(&step.path, t)
            }
            Op::Remove => {
                self.check_remote(&step.path, step.expect.as_ref())?;
                let is_dir = step
                    .expect
                    .as_ref()
                    .is_some_and(|e| e.kind == EntryKind::Dir);
                let r = if is_dir {
                    remote.remove_dir(&step.path)
                } else {
                    remote.remove_file(&step.path)
                };
                match r {
                    Ok(()) => {}
                    Err(SyncError::RemoteIo { source, .. })
                        if source.kind() == std::io::ErrorKind::DirectoryNotEmpty =>
                    {
                        return Err(StepError::Precondition(format!(
                            "{} was not removed on the remote: it still holds files",
                            display(&step.path)
                        )))
                    }
                    Err(e) => return Err(e.into()),
                }
                self.remote_results.insert(step.path.clone(), None);
                Ok(())
            }
        }
    }
}
