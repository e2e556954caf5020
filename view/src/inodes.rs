//! Inode numbers for paths: the kernel names files by number, the workspace by path.
//!
//! A number is given to a path the first time the kernel looks it up and kept until the path
//! goes (unlink, rmdir, or the path renamed over). A rename moves the numbers of the path and
//! of everything under it, so open files and the kernel's cached entries follow the rename.

use std::collections::HashMap;

/// The root's inode number (FUSE's fixed one).
pub const ROOT: u64 = 1;

/// The two-way map between inode numbers and workspace-relative paths (the root is empty).
#[derive(Debug)]
pub struct Inodes {
    paths: HashMap<u64, Vec<u8>>,
    numbers: HashMap<Vec<u8>, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut i = Inodes {
            paths: HashMap::new(),
            numbers: HashMap::new(),
            next: ROOT + 1,
        };
        i.paths.insert(ROOT, Vec::new());
        i.numbers.insert(Vec::new(), ROOT);
        i
    }
}

impl Inodes {
    /// The path of `ino`, if it is known.
    pub fn path(&self, ino: u64) -> Option<Vec<u8>> {
        self.paths.get(&ino).cloned()
    }

    /// The number of `path`, given now if it has none.
    pub fn number(&mut self, path: &[u8]) -> u64 {
        if let Some(n) = self.numbers.get(path) {
            return *n;
        }
        let n = self.next;
        self.next += 1;
        self.paths.insert(n, path.to_vec());
        self.numbers.insert(path.to_vec(), n);
        n
    }

    /// `path` and everything under it are gone.
    pub fn remove(&mut self, path: &[u8]) {
        for p in self.under(path) {
            if let Some(n) = self.numbers.remove(&p) {
                self.paths.remove(&n);
            }
        }
    }

    /// `from` (and everything under it) is now at `to`; whatever was at `to` is gone.
    pub fn rename(&mut self, from: &[u8], to: &[u8]) {
        self.remove(to);
        for p in self.under(from) {
            let n = self.numbers.remove(&p).expect("listed above");
            let mut moved = to.to_vec();
            moved.extend_from_slice(&p[from.len()..]);
            self.paths.insert(n, moved.clone());
            self.numbers.insert(moved, n);
        }
    }

    /// `from` and `to` swapped places (RENAME_EXCHANGE).
    pub fn exchange(&mut self, a: &[u8], b: &[u8]) {
        let parked = b"\0parked".to_vec();
        self.rename(a, &parked);
        self.rename(b, a);
        self.rename(&parked, b);
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
}
