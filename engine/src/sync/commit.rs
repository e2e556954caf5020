//! Step 11 of a run: everything the run learned, committed in one write.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use cachesync_objects::{keys, Batch, EntryKind, Snapshot, Store};

use crate::conflict::{self, ConflictKind, ConflictRecord, ConflictState};
use crate::error::{Result, SyncError};
use crate::index::{self};
use crate::journal::{self, OpRecord, OpState};
use crate::paths::{display, hex, is_within, under};
use crate::plan::{Plan, Side};
use crate::reconcile::Outcome;
use crate::workspace::Workspace;

use super::apply_plan::Applied;
use super::prepare::conflict_record_for;
use super::summary;
use super::{SyncOptions, SyncReport, Trees};

impl Workspace {
    /// Step 11: the new base, the remote snapshot, the index, the conflict records, the
    /// racy paths and the journal's record of the run, in one atomic write; then an event
    /// per new conflict. Returns the error that stopped the run, if one did.
    ///
    /// # Errors
    /// Store and I/O errors, and the hook's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_run(
        &self,
        opts: &SyncOptions,
        mut trees: Trees,
        plan: &Plan,
        applied: Applied,
        new_remote_only: &[Vec<u8>],
        mut op: OpRecord,
        report: &mut SyncReport,
    ) -> Result<Option<SyncError>> {
        let Applied {
            local_results,
            remote_results,
            stashed,
            failed,
            denied,
            fatal,
        } = applied;
        let op_id = op.id;
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
        for p in new_remote_only {
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
        op.summary = summary(plan, report);
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
        Ok(fatal)
    }
}
