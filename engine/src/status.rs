//! status and check: what changed on each side, what is in conflict, without changing either.

use cachesync_objects::{Batch, Entry, EntryKind};
use serde::{Deserialize, Serialize};

use crate::conflict::{self, ConflictRecord};
use crate::error::{Result, SyncError};
use crate::index;
use crate::mode::Mode;
use crate::paths::display;
use crate::plan::{Direction, Side};
use crate::progress::Progress;
use crate::reconcile::same;
use crate::state_keys;
use crate::workspace::Workspace;

mod memo;

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

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// List the ignored paths too.
    pub with_ignored: bool,
    /// Look at the share now (walk it, read what changed there), as a sync would. Without
    /// it, the remote side is the share as it was last looked at, and the share is not
    /// touched (as `git status` answers as of the last fetch).
    pub refresh: bool,
}

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// The workspace root.
    pub workspace: String,
    /// The remote directory.
    pub remote: String,
    /// The host serving the share (from the mount's source, as `connect --server HOST`
    /// matches it); `None` for a local directory.
    pub server: Option<String>,
    /// `connected` or `disconnected`.
    pub mode: &'static str,
    /// Since when the workspace is in this mode (ns since the epoch; 0: since the clone).
    pub since_ns: i64,
    /// Why it is disconnected.
    pub reason: Option<String>,
    /// Disconnected by hand (`cachesync disconnect`).
    pub manual: bool,
    /// Why the remote could not be reached, when it could not.
    pub remote_error: Option<String>,
    /// Whether this status looked at the share (`--refresh`), rather than answering from
    /// the last look.
    pub refreshed: bool,
    /// When the share was last looked at (ns since the epoch): the remote changes, pending
    /// steps and conflicts below are as of then. `None`: never recorded (a workspace made
    /// by an older version, before its first sync).
    pub remote_seen_ns: Option<i64>,
    /// Files and directories created here and never pushed: they have no identity on the
    /// remote yet.
    pub provisional: Vec<PathChange>,
    /// Offline, local changes the cached remote permissions do not allow (or cannot vouch
    /// for): the server may refuse them (EDISCONPERM).
    pub permission: Vec<PermissionWarning>,
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
    /// The cache: use, budget and thresholds.
    pub cache: CacheState,
    /// How ready the workspace is to go offline.
    pub readiness: Readiness,
    /// Remote entries the listing shows but whose content or target cannot be read: left as
    /// they are on both sides (empty when the remote was not reached).
    pub unreadable: Vec<crate::scan::Unreadable>,
    /// How the workspace was scanned.
    pub local_scan: LocalScanFacts,
    /// Warnings from the scan.
    pub warnings: Vec<String>,
}

/// How the workspace was scanned.
#[derive(Debug, Default, Serialize)]
pub struct LocalScanFacts {
    /// From the changes a mounted view saw (`cachesync mount`), not by walking the whole
    /// tree.
    pub monitored: bool,
    /// The paths looked at again: those the view saw change, or (not `monitored`) those
    /// changed since the last status's answer, which was brought up to date at them; 0 when
    /// the whole tree was walked.
    pub rechecked: usize,
    /// Nothing changed since the last status (the store, the settings, and every entry's
    /// stat as then): its answer was given again, after a walk that only stats.
    pub reused: bool,
    /// Directories that walk took from the listing kept of them instead of reading them
    /// (each as it was when listed: see `scan/listings.rs`); 0 when it read them all.
    pub listed: usize,
}

/// The cache's use, its budget and the culling thresholds (bytes).
#[derive(Debug, Default, Serialize)]
pub struct CacheState {
    /// `.cachesync/` plus the files in the workspace.
    pub used: u64,
    /// The budget in force, if any.
    pub budget: Option<u64>,
    /// Automatic culling starts above this.
    pub cull_start: Option<u64>,
    /// Culling stops under this.
    pub cull_to: Option<u64>,
    /// Whether automatic culling is on.
    pub culling: bool,
}

/// How much of the working set (pinned files and hoard priorities above 0) is here.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Readiness {
    /// Files in the working set.
    pub working_set_files: usize,
    /// Of which in the workspace.
    pub present: usize,
    /// `present / working_set_files` (1 when the set is empty).
    pub present_share: f64,
    /// Bytes of the working set still remote-only.
    pub missing_bytes: u64,
    /// What culling would drop next (at most five).
    pub cull_next: Vec<String>,
}

/// Steps a sync would run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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

pub(crate) fn change_words(c: &PathChange) -> String {
    match c.change {
        "mode" => "permissions changed".into(),
        "type" => format!("replaced by a {}", c.kind),
        other => other.into(),
    }
}

fn path_change(path: &[u8], change: (&'static str, &'static str)) -> PathChange {
    PathChange {
        path: display(path),
        path_hex: crate::paths::hex_unless_utf8(path),
        change: change.0,
        kind: change.1,
    }
}

/// A local change the server may refuse.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PermissionWarning {
    /// The path, displayable.
    pub path: String,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// Why.
    pub reason: String,
}

/// The user cachesync runs as.
struct Creds {
    uid: u32,
    gids: Vec<u32>,
}

impl Creds {
    fn current() -> Creds {
        let mut gids = vec![rustix::process::getegid().as_raw()];
        if let Ok(g) = rustix::process::getgroups() {
            gids.extend(g.iter().map(|g| g.as_raw()));
        }
        Creds {
            uid: rustix::process::geteuid().as_raw(),
            gids,
        }
    }

    /// Whether the cached owner and mode let this user do `bits` (a mask of r=4, w=2, x=1).
    fn may(&self, perm: (u32, u32, u32), bits: u32) -> bool {
        let (mode, uid, gid) = perm;
        if self.uid == 0 {
            return true;
        }
        let granted = if uid == self.uid {
            (mode >> 6) & 7
        } else if self.gids.contains(&gid) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        granted & bits == bits
    }
}

fn local_change_paths(
    base: &crate::scan::Flat,
    local: &crate::scan::Flat,
) -> Vec<(Vec<u8>, &'static str)> {
    crate::reconcile::zip2(base, local)
        .filter_map(|(k, b, l)| describe(b, l).map(|(c, _)| (k.clone(), c)))
        .collect()
}

/// Why the server may refuse `change` to `path`, judged from the permissions cached in the
/// last remote snapshot (`seen`); `None` when they allow it.
fn permission_problem(
    seen: &crate::scan::Flat,
    root: Option<(u32, u32, u32)>,
    creds: &Creds,
    path: &[u8],
    change: &str,
) -> Option<String> {
    let perm = |e: &Entry| (e.mode, e.uid, e.gid);
    // The directory that holds `path`, as the server last showed it.
    let mut parent = crate::paths::split_parent(path).0.to_vec();
    let dir = loop {
        if parent.is_empty() {
            break root;
        }
        if let Some(e) = seen.get(&parent) {
            break Some(perm(e));
        }
        parent = crate::paths::split_parent(&parent).0.to_vec();
    };
    let Some(dir) = dir else {
        return Some("the permissions of its directory on the server were never cached".into());
    };
    let dir_ok = creds.may(dir, 3);
    match change {
        // Every write is a new file renamed into place: the directory must be writable.
        "added" | "deleted" | "type" | "modified" if !dir_ok => {
            Some("its directory on the server is not writable by you".into())
        }
        "mode" => match seen.get(path) {
            Some(e) if creds.uid != 0 && e.uid != creds.uid => {
                Some("only its owner on the server may change its permissions".into())
            }
            _ => None,
        },
        _ => None,
    }
}

/// Remembers the remote root's permissions (the directory that holds top-level files).
pub(crate) fn save_remote_root_perm(ws: &Workspace, r: &crate::remote::RemoteEntry) -> Result<()> {
    let v = serde_json::json!([r.mode, r.uid, r.gid]).to_string();
    ws.store
        .table(cachesync_objects::keys::CF_STATE)
        .put(state_keys::REMOTE_ROOT, v.as_bytes())?;
    Ok(())
}

/// The remote root's permissions as the last scan saw them (`None`: never seen).
///
/// # Errors
/// Store errors; [`SyncError::DamagedRecord`] when the record does not decode.
fn remote_root_perm(ws: &Workspace) -> Result<Option<(u32, u32, u32)>> {
    ws.store
        .table(cachesync_objects::keys::CF_STATE)
        .get(state_keys::REMOTE_ROOT)?
        .map(|v| {
            serde_json::from_slice::<(u32, u32, u32)>(&v)
                .map_err(|e| SyncError::damaged("the state record `remote-root`", e))
        })
        .transpose()
}

/// Journals the local changes seen while disconnected, once per distinct set.
fn record_offline_changes(ws: &Workspace, changes: &[PathChange]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let text = serde_json::to_vec(changes).expect("changes serialize");
    let digest = blake3::hash(&text).to_hex().to_string();
    let state = ws.store.table(cachesync_objects::keys::CF_STATE);
    if state.get(state_keys::OFFLINE_SEEN)?.as_deref() == Some(digest.as_bytes()) {
        return Ok(());
    }
    let mut op = crate::journal::OpRecord::instant(
        &ws.store,
        crate::journal::OpKind::Offline,
        format!("{} local change(s) made while disconnected", changes.len()),
    )?;
    op.plan = changes
        .iter()
        .map(|c| serde_json::to_value(c).expect("changes serialize"))
        .collect();
    let mut batch = Batch::new();
    crate::journal::put_planned(&mut batch, &op, &op.plan);
    batch.put(
        cachesync_objects::keys::CF_STATE,
        state_keys::OFFLINE_SEEN,
        digest.as_bytes(),
    );
    ws.store.commit(batch)?;
    Ok(())
}

/// Reports both sides, changing neither: the workspace as scanned now, the remote as last
/// seen, or (with [`Options::refresh`], or when it was never seen) as walked now if it
/// answers. The index is refreshed, as `git status` refreshes its own.
///
/// # Errors
/// Local I/O and store errors; a remote that does not answer is reported, not an error.
pub fn run(ws: &Workspace, opts: &Options, progress: &dyn Progress) -> Result<Outcome> {
    match kept(ws, opts)? {
        Kept::Answer(outcome) => Ok(*outcome),
        Kept::Stale(stale) => whole(ws, opts, stale, progress),
    }
}

/// What a status finds of the last one's answer.
pub enum Kept {
    /// It still stands.
    Answer(Box<Outcome>),
    /// It does not: take [`whole`] with this.
    Stale(Stale),
}

/// A kept answer that no longer stands, with what may bring it up to date at the few paths
/// changed since (see `status/memo/recheck.rs`).
#[derive(Default)]
pub struct Stale(Option<Box<memo::Recheck>>);

/// The last status's answer, when it still stands (see `memo.rs`): read, never written,
/// so the workspace may be open to read only ([`Workspace::open_to_look`]). Else what
/// [`whole`] takes, with the store open to write.
///
/// # Errors
/// Local I/O and store errors.
pub fn kept(ws: &Workspace, opts: &Options) -> Result<Kept> {
    if !may_keep(ws, opts) {
        return Ok(Kept::Stale(Stale::default()));
    }
    Ok(match memo::answer(ws)? {
        memo::Found::Kept(outcome) => Kept::Answer(outcome),
        memo::Found::Stale(recheck) => Kept::Stale(Stale(recheck)),
    })
}

/// Whether a status with `opts` may give, or keep, an answer from the last one.
fn may_keep(ws: &Workspace, opts: &Options) -> bool {
    !opts.refresh && !opts.with_ignored && ws.handoff.is_none()
}

/// [`run`] after [`kept`] found no answer standing: the kept answer brought up to date at
/// the few paths changed since when that may do, else the whole way.
///
/// # Errors
/// As [`run`].
pub fn whole(
    ws: &Workspace,
    opts: &Options,
    stale: Stale,
    progress: &dyn Progress,
) -> Result<Outcome> {
    if let Some(recheck) = stale.0.filter(|_| may_keep(ws, opts)) {
        if let Some(outcome) = memo::recheck::answer(ws, recheck)? {
            return Ok(outcome);
        }
    }
    let begun_ns = crate::now_ns();
    // Taken before the status's own reads: an answer computed under other ignore rules
    // is never kept under these.
    let context = if may_keep(ws, opts) {
        Some(memo::context_now(ws)?)
    } else {
        None
    };
    let last_look = if opts.refresh {
        None
    } else {
        last_seen_sides(ws)?
    };
    let from_last_look = last_look.is_some();
    let sides = match last_look {
        Some(sides) => sides,
        None => scan_sides(ws, progress)?,
    };
    let (outcome, mut local, rest) = answer(ws, opts, sides)?;
    if let Some(context) = context.filter(|_| from_last_look) {
        memo::save(ws, &outcome, &mut local, (begun_ns, context))?;
    }
    crate::drop_aside((local, rest));
    Ok(outcome)
}

/// The answer from `sides`; also the workspace as walked, and the trees that are no longer
/// needed (freed by the caller, aside).
fn answer(
    ws: &Workspace,
    opts: &Options,
    sides: Sides,
) -> Result<(Outcome, crate::scan::LocalScan, DoneWith)> {
    let Sides {
        base,
        mut local,
        remote_changes,
        remote_error,
        plan,
        unreadable,
        refreshed,
        remote_seen_ns,
    } = sides;
    refresh_index(ws, &local)?;
    let local_changes = reconcile_side(&base, &local.tree);
    let (pending, conflicts) = pending_and_conflicts(ws, plan.as_ref())?;
    let mode = ws.mode()?;
    let disconnected = remote_error.is_some();
    let provisional: Vec<PathChange> = local_changes
        .iter()
        .filter(|c| c.change == "added")
        .cloned()
        .collect();
    let mut permission = Vec::new();
    if disconnected {
        permission = offline_permission_warnings(ws, &base, &local.tree)?;
        record_offline_changes(ws, &local_changes)?;
    }
    let budget = crate::cull::budget(ws);
    let cache = CacheState {
        used: crate::cull::cache_use(ws, &local.tree, &local.remote_only),
        budget,
        cull_start: budget.map(|b| b * crate::cull::CULL_START_PERCENT / 100),
        cull_to: budget.map(|b| b * crate::cull::CULL_TO_PERCENT / 100),
        culling: ws.config.culling,
    };
    let readiness = readiness(ws, &base, &local, budget.is_some())?;
    let outcome = Outcome {
        cache,
        readiness,
        workspace: ws.root.display().to_string(),
        remote: ws.config.remote.display().to_string(),
        server: ws.server(),
        mode: mode_word(disconnected),
        since_ns: mode.since_ns,
        reason: mode.reason.filter(|_| mode.mode == Mode::Disconnected),
        manual: mode.manual,
        refreshed,
        remote_seen_ns,
        provisional,
        permission,
        remote_error,
        local_changes,
        remote_changes,
        conflicts,
        pending,
        ignored: opts.with_ignored.then(|| {
            let mut v: Vec<&Vec<u8>> = local.ignored.iter().collect();
            v.sort();
            v.into_iter().map(|p| display(p)).collect()
        }),
        cache_bytes: ws.cache_bytes(),
        unreadable,
        local_scan: LocalScanFacts {
            monitored: local.monitored.is_some(),
            rechecked: local.monitored.unwrap_or(0),
            reused: false,
            listed: 0,
        },
        warnings: {
            let mut w = std::mem::take(&mut local.warnings);
            w.extend(interrupted_patches(ws)?);
            w
        },
    };
    Ok((outcome, local, (base, plan)))
}

/// What [`answer`] is done with.
type DoneWith = (crate::scan::Flat, Option<crate::plan::Plan>);

/// The word for the mode status reports.
fn mode_word(disconnected: bool) -> &'static str {
    if disconnected {
        Mode::Disconnected.as_str()
    } else {
        Mode::Connected.as_str()
    }
}

/// Why the share is not reached, when the workspace is disconnected (`mode`).
fn offline_reason(mode: &crate::mode::ModeState) -> Option<String> {
    match (mode.is_disconnected(), mode.manual) {
        (false, _) => None,
        (true, true) => Some(SyncError::Offline.to_string()),
        (true, false) => Some(format!(
            "disconnected: {}",
            mode.reason
                .as_deref()
                .unwrap_or("the remote did not answer")
        )),
    }
}

/// A warning for each big file a run left half patched on the share (see
/// `sync/patch.rs`): until the next sync finishes it, a refreshed status sees it changed.
fn interrupted_patches(ws: &Workspace) -> Result<Vec<String>> {
    Ok(crate::sync::patch::pending(&ws.store)?
        .iter()
        .map(|p| {
            let path = crate::paths::unhex(&p.path_hex).unwrap_or_default();
            format!(
                "{}: a patch in place was interrupted; the file on the server is part old, \
                 part new until the next sync, which finishes it",
                display(&path)
            )
        })
        .collect())
}

/// The two sides without looking at the share: the workspace as scanned now, the remote
/// as last seen, and what a sync would do were the share still so. `None` when the share
/// was never looked at in a way that recorded it.
///
/// # Errors
/// Local I/O and store errors.
fn last_seen_sides(ws: &Workspace) -> Result<Option<Sides>> {
    let Some((t, seen)) = crate::sync::trees::last_seen(ws)? else {
        return Ok(None);
    };
    let remote_error = offline_reason(&ws.mode()?);
    let plan = crate::sync::prepare::prepare(ws, &t, &[], Direction::Both)?;
    Ok(Some(Sides {
        remote_changes: if t.remote_is_base {
            Vec::new()
        } else {
            reconcile_side(&t.base, &t.remote.tree)
        },
        base: t.base,
        local: t.local,
        remote_error,
        plan: Some(plan),
        unreadable: t.remote.unreadable,
        refreshed: false,
        remote_seen_ns: Some(seen.time_ns),
    }))
}

/// Scans both sides: with the remote when it answers (and is not disconnected by hand),
/// also what a sync would do now, from the same `prepare` the sync runs; else the
/// workspace against the synced base, with the reason. The mode follows the outcome, as
/// after any command that tries the remote.
///
/// # Errors
/// Local I/O and store errors, and remote errors other than an outage or a changed
/// identity.
fn scan_sides(ws: &Workspace, progress: &dyn Progress) -> Result<Sides> {
    let mode_before = ws.mode()?;
    let attempt = if mode_before.is_disconnected() && mode_before.manual {
        Err(SyncError::Offline)
    } else {
        let remote = ws.remote()?;
        crate::sync::trees::scan_all(ws, &remote, progress, (false, false), || {
            crate::identity::check(&remote, &ws.config.remote, &ws.identity)
        })
    };
    let attempt = match attempt {
        Ok(t) => {
            ws.track(Ok(()))?;
            Ok(t)
        }
        Err(e) => match ws.track::<()>(Err(e)) {
            Err(e) => Err(e),
            Ok(()) => unreachable!("track returns the error it is given"),
        },
    };
    match attempt {
        Ok(t) => {
            let plan = crate::sync::prepare::prepare(ws, &t, &[], Direction::Both)?;
            Ok(Sides {
                remote_changes: reconcile_side(&t.base, t.remote_tree()),
                base: t.base,
                local: t.local,
                remote_error: None,
                plan: Some(plan),
                unreadable: t.remote.unreadable,
                refreshed: true,
                remote_seen_ns: Some(t.started_ns),
            })
        }
        Err(
            e @ (SyncError::Disconnected { .. }
            | SyncError::RemoteIdentity { .. }
            | SyncError::Offline),
        ) => {
            // Offline, the share as last seen stands in (with why it was not seen now).
            if let Some(sides) = last_seen_sides(ws)? {
                return Ok(Sides {
                    remote_error: Some(e.to_string()),
                    ..sides
                });
            }
            let base = ws.synced_base()?;
            let local = crate::presence::scan_workspace(ws, &base)?;
            Ok(Sides {
                base,
                local,
                remote_changes: Vec::new(),
                remote_error: Some(e.to_string()),
                plan: None,
                unreadable: Vec::new(),
                refreshed: false,
                remote_seen_ns: None,
            })
        }
        Err(e) => Err(e),
    }
}

/// Writes the index entries the local scan refreshed (files it hashed, paths gone).
fn refresh_index(ws: &Workspace, local: &crate::scan::LocalScan) -> Result<()> {
    let mut batch = Batch::new();
    for (p, ie) in &local.index_updates {
        index::put(&mut batch, p, ie);
    }
    for p in &local.index_removals {
        index::remove(&mut batch, p);
    }
    if !batch.is_empty() {
        ws.store.commit(batch)?;
    }
    Ok(())
}

/// The steps pending per side and the conflicts: with a plan, its steps and the
/// conflicts it would record (exactly what the sync would do); offline, the conflicts
/// recorded, less lost+found records whose copy was removed (the next sync settles
/// them).
fn pending_and_conflicts(
    ws: &Workspace,
    plan: Option<&crate::plan::Plan>,
) -> Result<(Pending, Vec<ConflictRecord>)> {
    let mut pending = Pending::default();
    let conflicts = match plan {
        Some(plan) => {
            pending.pull = plan.steps.iter().filter(|s| s.side == Side::Local).count();
            pending.push = plan.steps.iter().filter(|s| s.side == Side::Remote).count();
            crate::sync::prepare::expected_conflicts(ws, plan)?
        }
        None => {
            let mut open = conflict::open(&ws.store)?;
            open.retain(|r| r.lost_found.is_none() || r.lost_found_present(&ws.root));
            open
        }
    };
    Ok((pending, conflicts))
}

/// Offline, the local changes the server may refuse, judged from the permissions it
/// last showed (owners change without a sync).
fn offline_permission_warnings(
    ws: &Workspace,
    base: &crate::scan::Flat,
    local: &crate::scan::Flat,
) -> Result<Vec<PermissionWarning>> {
    let root_perm = remote_root_perm(ws)?;
    let creds = Creds::current();
    let seen = ws
        .store
        .read_ref_flat(cachesync_objects::keys::REF_REMOTE)?;
    let mut permission = Vec::new();
    for (path, change) in local_change_paths(base, local) {
        if let Some(why) = permission_problem(&seen, root_perm, &creds, &path, change) {
            permission.push(PermissionWarning {
                path: display(&path),
                path_hex: crate::paths::hex_unless_utf8(&path),
                reason: why,
            });
        }
    }
    Ok(permission)
}

/// How much of the working set is here, and (only `with_budget`: it costs an lstat per
/// file) what culling would take next.
fn readiness(
    ws: &Workspace,
    base: &crate::scan::Flat,
    local: &crate::scan::LocalScan,
    with_budget: bool,
) -> Result<Readiness> {
    let wset = ws.working_set();
    let mut readiness = Readiness::default();
    // Side by side in path order: a lookup in the workspace's tree per base file was a
    // twentieth of a status of 100,000 files.
    for (p, e, here) in crate::reconcile::zip2(base, &local.tree) {
        let Some(e) = e else { continue };
        if e.kind != EntryKind::File || wset.priority(p) <= 0 {
            continue;
        }
        if local.remote_only.contains(p) {
            readiness.working_set_files += 1;
            readiness.missing_bytes += e.size;
        } else if here.is_some() {
            readiness.working_set_files += 1;
            readiness.present += 1;
        }
    }
    readiness.present_share = if readiness.working_set_files == 0 {
        1.0
    } else {
        readiness.present as f64 / readiness.working_set_files as f64
    };
    if with_budget {
        readiness.cull_next = crate::cull::cull_candidates(ws, base, local)?
            .into_iter()
            .take(5)
            .map(|(p, _)| display(&p))
            .collect();
    }
    Ok(readiness)
}

/// The two sides as `status` sees them (see [`scan_sides`]).
struct Sides {
    base: crate::scan::Flat,
    local: crate::scan::LocalScan,
    /// How the remote differs from the base (empty when it was not reached).
    remote_changes: Vec<PathChange>,
    /// Why the remote could not be reached, when it could not.
    remote_error: Option<String>,
    /// What a sync would do now, when the remote answered.
    plan: Option<crate::plan::Plan>,
    /// Remote entries that could not be read (empty when the remote was not reached).
    unreadable: Vec<crate::scan::Unreadable>,
    /// Whether the share was looked at now.
    refreshed: bool,
    /// When the remote side was seen.
    remote_seen_ns: Option<i64>,
}

fn reconcile_side(base: &crate::scan::Flat, side: &crate::scan::Flat) -> Vec<PathChange> {
    crate::reconcile::zip2(base, side)
        .filter_map(|(k, b, s)| describe(b, s).map(|c| path_change(k, c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_remote_root_record_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(&remote).expect("mkdir");
        let ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
        let state = ws.store.table(cachesync_objects::keys::CF_STATE);
        assert_eq!(remote_root_perm(&ws).expect("never seen"), None);
        state
            .put(state_keys::REMOTE_ROOT, b"[493,0,0]")
            .expect("put");
        assert_eq!(remote_root_perm(&ws).expect("seen"), Some((0o755, 0, 0)));
        state.put(state_keys::REMOTE_ROOT, b"[493,").expect("put");
        match remote_root_perm(&ws) {
            Err(e @ SyncError::DamagedRecord { .. }) => {
                assert!(e.to_string().contains("`remote-root`"), "{e}");
            }
            other => panic!("expected a damaged record, got {other:?}"),
        }
    }
}
