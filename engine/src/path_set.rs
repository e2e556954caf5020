//! Sets of paths kept in the state table, one key per path under a prefix (the remote-only
//! flags, the racy remote paths): one path changes without the set being rewritten, in the
//! same write batch as whatever it goes with.

use std::collections::HashSet;

use cachesync_objects::{keys, Batch, Store};

use crate::error::Result;

/// The set of paths whose keys start with this prefix.
pub(crate) struct PathSet(pub(crate) &'static [u8]);

impl PathSet {
    fn key(&self, path: &[u8]) -> Vec<u8> {
        let mut k = self.0.to_vec();
        k.extend_from_slice(path);
        k
    }

    /// Calls `f` with every path of the set and the value stored with it.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn for_each(&self, store: &Store, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        store
            .table(keys::CF_STATE)
            .for_each_prefix(self.0, |k, v| {
                f(&k[self.0.len()..], v);
                true
            })?;
        Ok(())
    }

    /// Every path of the set.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn load(&self, store: &Store) -> Result<HashSet<Vec<u8>>> {
        let mut out = HashSet::new();
        self.for_each(store, |p, _| {
            out.insert(p.to_vec());
        })?;
        Ok(out)
    }

    /// Whether `path` is in the set (one read).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn contains(&self, store: &Store, path: &[u8]) -> Result<bool> {
        Ok(store.table(keys::CF_STATE).contains(&self.key(path))?)
    }

    /// Whether a path under the directory `dir` is in the set (one seek).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn any_under(&self, store: &Store, dir: &[u8]) -> Result<bool> {
        let mut prefix = self.key(dir);
        prefix.push(b'/');
        let mut found = false;
        store
            .table(keys::CF_STATE)
            .for_each_prefix(&prefix, |_, _| {
                found = true;
                false
            })?;
        Ok(found)
    }

    /// Adds "`path` is in the set, with `value`" to a batch.
    pub(crate) fn insert(&self, batch: &mut Batch, path: &[u8], value: &[u8]) {
        batch.put(keys::CF_STATE, &self.key(path), value);
    }

    /// Adds "`path` is not in the set" to a batch.
    pub(crate) fn remove(&self, batch: &mut Batch, path: &[u8]) {
        batch.delete(keys::CF_STATE, &self.key(path));
    }
}
