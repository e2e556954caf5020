//! New remote files written into the workspace while they are read, so that the apply has
//! only to put them in place (see docs/architecture.md, "Files staged as they are read").
//!
//! A small remote file that the run reads, and that the workspace neither holds nor held at
//! the last sync, is about to be written there: its step reads it back out of the store,
//! decompressed and verified, into a temporary. Instead, the thread that read it writes the
//! same bytes (those it hashed and stored) under `.cachesync/incoming/`, with the mode and
//! mtime the step will ask for, while the other threads go on reading. A staged file is named
//! by what it holds (content id, mode, mtime; and its path's hash, to keep names apart), so
//! the apply takes it only for a step whose target is exactly that, whatever path the step
//! is for; its precondition is checked and it is renamed into place as any temporary is.
//! What no step takes is removed when the run ends; a kill leaves the directory, removed by
//! the next run that stages.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use cachesync_objects::{Entry, FileId};

use crate::workspace::Workspace;

/// The directory under the workspace's metadata where files are staged.
pub const INCOMING: &str = "incoming";

/// Files staged for a run's apply.
pub struct Stage {
    dir: PathBuf,
    /// The keys ([`key`]) of the files staged and not yet taken.
    staged: Mutex<HashSet<[u8; 16]>>,
}

/// What names a staged file: its path's, content's, mode's and mtime's hash.
fn key(rel: &[u8], id: FileId, mode: u32, mtime_ns: i64) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(&(rel.len() as u64).to_le_bytes());
    h.update(rel);
    h.update(id.as_bytes());
    h.update(&mode.to_le_bytes());
    h.update(&mtime_ns.to_le_bytes());
    let mut k = [0; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

impl Stage {
    /// An empty stage for `ws` (what a killed run left there is removed first), or `None`
    /// when the metadata directory is not on the workspace's file system (a rename could
    /// not put a staged file in place).
    pub fn open(ws: &Workspace) -> Option<Stage> {
        let dir = ws.meta_dir().join(INCOMING);
        remove_leftovers(ws);
        fs::create_dir(&dir).ok()?;
        let dev = |p: &std::path::Path| fs::metadata(p).ok().map(|m| m.dev());
        if dev(&dir).is_none() || dev(&dir) != dev(&ws.root) {
            let _ = fs::remove_dir(&dir);
            return None;
        }
        Some(Stage {
            dir,
            staged: Mutex::new(HashSet::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 16]>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the file of `key` is staged: in one of 256 directories, so that the threads
    /// that read seldom make files in the same one at once.
    fn path(&self, key: &[u8; 16]) -> PathBuf {
        self.dir
            .join(crate::paths::hex(&key[..1]))
            .join(crate::paths::hex(&key[1..]))
    }

    /// Stages `bytes`, read for `rel` and stored as `id`, with the mode and mtime of its
    /// tree entry `e`. A failure stages nothing: the step writes the file from the store.
    pub fn put(&self, rel: &[u8], e: &Entry, id: FileId, bytes: &[u8]) {
        let k = key(rel, id, e.mode, e.mtime_ns);
        let path = self.path(&k);
        let write = || {
            crate::localfs::write_temp_in(
                &path,
                |f| {
                    f.write_all(bytes)
                        .map_err(|err| crate::error::SyncError::io(&path, err))
                },
                e.mode,
                Some(e.mtime_ns),
                false,
            )
        };
        let mut written = write();
        if written.is_err() {
            // The first into its directory (another thread may make it at the same time).
            let made = path
                .parent()
                .is_some_and(|parent| match fs::create_dir(parent) {
                    Ok(()) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
                });
            if made {
                written = write();
            }
        }
        // (A failure, a full disk say, is met again by the step, which reports it.)
        if written.is_ok() {
            self.lock().insert(k);
        }
    }

    /// Whether a file that holds exactly `t` (a file entry) is staged for `rel`.
    pub fn holds(&self, rel: &[u8], t: &Entry) -> bool {
        t.file
            .is_some_and(|id| self.lock().contains(&key(rel, id, t.mode, t.mtime_ns)))
    }

    /// The staged file that holds exactly `t` (a file entry), for the step that writes it
    /// at `rel`: the caller renames it away (or removes it); no one else gets it.
    pub fn take(&self, rel: &[u8], t: &Entry) -> Option<PathBuf> {
        let k = key(rel, t.file?, t.mode, t.mtime_ns);
        self.lock().remove(&k).then(|| self.path(&k))
    }

    /// Removes what no step took (the run's apply is over).
    pub fn clear(&self) {
        let mut staged = self.lock();
        if !staged.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        *staged = HashSet::new();
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes what a killed run left staged in `ws` (call only while holding its lock).
pub fn remove_leftovers(ws: &Workspace) {
    let _ = fs::remove_dir_all(ws.meta_dir().join(INCOMING));
}

/// A stage and the paths to stage in it: those [`Stage::put`] is called for.
#[derive(Clone, Copy)]
pub struct Staging<'a> {
    /// Where.
    pub stage: &'a Stage,
    /// Which paths.
    pub wanted: &'a (dyn Fn(&[u8]) -> bool + Sync),
}
