//! status and check: what changed on each side, what is in conflict, without changing either.

use cachesync_objects::{Batch, Entry, EntryKind};
use serde::Serialize;

use crate::conflict::{self, ConflictRecord};
use crate::error::{ErrorCode, Result, SyncError};
use crate::index;
use crate::paths::{display, hex};
use crate::plan::{Direction, Plan, Side};
use crate::progress::Progress;
use crate::reconcile::{reconcile, same, Outcome};
use crate::workspace::Workspace;

/// How one path changed on one side, against the base.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PathChange {
    /// The path, displayable.
    pub path: String,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `added`, `deleted`, `modified`, `mode`, `type`.
    pub change: &'static str,
    /// The kind of thing now there (or that was there, for deletions).
    pub kind: &'static str,
}

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The workspace root.
    pub workspace: String,
    /// The remote directory.
    pub remote: String,
    /// `connected` or `disconnected`.
    pub mode: &'static str,
    /// Why the remote could not be reached, when it could not.
    pub remote_error: Option<String>,
    /// Changes in the workspace not yet pushed.
    pub local_changes: Vec<PathChange>,
    /// Changes on the remote not yet pulled (empty when the remote was not reached).
    pub remote_changes: Vec<PathChange>,
    /// Conflicts: recorded ones, and new ones the next sync will record.
    pub conflicts: Vec<ConflictRecord>,
    /// Steps a sync would run, per side.
    pub pending: Pending,
    /// Paths ignored by the rules (only with `--ignored`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<Vec<String>>,
    /// Bytes used by `.cachesync/`.
    pub cache_bytes: u64,
    /// Warnings from the scan.
    pub warnings: Vec<String>,
}

/// Steps a sync would run.
#[derive(Debug, Default, Serialize)]
pub struct Pending {
    /// Steps to the workspace.
    pub pull: usize,
    /// Steps to the remote.
    pub push: usize,
}

fn describe(before: Option<&Entry>, after: Option<&Entry>) -> Option<(&'static str, &'static str)> {
    if same(before, after) {
        return None;
    }
    Some(match (before, after) {
        (None, Some(a)) => ("added", a.kind.as_str()),
        (Some(b), None) => ("deleted", b.kind.as_str()),
        (Some(b), Some(a)) if b.kind != a.kind => ("type", a.kind.as_str()),
        (Some(b), Some(a)) => {
            let content = match a.kind {
                EntryKind::File => b.file != a.file,
                EntryKind::Symlink => b.target != a.target,
                _ => b.rdev != a.rdev,
            };
            (if content { "modified" } else { "mode" }, a.kind.as_str())
        }
        (None, None) => return None,
    })
}

fn change_words(c: &PathChange) -> String {
    match c.change {
        "mode" => "permissions changed".into(),
        "type" => format!("replaced by a {}", c.kind),
        other => other.into(),
    }
}

fn path_change(path: &[u8], change: (&'static str, &'static str)) -> PathChange {
    PathChange {
        path: display(path),
        path_hex: std::str::from_utf8(path).is_err().then(|| hex(path)),
        change: change.0,
        kind: change.1,
    }
}

/// One problem `check` reports.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// `conflict`, `local-change`, `remote-change`, `disconnected`.
    pub kind: &'static str,
    /// The path, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// One line for people.
    pub message: String,
}

impl StatusReport {
    /// The problems `check` reports, and its exit-code class (`None` when clean).
    pub fn problems(&self) -> (Vec<Problem>, Option<ErrorCode>) {
        let mut out = Vec::new();
        for c in &self.conflicts {
            out.push(Problem {
                kind: "conflict",
                path: Some(c.path.clone()),
                path_hex: std::str::from_utf8(&c.path_bytes())
                    .is_err()
                    .then(|| c.path_hex.clone()),
                message: format!("{}: {} conflict (both versions kept)", c.path, c.kind),
            });
        }
        if let Some(e) = &self.remote_error {
            out.push(Problem {
                kind: "disconnected",
                path: None,
                path_hex: None,
                message: e.clone(),
            });
        }
        for c in &self.local_changes {
            out.push(Problem {
                kind: "local-change",
                path: Some(c.path.clone()),
                path_hex: c.path_hex.clone(),
                message: format!("{}: {} locally, not pushed", c.path, change_words(c)),
            });
        }
        for c in &self.remote_changes {
            out.push(Problem {
                kind: "remote-change",
                path: Some(c.path.clone()),
                path_hex: c.path_hex.clone(),
                message: format!("{}: {} on the remote, not pulled", c.path, change_words(c)),
            });
        }
        let code = if !self.conflicts.is_empty() {
            Some(ErrorCode::Conflicted)
        } else if self.remote_error.is_some() {
            Some(ErrorCode::Disconnected)
        } else if out.is_empty() {
            None
        } else {
            Some(ErrorCode::Other)
        };
        (out, code)
    }
}

impl Workspace {
    /// Scans both sides (the remote only if it answers) and reports, changing neither side.
    /// The index is refreshed, as `git status` refreshes its own.
    ///
    /// # Errors
    /// Local I/O and store errors; a remote that does not answer is reported, not an error.
    pub fn status(&self, with_ignored: bool, progress: &dyn Progress) -> Result<StatusReport> {
        let remote = self.remote();
        let checked = crate::identity::check(&remote, &self.config.remote, &self.identity);
        let (base, local, remote_tree, remote_error) =
            match checked.and_then(|()| self.scan_all(&remote, progress)) {
                Ok(t) => (t.base, t.local, Some(t.remote.tree), None),
                Err(e @ (SyncError::Disconnected { .. } | SyncError::RemoteIdentity { .. })) => {
                    let rules = self.rules()?;
                    let base = self
                        .store
                        .read_ref_flat(cachesync_objects::keys::REF_BASE)?;
                    let idx = index::load(&self.store)?;
                    let local = crate::scan::scan_local(&self.root, &rules, &self.store, &idx)?;
                    (base, local, None, Some(e.to_string()))
                }
                Err(e) => return Err(e),
            };
        let mut batch = Batch::new();
        for (p, ie) in &local.index_updates {
            index::put(&mut batch, p, ie);
        }
        for p in &local.index_removals {
            index::remove(&mut batch, p);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        let local_changes = reconcile_side(&base, &local.tree);
        let mut conflicts = conflict::open(&self.store)?;
        let mut pending = Pending::default();
        let mut remote_changes = Vec::new();
        if let Some(rt) = &remote_tree {
            remote_changes = reconcile_side(&base, rt);
            let plan = Plan::build(reconcile(&base, &local.tree, rt), Direction::Both);
            pending.pull = plan.steps.iter().filter(|s| s.side == Side::Local).count();
            pending.push = plan.steps.iter().filter(|s| s.side == Side::Remote).count();
            for c in &plan.changes {
                if let Outcome::Conflict(k) = c.outcome {
                    if !conflicts.iter().any(|r| r.path_bytes() == c.path) {
                        conflicts.push(conflict::record(
                            &c.path,
                            k.as_str(),
                            c.base.as_ref(),
                            c.local.as_ref(),
                            c.remote.as_ref(),
                        ));
                    }
                }
            }
        }
        Ok(StatusReport {
            workspace: self.root.display().to_string(),
            remote: self.config.remote.display().to_string(),
            mode: if remote_error.is_some() {
                "disconnected"
            } else {
                "connected"
            },
            remote_error,
            local_changes,
            remote_changes,
            conflicts,
            pending,
            ignored: with_ignored.then(|| {
                let mut v: Vec<&Vec<u8>> = local.ignored.iter().collect();
                v.sort();
                v.into_iter().map(|p| display(p)).collect()
            }),
            cache_bytes: self.cache_bytes(),
            warnings: local.warnings,
        })
    }
}

fn reconcile_side(base: &crate::scan::Flat, side: &crate::scan::Flat) -> Vec<PathChange> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&Vec<u8>> = base.keys().chain(side.keys()).collect();
    for k in keys {
        if let Some(c) = describe(base.get(k), side.get(k)) {
            out.push(path_change(k, c));
        }
    }
    out
}
