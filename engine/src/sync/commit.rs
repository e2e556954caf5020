//! Step 11 of a run: everything the run learned, committed in one write.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use cachesync_objects::{keys, Batch, EntryKind, Snapshot, Store};

use crate::conflict::{self, ConflictKind, ConflictRecord, ConflictState};
use crate::error::{Result, SyncError};
use crate::index;
use crate::journal::{self, OpRecord, OpState};
use crate::paths::{display, is_within, under};
use crate::plan::{Plan, Side};
use crate::reconcile::{Change, Outcome};
use crate::scan::Flat;
use crate::workspace::Workspace;

use super::apply::LocalResult;
use super::apply_plan::Applied;
use super::prepare::conflict_record_for;
use super::summary;
use super::{Options, Outcome as Report, Trees};

/// What the changes of a run leave: the conflict records open now (new ones also in
/// `fresh`, for their events), the paths merged automatically, and the new base.
struct Outcomes {
    open_now: BTreeMap<Vec<u8>, ConflictRecord>,
    fresh: Vec<ConflictRecord>,
    merged: HashSet<Vec<u8>>,
    base: Flat,
    base_moved: bool,
}

/// Step 11: the workspace synced and the index's new entries written (see
/// [`write_index`]); then the new base, the remote snapshot, the conflict records, the racy
/// paths and the journal's record of the run, in one atomic write; then an event per new
/// conflict. Returns the error that stopped the run, if one did.
///
/// # Errors
/// Store and I/O errors, and the hook's.
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_run(
    ws: &Workspace,
    opts: &Options,
    mut trees: Trees,
    plan: &Plan,
    mut applied: Applied,
    new_remote_only: &[Vec<u8>],
    mut op: OpRecord,
    report: &mut Report,
) -> Result<Option<SyncError>> {
    if report.applied_local > 0 {
        // Make the workspace's new files durable before the index and the base say they
        // are there: a power cut must not leave an empty file the next run would take for
        // an edit.
        let root = fs::File::open(&ws.root).map_err(|e| SyncError::io(&ws.root, e))?;
        rustix::fs::syncfs(&root).map_err(|e| SyncError::io(&ws.root, e.into()))?;
    }
    write_index(
        &ws.store,
        &trees,
        plan,
        std::mem::take(&mut applied.local_results),
    )?;
    crate::failpoint::hit("index-written");
    let mut batch = Batch::new();
    let now = crate::now_ns();
    // The remote's snapshot is written, and its tree dropped, before the new base is
    // built: a first copy would otherwise hold both trees of every entry at once.
    remote_snapshot_in(ws, opts, &op, &mut batch, &mut trees, &applied, now)?;
    let existing: BTreeMap<Vec<u8>, ConflictRecord> = conflict::open(&ws.store)?
        .into_iter()
        .map(|r| (r.path_bytes(), r))
        .collect();
    let base = std::mem::take(&mut trees.base);
    let mut outcomes = record_outcomes(opts, &trees, plan, &applied, &existing, base, report)
        .into_batch(&ws.store, plan, &mut batch)?;
    presence_updates(&mut batch, &trees, &outcomes.base, new_remote_only);
    let left: Vec<&Vec<u8>> = trees
        .local
        .unstable
        .iter()
        .chain(&trees.remote.unstable)
        .collect();
    settle_records(ws, opts, existing, &left, &mut outcomes, &mut batch);
    report.conflicts = std::mem::take(&mut outcomes.open_now)
        .into_values()
        .collect();
    let racy_now =
        crate::racy::after_writes(&trees.racy, &applied.remote_results, trees.started_ns);
    crate::racy::put(&mut batch, &trees.racy, &racy_now);
    let before = ws.store.get_ref(keys::REF_BASE)?;
    if let Some(after) = snapshot_in(
        ws,
        opts,
        &op,
        &mut batch,
        (keys::REF_BASE, "base after"),
        &outcomes.base,
        outcomes.base_moved,
        now,
    )? {
        // What both sides agreed on before and after: `restore --at`, `log PATH`.
        op.base_before = before.map(|b| b.to_hex());
        op.base_after = Some(after.to_hex());
    }
    finish_op(&mut op, plan, applied.fatal.as_ref(), report);
    journal::put(&mut batch, &op);
    crate::failpoint::hit("before-commit");
    ws.store.commit(batch)?;
    crate::failpoint::hit("after-commit");
    for c in &outcomes.fresh {
        crate::events::emit(
            &ws.meta_dir(),
            &crate::events::Outlets::of(&ws.config),
            &crate::events::Event {
                time_ns: now,
                kind: crate::events::EventKind::Conflict,
                workspace: ws.root.display().to_string(),
                reason: Some(format!("{} conflict; both versions kept", c.kind)),
                path: Some(c.path.clone()),
                manual: None,
            },
        )?;
    }
    Ok(applied.fatal)
}

/// The remote as this run leaves it (the scanned tree with the run's remote writes) as a
/// snapshot in `batch`. The scanned tree is taken: the edits say whether anything moved (no
/// copy of 100,000 entries to compare with).
fn remote_snapshot_in(
    ws: &Workspace,
    opts: &Options,
    op: &OpRecord,
    batch: &mut Batch,
    trees: &mut Trees,
    applied: &Applied,
    now: i64,
) -> Result<()> {
    if trees.remote_let_go {
        debug_assert!(
            applied.remote_results.is_empty(),
            "a plan without remote steps"
        );
        return Ok(());
    }
    if trees.remote_is_base
        && applied.remote_results.is_empty()
        && ws.store.get_ref(keys::REF_REMOTE)?.is_some()
    {
        // The remote is as the scan saved it, and nothing here moved it: no copy of the
        // base to compare.
        return Ok(());
    }
    let mut remote = if trees.remote_is_base {
        trees.base.clone()
    } else {
        std::mem::take(&mut trees.remote.tree)
    };
    let moved = remote.apply(
        applied
            .remote_results
            .iter()
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect(),
    );
    snapshot_in(
        ws,
        opts,
        op,
        batch,
        (keys::REF_REMOTE, "remote as seen by"),
        &remote,
        moved,
        now,
    )
    .map(drop)
}

/// Writes `tree` as a snapshot and points the ref `name` at it in `batch`, when the tree
/// `moved` or the ref is not there yet; the new snapshot's id, when it wrote one.
#[allow(clippy::too_many_arguments)]
fn snapshot_in(
    ws: &Workspace,
    opts: &Options,
    op: &OpRecord,
    batch: &mut Batch,
    (name, what): (&str, &str),
    tree: &Flat,
    moved: bool,
    now: i64,
) -> Result<Option<cachesync_objects::SnapshotId>> {
    if moved || ws.store.get_ref(name)?.is_none() {
        let snap = Snapshot {
            root: ws.store.write_flat(tree)?,
            parent: ws.store.get_ref(name)?,
            time_ns: now,
            description: format!("{what} {} (op {})", opts.command, op.id),
        };
        let id = ws.store.put_snapshot(&snap)?;
        Store::set_ref_in(batch, name, id);
        return Ok(Some(id));
    }
    Ok(None)
}

/// The recorded open conflicts this run did not reopen: a lost+found record stays open
/// while its copy is there (the emptied directories of a removed copy are tidied); the
/// others, when their path was in the run, are settled (both sides agree again), unless the
/// run `left` the path out (unstable or unreadable): those stay open, among the run's
/// conflicts.
fn settle_records(
    ws: &Workspace,
    opts: &Options,
    existing: BTreeMap<Vec<u8>, ConflictRecord>,
    left: &[&Vec<u8>],
    outcomes: &mut Outcomes,
    batch: &mut Batch,
) {
    let in_run = |p: &[u8]| {
        opts.paths.is_empty()
            || opts.paths.iter().any(|f| {
                if opts.exact_paths {
                    f == p
                } else {
                    is_within(p, f)
                }
            })
    };
    for (path, mut r) in existing {
        if let Some(lf) = r.lost_found_path() {
            let copy = under(&ws.root, &lf);
            if copy.symlink_metadata().is_ok() {
                outcomes.open_now.entry(path).or_insert(r);
                continue;
            }
            let top = ws.root.join(crate::ignore_rules::LOST_FOUND);
            let mut dir = copy.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if !d.starts_with(&top) || fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
        }
        if outcomes.open_now.contains_key(&path) || outcomes.merged.contains(&path) {
            continue;
        }
        // A path the run left out (it kept changing, or could not be read) was not looked at:
        // its conflict is still open, and the run says so.
        if left.iter().any(|u| is_within(&path, u)) {
            outcomes.open_now.insert(path, r);
            continue;
        }
        if in_run(&path) {
            r.state = ConflictState::Resolved;
            r.resolution
                .get_or_insert_with(|| "both sides agree again".into());
            r.resolved_ns = Some(crate::now_ns());
            conflict::put(batch, &r);
        }
    }
}

/// How many index entries [`write_index`] writes at a time.
const INDEX_BATCH: usize = 16_384;

/// The index entries of the scan and of the applied local steps, written ahead of the
/// commit, [`INDEX_BATCH`] at a time. The index is a stat cache, and each entry it gets
/// here is true of its file: the scan's as hashed (as before, when they went in the
/// commit), the applied steps' for files the run wrote and synced. An entry is trusted
/// only while the file's whole stat still matches it, so a run killed before its commit
/// leaves entries the next run can trust for files its reconcile then finds as they are.
/// In the commit's one write, a million of them were copied twice more (into RocksDB's own
/// batch, then into its memtable): a first copy's peak.
///
/// # Errors
/// Store errors.
fn write_index(
    store: &Store,
    trees: &Trees,
    plan: &Plan,
    local_results: Vec<LocalResult>,
) -> Result<()> {
    let scanned = trees
        .local
        .index_updates
        .iter()
        .map(|(path, ie)| (path.as_slice(), Some(*ie)));
    let removed = trees
        .local
        .index_removals
        .iter()
        .map(|path| (path.as_slice(), None));
    let applied = local_results.into_iter().map(|r| {
        let step = &plan.steps[r.step];
        let path = match (r.from, &step.from) {
            (true, Some(from)) => from.as_slice(),
            _ => step.path.as_slice(),
        };
        let file = step.target.as_ref().and_then(|t| t.file);
        (path, r.stat.zip(file).map(|(s, f)| s.with_file(f)))
    });
    let mut batch = Batch::new();
    for (i, (path, entry)) in scanned.chain(removed).chain(applied).enumerate() {
        match entry {
            Some(ie) => index::put(&mut batch, path, &ie),
            None => index::remove(&mut batch, path),
        }
        if (i + 1).is_multiple_of(INDEX_BATCH) {
            store.db().write(std::mem::take(&mut batch), false)?;
        }
    }
    if !batch.is_empty() {
        store.db().write(batch, false)?;
    }
    Ok(())
}

/// Per change: a conflict (or a write the server refused) gets its record; a change whose
/// steps all ran moves the base; a local version moved to lost+found gets its record and a
/// notice; a merge gets a resolved record. Records are collected, not yet in the batch.
fn record_outcomes(
    opts: &Options,
    trees: &Trees,
    plan: &Plan,
    applied: &Applied,
    existing: &BTreeMap<Vec<u8>, ConflictRecord>,
    base: Flat,
    report: &mut Report,
) -> Pending {
    let mut p = Pending {
        outcomes: Outcomes {
            open_now: BTreeMap::new(),
            fresh: Vec::new(),
            merged: HashSet::new(),
            base,
            base_moved: false,
        },
        resolved: Vec::new(),
        cleared: Vec::new(),
    };
    let mut edits = BaseEdits::with_capacity(plan.changes.len());
    for (i, c) in plan.changes.iter().enumerate() {
        let kind = match &c.outcome {
            Outcome::Conflict(kind) => Some(*kind),
            Outcome::Resolved(_) if applied.denied.contains(&i) => Some(ConflictKind::Permission),
            Outcome::Resolved(_) => None,
        };
        let target = match (&c.outcome, kind) {
            (_, Some(kind)) => {
                let (r, fresh) = conflict_record_for(existing, c, kind);
                if fresh {
                    p.outcomes.fresh.push(r.clone());
                }
                p.outcomes.open_now.insert(c.path.clone(), r);
                continue;
            }
            (Outcome::Conflict(_), None) => unreachable!("a conflict always has a kind"),
            (Outcome::Resolved(target), None) => target,
        };
        let done = |needed: bool, side| {
            !needed || (opts.direction.allows(side) && !applied.failed.contains(&i))
        };
        let all_done = done(c.needs_local(), Side::Local) && done(c.needs_remote(), Side::Remote);
        if let Some(lf) = applied.stashed.get(&c.path) {
            let r = stashed_record(c, lf);
            report.notices.push(stashed_notice(c, lf));
            p.outcomes.fresh.push(r.clone());
            p.outcomes.open_now.insert(c.path.clone(), r);
        }
        if !all_done {
            continue;
        }
        if c.merged {
            p.outcomes.merged.insert(c.path.clone());
            p.resolved.push(c.path.clone());
        }
        if trees.local.reappeared.contains(&c.path) {
            p.cleared.push(c.path.clone());
        }
        // A path whose directory the base does not hold (a directory in conflict, made on
        // both sides with different modes): recorded, the base would hold that directory
        // implicitly, with a default mode, and the next run would take one side's mode for a
        // change and push it over the other's. It stays out until its directory is agreed.
        let parent = crate::paths::split_parent(&c.path).0;
        if target.is_some() && !parent.is_empty() && !edits.holds(&p.outcomes.base, parent) {
            continue;
        }
        edits.push(&c.path, target.as_deref().cloned());
    }
    p.outcomes.base_moved = edits.apply(&mut p.outcomes.base);
    p
}

/// The changes to the base a run's outcomes make, in path order, applied at the end.
struct BaseEdits {
    /// Path → its new entry (`None`: gone), sorted by path; a path edited twice, last wins.
    edits: Vec<(Vec<u8>, Option<cachesync_objects::Entry>)>,
    sorted: bool,
}

impl BaseEdits {
    /// Room for `n` edits (one per change at most: grown by doubling, the list of a first
    /// copy took half as much again as it held).
    fn with_capacity(n: usize) -> BaseEdits {
        BaseEdits {
            edits: Vec::with_capacity(n),
            sorted: true,
        }
    }

    fn push(&mut self, path: &[u8], entry: Option<cachesync_objects::Entry>) {
        self.sorted &= self
            .edits
            .last()
            .is_none_or(|(last, _)| last.as_slice() < path);
        self.edits.push((path.to_vec(), entry));
    }

    /// Whether `path` is in `base` as edited so far.
    fn holds(&mut self, base: &Flat, path: &[u8]) -> bool {
        if !self.sorted {
            self.settle();
        }
        match self.edits.binary_search_by(|(p, _)| p.as_slice().cmp(path)) {
            Ok(i) => self.edits[i].1.is_some(),
            Err(_) => base.contains_key(path),
        }
    }

    /// Sorts by path, keeping the last edit of a path.
    fn settle(&mut self) {
        self.edits.reverse();
        self.edits.sort_by(|a, b| a.0.cmp(&b.0));
        self.edits.dedup_by(|later, first| later.0 == first.0);
        self.sorted = true;
    }

    /// Applies the edits to `base` (one pass; an empty base, a first copy's, is the list of
    /// edits itself); true when it changed.
    fn apply(mut self, base: &mut Flat) -> bool {
        if !self.sorted {
            self.settle();
        }
        base.apply(self.edits)
    }
}

/// [`record_outcomes`]'s answer, with the writes it implies.
struct Pending {
    outcomes: Outcomes,
    /// Paths merged automatically: their settled records are written (see
    /// [`merge_to_record`]).
    resolved: Vec<Vec<u8>>,
    /// Remote-only flags to clear (a file written here at a remote-only path, now synced).
    cleared: Vec<Vec<u8>>,
}

impl Pending {
    /// Puts the records and flags in `batch`.
    fn into_batch(
        self,
        store: &cachesync_objects::Store,
        plan: &Plan,
        batch: &mut Batch,
    ) -> Result<Outcomes> {
        for r in self.outcomes.open_now.values() {
            conflict::put(batch, r);
        }
        for c in plan
            .changes
            .iter()
            .filter(|c| self.resolved.contains(&c.path))
        {
            if let Some(r) = merge_to_record(store, c)? {
                conflict::put(batch, &r);
            }
        }
        for p in &self.cleared {
            crate::presence::clear(batch, p);
        }
        Ok(self.outcomes)
    }
}

/// The settled record of an automatic merge: base, client and server as they were, the merge
/// as the resolution. Written before the run's steps too (see `record.rs`), so that a run
/// killed once a side holds the merge still keeps what it was made from.
pub(super) fn merged_record(c: &Change) -> ConflictRecord {
    let mut r = conflict::record(
        &c.path,
        ConflictKind::Content,
        c.base.as_deref(),
        c.local.as_deref(),
        c.remote.as_deref(),
    );
    r.state = ConflictState::Resolved;
    r.resolved = conflict::Variant::of(c.result().and_then(|t| t.as_deref()));
    r.resolution = Some("merged automatically".into());
    r.resolved_ns = Some(crate::now_ns());
    r
}

/// The record to write for the automatic merge at change `c`, or `None` when the one there
/// already says it: a run killed once a side held the merge leaves that side holding it, and
/// the next run merges again with the merge as its client; the earlier record, made from the
/// versions before the merge, is the one to keep.
pub(super) fn merge_to_record(
    store: &cachesync_objects::Store,
    c: &Change,
) -> Result<Option<ConflictRecord>> {
    let r = merged_record(c);
    let finishing = conflict::get(store, &c.path)?.is_some_and(|old| {
        old.state == ConflictState::Resolved
            && old.resolution.as_deref() == Some("merged automatically")
            && old.resolved.is_some()
            && old.resolved == r.client
    });
    Ok((!finishing).then_some(r))
}

/// The open record of a local version moved to lost+found.
fn stashed_record(c: &Change, lf: &[u8]) -> ConflictRecord {
    let mut r = conflict::record(
        &c.path,
        c.conflict_kind().unwrap_or(ConflictKind::Type),
        c.base.as_deref(),
        c.local.as_deref(),
        c.remote.as_deref(),
    );
    r.set_lost_found(lf);
    r.resolution = Some(format!(
        "the server's version is in the workspace; yours was moved to {}",
        display(lf)
    ));
    r
}

/// The notice of a local version moved to lost+found.
fn stashed_notice(c: &Change, lf: &[u8]) -> String {
    match &c.remote {
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
    }
}

/// Remote-only flags: cleared for files here again or gone from the base, set for the new
/// files the run left on the server.
fn presence_updates(batch: &mut Batch, trees: &Trees, base: &Flat, new_remote_only: &[Vec<u8>]) {
    for p in &trees.local.materialized {
        crate::presence::clear(batch, p);
    }
    for p in new_remote_only {
        if base.contains_key(p) {
            crate::presence::set_remote_only(batch, p);
        }
    }
    for p in &trees.local.remote_only {
        if base.get(p).is_none_or(|e| e.kind != EntryKind::File) {
            crate::presence::clear(batch, p);
        }
    }
}

/// The journal's record of the run, finished: its state, error and summary. Unreadable
/// entries make the run incomplete, in the journal too.
fn finish_op(op: &mut OpRecord, plan: &Plan, fatal: Option<&SyncError>, report: &mut Report) {
    op.finished_ns = Some(crate::now_ns());
    op.steps_done = report.applied as u64;
    if report.failed.is_none() {
        report.failed = crate::scan::unreadable_error(&report.unreadable);
    }
    op.state = if fatal.is_some() || report.failed.is_some() {
        OpState::Failed
    } else {
        OpState::Done
    };
    op.error = fatal.or(report.failed.as_ref()).map(|e| e.to_string());
    op.summary = summary(plan, report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::three_way::file;

    #[test]
    fn base_edits_apply_in_path_order_the_last_edit_of_a_path_winning() {
        let mut base = Flat::new();
        let mut edits = BaseEdits::with_capacity(4);
        edits.push(b"b", Some(file("b")));
        edits.push(b"a", Some(file("a")));
        edits.push(b"b", Some(file("b2")));
        assert!(edits.holds(&base, b"a"));
        assert!(!edits.holds(&base, b"c"));
        edits.push(b"c", None);
        assert!(edits.apply(&mut base), "a first base moved");
        assert_eq!(base.keys().collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!(base[b"b".as_slice()], file("b2"));

        let mut edits = BaseEdits::with_capacity(3);
        edits.push(b"a", None);
        assert!(!edits.holds(&base, b"a"), "removed so far");
        assert!(edits.holds(&base, b"b"), "in the base");
        edits.push(b"b", Some(file("b2")));
        assert!(edits.apply(&mut base), "a removed");
        assert_eq!(base.keys().collect::<Vec<_>>(), [b"b"]);

        let mut edits = BaseEdits::with_capacity(1);
        edits.push(b"b", Some(file("b2")));
        assert!(
            !edits.apply(&mut base),
            "the same entry again moves nothing"
        );
    }
}
