//! Undo of what an operation changed in this workspace alone: which files are here (`get`,
//! `drop`, `cull`) and a conflict settled (`resolve`). Such an operation lists in its plan
//! what it did to each path ([`LocalStep`]); undo does the opposite to each path still as the
//! operation left it, and is journalled with the steps it did, so that undo of the undo does
//! them again.
//!
//! - A file brought here goes back to remote-only (refused, and left, when it was changed
//!   here since: it is never removed with a change in it); a file dropped or culled is
//!   brought back, from the store or the share (refused when the share changed it since: a
//!   sync takes that version in first).
//! - A conflict settled is opened again: its record as it was, the base before it, and the
//!   workspace's path as it held it before the resolution, written only over the
//!   resolution itself. A resolution a later sync sent is left: undo that sync first.

use std::collections::HashSet;

use cachesync_objects::{keys, Batch, Entry, EntryKind, FileId, Flat};
use serde::{Deserialize, Serialize};

use super::{Outcome, PathPlan};
use crate::conflict::{ConflictRecord, ConflictState, Variant};
use crate::error::{Result, SyncError};
use crate::journal::{OpKind, OpRecord};
use crate::paths::{display, hex_unless_utf8, under};
use crate::presence::Record;
use crate::workspace::Workspace;

/// What an operation did to one path of this workspace alone, as its plan records it (the
/// step's `op` is `get`, `drop` or `settle`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum LocalStep {
    /// A remote-only file brought here.
    Get {
        /// The path, displayable.
        path: String,
        /// Its bytes in hex, when it is not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_hex: Option<String>,
        /// It had been dropped by hand (what its undo marks again).
        #[serde(default)]
        by_hand: bool,
    },
    /// A file made remote-only (removed here; its content stays in the store until culled).
    Drop {
        /// The path, displayable.
        path: String,
        /// Its bytes in hex, when it is not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_hex: Option<String>,
        /// Dropped by hand (prefetch leaves it remote-only), not to make room.
        #[serde(default)]
        by_hand: bool,
    },
    /// A conflict settled (or opened again by an undo).
    Settle(Box<Settled>),
}

/// A conflict settled (or opened again by an undo): its record before and after, and, when
/// the operation wrote the workspace's path, what that held before and after.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settled {
    /// The path, displayable.
    pub path: String,
    /// Its bytes in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// The record before.
    pub before: ConflictRecord,
    /// The record after.
    pub after: ConflictRecord,
    /// Whether the workspace's path was written.
    #[serde(default)]
    pub wrote: bool,
    /// What the workspace held there before (absent: nothing).
    #[serde(default)]
    pub here_before: Option<Variant>,
    /// What it held after.
    #[serde(default)]
    pub here_after: Option<Variant>,
}

impl LocalStep {
    /// The step of a conflict's record going from `before` to `after`, with what the
    /// workspace held before and after when its path was written (`here`).
    pub(crate) fn settled(
        before: ConflictRecord,
        after: ConflictRecord,
        here: Option<(Option<Variant>, Option<Variant>)>,
    ) -> LocalStep {
        let p = after.path_bytes();
        let wrote = here.is_some();
        let (here_before, here_after) = here.unwrap_or_default();
        LocalStep::Settle(Box::new(Settled {
            path: display(&p),
            path_hex: hex_unless_utf8(&p),
            before,
            after,
            wrote,
            here_before,
            here_after,
        }))
    }

    /// The path's bytes (`None` when its `path_hex` is damaged: never read as another path).
    fn path_bytes_checked(&self) -> Option<Vec<u8>> {
        let (path, path_hex) = match self {
            LocalStep::Get { path, path_hex, .. } | LocalStep::Drop { path, path_hex, .. } => {
                (path, path_hex)
            }
            LocalStep::Settle(s) => (&s.path, &s.path_hex),
        };
        crate::paths::path_bytes(path, path_hex.as_deref())
    }

    /// The path's bytes, of a step [`steps_of`] read (it checks them).
    fn path_bytes(&self) -> Vec<u8> {
        self.path_bytes_checked()
            .expect("steps_of refuses a step whose path does not decode")
    }

    /// The content its undo and the undo of that undo write (gc keeps it while the
    /// operation is in the history).
    pub(crate) fn files(&self) -> Vec<FileId> {
        match self {
            LocalStep::Settle(s) => s
                .before
                .files()
                .into_iter()
                .chain(s.after.files())
                .chain(
                    [&s.here_before, &s.here_after]
                        .into_iter()
                        .flatten()
                        .filter_map(Variant::file_id),
                )
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Adds `op` to a batch with `steps` as its plan (its `local_paths`, their count).
pub(crate) fn put(batch: &mut Batch, op: &mut OpRecord, steps: Vec<LocalStep>) {
    op.local_paths = Some(steps.len() as u64);
    crate::journal::put_planned(batch, op, &steps);
}

/// Adds to a batch the operation `record` names, done now, with `steps` (all of one kind).
///
/// # Errors
/// Store errors.
pub(crate) fn journal(
    ws: &Workspace,
    batch: &mut Batch,
    record: &Record,
    steps: Vec<LocalStep>,
) -> Result<()> {
    let what = match steps.first() {
        Some(LocalStep::Get { .. }) => "brought here",
        Some(LocalStep::Drop { .. }) => "made remote-only",
        _ => "settled",
    };
    let summary = format!("{}: {} file(s) {what}", record.summary, steps.len());
    let mut op = OpRecord::instant(&ws.store, record.kind, summary)?;
    put(batch, &mut op, steps);
    Ok(())
}

/// The steps of `op` (read with its plan).
///
/// # Errors
/// [`SyncError::DamagedRecord`] when a step does not decode.
pub(crate) fn steps_of(op: &OpRecord) -> Result<Vec<LocalStep>> {
    let damaged =
        |e: String| SyncError::damaged(format!("the plan of journal operation {}", op.id), e);
    op.plan
        .iter()
        .map(|v| {
            let step: LocalStep =
                serde_json::from_value(v.clone()).map_err(|e| damaged(e.to_string()))?;
            match step.path_bytes_checked() {
                Some(_) => Ok(step),
                None => Err(damaged("a step's path_hex is not hex".into())),
            }
        })
        .collect()
}

/// Takes back `op`, an operation with [`OpRecord::local_paths`] (see the module doc).
///
/// # Errors
/// Store and I/O errors; [`SyncError::NotCached`] when a file must come from a share out of
/// reach.
pub(super) fn run(ws: &Workspace, op: &OpRecord, dry_run: bool) -> Result<Outcome> {
    let steps = steps_of(op)?;
    if !dry_run {
        // What an interrupted run left (a file half written, one swapped out) is tidied
        // away first, as every scan does.
        crate::presence::scan_workspace(ws, &ws.synced_base()?)?;
    }
    let record = Record {
        kind: OpKind::Undo,
        summary: format!("undo of operation {} ({})", op.id, op.command),
    };
    let paths = match steps.as_slice() {
        [LocalStep::Settle(s)] => reopen(ws, op, s, dry_run, record)?,
        _ => presence(ws, &steps, dry_run, record)?,
    };
    Ok(Outcome {
        undone: op.id,
        command: op.command.as_str(),
        paths,
        push: None,
        both_sides: false,
    })
}

fn planned(p: Vec<u8>, action: &'static str, reason: Option<String>) -> PathPlan {
    PathPlan {
        path: display(&p),
        path_hex: hex_unless_utf8(&p),
        action: if reason.is_some() { "left" } else { action },
        reason,
        bytes: p,
    }
}

/// Undo of `get`, `drop` or `cull` (or of an undo of one): each file made remote-only again
/// (`drop`) or brought back (`get`).
fn presence(
    ws: &Workspace,
    steps: &[LocalStep],
    dry_run: bool,
    record: Record,
) -> Result<Vec<PathPlan>> {
    let (mut out, by_hand) = presence_plan(ws, steps)?;
    let acting: Vec<Vec<u8>> = out
        .iter()
        .filter(|p| p.action == "drop" || p.action == "get")
        .map(|p| p.bytes.clone())
        .collect();
    if dry_run || acting.is_empty() {
        return Ok(out);
    }
    let done = if out.iter().any(|p| p.action == "drop") {
        crate::presence::drop_with(ws, &acting, &|p| by_hand.contains(p), Some(record))?
    } else {
        crate::presence::get_recorded(ws, &acting, record)?
    };
    let mut refused: std::collections::HashMap<Vec<u8>, String> =
        done.refused.into_iter().collect();
    let flagged = crate::presence::load(&ws.store)?;
    for plan in out
        .iter_mut()
        .filter(|p| p.action == "drop" || p.action == "get")
    {
        let (here, remote_only) = presence_of(ws, &flagged, &plan.bytes);
        if here == (plan.action == "get") && remote_only == (plan.action == "drop") {
            continue;
        }
        plan.action = "left";
        plan.reason = Some(
            refused
                .remove(&plan.bytes)
                .unwrap_or_else(|| "changed here while the undo ran".into()),
        );
    }
    Ok(out)
}

/// Whether a file is at `p` in the workspace, and whether it is marked remote-only
/// (`flagged`): a file both here and marked is one a killed run left half got or dropped.
fn presence_of(ws: &Workspace, flagged: &HashSet<Vec<u8>>, p: &[u8]) -> (bool, bool) {
    let here = std::fs::symlink_metadata(under(&ws.root, p)).is_ok();
    (here, flagged.contains(p))
}

/// What the undo of each presence step does, and the paths to mark dropped by hand again.
fn presence_plan(ws: &Workspace, steps: &[LocalStep]) -> Result<(Vec<PathPlan>, HashSet<Vec<u8>>)> {
    let flagged = crate::presence::load(&ws.store)?;
    let base = ws.store.read_ref_flat(keys::REF_BASE)?;
    let mut out = Vec::new();
    let mut by_hand = HashSet::new();
    for step in steps {
        let p = step.path_bytes();
        let (action, hand) = match step {
            LocalStep::Get { by_hand, .. } => ("drop", *by_hand),
            LocalStep::Drop { by_hand, .. } => ("get", *by_hand),
            LocalStep::Settle(_) => {
                return Err(SyncError::damaged(
                    "a journal plan",
                    "a settled conflict among files brought here or dropped",
                ))
            }
        };
        if hand {
            by_hand.insert(p.clone());
        }
        let (here, remote_only) = presence_of(ws, &flagged, &p);
        let abs = under(&ws.root, &p);
        let reason = match (base.get(p.as_slice()), action) {
            (None, _) => Some("gone since (a sync removed it)"),
            (Some(_), "drop") if remote_only && !here => {
                out.push(planned(p, "undone", None));
                continue;
            }
            (Some(_), "get") if !remote_only && here => {
                out.push(planned(p, "undone", None));
                continue;
            }
            (Some(_), _) if !here && !remote_only => {
                Some("removed here since (the next sync sends that)")
            }
            // Marked and here: as a killed run left it, when it is the agreed version.
            (Some(b), "get") if here && !crate::restore::settled(&abs, Some(b), None, false) => {
                Some("a file is here already (the next sync compares it with the share's)")
            }
            (Some(_), _) => None,
        };
        out.push(planned(p, action, reason.map(str::to_string)));
    }
    Ok((out, by_hand))
}

/// The entry of `path` in the snapshot `sid` names (`Ok(None)`: absent there).
fn entry_in(ws: &Workspace, sid: Option<&str>, path: &[u8], op: u64) -> Result<Option<Entry>> {
    Ok(super::flat_of(ws, sid, op)?.get(path).cloned())
}

/// A variant as the tree entry written back (its time: now).
fn entry_of(path: &[u8], v: &Variant) -> Entry {
    let mut e = Entry::new(path, v.kind);
    e.mode = v.mode;
    e.size = v.size;
    e.file = v.file_id();
    e.target = v.target.clone().unwrap_or_default().into_bytes();
    e.mtime_ns = crate::now_ns();
    e
}

/// What [`look`] found for a settling step.
enum Found {
    /// Taken back already (an undo run again).
    Undone,
    /// Not to be taken back, and why.
    Left(String),
    /// To be taken back, over what the workspace holds at the path now (what the operation
    /// left there, or the version both sides agree on).
    Over(Option<Entry>),
    /// To be taken back in the store only: the workspace holds what was there before
    /// already (an undo killed after it wrote it, run again).
    Written,
}

/// Whether the settling step `s` of `op`, at `p`, can be taken back (`interrupted`: an undo
/// of it was killed after it set the pending mark).
fn look(ws: &Workspace, op: &OpRecord, s: &Settled, p: &[u8], interrupted: bool) -> Result<Found> {
    let Settled {
        before,
        after,
        wrote,
        here_before,
        here_after,
        ..
    } = s;
    let p = p.to_vec();
    let abs = under(&ws.root, &p);
    let now = crate::conflict::get(&ws.store, &p)?;
    let base_now = ws.store.read_ref_flat(keys::REF_BASE)?;
    let moved = op.base_after.is_some();
    let (b0, b1) = if moved {
        (
            entry_in(ws, op.base_before.as_deref(), &p, op.id)?,
            entry_in(ws, op.base_after.as_deref(), &p, op.id)?,
        )
    } else {
        (None, None)
    };
    let is = |e: Option<&Entry>| crate::restore::settled(&abs, e, e, false);
    let before_here = here_before.as_ref().map(|v| entry_of(&p, v));
    let after_here = here_after.as_ref().map(|v| entry_of(&p, v));
    if now.as_ref() == Some(before)
        && (!moved || crate::reconcile::same(base_now.get(p.as_slice()), b0.as_ref()))
        && (!wrote || is(before_here.as_ref()))
    {
        return Ok(Found::Undone);
    }
    let left = |why: &str| Ok(Found::Left(why.to_string()));
    if now.as_ref() != Some(after) {
        return match now {
            None => left("its conflict record is gone (gc drops settled ones)"),
            Some(r) if r.state == ConflictState::Open => {
                left("its conflict was opened again since")
            }
            Some(_) => left("its conflict was settled again since"),
        };
    }
    if moved && !crate::reconcile::same(base_now.get(p.as_slice()), b1.as_ref()) {
        return left("a later sync sent it to the share: undo that sync first");
    }
    if crate::restore::through_symlink(&ws.root, &p) {
        return left("a directory on its way is a symlink here now");
    }
    if !wrote {
        return Ok(Found::Over(None));
    }
    // Written already (an undo killed after it wrote, run again); or, once an undo started,
    // whatever is here now: its store side is finished either way, so that no sync takes
    // what is here for the resolution (it is the workspace's side of the open conflict).
    if is(before_here.as_ref()) || interrupted {
        return Ok(Found::Written);
    }
    let (parent, _) = crate::paths::split_parent(&p);
    if here_before.is_some() && !parent.is_empty() && !under(&ws.root, parent).is_dir() {
        return left("its directory is gone here");
    }
    // What the operation left, or (a sync that sent it undone since) what both sides agree on.
    if is(after_here.as_ref()) {
        Ok(Found::Over(after_here))
    } else if moved && is(b1.as_ref()) {
        Ok(Found::Over(b1))
    } else {
        left("changed here since")
    }
}

/// Undo of a `resolve` (or of an undo of one): the conflict's record as it was before,
/// the base's entry as it was before, and the workspace's path as it was before, written
/// only over what the operation left there. Journalled as one `settle` step the other way.
fn reopen(
    ws: &Workspace,
    op: &OpRecord,
    s: &Settled,
    dry_run: bool,
    record: Record,
) -> Result<Vec<PathPlan>> {
    let p = crate::paths::path_bytes(&s.path, s.path_hex.as_deref())
        .expect("steps_of refuses a step whose path does not decode");
    let interrupted = super::pending(ws)? == Some(op.id);
    let found = look(ws, op, s, &p, interrupted)?;
    let action = if s.after.state == ConflictState::Resolved {
        "reopen"
    } else {
        "settle"
    };
    let stopped = matches!(found, Found::Undone | Found::Left(_));
    if stopped && !dry_run && interrupted {
        // An interrupted undo of it that has nothing left to finish.
        super::set_pending(ws, None)?;
    }
    let (over, write) = match found {
        Found::Undone => return Ok(vec![planned(p, "undone", None)]),
        Found::Left(why) => return Ok(vec![planned(p, action, Some(why))]),
        _ if dry_run => return Ok(vec![planned(p, action, None)]),
        Found::Over(over) => (over, s.wrote),
        Found::Written => (None, false),
    };
    if let Some(v) = s
        .here_before
        .as_ref()
        .filter(|v| write && v.kind != EntryKind::Dir)
    {
        let stored = v.file_id().map_or(Ok(true), |f| ws.store.has_file(f))?;
        if !stored {
            return Err(SyncError::Usage(format!(
                "{}: what the workspace held before operation {} is no longer in the store \
                 (`cachesync gc` collected it): it cannot be undone",
                display(&p),
                op.id
            )));
        }
    }
    // Until the store says the conflict is open again, no sync may send what is written.
    super::set_pending(ws, Some(op.id))?;
    if write {
        let placed = put_back(ws, &p, s.here_before.as_ref(), over.as_ref());
        if !matches!(placed, Ok(true)) {
            // Nothing was put there: nothing to finish.
            super::set_pending(ws, None)?;
            placed?;
            let why = "changed here while the undo ran".to_string();
            return Ok(vec![planned(p, action, Some(why))]);
        }
    }
    crate::failpoint::hit("undo-reopen-written");
    reopened(ws, op, s, &p, record)?;
    Ok(vec![planned(p, action, None)])
}

/// The store's side of [`reopen`], in one commit: the base's entry as before `op`, the record
/// as before, the path's index and presence entries dropped (the next scan reads the file
/// afresh), the undo journalled, and the pending mark cleared.
fn reopened(ws: &Workspace, op: &OpRecord, s: &Settled, p: &[u8], record: Record) -> Result<()> {
    let summary = format!("{}: {}", record.summary, display(p));
    let mut undo = OpRecord::instant(&ws.store, record.kind, summary)?;
    let mut batch = Batch::new();
    if op.base_after.is_some() {
        let b0 = entry_in(ws, op.base_before.as_deref(), p, op.id)?;
        let description = format!("base after undoing operation {}", op.id);
        let sid = crate::resolve::base_with(ws, p, b0.as_ref(), description)?;
        undo.base_before = ws.store.get_ref(keys::REF_BASE)?.map(|b| b.to_hex());
        undo.base_after = Some(sid.to_hex());
        cachesync_objects::Store::set_ref_in(&mut batch, keys::REF_BASE, sid);
    }
    crate::conflict::put(&mut batch, &s.before);
    crate::index::remove(&mut batch, p);
    crate::presence::clear(&mut batch, p);
    let back = LocalStep::settled(
        s.after.clone(),
        s.before.clone(),
        s.wrote
            .then(|| (s.here_after.clone(), s.here_before.clone())),
    );
    put(&mut batch, &mut undo, vec![back]);
    batch.delete(keys::CF_STATE, crate::state_keys::UNDO_PENDING);
    ws.store.commit(batch)?;
    Ok(())
}

/// Writes `before` at `path` over `over` (what was found there): a file or symlink put in
/// place with an exchange and checked, an empty directory made, or what is there removed
/// when `before` is nothing. False when something else was found there meanwhile.
fn put_back(
    ws: &Workspace,
    path: &[u8],
    before: Option<&Variant>,
    over: Option<&Entry>,
) -> Result<bool> {
    let agreed: Flat = over
        .map(|e| (path.to_vec(), e.clone()))
        .into_iter()
        .collect();
    let p = path.to_vec();
    match before {
        None => Ok(super::remove_made(ws, &[&p], &agreed)?.is_empty()),
        Some(v) if v.kind == EntryKind::Dir => {
            if !super::remove_made(ws, &[&p], &agreed)?.is_empty() {
                return Ok(false);
            }
            let abs = under(&ws.root, path);
            std::fs::create_dir(&abs).map_err(|e| SyncError::io(&abs, e))?;
            std::fs::set_permissions(
                &abs,
                std::os::unix::fs::PermissionsExt::from_mode(v.mode & 0o7777),
            )
            .map_err(|e| SyncError::io(&abs, e))?;
            Ok(true)
        }
        Some(v) => {
            let e = entry_of(path, v);
            let into = crate::restore::Into::Workspace(&agreed);
            Ok(crate::restore::write_all(ws, &into, &[(&p, &e)])?
                .left
                .is_empty())
        }
    }
}
