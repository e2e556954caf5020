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

use super::land::{Above, Landing};
use crate::index::Stat;
use crate::workspace::Workspace;

/// The directory under the workspace's metadata where files are staged.
pub const INCOMING: &str = "incoming";

/// Files staged for a run's apply.
pub struct Stage {
    dir: PathBuf,
    /// The keys ([`key`]) of the files staged and not yet taken.
    staged: Mutex<HashSet<[u8; 16]>>,
    /// Staged files put in place at once (see [`super::land`]), when the run does that.
    landing: Option<Landing>,
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
    /// not put a staged file in place). `lands`: whether staged files may be put in place
    /// at once ([`Staging::put`]).
    pub fn open(ws: &Workspace, lands: bool) -> Option<Stage> {
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
            landing: lands
                .then(|| Landing::new(&ws.root, &ws.meta_dir().join(super::land::LOG)))
                .flatten(),
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
    /// tree entry `e`: its key, or `None` when a failure staged nothing (the step then
    /// writes the file from the store).
    pub fn put(&self, rel: &[u8], e: &Entry, id: FileId, bytes: &[u8]) -> Option<[u8; 16]> {
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
        if written.is_err() && make_parent(&path) {
            written = write();
        }
        // (A failure, a full disk say, is met again by the step, which reports it.)
        written.ok()?;
        self.lock().insert(k);
        Some(k)
    }

    /// A big file to stage as it is read for `rel` (see [`Incoming`]); `None` when it
    /// cannot be made (the step then writes the file from the store).
    pub fn begin(&self, rel: &[u8]) -> Option<Incoming<'_>> {
        let h = blake3::hash(rel);
        let part = self
            .dir
            .join(crate::paths::hex(&h.as_bytes()[..1]))
            .join(format!("{}.part", crate::paths::hex(&h.as_bytes()[1..16])));
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&part)
        };
        let file = open()
            .ok()
            .or_else(|| make_parent(&part).then(open)?.ok())?;
        Some(Incoming {
            stage: self,
            file: Some(file),
            part,
            end: 0,
        })
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

    /// Whether nothing is staged nor in place that no step took.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty() && self.landing.as_ref().is_none_or(Landing::is_empty)
    }

    /// Whether the file that holds exactly `t` was put in place at `rel` (see
    /// [`super::land`]).
    pub fn landed(&self, rel: &[u8], t: &Entry) -> bool {
        let (Some(l), Some(id)) = (&self.landing, t.file) else {
            return false;
        };
        l.holds(&key(rel, id, t.mode, t.mtime_ns))
    }

    /// For the step that writes `t` (a file entry) at `rel`: the stat of that file if it
    /// was put in place. No one else gets it.
    pub fn take_landed(&self, rel: &[u8], t: &Entry) -> Option<Stat> {
        let l = self.landing.as_ref()?;
        l.take(&key(rel, t.file?, t.mode, t.mtime_ns))
    }

    /// Whether the directory `rel` was made for files put in place.
    pub fn made(&self, rel: &[u8]) -> bool {
        self.landing.as_ref().is_some_and(|l| l.made(rel))
    }

    /// For the step that makes the directory `rel`: whether it was made for files put in
    /// place (the step is then done).
    pub fn take_made(&self, rel: &[u8]) -> bool {
        self.landing.as_ref().is_some_and(|l| l.take_dir(rel))
    }

    /// Removes what no step took (the run's apply is over): staged, or put in place and
    /// unchanged since.
    pub fn clear(&self) {
        let mut staged = self.lock();
        if !staged.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        *staged = HashSet::new();
        if let Some(l) = &self.landing {
            l.remove_untaken();
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Makes the directory `path` goes in, unless it is there (another thread may make it at
/// the same time): whether it is there now.
fn make_parent(path: &std::path::Path) -> bool {
    path.parent()
        .is_some_and(|parent| match fs::create_dir(parent) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
        })
}

/// Removes what a killed run left staged in `ws` (call only while holding its lock).
pub fn remove_leftovers(ws: &Workspace) {
    let _ = fs::remove_dir_all(ws.meta_dir().join(INCOMING));
}

/// A big file staged as it is read: the reader shows it each piece with its offset
/// ([`Incoming::write_at`]; a read started again starts again at 0), then
/// [`Incoming::finish`] names it by what it holds. Dropped unfinished, it is removed.
pub struct Incoming<'s> {
    stage: &'s Stage,
    /// `None` once a write failed: nothing is staged.
    file: Option<fs::File>,
    part: PathBuf,
    /// How far it was written.
    end: u64,
}

impl Incoming<'_> {
    /// Writes `bytes`, read at `pos`.
    pub fn write_at(&mut self, pos: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let Some(f) = &self.file else { return };
        let ok = (pos > 0 || self.end == 0 || f.set_len(0).is_ok())
            && f.write_all_at(bytes, pos).is_ok();
        if ok {
            let before = if pos == 0 { 0 } else { self.end };
            self.end = before.max(pos + bytes.len() as u64);
        } else {
            self.file = None;
        }
    }

    /// The file was read whole as `e` and stored as `id`: staged for the apply. Its key,
    /// or `None` when it was not staged.
    pub fn finish(mut self, rel: &[u8], e: &Entry, id: FileId) -> Option<[u8; 16]> {
        let f = self.file.take()?;
        if self.end != e.size {
            return None;
        }
        let set = crate::localfs::set_mode_and_mtime(&f, e.mode, Some(e.mtime_ns));
        drop(f);
        let k = key(rel, id, e.mode, e.mtime_ns);
        let path = self.stage.path(&k);
        let renamed = || fs::rename(&self.part, &path).is_ok();
        if set.is_ok() && (renamed() || make_parent(&path) && renamed()) {
            self.stage.lock().insert(k);
            return Some(k);
        }
        None
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        // Renamed when finished: then there is nothing here to remove.
        let _ = fs::remove_file(&self.part);
    }
}

/// A stage and the paths to stage in it: those [`Staging::put`] is called for.
#[derive(Clone, Copy)]
pub struct Staging<'a> {
    /// Where.
    pub stage: &'a Stage,
    /// Which paths.
    pub wanted: &'a (dyn Fn(&[u8]) -> bool + Sync),
    /// What each directory above a wanted path is, for putting its file in place at once.
    pub above: &'a (dyn Fn(&[u8]) -> Above + Sync),
}

impl Staging<'_> {
    /// [`Stage::put`], then the file put in place if the stage does that.
    pub fn put(&self, rel: &[u8], e: &Entry, id: FileId, bytes: &[u8]) {
        if let Some(k) = self.stage.put(rel, e, id, bytes) {
            self.land(rel, k);
        }
    }

    /// Puts the file staged for `rel` under `key` in place, if the stage does that.
    pub fn land(&self, rel: &[u8], key: [u8; 16]) {
        let Some(l) = &self.stage.landing else { return };
        if l.land(rel, key, &self.stage.path(&key), self.above) {
            self.stage.lock().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachesync_objects::EntryKind;

    fn stage(root: &std::path::Path) -> Stage {
        let dir = root.join(INCOMING);
        fs::create_dir(&dir).expect("mkdir");
        Stage {
            dir,
            staged: Mutex::new(HashSet::new()),
            landing: None,
        }
    }

    fn bytes(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// A big file read again (it changed while it was read) is staged as the last read
    /// gave it, shorter than the first; one read short of its size is not staged at all;
    /// neither leaves a partial file.
    #[test]
    fn a_big_file_is_staged_as_its_last_read_gave_it_and_only_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let st = stage(tmp.path());
        let (first, second) = (bytes(1, 300), bytes(2, 120));
        let mut e = Entry::new(b"big", EntryKind::File);
        e.mode = 0o640;
        e.mtime_ns = 1_600_000_000_123_456_789;
        e.size = 120;
        let mut i = st.begin(b"d/big").expect("begun");
        i.write_at(0, &first[..200]);
        i.write_at(200, &first[200..]);
        i.write_at(0, &second[..100]);
        i.write_at(100, &second[100..]);
        let id = FileId::of(&second);
        i.finish(b"d/big", &e, id);
        let mut t = e.clone();
        t.file = Some(id);
        assert!(st.holds(b"d/big", &t));
        assert!(!st.holds(b"d/other", &t), "staged for its path only");
        let p = st.take(b"d/big", &t).expect("staged");
        assert_eq!(fs::read(&p).expect("read"), second);
        let md = fs::metadata(&p).expect("stat");
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(md.mtime() * 1_000_000_000 + md.mtime_nsec(), e.mtime_ns);
        assert!(st.take(b"d/big", &t).is_none(), "taken once");
        fs::remove_file(&p).expect("rm");

        let mut i = st.begin(b"d/short").expect("begun");
        i.write_at(0, &first[..10]);
        e.size = 300;
        let id = FileId::of(&first);
        i.finish(b"d/short", &e, id);
        t.file = Some(id);
        t.size = 300;
        assert!(!st.holds(b"d/short", &t));
        let left: Vec<_> = walk(&st.dir);
        assert!(left.is_empty(), "{left:?}");
    }

    /// A staged file is taken only for a target that is exactly what it holds: the same
    /// path, content, mode and mtime; for no other, and only once.
    #[test]
    fn a_staged_file_is_taken_only_for_exactly_what_it_holds() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let st = stage(tmp.path());
        let body = bytes(3, 50);
        let id = FileId::of(&body);
        let mut e = Entry::new(b"f", EntryKind::File);
        e.mode = 0o644;
        e.mtime_ns = 1_700_000_000_000_000_001;
        e.size = 50;
        st.put(b"d/f", &e, id, &body);
        let mut t = e.clone();
        t.file = Some(id);
        let others = [
            Entry {
                mode: 0o755,
                ..t.clone()
            },
            Entry {
                mtime_ns: t.mtime_ns + 1,
                ..t.clone()
            },
            Entry {
                file: Some(FileId::of(b"other")),
                ..t.clone()
            },
            Entry {
                file: None,
                ..t.clone()
            },
        ];
        for other in &others {
            assert!(!st.holds(b"d/f", other), "{other:?}");
            assert!(st.take(b"d/f", other).is_none(), "{other:?}");
        }
        assert!(st.take(b"d/g", &t).is_none(), "another path");
        let p = st.take(b"d/f", &t).expect("staged");
        assert_eq!(fs::read(&p).expect("read"), body);
        assert_eq!(fs::metadata(&p).expect("stat").mode() & 0o7777, 0o644);
        // One not taken is removed when the apply is over.
        st.put(b"d/h", &e, id, &body);
        st.clear();
        assert!(!st.dir.exists(), "cleared");
        assert!(st.take(b"d/h", &t).is_none());
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).expect("list").flatten() {
            if e.file_type().expect("type").is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
