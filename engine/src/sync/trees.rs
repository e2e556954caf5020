//! Steps 4 to 6 of a run: the three trees. The workspace scan, the remote walk and the
//! identity check overlap; then the remote files to read are chosen (changed ones, racy ones,
//! and those a push would write over; never those the run leaves remote-only) and read.

use std::collections::{HashMap, HashSet};

use cachesync_objects::{keys, Batch, EntryKind, Snapshot, Store};

use crate::error::Result;
use crate::progress::Progress;
use crate::scan::{Flat, LocalScan, RemoteScan};
use crate::sync::land::{Above, LOG};
use crate::timed::TimedRemote;
use crate::workspace::Workspace;

/// The three trees of a run.
pub(crate) struct Trees {
    pub base: Flat,
    pub local: LocalScan,
    /// The remote as scanned, which is also what the remote ref names after the scan (the
    /// commit compares with it). Its tree is empty when `remote_is_base`: use
    /// [`Trees::remote_tree`].
    pub remote: RemoteScan,
    /// The remote as last seen is the base's very tree (see [`last_seen`]): not copied.
    pub remote_is_base: bool,
    /// The remote's tree was let go before the writes (see [`Trees::let_go_of_remote`]).
    pub remote_let_go: bool,
    /// Its racy paths (see [`crate::racy`]), as recorded.
    pub racy: HashSet<Vec<u8>>,
    /// When the scan started (the racy window is measured from it).
    pub started_ns: i64,
    /// New remote files left remote-only without being read.
    pub deferred: Deferred,
    /// New remote files written into the workspace as they were read, for the apply to put
    /// in place (see [`crate::sync::stage`]).
    pub stage: Option<crate::sync::stage::Stage>,
}

impl Trees {
    /// Lets go of the remote's tree when the run writes nothing to the remote
    /// (`writes_remote` false: a pull, or a plan without a remote step): the snapshot the
    /// remote ref names is that tree already (written when it was scanned), and nothing
    /// moves it, so the commit needs nothing of it. Nothing reads it after the changes are
    /// known (see [`crate::sync::prepare::changes`]): a pull lets go of it before its plan
    /// is built. A first copy held it through all its writes (about 250 MB at a million
    /// files), and while its plan was built.
    ///
    /// # Errors
    /// Store errors.
    pub fn let_go_of_remote(&mut self, ws: &Workspace, writes_remote: bool) -> Result<()> {
        if writes_remote
            || self.remote_let_go
            || self.remote_is_base
            || ws.store.get_ref(keys::REF_REMOTE)?.is_none()
        {
            return Ok(());
        }
        self.remote.tree = Flat::new();
        self.remote_let_go = true;
        Ok(())
    }

    /// The remote tree.
    pub fn remote_tree(&self) -> &Flat {
        if self.remote_is_base {
            &self.base
        } else {
            &self.remote.tree
        }
    }
}

/// New remote files a run leaves remote-only without reading them (see
/// [`defer_new_files`]).
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

/// Scans both sides. The remote scan stores the content of changed remote files. A run that
/// will write (`writes`, not a dry run nor a status) may read the remote's clock first when
/// recent files are listed (see [`crate::racy::remote_clock`]); one that will write into the
/// workspace (`stages`) stages the new files it reads there (see [`crate::sync::stage`]).
pub(crate) fn scan_all(
    ws: &Workspace,
    remote: &TimedRemote,
    progress: &dyn Progress,
    (writes, stages): (bool, bool),
    alongside: impl FnOnce() -> Result<()> + Send,
) -> Result<Trees> {
    let started_ns = crate::now_ns();
    let rules = ws.rules()?;
    let (base, previous_remote) = base_and_last_scanned(ws, &rules, writes)?;
    let previous_is_base = previous_remote.is_none();
    let previous_remote = previous_remote.as_ref().unwrap_or(&base);
    let previous_racy = crate::racy::load(&ws.store)?;
    let (mut local, walked) = scan_both(ws, remote, (&base, &rules), progress, alongside)?;
    if !writes {
        without_landed(ws, &base, &mut local);
    }
    crate::failpoint::hit("scanned");
    let must_read = must_read(ws, &base, &local, &previous_racy);
    // New files the workspace will not hold (never-cache, or over the budget) are not
    // read from the share: they stay remote-only, listed with their stat.
    let listed = walked.entries.iter().map(|(p, r)| (p, r.kind, r.size));
    let deferred = defer_new_files(ws, listed, &rules, &base, &local);
    let not_read = not_read(&local, &deferred);
    let started = std::sync::atomic::AtomicBool::new(false);
    let report = |done: u64, total: u64| {
        if !started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            progress.start("fetching changed remote files", total);
        }
        progress.set(done);
    };
    let remote_clock = writes
        .then(|| clock_if_recent(ws, remote, &walked.entries, started_ns))
        .flatten();
    // A file the workspace neither has nor had at the last sync is written there by the
    // apply (unless a conflict or the budget says otherwise): staged as it is read.
    let stage = stages
        .then(|| crate::sync::stage::Stage::open(ws, true))
        .flatten();
    let wanted = |rel: &[u8]| !local.tree.contains_key(rel) && !base.contains_key(rel);
    // Staged files go in place at once under directories here, or new on the share and
    // not here (see [`crate::sync::land`]).
    let new_dirs = if stage.is_some() {
        new_dirs(&walked.entries, &base)
    } else {
        HashMap::new()
    };
    let above = |dir: &[u8]| match local.tree.get(dir) {
        Some(e) if e.kind == EntryKind::Dir => Above::Here,
        Some(_) => Above::No,
        None => new_dirs
            .get(dir)
            .map_or(Above::No, |&mode| Above::Make(mode)),
    };
    let staging = stage.as_ref().map(|stage| crate::sync::stage::Staging {
        stage,
        wanted: &wanted,
        above: &above,
    });
    let remote_scan = crate::scan::fetch_changed(
        remote,
        walked,
        &rules,
        &ws.store,
        (previous_remote, started_ns),
        &must_read,
        &not_read,
        (ws.config.parallel, staging),
        &report,
    );
    progress.finish();
    drop((must_read, not_read));
    let mut remote_scan = remote_scan?;
    crate::failpoint::hit("fetched");
    let (racy, unchanged) = save_remote_scan(
        (ws, remote),
        &rules,
        &mut remote_scan,
        previous_remote,
        &previous_racy,
        (started_ns, remote_clock),
    )?;
    // The share as it was at the last sync: its tree is the base's, held once.
    let remote_is_base = unchanged && previous_is_base;
    if remote_is_base {
        remote_scan.tree = Flat::new();
    }
    Ok(Trees {
        base,
        local,
        remote: remote_scan,
        remote_is_base,
        remote_let_go: false,
        racy,
        started_ns,
        deferred,
        stage,
    })
}

/// The workspace scan without what a killed run put in place as it read, which a run that
/// writes removes before it scans (see [`crate::sync::land::recover`]): a run that does not
/// write (a dry run, a status) plans what that run would.
fn without_landed(ws: &Workspace, base: &Flat, local: &mut LocalScan) {
    let log = ws.meta_dir().join(LOG);
    let Some(crate::sync::land::Leftovers { files, dirs, .. }) =
        crate::sync::land::leftovers(&ws.root, &log, base)
    else {
        return;
    };
    let files: HashSet<Vec<u8>> = files.into_iter().collect();
    local.tree.retain(|p, _| !files.contains(p));
    local.index_updates.retain(|(p, _)| !files.contains(p));
    // A directory made for them goes too if nothing else is in it (deepest first).
    let mut gone = HashSet::new();
    for dir in dirs {
        let mut inside = dir.clone();
        inside.push(b'/');
        let holds = local
            .tree
            .range(inside.clone()..)
            .take_while(|(p, _)| p.starts_with(&inside))
            .any(|(p, _)| !gone.contains(p));
        if !holds {
            gone.insert(dir);
        }
    }
    local.tree.retain(|p, _| !gone.contains(p));
}

/// The remote files not to read: remote-only here, or left so ([`defer_new_files`]).
fn not_read<'a>(
    local: &'a LocalScan,
    deferred: &Deferred,
) -> std::borrow::Cow<'a, HashSet<Vec<u8>>> {
    if deferred.paths.is_empty() {
        std::borrow::Cow::Borrowed(&local.remote_only)
    } else {
        std::borrow::Cow::Owned(local.remote_only.union(&deferred.paths).cloned().collect())
    }
}

/// The directories listed on the remote that were not there at the last sync, with their
/// modes.
fn new_dirs(listed: &crate::scan::Listing, base: &Flat) -> HashMap<Vec<u8>, u32> {
    listed
        .iter()
        .filter(|(p, e)| e.kind == EntryKind::Dir && !base.contains_key(p.as_slice()))
        .map(|(p, e)| (p.clone(), e.mode))
        .collect()
}

/// The workspace scan, the remote walk and `alongside` (the identity check), overlapping:
/// over a distant link the walk is round trips, the local scan is disk. Only reading
/// happens before `alongside` has succeeded (files changed on the remote are fetched after
/// it, by the caller).
fn scan_both(
    ws: &Workspace,
    remote: &TimedRemote,
    (base, rules): (&Flat, &crate::ignore_rules::IgnoreRules),
    progress: &dyn Progress,
    alongside: impl FnOnce() -> Result<()> + Send,
) -> Result<(LocalScan, crate::scan::Walk)> {
    progress.start("scanning workspace and remote", 0);
    let (local, walked, checked) = std::thread::scope(|s| {
        let local = s.spawn(|| crate::presence::scan_workspace(ws, base));
        let checked = s.spawn(alongside);
        let walked = crate::scan::walk_remote(remote, rules, ws.config.parallel);
        (
            local.join().expect("the workspace scan does not panic"),
            walked,
            checked.join().expect("the identity check does not panic"),
        )
    });
    progress.finish();
    checked?;
    let walked = walked?;
    Ok((local?, walked))
}

/// The remote files to read whatever their stat says: the racy ones, and those a push would
/// write over or remove: a server edit that kept size and mtime (`cp -p`, `tar x`, `rsync
/// -t`) is seen before anything is planned, so it becomes a conflict, never a silent loss.
fn must_read<'a>(
    ws: &Workspace,
    base: &Flat,
    local: &LocalScan,
    racy: &'a HashSet<Vec<u8>>,
) -> std::borrow::Cow<'a, HashSet<Vec<u8>>> {
    let overwritten = if ws.config.verify_before_overwrite {
        changed_content(base, &local.tree)
    } else {
        HashSet::new()
    };
    if overwritten.is_empty() {
        std::borrow::Cow::Borrowed(racy)
    } else {
        std::borrow::Cow::Owned(racy.union(&overwritten).cloned().collect())
    }
}

/// The server's clock (see [`crate::racy::remote_clock`]) when the walk listed files changed
/// within the racy window before `started_ns`: only their judging needs it.
fn clock_if_recent(
    ws: &Workspace,
    remote: &TimedRemote,
    listed: &crate::scan::Listing,
    started_ns: i64,
) -> Option<i64> {
    let recent = started_ns.saturating_sub(crate::racy::WINDOW_NS);
    listed
        .iter()
        .any(|(_, r)| r.kind == EntryKind::File && r.mtime_ns >= recent)
        .then(|| crate::racy::remote_clock(remote, &ws.workspace_id))
        .flatten()
}

/// The base, without what the ignore rules leave out now (as [`Workspace::synced_base`]), and
/// the remote as last scanned: `None` when that is the base's very tree and the rules leave
/// all of it in (after a sync, nearly always), so it is neither read nor held twice (30 MB
/// and a sixth of a second at 100,000 files). A run that `writes` first removes what a killed
/// run put in place as it read (see [`crate::sync::land::recover`]).
fn base_and_last_scanned(
    ws: &Workspace,
    rules: &crate::ignore_rules::IgnoreRules,
    writes: bool,
) -> Result<(Flat, Option<Flat>)> {
    let mut base = ws.store.read_ref_flat(keys::REF_BASE)?;
    if writes {
        // What a killed run put in place as it read, and no commit holds (ignored now or
        // not), goes before the workspace is looked at.
        crate::sync::land::recover(&ws.root, &ws.meta_dir().join(LOG), &base);
    }
    let stored = base.len();
    rules.retain_unignored(&mut base);
    let same_tree = ref_root(ws, keys::REF_REMOTE)? == ref_root(ws, keys::REF_BASE)?;
    let remote = if same_tree && base.len() == stored {
        None
    } else {
        Some(ws.store.read_ref_flat(keys::REF_REMOTE)?)
    };
    Ok((base, remote))
}

/// The root tree of the snapshot a ref names (`None` when the ref is unset).
fn ref_root(ws: &Workspace, name: &str) -> Result<Option<cachesync_objects::TreeId>> {
    Ok(ws.store.ref_root(name)?)
}

/// Saves the last observed remote state, and its racy paths: a later scan reads only what
/// changed since (and what was racy). Once saved, it is what the commit compares with (so
/// it is not written twice), with the permissions of the share's root as `remote` shows
/// them now. Returns the racy paths now, and whether the scan found the remote as it was
/// (`previous`); `scan.read_ns`, which only the racy paths need, is emptied.
fn save_remote_scan(
    (ws, remote): (&Workspace, &TimedRemote),
    rules: &crate::ignore_rules::IgnoreRules,
    scan: &mut crate::scan::RemoteScan,
    previous: &Flat,
    previous_racy: &HashSet<Vec<u8>>,
    (started_ns, remote_clock): (i64, Option<i64>),
) -> Result<(HashSet<Vec<u8>>, bool)> {
    if let Some(root) = remote.stat(b"")? {
        crate::status::save_remote_root_perm(ws, &root)?;
    }
    let racy = crate::racy::after_scan(scan, previous_racy, started_ns, remote_clock);
    // When each file was read says which are racy, and nothing after (a path and a time
    // for every file a first copy read: about 100 MB at a million files, held through the
    // writes).
    scan.read_ns = std::collections::HashMap::new();
    let mut batch = Batch::new();
    crate::racy::put(&mut batch, previous_racy, &racy);
    LastSeen::put(&mut batch, started_ns, rules, &scan.unreadable);
    let unchanged = scan.tree == *previous;
    if !unchanged {
        let root = ws.store.write_flat(&scan.tree)?;
        let snap = Snapshot {
            root,
            parent: ws.store.get_ref(keys::REF_REMOTE)?,
            time_ns: crate::now_ns(),
            description: "remote as scanned".into(),
        };
        let id = ws.store.put_snapshot(&snap)?;
        Store::set_ref_in(&mut batch, keys::REF_REMOTE, id);
    }
    if !batch.is_empty() {
        ws.store.commit(batch)?;
        crate::failpoint::hit("remote-snapshot");
    }
    Ok((racy, unchanged))
}

/// When the share was last looked at (a walk by `sync`, `pull`, `push`, `status --refresh`),
/// and the entries it could not read then: with the remote snapshot that walk saved
/// ([`keys::REF_REMOTE`], which later runs advance by what they wrote), what `status` answers
/// from without looking at the share again.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct LastSeen {
    /// When the walk started (ns since the epoch).
    pub time_ns: i64,
    /// The digest of the ignore rules it listed with (hex, [`IgnoreRules::fingerprint`]):
    /// under other rules, what it left out or kept is not what a walk would now.
    ///
    /// [`IgnoreRules::fingerprint`]: crate::ignore_rules::IgnoreRules::fingerprint
    #[serde(default)]
    rules: String,
    /// The entries it could not read: left out of what `status` plans, as that run did.
    unreadable: Vec<SeenUnreadable>,
}

/// An [`crate::scan::Unreadable`] as [`LastSeen`] stores it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SeenUnreadable {
    path_hex: String,
    kind: String,
    reason: String,
    remedy: String,
}

impl LastSeen {
    /// Adds "the share was looked at `time_ns`, and these entries could not be read" to a
    /// batch.
    fn put(
        batch: &mut Batch,
        time_ns: i64,
        rules: &crate::ignore_rules::IgnoreRules,
        unreadable: &[crate::scan::Unreadable],
    ) {
        let seen = LastSeen {
            time_ns,
            rules: crate::paths::hex(&rules.fingerprint()),
            unreadable: unreadable
                .iter()
                .map(|u| SeenUnreadable {
                    path_hex: crate::paths::hex(&u.path_bytes),
                    kind: u.kind.to_string(),
                    reason: u.reason.clone(),
                    remedy: u.remedy.clone(),
                })
                .collect(),
        };
        batch.put(
            keys::CF_STATE,
            crate::state_keys::REMOTE_SEEN,
            &serde_json::to_vec(&seen).expect("the last look serializes"),
        );
    }

    /// The last look at the share, if one was recorded (none before the first walk of a
    /// version that records it).
    ///
    /// # Errors
    /// Store errors; [`crate::SyncError::DamagedRecord`] when the record does not decode.
    pub fn load(store: &Store) -> Result<Option<LastSeen>> {
        let Some(v) = store
            .table(keys::CF_STATE)
            .get(crate::state_keys::REMOTE_SEEN)?
        else {
            return Ok(None);
        };
        let damaged = |e: &dyn std::fmt::Display| {
            crate::SyncError::damaged("the state record `remote-seen`", e.to_string())
        };
        let seen: LastSeen = serde_json::from_slice(&v).map_err(|e| damaged(&e))?;
        for u in &seen.unreadable {
            if crate::paths::unhex(&u.path_hex).is_none() || EntryKind::from_name(&u.kind).is_none()
            {
                return Err(damaged(&"an unreadable entry's path or kind"));
            }
        }
        Ok(Some(seen))
    }

    /// The unreadable entries, as the walk reported them.
    fn unreadable(&self) -> Vec<crate::scan::Unreadable> {
        self.unreadable
            .iter()
            .filter_map(|u| {
                Some(crate::scan::Unreadable::restored(
                    &crate::paths::unhex(&u.path_hex)?,
                    EntryKind::from_name(&u.kind)?,
                    u.reason.clone(),
                    u.remedy.clone(),
                ))
            })
            .collect()
    }
}

/// The three trees without looking at the share: the workspace scanned as always, the
/// remote as it was last seen ([`LastSeen`]). `None` when the share was never looked at in a
/// way that recorded it, or under other ignore rules (then the caller looks).
///
/// # Errors
/// Local I/O and store errors.
pub(crate) fn last_seen(ws: &Workspace) -> Result<Option<(Trees, LastSeen)>> {
    let Some(seen) = LastSeen::load(&ws.store)? else {
        return Ok(None);
    };
    if ws.store.get_ref(keys::REF_REMOTE)?.is_none() {
        return Ok(None);
    }
    let started_ns = crate::now_ns();
    let rules = ws.rules()?;
    if seen.rules != crate::paths::hex(&rules.fingerprint()) {
        // The ignore rules changed since: a path they now keep was left out of that walk.
        return Ok(None);
    }
    // The workspace is walked while the stored trees are read (disk and CPU).
    let (walked, stored) = std::thread::scope(|s| {
        let walked = s.spawn(|| crate::presence::walk_workspace(ws));
        let stored = stored_trees(ws, &rules);
        (
            walked.join().expect("the workspace walk does not panic"),
            stored,
        )
    });
    let (base, remote_tree) = stored?;
    let remote_is_base = remote_tree.is_none();
    let tree = remote_tree.unwrap_or_default();
    let local = crate::presence::settle_workspace(ws, &base, walked?)?;
    let unreadable = seen.unreadable();
    let listed = if remote_is_base { &base } else { &tree }
        .iter()
        .map(|(p, e)| (p, e.kind, e.size));
    let deferred = defer_new_files(ws, listed, &rules, &base, &local);
    let remote = RemoteScan {
        tree,
        unstable: unreadable.iter().map(|u| u.path_bytes.clone()).collect(),
        unreadable,
        ..RemoteScan::default()
    };
    let trees = Trees {
        base,
        local,
        remote,
        remote_is_base,
        remote_let_go: false,
        racy: crate::racy::load(&ws.store)?,
        started_ns,
        deferred,
        stage: None,
    };
    Ok(Some((trees, seen)))
}

/// The base and the remote as last seen, as a walk with today's ignore rules would list
/// them (`None`: the remote is the base's very tree).
fn stored_trees(
    ws: &Workspace,
    rules: &crate::ignore_rules::IgnoreRules,
) -> Result<(Flat, Option<Flat>)> {
    let base = ws.synced_base()?;
    // After a sync both sides agree: the remote is the base's very tree, read once and
    // not copied.
    let remote = if ref_root(ws, keys::REF_REMOTE)? == ref_root(ws, keys::REF_BASE)? {
        None
    } else {
        let mut tree = ws.store.read_ref_flat(keys::REF_REMOTE)?;
        rules.retain_unignored(&mut tree);
        Some(tree)
    };
    Ok((base, remote))
}

/// Which files new on the share (known to neither the base nor the workspace) a run
/// leaves remote-only, decided before anything is read: those under a never-cache
/// directory, and, under a cache budget, the least wanted ones that do not fit (each
/// costs its copy here and its content in the store; pinned and always-cache files come
/// first, and one of them that does not fit is the cache being full: EDISCONFULL).
fn defer_new_files<'a>(
    ws: &Workspace,
    listed: impl Iterator<Item = (&'a Vec<u8>, EntryKind, u64)>,
    rules: &crate::ignore_rules::IgnoreRules,
    base: &Flat,
    local: &LocalScan,
) -> Deferred {
    let wset = ws.working_set();
    let budget = crate::cull::budget(ws);
    if budget.is_none() && !wset.has_never_cache() {
        // Every new file is brought in: nothing to decide.
        return Deferred::default();
    }
    let mut new_files: Vec<(i32, &Vec<u8>, u64)> = listed
        .filter(|(p, kind, _)| {
            *kind == EntryKind::File
                && !crate::ignore_rules::IgnoreRules::is_internal(p)
                && !rules.is_ignored(p, false)
                && !base.contains_key(*p)
                && !local.tree.contains_key(*p)
        })
        .map(|(p, _, size)| (wset.priority(p), p, size))
        .collect();
    let mut out = Deferred::default();
    if budget.is_none() && !new_files.iter().any(|f| f.0 == i32::MIN) {
        return out;
    }
    new_files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut used = crate::cull::cache_use(ws, &local.tree, &local.remote_only);
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

#[cfg(test)]
mod tests {
    use super::*;
    use cachesync_objects::Entry;

    /// Points the base and remote refs at snapshots of `base` and `remote`.
    fn set_refs(ws: &Workspace, base: &Flat, remote: &Flat) {
        let mut batch = Batch::new();
        for (name, flat) in [(keys::REF_BASE, base), (keys::REF_REMOTE, remote)] {
            let snap = Snapshot {
                root: ws.store.write_flat(flat).expect("write"),
                parent: None,
                time_ns: 0,
                description: name.into(),
            };
            let id = ws.store.put_snapshot(&snap).expect("snapshot");
            Store::set_ref_in(&mut batch, name, id);
        }
        ws.store.commit(batch).expect("commit");
    }

    /// The remote as last scanned is shared with the base only when it is the very same
    /// tree and the ignore rules leave all of it in; otherwise it is read as stored.
    #[test]
    fn the_last_scan_is_the_base_only_when_it_is_the_same_whole_tree() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(&remote).expect("mkdir");
        let ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
        let rules = ws.rules().expect("rules");
        let file = |name: &str| {
            let mut e = Entry::new(name.as_bytes(), EntryKind::File);
            e.file = Some(ws.store.ingest_bytes(name.as_bytes()).expect("ingest"));
            (name.as_bytes().to_vec(), e)
        };
        let kept: Flat = [file("a.txt")].into_iter().collect();
        let mut with_ignored = kept.clone();
        with_ignored.extend([file("b.swp")]);

        set_refs(&ws, &kept, &kept);
        let (base, last) = base_and_last_scanned(&ws, &rules, false).expect("read");
        assert_eq!(base, kept);
        assert!(last.is_none(), "the same tree, all of it kept");

        // The same tree, part of which the rules now leave out: the scan's own, whole.
        set_refs(&ws, &with_ignored, &with_ignored);
        let (base, last) = base_and_last_scanned(&ws, &rules, false).expect("read");
        assert_eq!(base, kept);
        assert_eq!(last, Some(with_ignored.clone()));

        // Another tree.
        let mut other = kept.clone();
        other.extend([file("c.txt")]);
        set_refs(&ws, &kept, &other);
        let (base, last) = base_and_last_scanned(&ws, &rules, false).expect("read");
        assert_eq!(base, kept);
        assert_eq!(last, Some(other));
    }
}
