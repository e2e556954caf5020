//! The local scan of a workspace a view is mounted on, from the changes the view saw (git's
//! fsmonitor, built in).
//!
//! A running view watches the workspace directory (inotify: what programs write through the
//! view lands there, and so does what is written to it behind the view's back). Each time it
//! lends the workspace to a command it writes a [`Handoff`] to `.cachesync/fsmonitor`: every
//! path that changed since the previous hand-over (`since`) up to this one (`upto`). A
//! command holding the lock consumes it: when the local tree the previous command stored
//! ([`Prior`], in the state table) reflects hand-over `since` of the same view, only the
//! changed paths are looked at again (a changed directory is walked whole); otherwise the
//! whole tree is walked. Either way the tree found is stored as of hand-over `upto`, so the
//! next command can start from it.
//!
//! Why nothing is missed: every change after hand-over `n` is in hand-over `n + 1`'s paths
//! (the view reads every queued event before it writes a hand-over), and the tree stored as
//! of `n` was scanned after hand-over `n`, so it holds every change made before it. A lost
//! event (the kernel's queue overflowed, no watch left) makes the hand-over incomplete, and
//! the next command walks the whole tree. Without a hand-over (no view) nothing here runs.
//! A hand-over no command consumed is folded into the next by the view. A command uses only
//! the hand-over the view gave it ([`Workspace::handoff`], from the view's answer): a file
//! left behind by a view that was killed says nothing of what changed since.

use std::collections::BTreeSet;
use std::path::Path;

use cachesync_objects::{keys, EntryKind, TreeId};

use crate::error::{Result, SyncError};
use crate::ignore_rules::IgnoreRules;
use crate::paths::{is_within, split_parent, under};
use crate::scan::{scan_local, Flat, LocalScan, LocalWalk};
use crate::state_keys;
use crate::workspace::Workspace;

/// The hand-over file, in `.cachesync/`.
pub const HANDOFF: &str = "fsmonitor";

/// What a view saw change between two hand-overs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    /// The view's run (random at each mount): hand-over numbers count within it.
    pub session: u64,
    /// The hand-over these changes start from.
    pub since: u64,
    /// This hand-over's number.
    pub upto: u64,
    /// False when events were lost: the paths are not all that changed.
    pub complete: bool,
    /// The paths that changed (created, written, removed, renamed from or to, attributes).
    pub paths: BTreeSet<Vec<u8>>,
    /// The inode numbers of hard-linked files that changed: a change through one name is
    /// reported under that name only, and that name may be gone by the time of the scan.
    pub inodes: BTreeSet<u64>,
}

const MAGIC: &[u8] = b"cachesync-fsmonitor 2\n";

impl Handoff {
    /// The file's bytes: the magic line, then `session since upto complete paths inodes\n`
    /// (decimal), then each inode number in decimal followed by a newline, then each path
    /// followed by a NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(
            format!(
                "{} {} {} {} {} {}\n",
                self.session,
                self.since,
                self.upto,
                u8::from(self.complete),
                self.paths.len(),
                self.inodes.len()
            )
            .as_bytes(),
        );
        for i in &self.inodes {
            out.extend_from_slice(format!("{i}\n").as_bytes());
        }
        for p in &self.paths {
            out.extend_from_slice(p);
            out.push(0);
        }
        out
    }

    /// Reads [`Handoff::encode`]'s bytes; `None` when they are not whole.
    pub fn decode(bytes: &[u8]) -> Option<Handoff> {
        let mut rest = bytes.strip_prefix(MAGIC)?;
        let mut line = || -> Option<&str> {
            let nl = rest.iter().position(|&b| b == b'\n')?;
            let l = std::str::from_utf8(&rest[..nl]).ok()?;
            rest = &rest[nl + 1..];
            Some(l)
        };
        let f: Vec<u64> = line()?
            .split(' ')
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        let [session, since, upto, complete, count, n_inodes] = f[..] else {
            return None;
        };
        let mut inodes = BTreeSet::new();
        for _ in 0..n_inodes {
            inodes.insert(line()?.parse().ok()?);
        }
        let body = rest;
        let paths: BTreeSet<Vec<u8>> = if body.is_empty() {
            BTreeSet::new()
        } else {
            body.strip_suffix(&[0])?
                .split(|&b| b == 0)
                .map(<[u8]>::to_vec)
                .collect()
        };
        (paths.len() as u64 == count).then_some(Handoff {
            session,
            since,
            upto,
            complete: complete == 1,
            paths,
            inodes,
        })
    }

    /// Reads the hand-over in `meta_dir`, if there is a whole one.
    pub fn read(meta_dir: &Path) -> Option<Handoff> {
        Handoff::decode(&std::fs::read(meta_dir.join(HANDOFF)).ok()?)
    }

    /// Writes it to `meta_dir` (a whole file or none: written aside, then renamed).
    ///
    /// # Errors
    /// I/O errors writing.
    pub fn write(&self, meta_dir: &Path) -> std::io::Result<()> {
        let aside = meta_dir.join(format!("{HANDOFF}.new"));
        std::fs::write(&aside, self.encode())?;
        std::fs::rename(aside, meta_dir.join(HANDOFF))
    }
}

/// The local tree the last command found, as of a view's hand-over (state key
/// [`state_keys::FSMONITOR`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Prior {
    session: u64,
    upto: u64,
    /// The ignore rules' fingerprint: other rules, another tree.
    rules: [u8; 32],
    /// The tree, in the store.
    tree: TreeId,
    /// Paths left out of that scan (unstable, unreadable), and hard-linked files: looked
    /// at again.
    recheck: Vec<Vec<u8>>,
    /// Paths the rules left out (`status --ignored`).
    ignored: Vec<Vec<u8>>,
}

impl Prior {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.session.to_le_bytes());
        v.extend_from_slice(&self.upto.to_le_bytes());
        v.extend_from_slice(&self.rules);
        v.extend_from_slice(self.tree.as_bytes());
        for list in [&self.recheck, &self.ignored] {
            v.extend_from_slice(&(list.len() as u64).to_le_bytes());
            for p in list {
                v.extend_from_slice(&(p.len() as u64).to_le_bytes());
                v.extend_from_slice(p);
            }
        }
        v
    }

    fn decode(v: &[u8]) -> Option<Prior> {
        let mut c = Cursor(v);
        let session = c.u64()?;
        let upto = c.u64()?;
        let rules: [u8; 32] = c.take(32)?.try_into().ok()?;
        let tree = TreeId::from_slice(c.take(32)?)?;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            for _ in 0..c.u64()? {
                let len = usize::try_from(c.u64()?).ok()?;
                list.push(c.take(len)?.to_vec());
            }
        }
        let [recheck, ignored] = lists;
        c.0.is_empty().then_some(Prior {
            session,
            upto,
            rules,
            tree,
            recheck,
            ignored,
        })
    }
}

/// Bytes read from the front.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Scans the workspace: from the changes a view handed over when it can, else all of it
/// (see the module's doc). [`LocalScan::monitored`] says which.
///
/// # Errors
/// As [`scan_local`]; store errors.
pub fn scan(ws: &Workspace, rules: &IgnoreRules, index: &crate::index::Index) -> Result<LocalScan> {
    let meta = ws.meta_dir();
    // Only the hand-over a live view gave this very process: a file left by a view that
    // is gone (or by a command that never consumed it) says nothing of what changed since.
    let Some(handoff) =
        Handoff::read(&meta).filter(|h| ws.handoff == Some((h.session, h.upto)) && ws.holds_lock())
    else {
        return scan_local(&ws.root, rules, &ws.store, index);
    };
    let walk = LocalWalk {
        root: &ws.root,
        rules,
        store: &ws.store,
        index,
        contents: true,
        changed_after: None,
        keep_changed: 0,
        listings: None,
    };
    let state = ws.store.table(keys::CF_STATE);
    let prior = match state.get(state_keys::FSMONITOR)? {
        Some(v) if handoff.complete => Prior::decode(&v).filter(|p| {
            p.session == handoff.session
                && p.upto == handoff.since
                && p.rules == rules.fingerprint()
        }),
        _ => None,
    };
    // A tree the store no longer holds (collected) is no start: walk it all.
    let start = prior.and_then(|p| {
        let tree = ws.store.read_flat(p.tree).ok()?;
        Some((tree, p))
    });
    let local = match start {
        Some((tree, p)) => {
            let mut paths = handoff.paths.clone();
            paths.extend(p.recheck);
            rescan(&walk, tree, p.ignored, &paths, &handoff.inodes)?
        }
        None => scan_local(&ws.root, rules, &ws.store, index)?,
    };
    {
        let tree = ws.store.write_flat(&local.tree)?;
        let prior = Prior {
            session: handoff.session,
            upto: handoff.upto,
            rules: rules.fingerprint(),
            tree,
            recheck: local
                .unstable
                .iter()
                .chain(&local.linked)
                .cloned()
                .collect(),
            ignored: local.ignored.clone(),
        };
        state.put(state_keys::FSMONITOR, &prior.encode())?;
        match std::fs::remove_file(meta.join(HANDOFF)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SyncError::io(meta.join(HANDOFF), e))
            }
            _ => {}
        }
    }
    Ok(local)
}

/// A tree being edited by [`rescan`].
type Tree = std::collections::BTreeMap<Vec<u8>, cachesync_objects::Entry>;

/// The workspace as `tree` (the last scan's) with `paths` looked at again: each one's entry
/// read anew (gone: removed with what was under it), a directory among them walked whole,
/// and the directory holding each one read anew (its times change with what is made in it,
/// which no event of its own says).
fn rescan(
    walk: &LocalWalk<'_>,
    tree: Flat,
    ignored: Vec<Vec<u8>>,
    paths: &BTreeSet<Vec<u8>>,
    inodes: &BTreeSet<u64>,
) -> Result<LocalScan> {
    let mut out = LocalScan {
        monitored: Some(paths.len()),
        ..LocalScan::default()
    };
    // Edited path by path, each edit seen by the next (a directory dropped, then a path
    // under it): a map takes them in place, where the sorted list would move its tail.
    let mut tree: Tree = tree.into_iter().collect();
    let mut ignored: BTreeSet<Vec<u8>> = ignored.into_iter().collect();
    // A hard-linked file changed through one name changed under every other, and only the
    // name it was changed through has an event: the index knows the others (same inode).
    let linked: Vec<Vec<u8>> = other_names(walk, paths, inodes);
    let paths: BTreeSet<Vec<u8>> = paths.iter().cloned().chain(linked).collect();
    let paths = &paths;
    let mut todo: BTreeSet<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    for p in paths {
        let parent = split_parent(p).0;
        if !parent.is_empty() {
            todo.insert(parent);
        }
    }
    let mut walked: Vec<Vec<u8>> = Vec::new();
    for p in todo {
        if p.is_empty() || walked.iter().any(|w| is_within(p, w)) {
            continue;
        }
        let parent = split_parent(p).0;
        if !parent.is_empty() && tree.get(parent).is_none_or(|e| e.kind != EntryKind::Dir) {
            // Under something ignored, or under what is no directory (any more): not seen.
            drop_subtree(&mut tree, &mut ignored, p);
            continue;
        }
        let abs = under(walk.root, p);
        if crate::scan::too_deep(p, walk.root, &mut out) {
            drop_subtree(&mut tree, &mut ignored, p);
            continue;
        }
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                drop_subtree(&mut tree, &mut ignored, p);
                continue;
            }
            Err(e) => return Err(SyncError::io(&abs, e)),
        };
        let whole = paths.contains(p) && md.is_dir();
        if whole || !md.is_dir() {
            drop_subtree(&mut tree, &mut ignored, p);
        }
        match walk.entry(p, &md, &mut out)? {
            Some(entry) => {
                let is_dir = entry.kind == EntryKind::Dir;
                tree.insert(p.to_vec(), entry);
                if whole && is_dir {
                    let mut found = Vec::new();
                    walk.walk(p.to_vec(), &mut found, &mut out)?;
                    tree.extend(found);
                    walked.push(p.to_vec());
                }
            }
            None => drop_subtree(&mut tree, &mut ignored, p),
        }
    }
    ignored.extend(std::mem::take(&mut out.ignored));
    out.ignored = ignored.into_iter().collect();
    out.tree = Flat::from_vec(tree.into_iter().collect());
    for path in walk.index.keys() {
        if !out.tree.contains_key(path) {
            out.index_removals.push(path.clone());
        }
    }
    Ok(out)
}

/// The other names, as the index knows them, of the files among `paths` that have more
/// than one, and of the hard-linked files the view saw change (`inodes`).
fn other_names(
    walk: &LocalWalk<'_>,
    paths: &BTreeSet<Vec<u8>>,
    inodes: &BTreeSet<u64>,
) -> Vec<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let inos: std::collections::HashSet<u64> = paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(under(walk.root, p)).ok())
        .filter(|md| md.is_file() && md.nlink() > 1)
        .map(|md| md.ino())
        .chain(inodes.iter().copied())
        .collect();
    if inos.is_empty() {
        return Vec::new();
    }
    walk.index
        .iter()
        .filter(|(p, e)| inos.contains(&e.ino) && !paths.contains(*p))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Removes `p` and everything under it from `tree` and from `ignored`.
fn drop_subtree(tree: &mut Tree, ignored: &mut BTreeSet<Vec<u8>>, p: &[u8]) {
    let under: Vec<Vec<u8>> = tree
        .range(p.to_vec()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(p))
        .filter(|k| is_within(k, p))
        .cloned()
        .collect();
    for k in under {
        tree.remove(&k);
    }
    ignored.retain(|k| !is_within(k, p));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_reads_back_and_a_cut_one_does_not() {
        let h = Handoff {
            session: 7,
            since: 2,
            upto: 3,
            complete: true,
            paths: [b"a".to_vec(), b"d/new line\nname".to_vec()]
                .into_iter()
                .collect(),
            inodes: [12, 7].into_iter().collect(),
        };
        let bytes = h.encode();
        assert_eq!(Handoff::decode(&bytes), Some(h.clone()));
        assert_eq!(Handoff::decode(&bytes[..bytes.len() - 1]), None);
        let empty = Handoff {
            paths: BTreeSet::new(),
            inodes: BTreeSet::new(),
            ..h
        };
        assert_eq!(Handoff::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn a_prior_reads_back_and_a_cut_one_does_not() {
        let p = Prior {
            session: 1,
            upto: 9,
            rules: [3; 32],
            tree: TreeId::from_slice(&[4; 32]).expect("id"),
            recheck: vec![b"x".to_vec()],
            ignored: vec![b"target".to_vec(), b"a/b".to_vec()],
        };
        let v = p.encode();
        assert_eq!(Prior::decode(&v), Some(p));
        assert_eq!(Prior::decode(&v[..v.len() - 1]), None);
    }
}
