//! A kept answer brought up to date at the few paths changed since, instead of the whole way
//! (as `git status` hashes again only the files whose stat changed).
//!
//! The stat walk that finds the kept answer stale notes the entries changed after the newest
//! one that answer printed: any change to an entry, or a new one, moves its ctime past it.
//! The prints of the two walks, paired by path, say which entries changed, came or went;
//! when those changed or new are all among the noted ones, the answer is the kept one with
//! those paths looked at again: hashed when the index no longer vouches for them, compared
//! with the base entry at their path, and the steps a sync would take for each (its share
//! being as last seen, unchanged there) counted again. A path may be:
//! - **changed in place**, still of the kind the base has there (a file edited, saved by a
//!   rename over it, touched or its mode changed; a directory whose mode changed or whose
//!   entries came and went; a symlink pointed elsewhere): its local change is now
//!   `modified`, `mode` or none, one step or none;
//! - **added**, where neither the base nor the share as last seen has anything: a local
//!   change and a provisional path, created in one step (two for a directory its owner may
//!   not write: made writable, then given its mode);
//! - **added before and still there** as the same kind of thing: the same change and steps;
//! - **removed**: found by its key among the entries the base and the answer's added paths
//!   have in the directories that changed (a removal changes its directory), in the root
//!   and under the directories removed; a path of the base is `deleted` (one removal each,
//!   and a file of the working set no longer counts as here), a path added since the last
//!   sync is no longer a change.
//!
//! The whole way is taken for anything that could touch another path's answer or needs more
//! than these facts: a file added (or added before) with the content of a file removed here,
//! or removed with the content of a file a sync may create (any file with a local change:
//! they would pair into a rename), a kind
//! changed, a path put back where the base has one, a path or a directory holding it (or,
//! removed, a path under it) changed on the share as last seen or in conflict (open,
//! recorded or expected), a remote-only path, a file with other names, a share that folds
//! case, the base's content of a file not known, a remote-only path written here without
//! its base content in the store (the answer then depends on what the store holds, which
//! reading another file may change), more than [`MAX_PATHS`] entries changed or removed. A
//! path among those that is only looked at again for being racy, and is as that status saw
//! it (the same stat, the same content read again), leaves the answer as it was.
//!
//! Entries changed within [`RACY_WINDOW_NS`] of the status's start may change again with the
//! same stat (the timestamps' granularity): the answer is kept with their prints blanked and
//! their paths listed ([`Memo::racy`]), and each later status looks at them again until a
//! status sees them older.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use cachesync_objects::{keys, Entry, EntryKind, FileId};

use super::{given, kept, may_write, outcome, read_prints, write, Memo};
use crate::error::Result;
use crate::index::{IndexEntry, RACY_WINDOW_NS};
use crate::paths::{hex, unhex};
use crate::scan::{path_key, LocalScan, LocalWalk};
use crate::status::{describe, path_change, LocalScanFacts, Outcome, PathChange};
use crate::workspace::Workspace;

/// At most this many entries changed since the kept answer are looked at again (per walk
/// thread, and in all): past it, the whole way is as quick.
pub(in crate::status) const MAX_PATHS: usize = 256;

/// What a status that found the kept answer stale brings to [`answer`].
pub(in crate::status) struct Recheck {
    /// The kept answer.
    pub(super) memo: Memo,
    /// The stat walk that found it stale (its prints, and the entries changed since).
    pub(super) walked: LocalScan,
    /// When that status began (ns).
    pub(super) begun_ns: i64,
}

/// The answer as of now: the kept one, brought up to date at the paths changed since, and
/// kept in its place. `None`: the whole way is needed (see the module doc).
///
/// # Errors
/// Store errors; I/O errors reading the changed files.
pub(in crate::status) fn answer(ws: &Workspace, recheck: Box<Recheck>) -> Result<Option<Outcome>> {
    let Recheck {
        mut memo,
        mut walked,
        begun_ns,
    } = *recheck;
    if ws.store.db().sequence() != memo.seq
        || ws.identity.case_insensitive
        || memo.reappeared
        || walked.changed.len() > MAX_PATHS
    {
        return Ok(None);
    }
    let Some(before) = read_prints(ws, &memo) else {
        return Ok(None);
    };
    let prints = &mut walked.prints.prints;
    prints.sort_unstable();
    let Some(keys) = changed_keys(&before, prints) else {
        return Ok(None);
    };
    let Some(paths) = paths_to_look_at(ws, &memo, std::mem::take(&mut walked.changed), &keys)
    else {
        return Ok(None);
    };
    let Some((index_updates, removed)) = look_again(ws, &mut memo, &paths, &keys)? else {
        return Ok(None);
    };
    let disconnected = crate::status::offline_reason(&ws.mode()?).is_some();
    if disconnected {
        let touched: HashSet<&[u8]> = paths
            .keys()
            .map(Vec::as_slice)
            .chain(removed.iter().map(Vec::as_slice))
            .collect();
        permission_again(ws, &mut memo, &touched)?;
    }
    let mut batch = cachesync_objects::Batch::new();
    for (p, ie) in &index_updates {
        crate::index::put(&mut batch, p, ie);
    }
    // As the whole way forgets the paths gone.
    for p in &removed {
        if crate::index::get(&ws.store, p)?.is_some() {
            crate::index::remove(&mut batch, p);
        }
    }
    if !batch.is_empty() {
        ws.store.commit(batch)?;
    }
    if disconnected {
        let Some(local_changes) = given(memo.local_changes.clone()) else {
            return Ok(None);
        };
        crate::status::record_offline_changes(ws, &local_changes)?;
    }
    // Each path's print as looked at now; blanked, and listed, while it is racy.
    memo.racy.clear();
    for (p, md) in &paths {
        let changed_ns = crate::scan::changed_ns(md);
        memo.newest_ns = memo.newest_ns.max(Some(changed_ns));
        let at = prints
            .binary_search_by_key(&path_key(p), |q| (q >> 64) as u64)
            .expect("every path looked at was printed");
        prints[at] = crate::scan::print(p, md);
        if changed_ns >= begun_ns.saturating_sub(RACY_WINDOW_NS) {
            blank(prints, p);
            memo.racy.push(hex(p));
        }
    }
    memo.newest_ns = memo.newest_ns.max(Some(walked.prints.newest_ns));
    let facts = LocalScanFacts {
        rechecked: paths.len() + removed.len(),
        listed: walked.dirs_reused,
        ..LocalScanFacts::default()
    };
    // The cache's use measured before the answer is kept, as the whole way measures it.
    let answer = outcome(ws, memo.clone(), facts)?;
    if answer.is_some() && may_write(ws, &memo.context)? {
        write(ws, memo, prints)?;
    }
    Ok(answer)
}

/// A print with its stat half blanked: never a walk's (see [`Memo::racy`]).
const BLANK: u128 = (u64::MAX as u128) << 64;

/// Blanks the print of `path` among `prints` (sorted), if it is there.
pub(super) fn blank(prints: &mut [u128], path: &[u8]) {
    if let Ok(at) = prints.binary_search_by_key(&path_key(path), |q| (q >> 64) as u64) {
        prints[at] &= BLANK;
    }
}

/// The keys of the paths whose print differs between two walks, of those only the second
/// has, and of those only the first has.
#[derive(Debug, Default, PartialEq, Eq)]
struct Keys {
    changed: HashSet<u64>,
    added: HashSet<u64>,
    removed: HashSet<u64>,
}

/// The keys of the paths whose print differs between two walks' sorted prints, of the
/// paths added and of the paths removed; `None` when two paths share a key, or more than
/// [`MAX_PATHS`] were removed.
fn changed_keys(before: &[u128], now: &[u128]) -> Option<Keys> {
    let key = |p: u128| (p >> 64) as u64;
    let twins = |list: &[u128]| list.windows(2).any(|w| key(w[0]) == key(w[1]));
    if twins(before) || twins(now) {
        return None;
    }
    let mut keys = Keys::default();
    let (mut i, mut j) = (0, 0);
    loop {
        match (before.get(i), now.get(j)) {
            (Some(&b), Some(&n)) if key(b) == key(n) => {
                if b != n {
                    keys.changed.insert(key(n));
                }
                i += 1;
                j += 1;
            }
            (Some(&b), Some(&n)) if key(b) < key(n) => {
                keys.removed.insert(key(b));
                i += 1;
            }
            (Some(&b), None) => {
                keys.removed.insert(key(b));
                i += 1;
            }
            (_, Some(&n)) => {
                keys.added.insert(key(n));
                j += 1;
            }
            (None, None) => break,
        }
    }
    (keys.removed.len() <= MAX_PATHS).then_some(keys)
}

/// The paths to look at again, with their stat: those the walk saw changed since the kept
/// answer, and those racy then (stat'ed now), each whose print differs or is new; `None`
/// when one such print is not among them.
fn paths_to_look_at(
    ws: &Workspace,
    memo: &Memo,
    changed_since: Vec<(Vec<u8>, fs::Metadata)>,
    keys: &Keys,
) -> Option<BTreeMap<Vec<u8>, fs::Metadata>> {
    let mut paths: BTreeMap<Vec<u8>, fs::Metadata> = changed_since.into_iter().collect();
    for racy in &memo.racy {
        let p = unhex(racy)?;
        let abs = ws.root.join(OsStr::from_bytes(&p));
        if let std::collections::btree_map::Entry::Vacant(v) = paths.entry(p) {
            match fs::symlink_metadata(abs) {
                Ok(md) => {
                    v.insert(md);
                }
                // Gone: one of the paths removed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return None,
            }
        }
    }
    paths.retain(|p, _| {
        let k = path_key(p);
        keys.changed.contains(&k) || keys.added.contains(&k)
    });
    (paths.len() == keys.changed.len() + keys.added.len()).then_some(paths)
}

/// The bytes of a path as the answer shows it (see [`crate::paths::path_bytes`]); empty
/// for text no status wrote, which [`Update::new`] refuses first.
fn path_of(path: &str, path_hex: Option<&String>) -> Vec<u8> {
    crate::paths::path_bytes(path, path_hex.map(String::as_str)).unwrap_or_default()
}

/// Index entries to write, by path.
type IndexUpdates = Vec<(Vec<u8>, IndexEntry)>;

/// Looks at `paths` (with the stat given; those whose key is in `keys.added` are new) as
/// the whole way would, finds the paths removed (`keys.removed`), and brings `memo`'s local
/// changes, provisional paths, pending pushes and bytes of files up to date for them.
/// Returns the index entries to write and the paths removed; `None` when one of them needs
/// the whole way.
///
/// # Errors
/// Store errors; I/O errors reading a file or a symlink.
fn look_again(
    ws: &Workspace,
    memo: &mut Memo,
    paths: &BTreeMap<Vec<u8>, fs::Metadata>,
    keys: &Keys,
) -> Result<Option<(IndexUpdates, Vec<Vec<u8>>)>> {
    let Some(mut update) = Update::new(ws, memo, paths)? else {
        return Ok(None);
    };
    let Some(removed) = update.find_removed(paths, &keys.removed)? else {
        return Ok(None);
    };
    let rules = ws.rules()?;
    let walk = LocalWalk {
        root: &ws.root,
        rules: &rules,
        store: &ws.store,
        index: &update.index,
        contents: true,
        changed_after: None,
        keep_changed: 0,
        listings: None,
    };
    let mut out = LocalScan::default();
    let mut entries = Vec::with_capacity(paths.len());
    for (p, md) in paths {
        match walk.entry(p, md, &mut out)? {
            Some(entry) => entries.push((p, md, entry)),
            None => return Ok(None),
        }
    }
    if !(out.unstable.is_empty()
        && out.warnings.is_empty()
        && out.linked.is_empty()
        && out.temporaries.is_empty())
    {
        return Ok(None);
    }
    // Removals first: their contents are then known to the additions' rename check.
    for p in &removed {
        if !update.removed_path(p)? {
            return Ok(None);
        }
    }
    for (p, md, entry) in entries {
        if !update.path(p, md, &entry, keys.added.contains(&path_key(p)))? {
            return Ok(None);
        }
    }
    memo.local_changes = kept(&update.changes);
    memo.provisional = kept(&update.provisional);
    memo.unwritable_dirs = update.unwritable_dirs;
    memo.pending.push = update.push;
    memo.files_bytes = update.files_bytes;
    memo.readiness = update.readiness;
    Ok(Some((out.index_updates, removed)))
}

/// An answer being brought up to date, path by path ([`Update::path`]).
struct Update<'a> {
    ws: &'a Workspace,
    /// The base's root tree.
    base_root: cachesync_objects::TreeId,
    /// The share as last seen, when it is not the base's very tree.
    remote_root: Option<cachesync_objects::TreeId>,
    /// Paths whose answer depends on more than the workspace and the base: changed on the
    /// share as last seen, in conflict (expected, recorded or open).
    elsewhere: HashSet<Vec<u8>>,
    /// The index's entries of the paths looked at.
    index: crate::index::Index,
    /// The base's content of the files removed here (or replaced by another kind): a file
    /// added with one of them would pair with it into a rename. `None`: too many to read.
    removed: Option<HashSet<FileId>>,
    changes: Vec<PathChange>,
    provisional: Vec<PathChange>,
    push: usize,
    files_bytes: u64,
    /// As [`Memo::unwritable_dirs`].
    unwritable_dirs: Vec<String>,
    /// The files a sync may create on the share, by content (every file the last answer
    /// has a local change for, as the index saw it, and those added now): a removal of one
    /// of these contents could pair with it into a rename. `None`: too many to read.
    creates: Option<HashSet<FileId>>,
    wset: crate::workset::WorkingSet,
    /// How much of the working set is here (a file of it removed is no longer counted).
    readiness: crate::status::Readiness,
}

impl<'a> Update<'a> {
    /// The answer `memo` to bring up to date at `paths`; `None` when it cannot be read.
    ///
    /// # Errors
    /// Store errors.
    fn new(
        ws: &'a Workspace,
        memo: &Memo,
        paths: &BTreeMap<Vec<u8>, fs::Metadata>,
    ) -> Result<Option<Update<'a>>> {
        let Some(base_root) = ws.store.ref_root(keys::REF_BASE)? else {
            return Ok(None);
        };
        let remote_root = ws
            .store
            .ref_root(keys::REF_REMOTE)?
            .filter(|r| *r != base_root);
        let mut elsewhere: HashSet<Vec<u8>> = memo
            .remote_changes
            .iter()
            .map(|c| path_of(&c.path, c.path_hex.as_ref()))
            .collect();
        elsewhere.extend(memo.conflicts.iter().map(|r| r.path_bytes()));
        elsewhere.extend(
            crate::conflict::open(&ws.store)?
                .iter()
                .map(|r| r.path_bytes()),
        );
        let mut index = crate::index::Index::default();
        for p in paths.keys() {
            if let Some(e) = crate::index::get(&ws.store, p)? {
                index.insert(p.clone(), e);
            }
        }
        let (Some(changes), Some(provisional)) = (
            given(memo.local_changes.clone()),
            given(memo.provisional.clone()),
        ) else {
            return Ok(None);
        };
        // Every path the answer names must be read back as the bytes it was made from.
        let shown = changes
            .iter()
            .chain(&provisional)
            .map(|c| (&c.path, c.path_hex.as_ref()))
            .chain(
                memo.remote_changes
                    .iter()
                    .map(|c| (&c.path, c.path_hex.as_ref())),
            )
            .chain(
                memo.permission
                    .iter()
                    .map(|w| (&w.path, w.path_hex.as_ref())),
            );
        for (path, path_hex) in shown {
            if crate::paths::path_bytes(path, path_hex.map(String::as_str)).is_none() {
                return Ok(None);
            }
        }
        let removed = contents_removed(ws, &changes, base_root, remote_root)?;
        let creates = contents_created(ws, &changes)?;
        Ok(Some(Update {
            ws,
            base_root,
            remote_root,
            elsewhere,
            index,
            creates,
            wset: ws.working_set(),
            readiness: memo.readiness.clone(),
            removed,
            changes,
            provisional,
            push: memo.pending.push,
            files_bytes: memo.files_bytes,
            unwritable_dirs: memo.unwritable_dirs.clone(),
        }))
    }

    /// Whether the answer at `p` depends on more than the workspace and the base: `p` or a
    /// directory holding it changed on the share or in conflict, or `p` remote-only.
    fn elsewhere(&self, p: &[u8]) -> Result<bool> {
        let mut q = p;
        while !q.is_empty() {
            if self.elsewhere.contains(q) {
                return Ok(true);
            }
            q = crate::paths::split_parent(q).0;
        }
        crate::presence::is_remote_only(&self.ws.store, p)
    }

    /// Brings the answer up to date at `p`, now `entry` (stat `md`; `new`: the last answer's
    /// walk did not have it). `false`: the whole way is needed.
    ///
    /// # Errors
    /// Store errors.
    fn path(&mut self, p: &[u8], md: &fs::Metadata, entry: &Entry, new: bool) -> Result<bool> {
        if self.elsewhere(p)? {
            // Looked at again only for being racy then: the answer stands for it if it is
            // as that status saw it (the same stat, and the same content read again).
            let seen = self.index.get(p);
            return Ok(!new && seen.is_some_and(|s| entry.file == Some(s.file) && same_stat(s, md)));
        }
        if !matches!(
            entry.kind,
            EntryKind::File | EntryKind::Dir | EntryKind::Symlink
        ) {
            return Ok(false);
        }
        let base = self.ws.store.entry_at(self.base_root, p)?;
        if new {
            return self.added(p, entry, base.is_some());
        }
        let Some(base) = base else {
            return Ok(self.still_added(p, entry));
        };
        if base.kind != entry.kind || base.file == Some(FileId::NOT_CACHED) {
            return Ok(false);
        }
        let (before, at) = match self.position(p) {
            Ok(i) => (Some(self.changes.remove(i)), i),
            Err(i) => (None, i),
        };
        if before
            .as_ref()
            .is_some_and(|c| !matches!(c.change, "modified" | "mode"))
        {
            return Ok(false);
        }
        if entry.kind == EntryKind::File {
            let Some(old) = self.index.get(p) else {
                return Ok(false);
            };
            self.files_bytes = (self.files_bytes + entry.size).saturating_sub(old.size);
        }
        let after = describe(Some(&base), Some(entry));
        self.push = (self.push + usize::from(after.is_some()))
            .saturating_sub(usize::from(before.is_some()));
        if let Some(c) = after {
            self.changes.insert(at, path_change(p, c));
        }
        Ok(true)
    }

    /// `p`, new here (`in_base`: the base has it, so it was removed here before, or is
    /// remote-only: the whole way), as an added path: a local change, a provisional path,
    /// and the steps that create it on the share (a directory not writable by its owner is
    /// made so, then given its mode).
    ///
    /// # Errors
    /// Store errors.
    fn added(&mut self, p: &[u8], entry: &Entry, in_base: bool) -> Result<bool> {
        if in_base || self.pairs(entry) {
            return Ok(false);
        }
        if let Some(remote) = self.remote_root {
            if self.ws.store.entry_at(remote, p)?.is_some() {
                return Ok(false);
            }
        }
        let change = path_change(p, ("added", entry.kind.as_str()));
        let Err(at) = self.position(p) else {
            return Ok(false);
        };
        self.changes.insert(at, change.clone());
        let at = self
            .provisional
            .partition_point(|c| path_of(&c.path, c.path_hex.as_ref()).as_slice() < p);
        self.provisional.insert(at, change);
        self.push += 1 + usize::from(self.unwritable(p, entry, true));
        if entry.kind == EntryKind::File {
            self.files_bytes += entry.size;
            if let (Some(creates), Some(f)) = (&mut self.creates, entry.file) {
                creates.insert(f);
            }
        }
        Ok(true)
    }

    /// `p`, added here before the last answer and still there as the same kind of thing:
    /// the same change, the same steps (a directory's one more or less as its owner may
    /// write it or not), the bytes of files moved by its size.
    fn still_added(&mut self, p: &[u8], entry: &Entry) -> bool {
        let Ok(at) = self.position(p) else {
            return false;
        };
        let before = &self.changes[at];
        if before.change != "added"
            || before.kind != entry.kind.as_str()
            || self.pairs(entry)
            || self.paired(p)
        {
            return false;
        }
        if entry.kind == EntryKind::Dir {
            let was = self.unwritable(p, entry, false);
            let is = self.unwritable(p, entry, true);
            self.push = (self.push + usize::from(is)).saturating_sub(usize::from(was));
        }
        if entry.kind == EntryKind::File {
            let Some(old) = self.index.get(p) else {
                return false;
            };
            self.files_bytes = (self.files_bytes + entry.size).saturating_sub(old.size);
        }
        true
    }

    /// Whether the directory added at `p` is one its owner may not write: as listed (the
    /// last answer's), or (`now`) as `entry` says, the list then brought up to date.
    fn unwritable(&mut self, p: &[u8], entry: &Entry, now: bool) -> bool {
        let key = hex(p);
        let listed = self.unwritable_dirs.iter().position(|d| *d == key);
        if !now {
            return listed.is_some();
        }
        let is = entry.kind == EntryKind::Dir && entry.mode & 0o700 != 0o700;
        match (listed, is) {
            (None, true) => self.unwritable_dirs.push(key),
            (Some(i), false) => {
                self.unwritable_dirs.swap_remove(i);
            }
            _ => {}
        }
        is
    }

    /// Whether `entry`, created on the share, could pair with a removal into a rename.
    fn pairs(&self, entry: &Entry) -> bool {
        entry.kind == EntryKind::File
            && match &self.removed {
                None => true,
                Some(removed) => entry.file.is_some_and(|f| removed.contains(&f)),
            }
    }

    /// The paths whose keys are `removed`: looked for among the entries the base and the
    /// last answer's added paths have in the directories that changed (a removal changes
    /// its directory) and in the root, and under the directories removed. `None` when one
    /// key is not found, or its path is still there. Their index entries are read too.
    ///
    /// # Errors
    /// Store errors.
    fn find_removed(
        &mut self,
        paths: &BTreeMap<Vec<u8>, fs::Metadata>,
        removed: &HashSet<u64>,
    ) -> Result<Option<Vec<Vec<u8>>>> {
        if removed.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut dirs: Vec<Vec<u8>> = std::iter::once(Vec::new())
            .chain(
                paths
                    .iter()
                    .filter(|(_, md)| md.is_dir())
                    .map(|(p, _)| p.clone()),
            )
            .collect();
        let mut found: Vec<Vec<u8>> = Vec::new();
        while let Some(dir) = dirs.pop() {
            let mut names: Vec<(Vec<u8>, bool)> = self
                .ws
                .store
                .children_at(self.base_root, &dir)?
                .unwrap_or_default()
                .into_iter()
                .map(|e| (crate::paths::join(&dir, &e.name), e.kind == EntryKind::Dir))
                .collect();
            names.extend(self.provisional.iter().filter_map(|c| {
                let p = path_of(&c.path, c.path_hex.as_ref());
                (crate::paths::split_parent(&p).0 == dir.as_slice())
                    .then(|| (p, c.kind == EntryKind::Dir.as_str()))
            }));
            for (p, is_dir) in names {
                if !removed.contains(&path_key(&p)) || found.contains(&p) {
                    continue;
                }
                if is_dir {
                    dirs.push(p.clone());
                }
                found.push(p);
            }
        }
        if found.len() != removed.len() {
            return Ok(None);
        }
        for p in &found {
            match fs::symlink_metadata(self.ws.root.join(OsStr::from_bytes(p))) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => return Ok(None),
            }
            if let Some(e) = crate::index::get(&self.ws.store, p)? {
                self.index.insert(p.clone(), e);
            }
        }
        found.sort_unstable();
        Ok(Some(found))
    }

    /// Brings the answer up to date at `p`, removed here: a path of the base is now
    /// `deleted`, one removal on the share (unless a change there already counted its
    /// step), and a file of the working set no longer counts as here; a path added since the
    /// last sync is no longer a change. `false`: the whole way is needed (the path or one
    /// under it changed on the share or in conflict, or is remote-only; a removal that would
    /// pair into a rename with a file created).
    ///
    /// # Errors
    /// Store errors.
    fn removed_path(&mut self, p: &[u8]) -> Result<bool> {
        if self.elsewhere(p)?
            || self.elsewhere.iter().any(|e| crate::paths::is_within(e, p))
            || crate::presence::any_remote_only_under(&self.ws.store, p)?
        {
            return Ok(false);
        }
        let at = self.position(p);
        let old_size = self.index.get(p).map(|e| e.size);
        match self.ws.store.entry_at(self.base_root, p)? {
            Some(base) => {
                let kind = base.kind;
                let mut contents: Vec<FileId> = base.file.into_iter().collect();
                if let Some(remote) = self.remote_root {
                    contents.extend(self.ws.store.entry_at(remote, p)?.and_then(|e| e.file));
                }
                let pairs = kind == EntryKind::File
                    && match &self.creates {
                        None => true,
                        Some(creates) => contents.iter().any(|f| creates.contains(f)),
                    };
                if pairs || base.file == Some(FileId::NOT_CACHED) {
                    return Ok(false);
                }
                let at = match at {
                    Ok(i) if matches!(self.changes[i].change, "modified" | "mode") => {
                        self.changes.remove(i);
                        i
                    }
                    Ok(_) => return Ok(false),
                    Err(i) => {
                        self.push += 1;
                        i
                    }
                };
                self.changes
                    .insert(at, path_change(p, ("deleted", kind.as_str())));
                if let Some(removed) = &mut self.removed {
                    removed.extend(contents);
                }
                if kind == EntryKind::File {
                    let Some(size) = old_size else {
                        return Ok(false);
                    };
                    self.files_bytes = self.files_bytes.saturating_sub(size);
                    // A file of the working set that was here is counted no more.
                    if self.wset.priority(p) > 0 {
                        let r = &mut self.readiness;
                        let (Some(files), Some(present)) =
                            (r.working_set_files.checked_sub(1), r.present.checked_sub(1))
                        else {
                            return Ok(false);
                        };
                        (r.working_set_files, r.present) = (files, present);
                        r.present_share = if files == 0 {
                            1.0
                        } else {
                            present as f64 / files as f64
                        };
                    }
                }
            }
            None => {
                let Ok(i) = at else {
                    return Ok(false);
                };
                let was = self.changes.remove(i);
                if was.change != "added" || self.paired(p) {
                    return Ok(false);
                }
                let unwritable = self.unwritable_dirs.iter().position(|d| *d == hex(p));
                self.push = self
                    .push
                    .saturating_sub(1 + usize::from(unwritable.is_some()));
                if let Some(u) = unwritable {
                    self.unwritable_dirs.swap_remove(u);
                }
                self.provisional
                    .retain(|c| path_of(&c.path, c.path_hex.as_ref()).as_slice() != p);
                if was.kind == EntryKind::File.as_str() {
                    let Some(size) = old_size else {
                        return Ok(false);
                    };
                    self.files_bytes = self.files_bytes.saturating_sub(size);
                }
            }
        }
        Ok(true)
    }

    /// Whether the file added at `p`, as the last answer saw it (its index entry), could
    /// have paired with a removal into a rename: its steps are not known from the answer.
    fn paired(&self, p: &[u8]) -> bool {
        match (&self.removed, self.index.get(p)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(removed), Some(seen)) => removed.contains(&seen.file),
        }
    }

    /// Where `p` is, or would go, among the local changes.
    fn position(&self, p: &[u8]) -> std::result::Result<usize, usize> {
        self.changes
            .binary_search_by(|c| path_of(&c.path, c.path_hex.as_ref()).as_slice().cmp(p))
    }
}

/// The contents a sync removes from the share (the files of the local changes `deleted` or
/// `type`): the base's, and the share's as last seen (the removal expects the share's
/// entry, whose content id is the base's unless the base's was never fetched, when size and
/// mtime stand for it). `None`: more than [`MAX_PATHS`] to read.
///
/// # Errors
/// Store errors.
fn contents_removed(
    ws: &Workspace,
    changes: &[PathChange],
    base_root: cachesync_objects::TreeId,
    remote_root: Option<cachesync_objects::TreeId>,
) -> Result<Option<HashSet<FileId>>> {
    let removals = paths_where(changes, |c| matches!(c.change, "deleted" | "type"));
    if removals.len() > MAX_PATHS {
        return Ok(None);
    }
    let mut removed = HashSet::new();
    for p in &removals {
        for root in std::iter::once(base_root).chain(remote_root) {
            if let Some(f) = ws.store.entry_at(root, p)?.and_then(|e| e.file) {
                removed.insert(f);
            }
        }
    }
    Ok(Some(removed))
}

/// The contents a sync may create on the share (a write that expects nothing there: files
/// added here, a file that replaced a directory, a file edited here and gone from the
/// share), taken wide: every file with a local change, as the index saw it. `None`: more
/// than [`MAX_PATHS`] to read.
///
/// # Errors
/// Store errors.
fn contents_created(ws: &Workspace, changes: &[PathChange]) -> Result<Option<HashSet<FileId>>> {
    let files = paths_where(changes, |c| c.kind == EntryKind::File.as_str());
    if files.len() > MAX_PATHS {
        return Ok(None);
    }
    let mut creates = HashSet::new();
    for p in &files {
        if let Some(e) = crate::index::get(&ws.store, p)? {
            creates.insert(e.file);
        }
    }
    Ok(Some(creates))
}

/// The paths of the `changes` that `keep` keeps.
fn paths_where(changes: &[PathChange], keep: impl Fn(&PathChange) -> bool) -> Vec<Vec<u8>> {
    changes
        .iter()
        .filter(|c| keep(c))
        .map(|c| path_of(&c.path, c.path_hex.as_ref()))
        .collect()
}

/// Whether the index entry `seen` was recorded from the stat `md`.
fn same_stat(seen: &IndexEntry, md: &fs::Metadata) -> bool {
    let now = crate::scan::index_entry_of(md, seen.file);
    IndexEntry {
        recorded_ns: seen.recorded_ns,
        ..now
    } == *seen
}

/// Offline: the permission warnings of `paths` judged again from their changes now (see
/// [`crate::status::permission_problem`]), each from the directories that hold it as the
/// share last showed them.
///
/// # Errors
/// Store errors.
fn permission_again(ws: &Workspace, memo: &mut Memo, paths: &HashSet<&[u8]>) -> Result<()> {
    memo.permission
        .retain(|w| !paths.contains(path_of(&w.path, w.path_hex.as_ref()).as_slice()));
    let root_perm = crate::status::remote_root_perm(ws)?;
    let creds = crate::status::Creds::current();
    let seen_root = ws.store.ref_root(keys::REF_REMOTE)?;
    for c in &memo.local_changes {
        let p = path_of(&c.path, c.path_hex.as_ref());
        if !paths.contains(p.as_slice()) {
            continue;
        }
        // The path and the directories that hold it, as the share last showed them.
        let mut seen = crate::scan::Flat::new();
        if let Some(root) = seen_root {
            let mut q = p.as_slice();
            while !q.is_empty() {
                if let Some(e) = ws.store.entry_at(root, q)? {
                    seen.insert(q.to_vec(), e);
                }
                q = crate::paths::split_parent(q).0;
            }
        }
        if let Some(reason) =
            crate::status::permission_problem(&seen, root_perm, &creds, &p, &c.change)
        {
            let warning = crate::status::PermissionWarning {
                path: c.path.clone(),
                path_hex: c.path_hex.clone(),
                reason,
            };
            let at = memo
                .permission
                .partition_point(|w| path_of(&w.path, w.path_hex.as_ref()) < p);
            memo.permission.insert(at, warning);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(key: u64, stat: u64) -> u128 {
        u128::from(key) << 64 | u128::from(stat)
    }

    #[test]
    fn changed_keys_pair_prints_by_path() {
        let before = [print(1, 10), print(2, 20), print(3, 30)];
        let keys = |changed: &[u64], added: &[u64], removed: &[u64]| Keys {
            changed: changed.iter().copied().collect(),
            added: added.iter().copied().collect(),
            removed: removed.iter().copied().collect(),
        };
        assert_eq!(changed_keys(&before, &before), Some(keys(&[], &[], &[])));
        let now = [print(1, 10), print(2, 21), print(3, 30)];
        assert_eq!(
            changed_keys(&before, &now),
            Some(keys(&[2], &[], &[])),
            "the entry whose stat changed"
        );
        // Added before, between and after the others.
        let more = [
            print(0, 1),
            print(1, 10),
            print(2, 20),
            print(3, 31),
            print(4, 40),
        ];
        assert_eq!(changed_keys(&before, &more), Some(keys(&[3], &[0, 4], &[])));
        let gap = [print(1, 10), print(3, 30)];
        assert_eq!(changed_keys(&gap, &before), Some(keys(&[], &[2], &[])));
        // Removed first, in the middle, last; one removed and one added in its place.
        assert_eq!(changed_keys(&before, &gap), Some(keys(&[], &[], &[2])));
        assert_eq!(
            changed_keys(&before, &before[1..]),
            Some(keys(&[], &[], &[1]))
        );
        assert_eq!(
            changed_keys(&before, &before[..2]),
            Some(keys(&[], &[], &[3]))
        );
        let swapped = [print(1, 10), print(3, 30), print(4, 40)];
        assert_eq!(changed_keys(&before, &swapped), Some(keys(&[], &[4], &[2])));
        assert_eq!(changed_keys(&before, &[]), Some(keys(&[], &[], &[1, 2, 3])));
        // Two paths with the same key cannot be told apart.
        let twins = [print(1, 10), print(1, 11), print(3, 30)];
        assert_eq!(changed_keys(&twins, &twins), None);
        assert_eq!(changed_keys(&before, &twins), None);
        assert_eq!(changed_keys(&twins, &before), None);
        // A blanked (racy) print always differs.
        let blanked = [print(1, 10), print(2, 20) & BLANK, print(3, 30)];
        assert_eq!(changed_keys(&blanked, &before), Some(keys(&[2], &[], &[])));
        // Past the bound of removals, the whole way.
        let many: Vec<u128> = (0..=MAX_PATHS as u64).map(|k| print(k, k)).collect();
        assert_eq!(changed_keys(&many, &[]), None);
    }
}
