//! Three-way reconcile: base, local and remote trees give, path by path, what to do.
//!
//! A pure function of three flat trees. For each path, each side either kept the base state or
//! changed it. One side changed → that side's state wins. Both changed to the same state →
//! they converge (nothing to transfer). Both changed differently → the fields are merged where
//! that is safe (content changed on one side, mode on the other; mtimes never count), else
//! it is a conflict and both versions are kept. A file modified on one side and deleted on
//! the other keeps the modified version (the deletion is reported). A directory deleted on one
//! side keeps existing when the other side added or changed something inside it.

use std::collections::BTreeSet;

use cachesync_objects::{Entry, EntryKind, FileId};

use crate::scan::Flat;

pub use crate::conflict::ConflictKind;

/// An entry held by a change and the steps that carry it out: one copy, shared (a first
/// copy of 100,000 files held each remote entry in the change, its result and its step).
pub type Shared = std::sync::Arc<Entry>;

/// What reconcile decided for one path.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Both sides should end up as `Some(entry)` or absent (`None`).
    Resolved(Option<Shared>),
    /// Both versions are kept; nothing is written.
    Conflict(ConflictKind),
}

/// One path whose state differs somewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The path.
    pub path: Vec<u8>,
    /// Its base state.
    pub base: Option<Shared>,
    /// Its local state.
    pub local: Option<Shared>,
    /// Its remote state.
    pub remote: Option<Shared>,
    /// What to do.
    pub outcome: Outcome,
    /// A modification won over a deletion (reported to the user).
    pub modify_delete: bool,
    /// A deleted directory was kept because the other side changed things inside it.
    pub dir_kept: bool,
    /// Both sides edited a text file without overlapping: the outcome is their merge.
    pub merged: bool,
    /// The two sides hold different kinds of thing here: the server's version wins, and the
    /// local one (with everything under it) moves to lost+found.
    pub stash_local: bool,
}

impl Change {
    /// The agreed state, if resolved.
    pub fn result(&self) -> Option<&Option<Shared>> {
        match &self.outcome {
            Outcome::Resolved(r) => Some(r),
            Outcome::Conflict(_) => None,
        }
    }

    /// The kind of conflict record this change leaves once synced: its conflict's kind, or,
    /// for a local version that moves to lost+found, `type` (the server holds another kind of
    /// thing there) or `name-clash` (the server holds the name in another case). `status`,
    /// `check`, the dry run and the sync all ask this one question.
    pub fn conflict_kind(&self) -> Option<ConflictKind> {
        match self.outcome {
            Outcome::Conflict(k) => Some(k),
            Outcome::Resolved(_) if self.stash_local => Some(if self.remote.is_none() {
                ConflictKind::NameClash
            } else {
                ConflictKind::Type
            }),
            Outcome::Resolved(_) => None,
        }
    }

    /// True when the local side must change.
    pub fn needs_local(&self) -> bool {
        self.result()
            .is_some_and(|r| !same(r.as_deref(), self.local.as_deref()))
    }

    /// True when the remote side must change.
    pub fn needs_remote(&self) -> bool {
        self.result()
            .is_some_and(|r| !same(r.as_deref(), self.remote.as_deref()))
    }
}

fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && match a.kind {
            // Content never fetched (a remote-only file changed on the server): its size and
            // mtime stand for it.
            EntryKind::File
                if a.file == Some(FileId::NOT_CACHED) || b.file == Some(FileId::NOT_CACHED) =>
            {
                a.size == b.size && a.mtime_ns == b.mtime_ns
            }
            EntryKind::File => a.file == b.file,
            EntryKind::Symlink => a.target == b.target,
            EntryKind::BlockDevice | EntryKind::CharDevice => a.rdev == b.rdev,
            EntryKind::Dir | EntryKind::Fifo | EntryKind::Socket => true,
        }
}

fn same_mode(a: &Entry, b: &Entry) -> bool {
    a.kind == EntryKind::Symlink || a.mode == b.mode
}

/// True when two states are the same for syncing: same kind, content and permission bits.
/// Times, owners and inode numbers do not count.
pub fn same(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_content(a, b) && same_mode(a, b),
        _ => false,
    }
}

/// Merges two changed states against their base.
fn merge(base: Option<&Entry>, l: &Entry, r: &Entry) -> Result<Entry, ConflictKind> {
    if l.kind != r.kind {
        return Err(ConflictKind::Type);
    }
    let content_from = match base {
        Some(b) if b.kind == l.kind && same_content(b, l) => r,
        Some(b) if b.kind == l.kind && same_content(b, r) => l,
        _ if same_content(l, r) => l,
        _ => {
            return Err(if l.kind == EntryKind::File {
                ConflictKind::Content
            } else {
                ConflictKind::Target
            })
        }
    };
    let mode = match base {
        _ if same_mode(l, r) => l.mode,
        Some(b) if b.kind == l.kind && same_mode(b, l) => r.mode,
        Some(b) if b.kind == l.kind && same_mode(b, r) => l.mode,
        _ => return Err(ConflictKind::Metadata),
    };
    let mut out = content_from.clone();
    out.mode = mode;
    Ok(out)
}

/// Reconciles three trees. Returns the paths where anything differs (unchanged paths are
/// left out), sorted by path.
pub fn reconcile(base: &Flat, local: &Flat, remote: &Flat) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, b, l, r) in zip3(base, local, remote) {
        let l_changed = !same(b, l);
        let r_changed = !same(b, r);
        if !l_changed && !r_changed {
            continue;
        }
        let mut modify_delete = false;
        // Each side's entry copied once; the result shares the copy it takes.
        let share = |e: Option<&Entry>| e.cloned().map(Shared::new);
        let (sb, sl, sr) = (share(b), share(l), share(r));
        let outcome = if !r_changed {
            Outcome::Resolved(sl.clone())
        } else if !l_changed {
            Outcome::Resolved(sr.clone())
        } else if same(l, r) {
            Outcome::Resolved(sl.clone())
        } else {
            match (l, r) {
                (Some(l), Some(r)) => match merge(b, l, r) {
                    Ok(m) => Outcome::Resolved(Some(Shared::new(m))),
                    Err(kind) => Outcome::Conflict(kind),
                },
                // Modified on one side, deleted on the other: the modification wins.
                (Some(_), None) => {
                    modify_delete = true;
                    Outcome::Resolved(sl.clone())
                }
                (None, Some(_)) => {
                    modify_delete = true;
                    Outcome::Resolved(sr.clone())
                }
                (None, None) => unreachable!("same(None, None) is true"),
            }
        };
        changes.push(Change {
            path: path.clone(),
            base: sb,
            local: sl,
            remote: sr,
            outcome,
            modify_delete,
            dir_kept: false,
            merged: false,
            stash_local: false,
        });
    }
    keep_dirs_with_survivors(&mut changes, local, remote);
    settle_type_clashes(changes, base, local, remote)
}

/// The union of two trees' paths, in order, with each tree's entry (as [`zip3`]).
pub fn zip2<'a>(
    a: &'a Flat,
    b: &'a Flat,
) -> impl Iterator<Item = (&'a Vec<u8>, Option<&'a Entry>, Option<&'a Entry>)> {
    let mut a = a.iter().peekable();
    let mut b = b.iter().peekable();
    std::iter::from_fn(move || {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        Some(match order {
            std::cmp::Ordering::Less => {
                let (k, e) = a.next()?;
                (k, Some(e), None)
            }
            std::cmp::Ordering::Greater => {
                let (k, e) = b.next()?;
                (k, None, Some(e))
            }
            std::cmp::Ordering::Equal => {
                let (k, ea) = a.next()?;
                let (_, eb) = b.next()?;
                (k, Some(ea), Some(eb))
            }
        })
    })
}

/// The union of the three trees' paths, in order, with each tree's entry: one pass over the
/// three sorted maps (a merge), instead of a set of all paths and three lookups per path.
fn zip3<'a>(
    base: &'a Flat,
    local: &'a Flat,
    remote: &'a Flat,
) -> impl Iterator<
    Item = (
        &'a Vec<u8>,
        Option<&'a Entry>,
        Option<&'a Entry>,
        Option<&'a Entry>,
    ),
> {
    let mut its = [
        base.iter().peekable(),
        local.iter().peekable(),
        remote.iter().peekable(),
    ];
    std::iter::from_fn(move || {
        let next = its
            .iter_mut()
            .filter_map(|it| it.peek().map(|(k, _)| *k))
            .min()?;
        let mut take = |i: usize| match its[i].peek() {
            Some((k, _)) if *k == next => its[i].next().map(|(_, e)| e),
            _ => None,
        };
        let (b, l, r) = (take(0), take(1), take(2));
        Some((next, b, l, r))
    })
}

/// On a remote that folds case, a name created here that the remote already holds in another
/// case (`README` beside `Readme`) would replace that file there: the local one has nowhere
/// to go, so it moves to lost+found (`stash_local`) and the remote's file stays. A name the
/// run frees on the remote (a removal, or a case-only rename) is not a clash. Names are
/// folded ASCII-wise.
pub fn settle_case_clashes(changes: &mut [Change], remote: &Flat) {
    let fold = |p: &[u8]| p.to_ascii_lowercase();
    let freed: BTreeSet<Vec<u8>> = changes
        .iter()
        .filter(|c| c.remote.is_some() && matches!(c.outcome, Outcome::Resolved(None)))
        .map(|c| c.path.clone())
        .collect();
    let mut taken: std::collections::HashMap<Vec<u8>, Vec<u8>> = remote
        .keys()
        .filter(|p| !freed.contains(*p))
        .map(|p| (fold(p), p.clone()))
        .collect();
    for c in changes.iter_mut() {
        let creates = c.remote.is_none()
            && c.local.is_some()
            && matches!(c.outcome, Outcome::Resolved(Some(_)));
        if !creates {
            continue;
        }
        match taken.get(&fold(&c.path)) {
            Some(other) if other != &c.path => {
                c.outcome = Outcome::Resolved(None);
                c.stash_local = true;
            }
            _ => {
                taken.insert(fold(&c.path), c.path.clone());
            }
        }
    }
}

/// A type clash: the two sides hold different kinds of thing at a path, and the change is not
/// one-sided (a type conflict, or one side replaced a directory in which the other side
/// changed something). The server's version wins there, and the local version of the path,
/// with everything under it, has nowhere to go: it moves to lost+found (never dropped).
/// Everything under the path is then reconciled as if the workspace held nothing there.
fn settle_type_clashes(
    changes: Vec<Change>,
    base: &Flat,
    local: &Flat,
    remote: &Flat,
) -> Vec<Change> {
    // Something under `p` changed on `side` in a way the other side did not: a removal both
    // sides made (the other side replaced the directory, so nothing under it is left there)
    // is agreement, not a change to keep, as when a push that removed the files and not yet
    // the directory was interrupted.
    let changed_under = |p: &[u8], side: &Flat, other: &Flat| {
        changes.iter().any(|c| {
            c.path.len() > p.len()
                && c.path.starts_with(p)
                && c.path[p.len()] == b'/'
                && !same(c.base.as_deref(), side.get(&c.path))
                && !same(side.get(&c.path), other.get(&c.path))
        })
    };
    let mut clashes: Vec<Vec<u8>> = Vec::new();
    for c in &changes {
        if clashes.iter().any(|p| crate::paths::is_within(&c.path, p)) {
            continue;
        }
        let (Some(l), Some(r)) = (&c.local, &c.remote) else {
            continue;
        };
        if l.kind == r.kind {
            continue;
        }
        let clash = match &c.outcome {
            Outcome::Conflict(ConflictKind::Type) => true,
            // The server replaced a directory in which the workspace changed things.
            Outcome::Resolved(Some(t)) if t.kind == r.kind && l.kind == EntryKind::Dir => {
                changed_under(&c.path, local, remote)
            }
            // The workspace replaced a directory in which the server changed things.
            Outcome::Resolved(Some(t)) if t.kind == l.kind && r.kind == EntryKind::Dir => {
                changed_under(&c.path, remote, local)
            }
            _ => false,
        };
        if clash {
            clashes.push(c.path.clone());
        }
    }
    if clashes.is_empty() {
        return changes;
    }
    let within = |p: &[u8]| {
        clashes
            .iter()
            .find(|c| crate::paths::is_within(p, c))
            .cloned()
    };
    let mut out: Vec<Change> = changes
        .into_iter()
        .filter(|c| within(&c.path).is_none())
        .collect();
    for p in &clashes {
        let mut paths: BTreeSet<&Vec<u8>> = BTreeSet::new();
        for t in [base, local, remote] {
            // Siblings such as `p-x` and `p.txt` sort between `p` and `p/…`: the run of
            // paths that start with `p`, then those within it.
            paths.extend(
                t.range(p.clone()..)
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(p))
                    .filter(|k| crate::paths::is_within(k, p)),
            );
        }
        for path in paths {
            let (b, l, r) = (base.get(path), local.get(path), remote.get(path));
            let top = path == p;
            // Under the clash the workspace will hold nothing (its version moves away), so
            // only a path nobody else knows needs nothing.
            if !top && b.is_none() && r.is_none() {
                continue;
            }
            let remote = r.cloned().map(Shared::new);
            out.push(Change {
                path: path.clone(),
                base: b.cloned().map(Shared::new),
                // What the workspace holds under the clash is moved away with it.
                local: if top {
                    l.cloned().map(Shared::new)
                } else {
                    None
                },
                remote: remote.clone(),
                outcome: Outcome::Resolved(remote),
                modify_delete: false,
                dir_kept: false,
                merged: false,
                stash_local: top,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A directory resolved to "absent" while something inside it survives (added, changed, or in
/// conflict) must be kept: it is recreated from whichever side still has it.
fn keep_dirs_with_survivors(changes: &mut [Change], local: &Flat, remote: &Flat) {
    let survivors: BTreeSet<Vec<u8>> = changes
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Resolved(None)))
        .map(|c| c.path.clone())
        .collect();
    // Ancestors of surviving paths that exist on some side.
    let mut needed = BTreeSet::new();
    for p in &survivors {
        let mut cur = p.as_slice();
        while let Some(i) = cur.iter().rposition(|&b| b == b'/') {
            cur = &cur[..i];
            if !needed.insert(cur.to_vec()) {
                break;
            }
        }
    }
    for c in changes.iter_mut() {
        if matches!(c.outcome, Outcome::Resolved(None)) && needed.contains(&c.path) {
            let keep = local
                .get(&c.path)
                .or_else(|| remote.get(&c.path))
                .filter(|e| e.kind == EntryKind::Dir)
                .cloned();
            if let Some(dir) = keep {
                c.outcome = Outcome::Resolved(Some(Shared::new(dir)));
                c.dir_kept = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachesync_objects::FileId;
    use proptest::prelude::*;

    fn file(content: &str, mode: u32) -> Entry {
        let mut e = Entry::new(b"x", EntryKind::File);
        e.file = Some(FileId::of(content.as_bytes()));
        e.mode = mode;
        e
    }

    fn dir() -> Entry {
        let mut e = Entry::new(b"d", EntryKind::Dir);
        e.mode = 0o755;
        e
    }

    fn flat(items: &[(&str, Entry)]) -> Flat {
        items
            .iter()
            .map(|(p, e)| (p.as_bytes().to_vec(), e.clone()))
            .collect()
    }

    #[test]
    fn one_sided_changes_win() {
        let base = flat(&[("a", file("1", 0o644)), ("b", file("1", 0o644))]);
        let local = flat(&[("a", file("2", 0o644)), ("b", file("1", 0o644))]);
        let remote = flat(&[("a", file("1", 0o644))]);
        let c = reconcile(&base, &local, &remote);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].result(), Some(&Some(Shared::new(file("2", 0o644)))));
        assert!(c[0].needs_remote() && !c[0].needs_local());
        assert_eq!(c[1].outcome, Outcome::Resolved(None));
        assert!(c[1].needs_local());
    }

    #[test]
    fn mode_and_content_merge_and_mtime_is_ignored() {
        let base = flat(&[("a", file("1", 0o644))]);
        let local = flat(&[("a", file("2", 0o644))]);
        let mut r = file("1", 0o755);
        r.mtime_ns = 99;
        let remote = flat(&[("a", r)]);
        let c = reconcile(&base, &local, &remote);
        assert_eq!(c[0].result(), Some(&Some(Shared::new(file("2", 0o755)))));
        assert!(c[0].needs_local() && c[0].needs_remote());
    }

    #[test]
    fn different_edits_conflict_and_same_edits_converge() {
        let base = flat(&[("a", file("1", 0o644)), ("b", file("1", 0o644))]);
        let local = flat(&[("a", file("2", 0o644)), ("b", file("3", 0o644))]);
        let remote = flat(&[("a", file("2", 0o644)), ("b", file("4", 0o644))]);
        let c = reconcile(&base, &local, &remote);
        assert!(!c[0].needs_local() && !c[0].needs_remote());
        assert_eq!(c[1].outcome, Outcome::Conflict(ConflictKind::Content));
    }

    /// A sibling whose name sorts between the clash's path and what is under it (`p-x`
    /// before `p/a`) does not hide what is under it.
    #[test]
    fn a_type_clash_reconciles_what_is_under_it_past_its_siblings() {
        let sibling = ("p-x", file("s", 0o644));
        let base = flat(&[("p", dir()), ("p/a", file("1", 0o644)), sibling.clone()]);
        let local = flat(&[("p", file("x", 0o644)), sibling.clone()]);
        let remote = flat(&[("p", dir()), ("p/a", file("2", 0o644)), sibling]);
        let c = reconcile(&base, &local, &remote);
        let under = c
            .iter()
            .find(|c| c.path == b"p/a")
            .expect("p/a is reconciled");
        assert_eq!(
            under.outcome,
            Outcome::Resolved(Some(Shared::new(file("2", 0o644))))
        );
        assert!(under.needs_local());
    }

    #[test]
    fn deleted_dir_with_additions_is_kept() {
        let base = flat(&[("d", dir()), ("d/old", file("1", 0o644))]);
        let local = flat(&[
            ("d", dir()),
            ("d/old", file("1", 0o644)),
            ("d/new", file("n", 0o644)),
        ]);
        let remote = Flat::new();
        let c = reconcile(&base, &local, &remote);
        let d = c.iter().find(|c| c.path == b"d").expect("d");
        assert!(d.dir_kept);
        assert!(d.needs_remote());
        let old = c.iter().find(|c| c.path == b"d/old").expect("old");
        assert_eq!(old.outcome, Outcome::Resolved(None));
    }

    fn arb_state() -> impl Strategy<Value = Option<Entry>> {
        prop_oneof![
            Just(None),
            (0u8..3, prop_oneof![Just(0o644u32), Just(0o755u32)])
                .prop_map(|(c, m)| Some(file(&c.to_string(), m))),
        ]
    }

    proptest! {
        /// The merge of the three sorted trees visits exactly the union of their paths, in
        /// order, each with every tree's own entry.
        #[test]
        fn zip2_and_zip3_are_the_sorted_union_with_each_trees_entry(
            names in proptest::collection::vec((0u8..40, 0u8..8), 0..60)
        ) {
            let mut trees = [Flat::new(), Flat::new(), Flat::new()];
            for (n, sides) in &names {
                for (i, t) in trees.iter_mut().enumerate() {
                    if sides & (1 << i) != 0 {
                        let mut e = file(&i.to_string(), 0o644);
                        e.size = u64::from(*n);
                        t.insert(vec![b'a' + n % 3, *n], e);
                    }
                }
            }
            let union: BTreeSet<&Vec<u8>> = trees.iter().flat_map(|t| t.keys()).collect();
            let pairs: BTreeSet<&Vec<u8>> = trees[..2].iter().flat_map(|t| t.keys()).collect();
            let got2: Vec<_> = zip2(&trees[0], &trees[1]).collect();
            prop_assert_eq!(got2.iter().map(|g| g.0).collect::<Vec<_>>(), pairs.into_iter().collect::<Vec<_>>());
            for (p, a, b) in got2 {
                prop_assert_eq!(a, trees[0].get(p));
                prop_assert_eq!(b, trees[1].get(p));
            }
            let got: Vec<_> = zip3(&trees[0], &trees[1], &trees[2]).collect();
            prop_assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), union.into_iter().collect::<Vec<_>>());
            for (p, b, l, r) in got {
                prop_assert_eq!(b, trees[0].get(p));
                prop_assert_eq!(l, trees[1].get(p));
                prop_assert_eq!(r, trees[2].get(p));
            }
        }

        /// For random base, local and remote trees: every change of either side survives in
        /// the result or in a conflict (nothing is lost), and applying the result then
        /// reconciling again is a no-op.
        #[test]
        fn nothing_lost_and_second_run_is_noop(
            states in proptest::collection::vec((arb_state(), arb_state(), arb_state()), 1..12)
        ) {
            let mut base = Flat::new();
            let mut local = Flat::new();
            let mut remote = Flat::new();
            for (i, (b, l, r)) in states.iter().enumerate() {
                let p = format!("f{i}").into_bytes();
                if let Some(b) = b { base.insert(p.clone(), b.clone()); }
                if let Some(l) = l { local.insert(p.clone(), l.clone()); }
                if let Some(r) = r { remote.insert(p.clone(), r.clone()); }
            }
            let changes = reconcile(&base, &local, &remote);
            let (mut nb, mut nl, mut nr) = (base.clone(), local.clone(), remote.clone());
            for c in &changes {
                match &c.outcome {
                    Outcome::Resolved(res) => {
                        // A changed local state is kept unless the remote made the same change
                        // or a merge that contains it.
                        if !same(c.base.as_deref(), c.local.as_deref()) {
                            match (&c.local, res) {
                                (Some(l), Some(m)) => {
                                    prop_assert!(l.file == m.file || c.base.as_ref().is_some_and(|b| b.file == l.file));
                                }
                                (Some(_), None) => prop_assert!(false, "local content dropped"),
                                (None, _) => {}
                            }
                        }
                        if !same(c.base.as_deref(), c.remote.as_deref()) {
                            match (&c.remote, res) {
                                (Some(r), Some(m)) => {
                                    prop_assert!(r.file == m.file || c.base.as_ref().is_some_and(|b| b.file == r.file));
                                }
                                (Some(_), None) => prop_assert!(false, "remote content dropped"),
                                (None, _) => {}
                            }
                        }
                        for t in [&mut nb, &mut nl, &mut nr] {
                            match res {
                                Some(e) => { t.insert(c.path.clone(), Entry::clone(e)); }
                                None => { t.remove(&c.path); }
                            }
                        }
                    }
                    Outcome::Conflict(_) => {
                        // Both versions stay where they are.
                        prop_assert!(c.local.is_some() || c.remote.is_some());
                    }
                }
            }
            let again = reconcile(&nb, &nl, &nr);
            for c in again {
                prop_assert!(matches!(c.outcome, Outcome::Conflict(_)), "second run not a no-op: {:?}", c.path);
            }
        }
    }
}
