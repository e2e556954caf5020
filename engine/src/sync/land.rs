//! New remote files put in place while the run still reads the others (see
//! docs/architecture.md, "Files put in place as they are read").
//!
//! A file staged as it is read ([`super::stage`]) used to wait for the apply to rename it
//! into place. Where the plan can only say "write it there" (nothing at its path in the
//! workspace, nothing at the last sync, every directory above it one the workspace has or
//! one new on the share that is not here either), the thread that staged it renames it into
//! place at once, with `RENAME_NOREPLACE`, making the new directories above it as the step
//! would (with the share's mode, owner-writable). The rename is the step's precondition, as
//! in the apply: a path taken meanwhile keeps what is there, and the file stays staged.
//!
//! Its step then only records the stat taken after the rename. What no step takes (the
//! run failed before the apply, the plan left the path out, the budget refused it) is
//! removed when the run ends, if it is still as it was put there; so are the directories
//! made for it, if empty. A run the remote left before the loop reached a step records the
//! step done all the same: the file is there.
//!
//! A kill leaves the files in place and unrecorded: taken as they are, the next run would
//! see files added here, and push back to the share one deleted there meanwhile. So each is
//! written in a log ([`LOG`], beside the stage) before it is put in place, and so is each
//! directory made; the log goes once the run's commit is made. The next run that writes
//! finds it ([`recover`]) before it looks at the workspace, and removes what the log names
//! that is still as it was put there and that the last commit does not hold: the kill then
//! left nothing in the workspace, as it did before files were put in place as they were
//! read.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cachesync_objects::Flat;

use crate::index::Stat;
use crate::paths::split_parent;

/// The log of what a run put in place, under the workspace's metadata directory.
pub const LOG: &str = "landed";

/// What a directory above a file to put in place is, as the run saw it before reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Above {
    /// A directory in the workspace.
    Here,
    /// New on the share (with this mode), and nothing here nor at the last sync: made when
    /// a file goes in it.
    Make(u32),
    /// Anything else: a file below it is left to the apply.
    No,
}

/// Files (and directories) put in place ahead of their steps, until a step takes them.
pub struct Landing {
    /// The workspace's root, opened: every directory a file goes into is opened beneath
    /// it, through no symlink ([`open_beneath`]).
    root_fd: OwnedFd,
    /// The log ([`LOG`]), appended to before each file goes in place and after each
    /// directory is made, and how long it is; and where it is.
    log: Mutex<(fs::File, u64)>,
    log_path: PathBuf,
    /// The staged file's key ([`super::stage`]: it names the path too) → its stat once in
    /// place. (The paths are in the log: a million of them are not held twice.)
    files: Mutex<HashMap<[u8; 16], Stat>>,
    /// Directories made for them.
    dirs: Mutex<HashSet<Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Landing {
    /// Puts files in place in the workspace at `root`, logged in `log` (a new log: what a
    /// killed run logged there was recovered first), or `None` when the log cannot be made.
    pub fn new(root: &Path, log_path: &Path) -> Option<Landing> {
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(log_path)
            .ok()?;
        let len = log.metadata().ok()?.len();
        let root_fd = open_root(root)?;
        Some(Landing {
            root_fd,
            log: Mutex::new((log, len)),
            log_path: log_path.to_path_buf(),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashSet::new()),
        })
    }

    /// Appends one record to the log: whether it was. One cut short (a full disk) is cut
    /// off again, so that the records after it read as written.
    fn note(&self, record: &Record) -> bool {
        let bytes = record.encode();
        let mut log = lock(&self.log);
        let (file, len) = &mut *log;
        if *len == u64::MAX {
            return false;
        }
        if file.write(&bytes).is_ok_and(|n| n == bytes.len()) {
            *len += bytes.len() as u64;
            return true;
        }
        // Nothing more goes in place if the log cannot be made whole again.
        if file.set_len(*len).is_err() {
            *len = u64::MAX;
        }
        false
    }

    /// Renames the staged file `staged` (key `key`) to `rel`, if every directory above it
    /// is one (`above`), making those to make; whether it is in place now.
    pub fn land(
        &self,
        rel: &[u8],
        key: [u8; 16],
        staged: &Path,
        above: &dyn Fn(&[u8]) -> Above,
    ) -> bool {
        let mut make = Vec::new();
        for (i, _) in rel.iter().enumerate().filter(|(_, &b)| b == b'/') {
            match above(&rel[..i]) {
                Above::Here => {}
                Above::Make(mode) => make.push((&rel[..i], mode)),
                Above::No => return false,
            }
        }
        // Only in directories here since the scan, or made by this run: not in one made
        // since by someone else.
        if !make.is_empty() && !self.make_dirs(&make) {
            return false;
        }
        let Some((dir, name)) = parent_of(&self.root_fd, rel) else {
            return false;
        };
        let Ok(md) = fs::symlink_metadata(staged) else {
            return false;
        };
        if !self.note(&Record::File(rel.to_vec(), Seen::of(&md), key)) {
            return false;
        }
        crate::failpoint::hit("before-landing");
        let renamed = rustix::fs::renameat_with(
            rustix::fs::CWD,
            staged,
            &dir,
            name,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        if renamed.is_err() {
            return false;
        }
        crate::failpoint::hit("landed");
        match stat_at(&dir, name) {
            Some(stat) => {
                lock(&self.files).insert(key, stat);
                true
            }
            None => {
                // Not known as it is: not left there unrecorded.
                let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
                false
            }
        }
    }

    /// Makes the directories `make` (outermost first) that this run has not made yet:
    /// whether each is one this run made (one there since the scan is someone else's).
    fn make_dirs(&self, make: &[(&[u8], u32)]) -> bool {
        // Held throughout, so that a directory another thread is making is seen as made.
        let mut dirs = lock(&self.dirs);
        for &(rel, mode) in make {
            if dirs.contains(rel) {
                continue;
            }
            let Some((parent, name)) = parent_of(&self.root_fd, rel) else {
                return false;
            };
            if rustix::fs::mkdirat(&parent, name, rustix::fs::Mode::from_raw_mode(0o700)).is_err() {
                return false;
            }
            // Logged once made: a kill before leaves an empty directory that the share
            // has too, nothing the next run would take for the user's.
            let noted = self.note(&Record::Dir(rel.to_vec()));
            dirs.insert(rel.to_vec());
            let set = open_beneath(&self.root_fd, rel, true).and_then(|d| {
                rustix::fs::fchmod(&d, rustix::fs::Mode::from_raw_mode(mode | 0o700))
                    .map_err(Into::into)
            });
            if !noted || set.is_err() {
                return false;
            }
        }
        true
    }

    /// Whether the file with key `key` is in place at `rel`.
    pub fn holds(&self, key: &[u8; 16]) -> bool {
        lock(&self.files).contains_key(key)
    }

    /// The stat of the file with key `key` in place at `rel`, for its step: no one else
    /// gets it, and it is not removed.
    pub fn take(&self, key: &[u8; 16]) -> Option<Stat> {
        lock(&self.files).remove(key)
    }

    /// Whether the directory `rel` was made here.
    pub fn made(&self, rel: &[u8]) -> bool {
        lock(&self.dirs).contains(rel)
    }

    /// Takes the directory `rel` for its step: whether it was made here.
    pub fn take_dir(&self, rel: &[u8]) -> bool {
        lock(&self.dirs).remove(rel)
    }

    /// Whether nothing is in place that no step took.
    pub fn is_empty(&self) -> bool {
        lock(&self.files).is_empty() && lock(&self.dirs).is_empty()
    }

    /// Removes what no step took: each file still as it was put there (one changed since
    /// is someone's, and stays), then each directory made, deepest first, if empty.
    pub fn remove_untaken(&self) {
        let untaken = std::mem::take(&mut *lock(&self.files));
        if !untaken.is_empty() {
            let log = fs::read(&self.log_path).unwrap_or_default();
            for record in Record::decode_all(&log) {
                let Record::File(rel, _, key) = record else {
                    continue;
                };
                let Some(stat) = untaken.get(&key) else {
                    continue;
                };
                remove_if(&self.root_fd, &rel, |now| same_file(now, stat));
            }
        }
        let mut dirs: Vec<Vec<u8>> = std::mem::take(&mut *lock(&self.dirs)).into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.iter().filter(|&&b| b == b'/').count()));
        for rel in dirs {
            remove_dir(&self.root_fd, &rel);
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.remove_untaken();
    }
}

/// What the log says of a file put in place: what rename keeps of it (not its ctime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    mode: u32,
}

impl From<&Stat> for Seen {
    fn from(s: &Stat) -> Seen {
        Seen {
            ino: s.ino,
            size: s.size,
            mtime_ns: s.mtime_ns,
            mode: s.mode,
        }
    }
}

impl Seen {
    fn of(md: &fs::Metadata) -> Seen {
        Seen {
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            mode: md.mode(),
        }
    }
}

/// One entry of the log: a file (its path, what it was, its staged key), a directory.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    File(Vec<u8>, Seen, [u8; 16]),
    Dir(Vec<u8>),
}

impl Record {
    /// `F` or `D`, the path's length (u32) and the path, and for a file its inode, size,
    /// mtime and mode and its key; little-endian.
    fn encode(&self) -> Vec<u8> {
        let (tag, path) = match self {
            Record::File(p, ..) => (b'F', p),
            Record::Dir(p) => (b'D', p),
        };
        let mut b = Vec::with_capacity(path.len() + 49);
        b.push(tag);
        b.extend_from_slice(&(path.len() as u32).to_le_bytes());
        b.extend_from_slice(path);
        if let Record::File(_, s, key) = self {
            b.extend_from_slice(&s.ino.to_le_bytes());
            b.extend_from_slice(&s.size.to_le_bytes());
            b.extend_from_slice(&s.mtime_ns.to_le_bytes());
            b.extend_from_slice(&s.mode.to_le_bytes());
            b.extend_from_slice(key);
        }
        b
    }

    /// The records of a log, up to the first that is not whole (a kill mid-write).
    fn decode_all(mut b: &[u8]) -> Vec<Record> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (b.get(..n)?, b.get(n..)?);
            *b = rest;
            Some(head)
        }
        fn num<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
            take(b, N)?.try_into().ok()
        }
        let mut out = Vec::new();
        let one = |b: &mut &[u8]| -> Option<Record> {
            let tag = take(b, 1)?[0];
            let len = u32::from_le_bytes(num(b)?) as usize;
            let path = take(b, len)?.to_vec();
            match tag {
                b'D' => Some(Record::Dir(path)),
                b'F' => Some(Record::File(
                    path,
                    Seen {
                        ino: u64::from_le_bytes(num(b)?),
                        size: u64::from_le_bytes(num(b)?),
                        mtime_ns: i64::from_le_bytes(num(b)?),
                        mode: u32::from_le_bytes(num(b)?),
                    },
                    num(b)?,
                )),
                _ => None,
            }
        };
        while let Some(r) = one(&mut b) {
            out.push(r);
        }
        out
    }
}

/// What a killed run put in place that the last commit does not hold.
pub struct Leftovers {
    /// The files still as they were put there.
    pub files: Vec<Vec<u8>>,
    /// The directories made for them, deepest first.
    pub dirs: Vec<Vec<u8>>,
    /// What each file was (as `files`).
    seen: Vec<Seen>,
}

/// The [`Leftovers`] in the workspace at `root` of a killed run that logged at `log`, given
/// the last commit (`base`); `None` when there is no log.
pub fn leftovers(root: &Path, log: &Path, base: &Flat) -> Option<Leftovers> {
    let bytes = fs::read(log).ok()?;
    let root = open_root(root)?;
    let (mut files, mut dirs, mut seens) = (Vec::new(), Vec::new(), Vec::new());
    for record in Record::decode_all(&bytes) {
        match record {
            Record::File(rel, seen, _) if !base.contains_key(&rel) => {
                let same = parent_of(&root, &rel)
                    .and_then(|(dir, name)| stat_at(&dir, name))
                    .is_some_and(|now| Seen::from(&now) == seen);
                if same {
                    files.push(rel);
                    seens.push(seen);
                }
            }
            Record::Dir(rel) if !base.contains_key(&rel) => dirs.push(rel),
            _ => {}
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.iter().filter(|&&b| b == b'/').count()));
    Some(Leftovers {
        files,
        dirs,
        seen: seens,
    })
}

/// Removes the [`leftovers`]: each file, then each directory if empty; then the log. (Call
/// before the workspace is looked at, holding its lock.)
pub fn recover(root: &Path, log: &Path, base: &Flat) {
    let Some(Leftovers { files, dirs, seen }) = leftovers(root, log, base) else {
        return;
    };
    let Some(root) = open_root(root) else { return };
    for (rel, seen) in files.iter().zip(seen) {
        remove_if(&root, rel, |now| Seen::from(now) == seen);
    }
    for rel in dirs {
        remove_dir(&root, &rel);
    }
    let _ = fs::remove_file(log);
}

/// The workspace's root at `root`, opened to find things beneath it.
fn open_root(root: &Path) -> Option<OwnedFd> {
    use rustix::fs::OFlags;
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
}

/// The directory `rel` (`""` for the root) beneath `root`, opened (`O_PATH`, or to read
/// with `read`) without following a symlink on the way and without leaving it: a
/// directory swapped for a symlink since the scan is not gone through.
fn open_beneath(root: &OwnedFd, rel: &[u8], read: bool) -> std::io::Result<OwnedFd> {
    use rustix::fs::{OFlags, ResolveFlags};
    let path = if rel.is_empty() { b".".as_slice() } else { rel };
    let how = if read { OFlags::RDONLY } else { OFlags::PATH };
    rustix::fs::openat2(
        root,
        std::ffi::OsStr::from_bytes(path),
        how | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )
    .map_err(Into::into)
}

/// The directory of `rel` beneath `root`, opened as [`open_beneath`] does, and `rel`'s name
/// in it.
fn parent_of<'a>(root: &OwnedFd, rel: &'a [u8]) -> Option<(OwnedFd, &'a std::ffi::OsStr)> {
    let (parent, name) = split_parent(rel);
    let dir = open_beneath(root, parent, false).ok()?;
    Some((dir, std::ffi::OsStr::from_bytes(name)))
}

/// The stat of `name` in `dir`, not following a symlink.
fn stat_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> Option<Stat> {
    let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(Stat {
        size: st.st_size as u64,
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
        ino: st.st_ino as u64,
        mode: st.st_mode as u32,
        recorded_ns: crate::now_ns(),
    })
}

/// Removes the file `rel` beneath `root` if its stat is as `keep_if` wants.
fn remove_if(root: &OwnedFd, rel: &[u8], wanted: impl Fn(&Stat) -> bool) {
    if let Some((dir, name)) = parent_of(root, rel) {
        if stat_at(&dir, name).is_some_and(|now| wanted(&now)) {
            let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
        }
    }
}

/// Removes the directory `rel` beneath `root`, if it is empty.
fn remove_dir(root: &OwnedFd, rel: &[u8]) {
    if let Some((dir, name)) = parent_of(root, rel) {
        let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::REMOVEDIR);
    }
}

/// Whether two stats are of the same file, unchanged.
fn same_file(a: &Stat, b: &Stat) -> bool {
    (a.ino, a.size, a.mtime_ns, a.ctime_ns, a.mode)
        == (b.ino, b.size, b.mtime_ns, b.ctime_ns, b.mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn staged(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, body).expect("write");
        p
    }

    /// A file goes in place only where every directory above it is one here or one to
    /// make; those are made with the share's mode; a path taken keeps what is there; what
    /// no step took is removed, unless it changed since, and so are the directories made.
    #[test]
    fn files_land_only_under_directories_here_or_new_and_what_is_not_taken_goes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (root, stage) = (tmp.path().join("ws"), tmp.path().join("stage"));
        fs::create_dir_all(root.join("here")).expect("mkdir");
        fs::create_dir(&stage).expect("mkdir");
        fs::write(root.join("here/taken"), "mine").expect("write");
        fs::write(root.join("file"), "a file").expect("write");
        // Made since the scan, by someone else: nothing goes in it.
        fs::create_dir(root.join("theirs")).expect("mkdir");
        // A directory the scan saw, swapped since for a symlink out of the workspace.
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("sub")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("swapped")).expect("symlink");
        let above = |p: &[u8]| match p {
            b"here" | b"swapped" | b"swapped/sub" => Above::Here,
            b"new" => Above::Make(0o750),
            b"new/deeper" | b"theirs" => Above::Make(0o755),
            _ => Above::No,
        };
        let l = Landing::new(&root, &tmp.path().join("log")).expect("a log");
        let k = |n: u8| [n; 16];
        assert!(l.land(b"here/a", k(1), &staged(&stage, "1", b"one"), &above));
        assert!(l.land(b"new/deeper/b", k(2), &staged(&stage, "2", b"two"), &above));
        assert!(l.land(b"new/c", k(3), &staged(&stage, "3", b"three"), &above));
        let taken = staged(&stage, "4", b"theirs");
        assert!(!l.land(b"here/taken", k(4), &taken, &above));
        assert!(taken.exists(), "a file not put in place stays staged");
        assert_eq!(fs::read(root.join("here/taken")).expect("read"), b"mine");
        let under_file = staged(&stage, "5", b"five");
        assert!(!l.land(b"file/x", k(5), &under_file, &above));
        assert!(!l.land(b"other/x", k(5), &under_file, &above));
        assert!(!l.land(b"theirs/x", k(5), &under_file, &above));
        assert!(!l.land(b"swapped/x", k(5), &under_file, &above));
        assert!(!l.land(b"swapped/sub/x", k(5), &under_file, &above));
        for out in ["x", "sub/x"] {
            assert!(
                !outside.join(out).exists(),
                "put in place out of the workspace"
            );
        }
        assert!(under_file.exists());
        assert_eq!(fs::read_dir(root.join("theirs")).expect("ls").count(), 0);

        let mode = |p: &str| {
            fs::metadata(root.join(p))
                .expect("stat")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("new"), 0o750);
        assert_eq!(mode("new/deeper"), 0o755);
        assert_eq!(fs::read(root.join("new/deeper/b")).expect("read"), b"two");
        assert!(l.holds(&k(1)) && !l.holds(&k(4)));
        assert!(l.take(&k(4)).is_none(), "another key");
        let stat = l.take(&k(1)).expect("in place");
        assert_eq!(stat.size, 3);
        assert!(l.take(&k(1)).is_none(), "taken once");
        assert!(l.take_dir(b"new") && !l.take_dir(b"new"));
        // new/c changed since it was put there: someone's now, it stays; new/deeper/b goes,
        // and new/deeper with it; new was taken by its step.
        fs::write(root.join("new/c"), "edited").expect("write");
        assert!(!l.is_empty());
        l.remove_untaken();
        assert!(l.is_empty());
        assert!(root.join("here/a").exists(), "taken by its step");
        assert_eq!(fs::read(root.join("new/c")).expect("read"), b"edited");
        assert!(!root.join("new/deeper").exists());
        assert!(root.join("new").exists());
    }

    /// What a killed run put in place is removed by the next from what its log names,
    /// unless it changed since or the last commit holds it; the directories made go if
    /// empty; a log cut short by the kill is read up to its last whole record.
    #[test]
    fn what_a_killed_run_put_in_place_is_removed_unless_changed_or_committed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (root, stage, log) = (
            tmp.path().join("ws"),
            tmp.path().join("stage"),
            tmp.path().join("log"),
        );
        fs::create_dir_all(root.join("here")).expect("mkdir");
        fs::create_dir(&stage).expect("mkdir");
        let above = |p: &[u8]| match p {
            b"here" => Above::Here,
            b"new" | b"kept" => Above::Make(0o755),
            _ => Above::No,
        };
        let l = Landing::new(&root, &log).expect("a log");
        for (i, rel) in ["here/a", "here/edited", "here/committed", "new/b", "kept/c"]
            .iter()
            .enumerate()
        {
            let body = format!("file {i}");
            let staged = staged(&stage, &i.to_string(), body.as_bytes());
            assert!(
                l.land(rel.as_bytes(), [i as u8; 16], &staged, &above),
                "{rel}"
            );
        }
        // Killed: nothing of it runs again.
        std::mem::forget(l);
        fs::write(root.join("here/edited"), "edited since").expect("write");
        fs::write(root.join("kept/mine"), "made here since").expect("write");
        // A record cut short by the kill.
        let mut cut = Record::File(
            b"here/zz".to_vec(),
            Seen::of(&fs::metadata(&log).expect("stat")),
            [7; 16],
        )
        .encode();
        cut.truncate(9);
        fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open")
            .write_all(&cut)
            .expect("append");
        let mut committed =
            cachesync_objects::Entry::new(b"committed", cachesync_objects::EntryKind::File);
        committed.size = 6;
        let base = Flat::from_vec(vec![(b"here/committed".to_vec(), committed)]);

        recover(&root, &log, &base);
        assert!(!root.join("here/a").exists());
        assert!(!root.join("new").exists(), "emptied, made by the run: gone");
        assert_eq!(
            fs::read(root.join("here/edited")).expect("read"),
            b"edited since"
        );
        assert!(root.join("here/committed").exists());
        assert!(!root.join("kept/c").exists());
        assert!(root.join("kept/mine").exists(), "not empty: stays");
        assert!(!log.exists());
    }

    #[test]
    fn records_read_back_as_written() {
        let seen = Seen {
            ino: 7,
            size: 1 << 40,
            mtime_ns: -5,
            mode: 0o100_644,
        };
        let records = vec![
            Record::File(b"a/b\nc".to_vec(), seen, [9; 16]),
            Record::Dir(Vec::new()),
            Record::Dir(b"d".to_vec()),
        ];
        let bytes: Vec<u8> = records.iter().flat_map(Record::encode).collect();
        assert_eq!(Record::decode_all(&bytes), records);
        assert_eq!(Record::decode_all(&bytes[..bytes.len() - 1]).len(), 2);
    }
}
