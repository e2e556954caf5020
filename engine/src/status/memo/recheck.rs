//! A kept answer brought up to date at the few paths changed since, instead of the whole way
//! (as `git status` hashes again only the files whose stat changed).
//!
//! The stat walk that finds the kept answer stale notes the entries changed after the newest
//! one that answer printed: any change to an entry moves its ctime past it. When those are
//! the only entries whose print differs, path by path, from the prints the answer was made
//! from, and each is still of the kind the base has at its path (a file edited, saved by a
//! rename over it, touched, or its mode changed; a directory whose entries came and went; a
//! symlink pointed elsewhere), the answer is the kept one with those paths looked at again:
//! hashed when the index no longer vouches for them, compared with the base, and the one
//! step a sync would take for each (its share being as last seen, unchanged there) counted
//! again. Nothing else in the answer depends on them.
//!
//! The whole way is taken instead for anything that could touch another path's answer or
//! needs more than these facts: an entry added or removed (it could pair with another into a
//! rename), a path with a change on the share as last seen or a conflict (open, recorded or
//! expected), a remote-only path, a file with other names, a share that folds case, the base's
//! content of a file not known, more than [`MAX_PATHS`] entries changed.
//!
//! Entries changed within [`RACY_WINDOW_NS`] of the status's start may change again with the
//! same stat (the timestamps' granularity): the answer is kept with their prints blanked and
//! their paths listed ([`Memo::racy`]), and each later status looks at them again until a
//! status sees them older.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use cachesync_objects::{keys, EntryKind, FileId};

use super::{given, kept, may_write, outcome, read_prints, write, Memo};
use crate::error::Result;
use crate::index::{IndexEntry, RACY_WINDOW_NS};
use crate::paths::{hex, unhex};
use crate::scan::{path_key, LocalScan, LocalWalk};
use crate::status::{describe, path_change, LocalScanFacts, Outcome};
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
        || walked.changed.len() > MAX_PATHS
    {
        return Ok(None);
    }
    let Some(before) = read_prints(ws, &memo) else {
        return Ok(None);
    };
    let prints = &mut walked.prints.prints;
    prints.sort_unstable();
    let Some(changed) = changed_keys(&before, prints) else {
        return Ok(None);
    };
    let Some(paths) = paths_to_look_at(ws, &memo, std::mem::take(&mut walked.changed), &changed)
    else {
        return Ok(None);
    };
    let Some(index_updates) = look_again(ws, &mut memo, &paths)? else {
        return Ok(None);
    };
    let disconnected = crate::status::offline_reason(&ws.mode()?).is_some();
    if disconnected {
        permission_again(ws, &mut memo, &paths)?;
    }
    let mut batch = cachesync_objects::Batch::new();
    for (p, ie) in &index_updates {
        crate::index::put(&mut batch, p, ie);
    }
    if !batch.is_empty() {
        ws.store.commit(batch)?;
    }
    let Some(local_changes) = given(memo.local_changes.clone()) else {
        return Ok(None);
    };
    if disconnected {
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
    if may_write(ws, &memo.context.clone())? {
        write(ws, memo.clone(), prints)?;
    }
    let facts = LocalScanFacts {
        rechecked: paths.len(),
        ..LocalScanFacts::default()
    };
    outcome(ws, memo, facts)
}

/// A print with its stat half blanked: never a walk's (see [`Memo::racy`]).
const BLANK: u128 = (u64::MAX as u128) << 64;

/// Blanks the print of `path` among `prints` (sorted), if it is there.
pub(super) fn blank(prints: &mut [u128], path: &[u8]) {
    if let Ok(at) = prints.binary_search_by_key(&path_key(path), |q| (q >> 64) as u64) {
        prints[at] &= BLANK;
    }
}

/// The keys of the paths whose print differs between two walks' sorted prints; `None` when
/// an entry came or went, or two paths share a key.
fn changed_keys(before: &[u128], now: &[u128]) -> Option<HashSet<u64>> {
    let key = |p: u128| (p >> 64) as u64;
    if before.len() != now.len() {
        return None;
    }
    let mut out = HashSet::new();
    for (i, (&b, &n)) in before.iter().zip(now).enumerate() {
        if key(b) != key(n) || (i > 0 && key(now[i - 1]) == key(n)) {
            return None;
        }
        if b != n {
            out.insert(key(n));
        }
    }
    Some(out)
}

/// The paths to look at again, with their stat: those the walk saw changed since the kept
/// answer, and those racy then (stat'ed now), each whose print differs; `None` when a print
/// that differs is not among them.
fn paths_to_look_at(
    ws: &Workspace,
    memo: &Memo,
    changed_since: Vec<(Vec<u8>, fs::Metadata)>,
    changed: &HashSet<u64>,
) -> Option<BTreeMap<Vec<u8>, fs::Metadata>> {
    let mut paths: BTreeMap<Vec<u8>, fs::Metadata> = changed_since.into_iter().collect();
    for racy in &memo.racy {
        let p = unhex(racy)?;
        let abs = ws.root.join(OsStr::from_bytes(&p));
        if let std::collections::btree_map::Entry::Vacant(v) = paths.entry(p) {
            v.insert(fs::symlink_metadata(abs).ok()?);
        }
    }
    paths.retain(|p, _| changed.contains(&path_key(p)));
    (paths.len() == changed.len()).then_some(paths)
}

/// The path `c` names, as bytes.
fn path_of(path: &str, path_hex: Option<&String>) -> Vec<u8> {
    match path_hex {
        Some(h) => unhex(h).unwrap_or_default(),
        None => path.as_bytes().to_vec(),
    }
}

/// Index entries to write, by path.
type IndexUpdates = Vec<(Vec<u8>, IndexEntry)>;

/// Looks at `paths` (with the stat given) as the whole way would, and brings `memo`'s local
/// changes, pending pushes and bytes of files up to date for them. Returns the index
/// entries to write; `None` when one of them needs the whole way.
///
/// # Errors
/// Store errors; I/O errors reading a file or a symlink.
fn look_again(
    ws: &Workspace,
    memo: &mut Memo,
    paths: &BTreeMap<Vec<u8>, fs::Metadata>,
) -> Result<Option<IndexUpdates>> {
    let Some(base_root) = ws.store.ref_root(keys::REF_BASE)? else {
        return Ok(None);
    };
    // Paths whose answer depends on more than the workspace and the base.
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
    let rules = ws.rules()?;
    let walk = LocalWalk {
        root: &ws.root,
        rules: &rules,
        store: &ws.store,
        index: &index,
        contents: true,
        changed_after: None,
        keep_changed: 0,
    };
    let mut out = LocalScan::default();
    let Some(mut changes) = given(std::mem::take(&mut memo.local_changes)) else {
        return Ok(None);
    };
    for (p, md) in paths {
        let Some(entry) = walk.entry(p, md, &mut out)? else {
            return Ok(None);
        };
        if elsewhere.contains(p) || crate::presence::is_remote_only(&ws.store, p)? {
            // Looked at again only for being racy then: the answer stands for it if it is
            // as that status saw it (the same stat, and the same content read again).
            match index.get(p) {
                Some(seen) if entry.file == Some(seen.file) && same_stat(seen, md) => continue,
                _ => return Ok(None),
            }
        }
        let Some(base) = ws.store.entry_at(base_root, p)? else {
            return Ok(None);
        };
        if base.kind != entry.kind
            || !matches!(
                entry.kind,
                EntryKind::File | EntryKind::Dir | EntryKind::Symlink
            )
            || base.file == Some(FileId::NOT_CACHED)
        {
            return Ok(None);
        }
        let (before, at) =
            match changes.binary_search_by(|c| path_of(&c.path, c.path_hex.as_ref()).cmp(p)) {
                Ok(i) => (Some(changes.remove(i)), i),
                Err(i) => (None, i),
            };
        if before
            .as_ref()
            .is_some_and(|c| !matches!(c.change, "modified" | "mode"))
        {
            return Ok(None);
        }
        if entry.kind == EntryKind::File {
            let Some(old) = index.get(p) else {
                return Ok(None);
            };
            memo.files_bytes = (memo.files_bytes + entry.size).saturating_sub(old.size);
        }
        let after = describe(Some(&base), Some(&entry));
        memo.pending.push = (memo.pending.push + usize::from(after.is_some()))
            .saturating_sub(usize::from(before.is_some()));
        if let Some(c) = after {
            changes.insert(at, path_change(p, c));
        }
    }
    if !(out.unstable.is_empty()
        && out.warnings.is_empty()
        && out.linked.is_empty()
        && out.temporaries.is_empty())
    {
        return Ok(None);
    }
    memo.local_changes = kept(&changes);
    Ok(Some(out.index_updates))
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
fn permission_again(
    ws: &Workspace,
    memo: &mut Memo,
    paths: &BTreeMap<Vec<u8>, fs::Metadata>,
) -> Result<()> {
    memo.permission
        .retain(|w| !paths.contains_key(&path_of(&w.path, w.path_hex.as_ref())));
    let root_perm = crate::status::remote_root_perm(ws)?;
    let creds = crate::status::Creds::current();
    let seen_root = ws.store.ref_root(keys::REF_REMOTE)?;
    for c in &memo.local_changes {
        let p = path_of(&c.path, c.path_hex.as_ref());
        if !paths.contains_key(&p) {
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
    fn changed_keys_pair_prints_by_path_and_refuse_entries_that_came_or_went() {
        let before = [print(1, 10), print(2, 20), print(3, 30)];
        let same = changed_keys(&before, &before).expect("the same entries");
        assert!(same.is_empty());
        let now = [print(1, 10), print(2, 21), print(3, 30)];
        assert_eq!(
            changed_keys(&before, &now),
            Some(HashSet::from([2])),
            "the entry whose stat changed"
        );
        // One removed, one added in its place: as many prints, other paths.
        let swapped = [print(1, 10), print(3, 30), print(4, 40)];
        assert_eq!(changed_keys(&before, &swapped), None);
        assert_eq!(changed_keys(&before, &before[..2]), None, "one removed");
        // Two paths with the same key cannot be told apart.
        let twins = [print(1, 10), print(1, 11), print(3, 30)];
        assert_eq!(changed_keys(&twins, &twins), None);
        // A blanked (racy) print always differs.
        let blanked = [print(1, 10), print(2, 20) & BLANK, print(3, 30)];
        assert_eq!(changed_keys(&blanked, &before), Some(HashSet::from([2])));
    }
}
