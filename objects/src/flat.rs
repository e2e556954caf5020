//! A whole tree as one sorted list: path → entry.
//!
//! Scans, the base and the remote as last seen are all held this way while a command runs.
//! A sorted vector rather than a `BTreeMap`: a scan gathers its entries in a list and sorts
//! it, and the list *is* the tree (a map had to be built from it, and the whole list and the
//! whole map were alive at once: the peak of a sync of 100,000 files). Lookups are binary
//! searches; edits in bulk go through [`Flat::apply`] (one pass), and only a few single
//! inserts or removals are made one at a time.

use std::ops::{Bound, RangeBounds};

use crate::tree::Entry;

/// Paths (`a/b/c`, relative, no leading slash) and their entries, sorted by path, each path
/// once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flat {
    entries: Vec<(Vec<u8>, Entry)>,
}

/// The entries of a [`Flat`], in path order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (Vec<u8>, Entry)>,
    fn(&'a (Vec<u8>, Entry)) -> (&'a Vec<u8>, &'a Entry),
>;

fn pair((path, entry): &(Vec<u8>, Entry)) -> (&Vec<u8>, &Entry) {
    (path, entry)
}

/// Sorts `items` by path, each path once: of two with one path, the later in the list is
/// kept. A list in order already (nearly always) is only looked through.
fn sort_keeping_last<T>(items: &mut Vec<(Vec<u8>, T)>) {
    if items.is_sorted_by(|a, b| a.0 < b.0) {
        return;
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    // `dedup_by` keeps the first of equal neighbours: the later one's value is moved in.
    items.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        same
    });
}

impl Flat {
    /// An empty tree.
    pub fn new() -> Flat {
        Flat::default()
    }

    /// The tree of `entries`, in any order; of two entries with one path, the later is
    /// kept (as `collect` into a map keeps it). Sorted already (a walk sorts what it
    /// gathered; a tree read back comes in order), nothing moves.
    pub fn from_vec(mut entries: Vec<(Vec<u8>, Entry)>) -> Flat {
        sort_keeping_last(&mut entries);
        // Room left over (a list grown by doubling, or sized for a guess) is given back:
        // the allocator shrinks in place.
        entries.shrink_to_fit();
        Flat { entries }
    }

    /// How many paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, path: &[u8]) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(p, _)| p.as_slice().cmp(path))
    }

    /// The entry at `path`.
    pub fn get<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> Option<&Entry> {
        self.find(path.as_ref()).ok().map(|i| &self.entries[i].1)
    }

    /// The path as the tree holds it, and its entry.
    pub fn get_key_value<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> Option<(&Vec<u8>, &Entry)> {
        self.find(path.as_ref())
            .ok()
            .map(|i| pair(&self.entries[i]))
    }

    /// The entry at `path`, to change in place.
    pub fn get_mut<P: AsRef<[u8]> + ?Sized>(&mut self, path: &P) -> Option<&mut Entry> {
        let i = self.find(path.as_ref()).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// Whether `path` is in the tree.
    pub fn contains_key<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> bool {
        self.find(path.as_ref()).is_ok()
    }

    /// Sets `path`'s entry; returns the one it replaced. A new path moves the entries after
    /// it: many go in with [`Flat::apply`] or [`Flat::extend`].
    pub fn insert(&mut self, path: Vec<u8>, entry: Entry) -> Option<Entry> {
        match self.find(&path) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, entry)),
            Err(i) => {
                self.entries.insert(i, (path, entry));
                None
            }
        }
    }

    /// Takes `path` out; returns its entry. Many go with [`Flat::apply`] or
    /// [`Flat::retain`].
    pub fn remove<P: AsRef<[u8]> + ?Sized>(&mut self, path: &P) -> Option<Entry> {
        let i = self.find(path.as_ref()).ok()?;
        Some(self.entries.remove(i).1)
    }

    /// Every path and entry, in path order.
    pub fn iter(&self) -> Iter<'_> {
        self.entries.iter().map(pair)
    }

    /// Every path and entry, in path order, the entries to change in place.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&Vec<u8>, &mut Entry)> {
        self.entries.iter_mut().map(|(p, e)| (&*p, e))
    }

    /// Every path, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Vec<u8>> + ExactSizeIterator {
        self.entries.iter().map(|(p, _)| p)
    }

    /// Every entry, in path order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.iter().map(|(_, e)| e)
    }

    /// The paths in `range` (byte order), with their entries.
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Iter<'_> {
        let start = match range.start_bound() {
            Bound::Included(s) => self.entries.partition_point(|(p, _)| p < s),
            Bound::Excluded(s) => self.entries.partition_point(|(p, _)| p <= s),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => self.entries.partition_point(|(p, _)| p <= e),
            Bound::Excluded(e) => self.entries.partition_point(|(p, _)| p < e),
            Bound::Unbounded => self.entries.len(),
        };
        self.entries[start..end.max(start)].iter().map(pair)
    }

    /// Keeps the paths for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&Vec<u8>, &mut Entry) -> bool) {
        self.entries.retain_mut(|(p, e)| keep(p, e));
    }

    /// Applies `edits` (path → its new entry, `None`: gone) in one pass; true when anything
    /// changed. Any order; of two edits of one path, the later wins.
    pub fn apply(&mut self, edits: Vec<(Vec<u8>, Option<Entry>)>) -> bool {
        let mut edits = edits;
        sort_keeping_last(&mut edits);
        if self.entries.is_empty() {
            // In place: an entry and an optional one take the same room.
            self.entries = edits
                .into_iter()
                .filter_map(|(p, e)| Some((p, e?)))
                .collect();
            return !self.entries.is_empty();
        }
        let mut moved = false;
        // Positions to take out (increasing, as the edits are sorted), all in one pass.
        let mut gone = Vec::new();
        let mut added = Vec::new();
        for (path, edit) in edits {
            match (self.find(&path), edit) {
                (Ok(i), Some(e)) => {
                    if self.entries[i].1 != e {
                        self.entries[i].1 = e;
                        moved = true;
                    }
                }
                (Ok(i), None) => gone.push(i),
                (Err(_), Some(e)) => added.push((path, e)),
                (Err(_), None) => {}
            }
        }
        if !gone.is_empty() {
            let mut gone = gone.into_iter().peekable();
            let mut at = 0;
            self.entries.retain(|_| {
                let keep = gone.peek() != Some(&at);
                if !keep {
                    gone.next();
                }
                at += 1;
                keep
            });
            moved = true;
        }
        if !added.is_empty() {
            // Two sorted runs: the stable sort merges them in one pass.
            self.entries.extend(added);
            self.entries.sort_by(|a, b| a.0.cmp(&b.0));
            moved = true;
        }
        moved
    }
}

impl<P: AsRef<[u8]> + ?Sized> std::ops::Index<&P> for Flat {
    type Output = Entry;

    /// The entry at `path`.
    ///
    /// # Panics
    /// When there is none.
    fn index(&self, path: &P) -> &Entry {
        self.get(path).expect("the path is in the tree")
    }
}

impl FromIterator<(Vec<u8>, Entry)> for Flat {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Entry)>>(iter: I) -> Flat {
        Flat::from_vec(iter.into_iter().collect())
    }
}

impl Extend<(Vec<u8>, Entry)> for Flat {
    /// Sets each path's entry (later ones win), in one pass.
    fn extend<I: IntoIterator<Item = (Vec<u8>, Entry)>>(&mut self, iter: I) {
        self.apply(iter.into_iter().map(|(p, e)| (p, Some(e))).collect());
    }
}

impl IntoIterator for Flat {
    type Item = (Vec<u8>, Entry);
    type IntoIter = std::vec::IntoIter<(Vec<u8>, Entry)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Flat {
    type Item = (&'a Vec<u8>, &'a Entry);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::Flat;
    use crate::tree::{Entry, EntryKind};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entry(n: u8) -> Entry {
        let mut e = Entry::new(&[b'e', n], EntryKind::File);
        e.size = u64::from(n);
        e
    }

    /// A million-file tree is a million of these, three or four times over in a run: a
    /// field added to every entry costs a run that much (a subtree id held in place was 24
    /// bytes more each, about 100 MB of a first copy of a million files; a name on the
    /// heap 32 more).
    #[test]
    fn an_entry_in_memory_stays_small() {
        let size = std::mem::size_of::<Entry>();
        assert!(size <= 136, "an entry is {size} bytes");
        // A name of up to 16 bytes needs nothing on the heap, in the room a Vec takes.
        assert!(!crate::Name::from_slice(&[b'n'; 16]).spilled());
        assert!(crate::Name::from_slice(&[b'n'; 17]).spilled());
        assert_eq!(
            std::mem::size_of::<crate::Name>(),
            std::mem::size_of::<Vec<u8>>()
        );
    }

    fn path(n: u8) -> Vec<u8> {
        // Names that sort apart from their numbers, with a directory now and then.
        match n % 3 {
            0 => vec![b'a' + n % 26],
            1 => vec![b'a' + n % 26, b'/', b'0' + n % 10],
            _ => vec![b'a' + n % 26, b'.', b'0' + n % 7],
        }
    }

    proptest! {
        /// Built, edited one by one or in bulk, and read, it is the map it stands for.
        #[test]
        fn it_behaves_as_the_ordered_map(
            start in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..60),
            edits in proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u8>())), 0..60),
            from in any::<u8>(),
            to in any::<u8>(),
        ) {
            let items: Vec<(Vec<u8>, Entry)> =
                start.iter().map(|&(p, e)| (path(p), entry(e))).collect();
            let mut model: BTreeMap<Vec<u8>, Entry> = items.iter().cloned().collect();
            let mut flat: Flat = items.into_iter().collect();
            prop_assert!(flat.iter().eq(model.iter()));

            let mut one = flat.clone();
            let mut one_model = model.clone();
            for &(p, e) in &edits {
                match e {
                    Some(e) => prop_assert_eq!(
                        one.insert(path(p), entry(e)),
                        one_model.insert(path(p), entry(e))
                    ),
                    None => prop_assert_eq!(one.remove(&path(p)), one_model.remove(&path(p))),
                }
            }
            prop_assert!(one.iter().eq(one_model.iter()));

            let before = model.clone();
            for &(p, e) in &edits {
                match e {
                    Some(e) => { model.insert(path(p), entry(e)); }
                    None => { model.remove(&path(p)); }
                }
            }
            let moved = flat.apply(edits.iter().map(|&(p, e)| (path(p), e.map(entry))).collect());
            prop_assert!(flat.iter().eq(model.iter()));
            prop_assert_eq!(moved, before != model);

            for p in 0..=255u8 {
                prop_assert_eq!(flat.get(&path(p)), model.get(&path(p)));
                prop_assert_eq!(flat.contains_key(path(p).as_slice()), model.contains_key(&path(p)));
            }
            let (lo, hi) = (path(from.min(to)), path(from.max(to)));
            prop_assert!(flat.range(lo.clone()..).eq(model.range(lo.clone()..)));
            if lo <= hi {
                prop_assert!(flat.range(lo.clone()..hi.clone()).eq(model.range(lo.clone()..hi.clone())));
                prop_assert!(flat.range(lo.clone()..=hi.clone()).eq(model.range(lo..=hi)));
            }
            prop_assert_eq!(flat.len(), model.len());
        }
    }

    #[test]
    fn of_two_entries_for_one_path_the_later_is_kept() {
        let flat: Flat = [
            (path(1), entry(1)),
            (path(0), entry(0)),
            (path(1), entry(2)),
        ]
        .into_iter()
        .collect();
        assert_eq!(flat.len(), 2);
        assert_eq!(flat.get(&path(1)), Some(&entry(2)));
    }
}
