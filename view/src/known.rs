//! What the view knows besides the workspace directory: the base snapshot (the metadata of
//! remote-only files), which paths are remote-only, which are conflicted, which are pinned.
//! Loaded from the store at mount and again after every change the view makes to it.

use std::collections::{BTreeSet, HashMap, HashSet};

use cachesync_engine::conflict::{self, ConflictRecord, ConflictState};
use cachesync_engine::paths::split_parent;
use cachesync_engine::scan::Flat;
use cachesync_engine::{Result, Workspace};
use cachesync_objects::Entry;

/// The store's view of the workspace, as the last load saw it.
#[derive(Debug, Default)]
pub struct Known {
    /// The base snapshot (the last state both sides agreed on).
    pub base: Flat,
    /// Files whose content is not in the workspace (their metadata is the base's).
    pub remote_only: HashSet<Vec<u8>>,
    /// For each directory, the names of the remote-only files in it.
    children: HashMap<Vec<u8>, BTreeSet<Vec<u8>>>,
    /// Directories that hold remote-only files, however deep.
    holders: HashSet<Vec<u8>>,
    /// The open conflicts, by path.
    pub conflicts: HashMap<Vec<u8>, ConflictRecord>,
}

impl Known {
    /// The paths whose answers differ between `self` and `new` for a file the workspace does
    /// not hold: remote-only in one and not the other, or remote-only in both with another
    /// base entry; with the directories above them (which exist for the view only while
    /// they hold one).
    pub fn changed_remote_only(&self, new: &Known) -> Vec<Vec<u8>> {
        let mut out = std::collections::BTreeSet::new();
        for p in self.remote_only.symmetric_difference(&new.remote_only) {
            out.insert(p.clone());
        }
        for p in self.remote_only.intersection(&new.remote_only) {
            if self.base.get(p) != new.base.get(p) {
                out.insert(p.clone());
            }
        }
        let mut with_dirs = out.clone();
        for p in &out {
            let mut d = split_parent(p).0;
            while !d.is_empty() && with_dirs.insert(d.to_vec()) {
                d = split_parent(d).0;
            }
        }
        with_dirs.into_iter().collect()
    }

    /// Reads it from the workspace's store.
    ///
    /// # Errors
    /// Store errors, and records that do not decode.
    pub fn load(ws: &Workspace) -> Result<Known> {
        let base = ws.synced_base()?;
        let remote_only: HashSet<Vec<u8>> = cachesync_engine::presence::load(&ws.store)?
            .into_iter()
            .filter(|p| base.contains_key(p))
            .collect();
        let mut children: HashMap<Vec<u8>, BTreeSet<Vec<u8>>> = HashMap::new();
        let mut holders = HashSet::new();
        for p in &remote_only {
            let (dir, name) = split_parent(p);
            children
                .entry(dir.to_vec())
                .or_default()
                .insert(name.to_vec());
            let mut d = dir;
            loop {
                holders.insert(d.to_vec());
                if d.is_empty() {
                    break;
                }
                d = split_parent(d).0;
            }
        }
        let conflicts = conflict::all(&ws.store)?
            .into_iter()
            .filter(|r| r.state == ConflictState::Open)
            .map(|r| (r.path_bytes(), r))
            .collect();
        Ok(Known {
            base,
            remote_only,
            children,
            holders,
            conflicts,
        })
    }

    /// The base entry of a remote-only file.
    pub fn remote_only_entry(&self, path: &[u8]) -> Option<&Entry> {
        self.remote_only
            .contains(path)
            .then(|| self.base.get(path))
            .flatten()
    }

    /// The remote-only files directly in `dir`.
    pub fn remote_only_in(&self, dir: &[u8]) -> impl Iterator<Item = &Vec<u8>> {
        self.children.get(dir).into_iter().flatten()
    }

    /// True when `dir` holds remote-only files (at any depth).
    pub fn holds_remote_only(&self, dir: &[u8]) -> bool {
        self.holders.contains(dir)
    }
}
