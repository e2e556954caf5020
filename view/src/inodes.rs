//! Inode numbers for paths: the kernel names files by number, the workspace by path.
//!
//! A number is given to a path the first time the kernel looks it up and kept until the path
//! goes (unlink, rmdir, or the path renamed over). A rename moves the numbers of the path and
//! of everything under it, so open files and the kernel's cached entries follow the rename.
//! The names of one hard-linked workspace file share its number (as on a disk: one inode,
//! its link count, its mode seen through every name): a link made through the view joins
//! the number of the file it links, and a name found on a file whose link count is above
//! one joins the number already given to that file (known by its device and inode).

use std::collections::HashMap;

/// The root's inode number (FUSE's fixed one).
pub const ROOT: u64 = 1;

/// A workspace file's identity: device and inode number.
pub type FileId = (u64, u64);

/// The two-way map between inode numbers and workspace-relative paths (the root is empty).
#[derive(Debug)]
pub struct Inodes {
    /// Every known name of each number; the first is the one used.
    paths: HashMap<u64, Vec<Vec<u8>>>,
    numbers: HashMap<Vec<u8>, u64>,
    /// The number of each hard-linked workspace file seen.
    linked: HashMap<FileId, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut i = Inodes {
            paths: HashMap::new(),
            numbers: HashMap::new(),
            linked: HashMap::new(),
            next: ROOT + 1,
        };
        i.paths.insert(ROOT, vec![Vec::new()]);
        i.numbers.insert(Vec::new(), ROOT);
        i
    }
}

impl Inodes {
    /// The path of `ino`, if it is known.
    pub fn path(&self, ino: u64) -> Option<Vec<u8>> {
        self.paths.get(&ino).and_then(|p| p.first()).cloned()
    }

    /// Every known name of `ino` (more than one for a hard-linked file), the one to use
    /// first.
    pub fn names(&self, ino: u64) -> &[Vec<u8>] {
        self.paths.get(&ino).map_or(&[], Vec::as_slice)
    }

    /// The number of `path`, if it has one.
    pub fn known(&self, path: &[u8]) -> Option<u64> {
        self.numbers.get(path).copied()
    }

    /// The number of `path`, given now if it has none.
    pub fn number(&mut self, path: &[u8]) -> u64 {
        if let Some(n) = self.numbers.get(path) {
            return *n;
        }
        let n = self.next;
        self.next += 1;
        self.add(n, path);
        n
    }

    /// The number of `path`, a workspace file with `links` names whose identity is `id`:
    /// the number its other names have when it has more than one.
    pub fn number_of_file(&mut self, path: &[u8], id: FileId, links: u64) -> u64 {
        if links < 2 {
            return self.number(path);
        }
        let known = self.numbers.get(path).copied();
        match self.linked.get(&id).copied() {
            Some(n) if known == Some(n) => {
                // The name just seen is the one to use: another may be gone behind the
                // view's back.
                if let Some(names) = self.paths.get_mut(&n) {
                    if let Some(i) = names.iter().position(|p| p == path) {
                        names[..=i].rotate_right(1);
                    }
                }
                n
            }
            Some(n) if self.paths.contains_key(&n) => {
                // A name listed before its links were known, or a name made behind the
                // view's back: it joins the file's number.
                self.drop_name(path);
                self.add(n, path);
                if let Some(names) = self.paths.get_mut(&n) {
                    names.rotate_right(1);
                }
                n
            }
            _ => {
                let n = self.number(path);
                self.linked.insert(id, n);
                n
            }
        }
    }

    /// `path` is a new name of the file at `existing` (a hard link), whose identity is `id`.
    pub fn link(&mut self, existing: &[u8], path: &[u8], id: FileId) {
        let n = self.number(existing);
        self.drop_name(path);
        self.add(n, path);
        self.linked.insert(id, n);
    }

    /// `path` and everything under it are gone.
    pub fn remove(&mut self, path: &[u8]) {
        for p in self.under(path) {
            self.drop_name(&p);
        }
    }

    /// `from` (and everything under it) is now at `to`; whatever was at `to` is gone.
    pub fn rename(&mut self, from: &[u8], to: &[u8]) {
        self.remove(to);
        for p in self.under(from) {
            let n = self.numbers[&p];
            self.drop_name(&p);
            let mut moved = to.to_vec();
            moved.extend_from_slice(&p[from.len()..]);
            self.add(n, &moved);
        }
    }

    /// `from` and `to` swapped places (RENAME_EXCHANGE).
    pub fn exchange(&mut self, a: &[u8], b: &[u8]) {
        let parked = b"\0parked".to_vec();
        self.rename(a, &parked);
        self.rename(b, a);
        self.rename(&parked, b);
    }

    fn add(&mut self, n: u64, path: &[u8]) {
        self.paths.entry(n).or_default().push(path.to_vec());
        self.numbers.insert(path.to_vec(), n);
    }

    /// Forgets the name `path`; its number goes with its last name.
    fn drop_name(&mut self, path: &[u8]) {
        let Some(n) = self.numbers.remove(path) else {
            return;
        };
        if let Some(names) = self.paths.get_mut(&n) {
            names.retain(|p| p != path);
            if names.is_empty() {
                self.paths.remove(&n);
                self.linked.retain(|_, v| *v != n);
            }
        }
    }

    /// The known paths equal to `path` or under it.
    fn under(&self, path: &[u8]) -> Vec<Vec<u8>> {
        self.numbers
            .keys()
            .filter(|p| {
                p.as_slice() == path
                    || (p.len() > path.len() && p.starts_with(path) && p[path.len()] == b'/')
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_moves_the_numbers_under_the_path_and_drops_the_target() {
        let mut i = Inodes::default();
        let d = i.number(b"d");
        let f = i.number(b"d/f");
        let other = i.number(b"dx");
        let target = i.number(b"e");
        i.rename(b"d", b"e");
        assert_eq!(i.path(d).as_deref(), Some(&b"e"[..]));
        assert_eq!(i.path(f).as_deref(), Some(&b"e/f"[..]));
        assert_eq!(
            i.path(other).as_deref(),
            Some(&b"dx"[..]),
            "a sibling with the prefix stays"
        );
        assert_eq!(i.path(target), None);
        assert_eq!(i.number(b"e/f"), f);
    }

    #[test]
    fn an_exchange_swaps_both_subtrees() {
        let mut i = Inodes::default();
        let a = i.number(b"a");
        let af = i.number(b"a/f");
        let b = i.number(b"b");
        i.exchange(b"a", b"b");
        assert_eq!(i.path(a).as_deref(), Some(&b"b"[..]));
        assert_eq!(i.path(af).as_deref(), Some(&b"b/f"[..]));
        assert_eq!(i.path(b).as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn the_names_of_a_hard_linked_file_share_one_number_until_the_last_goes() {
        let mut i = Inodes::default();
        let a = i.number(b"a");
        i.link(b"a", b"b", (1, 7));
        assert_eq!(i.number(b"b"), a);
        // A third name seen by lookup (made behind the view's back, or listed first).
        let listed = i.number(b"c");
        assert_ne!(listed, a);
        assert_eq!(i.number_of_file(b"c", (1, 7), 3), a);
        assert_eq!(
            i.path(listed),
            None,
            "the listed number went with its only name"
        );
        assert_eq!(
            i.path(a).as_deref(),
            Some(&b"c"[..]),
            "the name seen last first"
        );
        assert_eq!(i.number_of_file(b"b", (1, 7), 3), a);
        assert_eq!(i.path(a).as_deref(), Some(&b"b"[..]));
        assert_eq!(i.names(a).len(), 3);
        i.remove(b"a");
        assert_eq!(i.path(a).as_deref(), Some(&b"b"[..]), "another name serves");
        i.rename(b"b", b"d");
        assert_eq!(i.number(b"d"), a);
        i.remove(b"d");
        i.remove(b"c");
        assert_eq!(i.path(a), None);
        // The identity may come back on another file: it gets a number of its own.
        let e = i.number_of_file(b"e", (1, 7), 2);
        assert_ne!(e, a);
        assert_eq!(i.number_of_file(b"e", (1, 7), 1), e);
    }
}
