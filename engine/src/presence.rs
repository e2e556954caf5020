//! Presence: a file is materialized (its content is in the workspace) or remote-only (its
//! metadata is cached, its content is not in the workspace and need not be in the store).
//!
//! Remote-only paths are listed in the state table under `remote-only/PATH`. A remote-only
//! file absent from the workspace is never taken for a local deletion: the local scan puts
//! the base's entry in its place. Its content is not fetched when it changes on the server
//! (its id is then [`FileId::NOT_CACHED`] and its stat stands for its content) until `get`
//! materializes it.

use std::collections::HashSet;

use cachesync_objects::{keys, Batch, FileId, Store};

use crate::error::Result;
use crate::undo::local::LocalStep;
use crate::workspace::Workspace;

const REMOTE_ONLY: crate::path_set::PathSet =
    crate::path_set::PathSet(crate::state_keys::REMOTE_ONLY_PREFIX);

/// Every remote-only path.
///
/// # Errors
/// Store errors.
pub fn load(store: &Store) -> Result<HashSet<Vec<u8>>> {
    REMOTE_ONLY.load(store)
}

/// Whether `path` is remote-only (one read).
///
/// # Errors
/// Store errors.
pub fn is_remote_only(store: &Store, path: &[u8]) -> Result<bool> {
    REMOTE_ONLY.contains(store, path)
}

/// Whether a path under the directory `dir` is remote-only (one seek).
///
/// # Errors
/// Store errors.
pub fn any_remote_only_under(store: &Store, dir: &[u8]) -> Result<bool> {
    REMOTE_ONLY.any_under(store, dir)
}

/// Adds "`path` is remote-only" to a batch.
pub fn set_remote_only(batch: &mut Batch, path: &[u8]) {
    REMOTE_ONLY.insert(batch, path, b"");
}

/// Adds "`path` was dropped by hand" to a batch: prefetch leaves it remote-only unless it is
/// pinned.
pub fn set_dropped_by_hand(batch: &mut Batch, path: &[u8]) {
    REMOTE_ONLY.insert(batch, path, b"by-hand");
}

/// The remote-only paths dropped by hand.
///
/// # Errors
/// Store errors.
pub fn load_by_hand(store: &Store) -> Result<HashSet<Vec<u8>>> {
    let mut out = HashSet::new();
    REMOTE_ONLY.for_each(store, |p, v| {
        if v == b"by-hand" {
            out.insert(p.to_vec());
        }
    })?;
    Ok(out)
}

/// Adds "`path` is materialized (or gone)" to a batch.
pub fn clear(batch: &mut Batch, path: &[u8]) {
    REMOTE_ONLY.remove(batch, path);
}

/// True when `id` is a real content id (not [`FileId::NOT_CACHED`]).
pub fn is_known(id: FileId) -> bool {
    id != FileId::NOT_CACHED
}

/// True when the directory holding `path` is in the workspace (the root always is): a
/// remote-only file whose directory was deleted here is deleted with it.
fn parent_here(tree: &crate::scan::Flat, path: &[u8]) -> bool {
    let (parent, _) = crate::paths::split_parent(path);
    parent.is_empty() || tree.contains_key(parent)
}

/// Scans the workspace against `base`: remote-only files absent here are filled in from
/// the base (they are not local deletions).
///
/// # Errors
/// As [`crate::scan::scan_local`].
pub fn scan_workspace(ws: &Workspace, base: &crate::scan::Flat) -> Result<crate::scan::LocalScan> {
    let walked = walk_workspace(ws)?;
    settle_workspace(ws, base, walked)
}

/// The workspace as walked (or as a view's changes say), before [`settle_workspace`] judges
/// it against the base.
pub(crate) struct Walked {
    local: crate::scan::LocalScan,
    rules: crate::ignore_rules::IgnoreRules,
    idx: crate::index::Index,
}

/// The first half of [`scan_workspace`], which needs no base (so the base can be read
/// meanwhile).
///
/// # Errors
/// As [`crate::scan::scan_local`].
pub(crate) fn walk_workspace(ws: &Workspace) -> Result<Walked> {
    let rules = ws.rules()?;
    let idx = crate::index::load(&ws.store)?;
    let local = crate::fsmonitor::scan(ws, &rules, &idx)?;
    Ok(Walked { local, rules, idx })
}

/// The second half of [`scan_workspace`]: leftovers of killed runs tidied, remote-only
/// files filled in from `base`.
///
/// # Errors
/// As [`crate::scan::scan_local`].
pub(crate) fn settle_workspace(
    ws: &Workspace,
    base: &crate::scan::Flat,
    walked: Walked,
) -> Result<crate::scan::LocalScan> {
    let Walked {
        mut local,
        rules,
        idx,
    } = walked;
    let mut warnings = Vec::new();
    if ws.holds_lock() && ws.tidy_leftovers(&local.temporaries, base, &mut warnings)? {
        // A file went back to its name: scan again to see it.
        local = crate::scan::scan_local(&ws.root, &rules, &ws.store, &idx)?;
    }
    local.warnings.extend(warnings);
    // Flags are judged against the stored base, not the ignore-filtered one: a path
    // ignored for a while keeps its flag.
    // Read only when a flagged path is missing from `base` (rare).
    let mut stored: Option<crate::scan::Flat> = None;
    // Put in at once after the loop (files only: no check below looks for them).
    let mut fill_in = Vec::new();
    for p in load(&ws.store)? {
        if !base.contains_key(&p) && stored.is_none() {
            stored = Some(ws.store.read_ref_flat(keys::REF_BASE)?);
        }
        let in_stored = stored.as_ref().is_some_and(|s| s.contains_key(&p));
        let here = local.tree.get(&p).cloned();
        match (base.get(&p), here) {
            (Some(b), None)
                if b.kind == cachesync_objects::EntryKind::File && parent_here(&local.tree, &p) =>
            {
                fill_in.push((p.clone(), Some(b.clone())));
                local.remote_only.insert(p);
            }
            // Ignored now: nothing to do, the flag stays.
            (None, _) if in_stored => {}
            // Gone from the base: the flag is stale.
            (None, _) | (Some(_), None) => local.materialized.push(p),
            (Some(b), Some(l)) => {
                // The version the base records is one this workspace held (its content
                // is in the store) or the same content came back: an ordinary file.
                let held = b.kind != cachesync_objects::EntryKind::File
                    || b.file == l.file
                    || b.file
                        .is_some_and(|f| is_known(f) && ws.store.has_file(f).unwrap_or(false));
                if held {
                    local.materialized.push(p);
                } else {
                    // Written here without the server's version at hand (it changed while
                    // remote-only, or was culled): reconciled as created on both sides,
                    // never as an edit of a version this workspace never held.
                    local.reappeared.insert(p);
                }
            }
        }
    }
    local.tree.apply(fill_in);
    Ok(local)
}

/// What `get` or `drop` did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Paths materialized (get) or made remote-only (drop).
    pub done: Vec<Vec<u8>>,
    /// Paths left as they were, and why.
    pub refused: Vec<(Vec<u8>, String)>,
    /// Bytes read from the remote.
    pub bytes_read: u64,
}

/// Whether `p` is one of the paths asked for (all when none is): `p` or one of its
/// directories is in `set` (time in the depth of `p`, not in the number of paths).
fn selected_in(set: &HashSet<Vec<u8>>, p: &[u8]) -> bool {
    if set.is_empty() || set.contains(p) || set.contains(&Vec::new()) {
        return true;
    }
    let mut cur = p;
    while let Some(i) = cur.iter().rposition(|&b| b == b'/') {
        cur = &cur[..i];
        if set.contains(cur) {
            return true;
        }
    }
    false
}

/// Materializes remote-only files under `paths` (all when empty): from the store when
/// their content is there, else from the remote.
///
/// # Errors
/// [`crate::SyncError::NotCached`] (EDISCONDATA) when content is neither cached nor
/// reachable; store and I/O errors.
pub fn get(ws: &Workspace, paths: &[Vec<u8>]) -> Result<Outcome> {
    get_with(ws, paths, None, None)
}

/// [`get`], journalled as `record` says when it brings anything here (`undo` takes it back:
/// see [`crate::undo::local`]).
///
/// # Errors
/// As [`get`].
pub fn get_recorded(ws: &Workspace, paths: &[Vec<u8>], record: Record) -> Result<Outcome> {
    get_with(ws, paths, None, Some(record))
}

/// How a change of which files are here is journalled: the operation's kind and the
/// beginning of its summary.
#[derive(Debug, Clone)]
pub struct Record {
    /// The operation's kind (`get`, `drop`, `cull`, `undo`).
    pub kind: crate::journal::OpKind,
    /// What the summary starts with (the count of paths follows).
    pub summary: String,
}

impl Record {
    /// A record of `kind` whose summary is its name.
    pub fn of(kind: crate::journal::OpKind) -> Record {
        Record {
            kind,
            summary: kind.as_str().to_string(),
        }
    }
}

/// [`get`], showing the bytes read from the remote to `observer` as they come (see
/// [`crate::scan::fetch_observed`]).
///
/// # Errors
/// As [`get`].
pub fn get_observed(
    ws: &Workspace,
    paths: &[Vec<u8>],
    observer: Option<crate::scan::Observer<'_, '_>>,
) -> Result<Outcome> {
    get_with(ws, paths, observer, None)
}

fn get_with(
    ws: &Workspace,
    paths: &[Vec<u8>],
    mut observer: Option<crate::scan::Observer<'_, '_>>,
    record: Option<Record>,
) -> Result<Outcome> {
    let by_hand = match record {
        Some(_) => load_by_hand(&ws.store)?,
        None => HashSet::new(),
    };
    let mut base = ws.store.read_ref_flat(keys::REF_BASE)?;
    let mut report = Outcome::default();
    let mut batch = Batch::new();
    let mut base_changed = false;
    let mut remote: Option<crate::timed::TimedRemote> = None;
    for (i, p) in get_targets(ws, paths)?.into_iter().enumerate() {
        let Some(e) = base.get(&p).cloned() else {
            clear(&mut batch, &p);
            continue;
        };
        let abs = crate::paths::under(&ws.root, &p);
        if let Ok(md) = abs.symlink_metadata() {
            clear(&mut batch, &p);
            // The version the base records (a get killed before it recorded its work): got.
            let id = e.file.filter(|f| is_known(*f));
            if let Some(id) = id.filter(|_| crate::restore::is_version(&abs, &md, &e)) {
                crate::index::put(&mut batch, &p, &crate::scan::index_entry_of(&md, id));
                report.done.push(p);
            }
            continue;
        }
        let got = content_for_get(
            ws,
            &p,
            &e,
            &mut remote,
            &mut report,
            observer.as_deref_mut(),
        );
        let Some(id) = got? else {
            continue;
        };
        if e.file != Some(id) {
            let mut fixed = e.clone();
            fixed.file = Some(id);
            base.insert(p.clone(), fixed);
            base_changed = true;
        }
        if !write_got(ws, &p, id, &e, &mut report)? {
            continue;
        }
        crate::failpoint::hit_n("get-written", i);
        let md = std::fs::symlink_metadata(&abs)
            .map_err(|err| crate::error::SyncError::io(&abs, err))?;
        crate::index::put(&mut batch, &p, &crate::scan::index_entry_of(&md, id));
        clear(&mut batch, &p);
        report.done.push(p);
    }
    if base_changed {
        record_learned_content(ws, &base, &mut batch)?;
    }
    if let Some(r) = record.filter(|_| !report.done.is_empty()) {
        let steps = report.done.iter().map(|p| LocalStep::Get {
            path: crate::paths::display(p),
            path_hex: crate::paths::hex_unless_utf8(p),
            by_hand: by_hand.contains(p),
        });
        crate::undo::local::journal(ws, &mut batch, &r, steps.collect())?;
    }
    ws.store.commit(batch)?;
    Ok(report)
}

/// The remote-only paths `get` works on, in order: those under `paths` (all when empty).
fn get_targets(ws: &Workspace, paths: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let wanted: HashSet<Vec<u8>> = paths.iter().cloned().collect();
    let mut targets: Vec<Vec<u8>> = load(&ws.store)?
        .into_iter()
        .filter(|p| selected_in(&wanted, p))
        .collect();
    targets.sort();
    Ok(targets)
}

/// The content id `get` writes for `p` (base entry `e`): the store's when it holds the
/// content, else read from the remote (connected to once, on the first file that needs
/// it). `None` when the file is refused (the reason is in `report`).
fn content_for_get(
    ws: &Workspace,
    p: &[u8],
    e: &cachesync_objects::Entry,
    remote: &mut Option<crate::timed::TimedRemote>,
    report: &mut Outcome,
    observer: Option<crate::scan::Observer<'_, '_>>,
) -> Result<Option<FileId>> {
    let cached = e
        .file
        .filter(|f| is_known(*f))
        .map(|f| ws.store.has_file(f))
        .transpose()?
        .unwrap_or(false);
    if cached {
        return Ok(Some(e.file.expect("checked above")));
    }
    fetch_for_get(ws, p, e, remote, report, observer)
}

/// Reads `p` from the remote into the store. It must still be the version the base
/// records (`e`): a file changed on the server since the last sync is refused, since
/// only a sync may take a new version in. An unreachable remote is
/// [`crate::SyncError::NotCached`]; a read that fails on this file alone is a refusal.
fn fetch_for_get(
    ws: &Workspace,
    p: &[u8],
    e: &cachesync_objects::Entry,
    remote: &mut Option<crate::timed::TimedRemote>,
    report: &mut Outcome,
    observer: Option<crate::scan::Observer<'_, '_>>,
) -> Result<Option<FileId>> {
    use crate::error::SyncError;
    let shown = crate::paths::display(p);
    let unreachable = |reason: String| SyncError::NotCached {
        path: shown.clone(),
        reason,
    };
    if remote.is_none() {
        ws.require_remote()
            .map_err(|e| unreachable(e.to_string()))?;
        let r = ws.remote()?;
        crate::identity::check(&r, &ws.config.remote, &ws.identity)
            .map_err(|e| unreachable(e.to_string()))?;
        *remote = Some(r);
    }
    let r = remote.as_ref().expect("set above");
    let (id, stat) = match crate::scan::fetch_observed(r, &ws.store, p, None, observer) {
        Ok(x) => x,
        Err(e @ (SyncError::Disconnected { .. } | SyncError::RemoteIdentity { .. })) => {
            return Err(unreachable(e.to_string()))
        }
        Err(e @ (SyncError::RemoteIo { .. } | SyncError::Unstable { .. })) => {
            report.refused.push((
                p.to_vec(),
                format!("{e}; run `cachesync sync`, then get it"),
            ));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if stat.size != e.size || stat.mtime_ns != e.mtime_ns {
        report.refused.push((
            p.to_vec(),
            "changed on the server since the last sync; run `cachesync sync`, then get it".into(),
        ));
        return Ok(None);
    }
    report.bytes_read += stat.size;
    Ok(Some(id))
}

/// Writes `p` (content `id`, mode and mtime from `e`) into the workspace. False when a
/// file appeared at its name meanwhile: that one is kept, never overwritten, and `p` is
/// refused.
fn write_got(
    ws: &Workspace,
    p: &[u8],
    id: FileId,
    e: &cachesync_objects::Entry,
    report: &mut Outcome,
) -> Result<bool> {
    use crate::error::SyncError;
    match write_file_from_store(ws, p, id, e.mode, e.mtime_ns) {
        Ok(()) => Ok(true),
        Err(SyncError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            report.refused.push((
                p.to_vec(),
                "a file appeared here meanwhile; it was kept, not overwritten".into(),
            ));
            Ok(false)
        }
        Err(other) => Err(other),
    }
}

/// Adds to `batch` a base snapshot that knows the content ids `get` read (`base` holds
/// them), and a remote one when the last remote snapshot learns them too: the next scan
/// then does not read those files again.
fn record_learned_content(
    ws: &Workspace,
    base: &crate::scan::Flat,
    batch: &mut Batch,
) -> Result<()> {
    let mut seen = ws.store.read_ref_flat(keys::REF_REMOTE)?;
    let mut seen_changed = false;
    for (p, e) in base {
        if let Some(s) = seen.get_mut(p) {
            if s.file == Some(FileId::NOT_CACHED)
                && s.size == e.size
                && s.mtime_ns == e.mtime_ns
                && e.file.is_some_and(is_known)
            {
                s.file = e.file;
                seen_changed = true;
            }
        }
    }
    if seen_changed {
        advance_ref(ws, batch, keys::REF_REMOTE, &seen, "remote after get")?;
    }
    advance_ref(ws, batch, keys::REF_BASE, base, "base after get")
}

/// Stores `flat` as a new snapshot of the ref `name` (its parent the ref's current
/// snapshot) and points the ref at it in `batch`.
fn advance_ref(
    ws: &Workspace,
    batch: &mut Batch,
    name: &str,
    flat: &crate::scan::Flat,
    description: &str,
) -> Result<()> {
    let root = ws.store.write_flat(flat)?;
    let snap = cachesync_objects::Snapshot {
        root,
        parent: ws.store.get_ref(name)?,
        time_ns: crate::now_ns(),
        description: description.into(),
    };
    let sid = ws.store.put_snapshot(&snap)?;
    Store::set_ref_in(batch, name, sid);
    Ok(())
}

/// Makes clean, materialized files under `paths` remote-only: removes them from the
/// workspace (their content stays in the store until culled). A file with changes not
/// pushed, or in conflict, is never dropped.
///
/// # Errors
/// Local scan, store and I/O errors.
pub fn drop_paths(ws: &Workspace, paths: &[Vec<u8>]) -> Result<Outcome> {
    drop_with(
        ws,
        paths,
        &|_| true,
        Some(Record::of(crate::journal::OpKind::Drop)),
    )
}

/// [`drop_paths`], recording whether it was asked for by hand (culling and
/// prefetch make room without that mark), not journalled.
///
/// # Errors
/// As [`drop_paths`].
pub fn drop_as(ws: &Workspace, paths: &[Vec<u8>], by_hand: bool) -> Result<Outcome> {
    drop_with(ws, paths, &|_| by_hand, None)
}

/// [`drop_paths`]: each path marked dropped by hand when `by_hand` says so, the whole
/// journalled as `record` says when anything is dropped.
///
/// # Errors
/// As [`drop_paths`].
pub fn drop_with(
    ws: &Workspace,
    paths: &[Vec<u8>],
    by_hand: &dyn Fn(&[u8]) -> bool,
    record: Option<Record>,
) -> Result<Outcome> {
    use crate::error::SyncError;
    let base = ws.synced_base()?;
    let local = scan_workspace(ws, &base)?;
    let conflicted: HashSet<Vec<u8>> = crate::conflict::open(&ws.store)?
        .iter()
        .map(|r| r.path_bytes())
        .collect();
    let ws_set = ws.working_set();
    let wanted: HashSet<Vec<u8>> = paths.iter().cloned().collect();
    let mut report = Outcome::default();
    let mut batch = Batch::new();
    for (p, l) in &local.tree {
        if l.kind != cachesync_objects::EntryKind::File
            || !selected_in(&wanted, p)
            || local.remote_only.contains(p)
        {
            continue;
        }
        let refusal = if conflicted.contains(p) {
            Some("in conflict; resolve it first")
        } else if ws_set.is_pinned(p) {
            Some("pinned; unpin it first")
        } else if crate::reconcile::same(base.get(p), Some(l)) {
            None
        } else if base.contains_key(p) {
            Some("has changes not pushed yet")
        } else {
            Some("created here and never pushed")
        };
        if let Some(why) = refusal {
            report.refused.push((p.clone(), why.into()));
            continue;
        }
        if by_hand(p) {
            set_dropped_by_hand(&mut batch, p);
        } else {
            set_remote_only(&mut batch, p);
        }
        report.done.push(p.clone());
    }
    // The flags are durable before any file leaves: a run killed in between leaves a
    // flagged file that is still here (taken as materialized again), never an
    // unflagged absent file (which the next sync would push as a deletion).
    ws.store.commit(batch)?;
    crate::failpoint::hit("drop-before-remove");
    let mut batch = Batch::new();
    let mut kept = Vec::new();
    for (i, p) in report.done.iter().enumerate() {
        // Moved aside first, then checked: an edit made since the scan is never removed.
        let abs = crate::paths::under(&ws.root, p);
        let aside = ws.temp_beside(p, "drop");
        // Never over an earlier copy (a leftover the tidying could not place).
        crate::localfs::rename_no_replace(&abs, &aside).map_err(|e| SyncError::io(&abs, e))?;
        crate::failpoint::hit_n("drop-aside", i);
        let md = std::fs::symlink_metadata(&aside).map_err(|e| SyncError::io(&aside, e))?;
        let scanned = local.tree.get(p);
        let unchanged = scanned.is_some_and(|l| {
            use std::os::unix::fs::MetadataExt;
            l.size == md.size() && l.mtime_ns == md.mtime() * 1_000_000_000 + md.mtime_nsec()
        });
        if unchanged {
            std::fs::remove_file(&aside).map_err(|e| SyncError::io(&aside, e))?;
            crate::index::remove(&mut batch, p);
        } else {
            if crate::localfs::rename_no_replace(&aside, &abs).is_err() {
                // Something new took the name meanwhile: this copy is kept aside.
                report.refused.push((
                    p.clone(),
                    format!(
                        "changed while being dropped; your version is kept at {}",
                        aside.display()
                    ),
                ));
            } else {
                report
                    .refused
                    .push((p.clone(), "changed while being dropped; kept".into()));
            }
            clear(&mut batch, p);
            kept.push(p.clone());
        }
    }
    report.done.retain(|p| !kept.contains(p));
    if let Some(r) = record.filter(|_| !report.done.is_empty()) {
        let steps = report.done.iter().map(|p| LocalStep::Drop {
            path: crate::paths::display(p),
            path_hex: crate::paths::hex_unless_utf8(p),
            by_hand: by_hand(p),
        });
        crate::undo::local::journal(ws, &mut batch, &r, steps.collect())?;
    }
    crate::failpoint::hit("drop-before-commit");
    ws.store.commit(batch)?;
    Ok(report)
}

/// Writes a file's content from the store into the workspace: a temporary name in the
/// same directory, mode and mtime set, then renamed into place.
fn write_file_from_store(
    ws: &Workspace,
    path: &[u8],
    id: FileId,
    mode: u32,
    mtime_ns: i64,
) -> Result<()> {
    let tmp = ws.temp_beside(path, "get");
    crate::localfs::write_temp(
        &tmp,
        |f| Ok(ws.store.read_file(id, f).map(drop)?),
        mode,
        Some(mtime_ns),
        true,
    )?;
    // Never over a file that appeared meanwhile.
    crate::localfs::rename_into_place(&tmp, &crate::paths::under(&ws.root, path), true)
}

/// Pins `paths` (files or directories): recorded in the config, then the remote-only files
/// under them are fetched (when the remote or the cache can provide them).
///
/// # Errors
/// [`crate::SyncError::Usage`] for a path that is not UTF-8 (the config is JSON); config
/// errors. A fetch that fails is reported in the result, the pin stays.
pub fn pin(ws: &mut Workspace, paths: &[Vec<u8>]) -> Result<(Vec<String>, Result<Outcome>)> {
    let mut added = Vec::new();
    for p in paths {
        let s = std::str::from_utf8(p).map_err(|_| {
            crate::SyncError::Usage(format!(
                "{}: pins are kept in config.json and must be UTF-8",
                crate::paths::display(p)
            ))
        })?;
        if !ws.config.pins.iter().any(|x| x == s) {
            ws.config.pins.push(s.to_string());
            added.push(s.to_string());
        }
    }
    ws.save_config()?;
    let fetched = get(ws, paths);
    Ok((added, fetched))
}

/// Unpins `paths`; returns the pins removed.
///
/// # Errors
/// Config errors.
pub fn unpin(ws: &mut Workspace, paths: &[Vec<u8>]) -> Result<Vec<String>> {
    let before = ws.config.pins.clone();
    ws.config
        .pins
        .retain(|x| !paths.iter().any(|p| p.as_slice() == x.as_bytes()));
    ws.save_config()?;
    Ok(before
        .into_iter()
        .filter(|x| !ws.config.pins.contains(x))
        .collect())
}
