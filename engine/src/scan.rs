//! Scans: the local workspace (through the index) and the remote (many listings in flight).
//!
//! Both produce a flat map of relative path → tree entry. Content is identified by its hash:
//! the local scan hashes only files whose stat changed (see [`crate::index`]); the remote scan
//! reads only files whose size or mtime differ from the last remote snapshot (never because an
//! inode number changed: sshfs renumbers them at every mount), and stores what it reads, so a
//! pull afterwards needs no second transfer.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use cachesync_objects::{Entry, EntryKind, FileId, Store};

use crate::error::{Result, SyncError};

use crate::ignore_rules::IgnoreRules;
use crate::index::IndexEntry;
use crate::paths::{display, join, under};
use crate::remote::RemoteEntry;
use crate::sync::stage::Staging;
use crate::timed::TimedRemote;

mod listings;
pub use listings::{DirKey, DirListing, Listings};

/// A flat tree: relative path → entry.
pub use cachesync_objects::Flat;

/// What the local scan found.
#[derive(Default)]
pub struct LocalScan {
    /// The workspace as it is.
    pub tree: Flat,
    /// Index entries to (re)write.
    pub index_updates: Vec<(Vec<u8>, IndexEntry)>,
    /// Index paths that no longer exist.
    pub index_removals: Vec<Vec<u8>>,
    /// Ignored paths (for `status --ignored`).
    pub ignored: Vec<Vec<u8>>,
    /// Things the user should know (files that kept changing while read).
    pub warnings: Vec<String>,
    /// Paths whose content could not be read consistently: left out of this run.
    pub unstable: Vec<Vec<u8>>,
    /// Files hashed because their stat changed.
    pub hashed: u64,
    /// Remote-only paths, absent here, that the scan filled in from the base.
    pub remote_only: std::collections::HashSet<Vec<u8>>,
    /// Remote-only flags to clear: the file is in the workspace again, or gone from the base.
    pub materialized: Vec<Vec<u8>>,
    /// Remote-only paths where something else was written here: reconciled without a base.
    pub reappeared: std::collections::HashSet<Vec<u8>>,
    /// Names with cachesync's temporary prefix (a killed run's leftovers, or a running
    /// command's files: only a command holding the lock may tidy them).
    pub temporaries: Vec<Vec<u8>>,
    /// When the scan started from the changes a mounted view saw (see
    /// [`crate::fsmonitor`]): how many paths it looked at again. `None`: it walked the whole
    /// tree.
    pub monitored: Option<usize>,
    /// Files with more than one name (hard links): a write through another name changes
    /// them, and a watch on this one's directory says nothing of it.
    pub linked: Vec<Vec<u8>>,
    /// Files found that the index has an entry for (when that is all of the index, none of
    /// its entries is gone).
    pub indexed: usize,
    /// The stat of every entry kept, in brief (what `status` remembers its answer by).
    pub prints: StatPrints,
    /// More entries changed after the time the walk was given than it notes: a walk for
    /// stats only stopped there ([`scan_stats`]; the prints are not whole), a whole walk
    /// went on ([`scan_local`]).
    pub changed_after: bool,
    /// The entries changed after the time the walk was given, with their stat, when they
    /// were few enough: since the last status's answer ([`scan_stats`]), or within
    /// [`crate::index::RACY_WINDOW_NS`] of the walk's start ([`scan_local`]).
    pub changed: Vec<(Vec<u8>, fs::Metadata)>,
    /// A walk given listings ([`LocalWalk::listings`]): the listing of every directory it
    /// walked, the ones it used and the ones it read (with the key stat'ed before reading).
    pub listed: Vec<(Vec<u8>, DirListing)>,
    /// How many directories it took from their listing rather than read.
    pub dirs_reused: usize,
}

/// What a walk saw of each entry it kept, in brief: a print of its path and stat fields. Two
/// walks with the same prints saw the same entries with the same stats (content included,
/// unless a write left every stat field as it was: see [`StatPrints::newest_ns`]).
#[derive(Default)]
pub struct StatPrints {
    /// One print per entry, in no order: its path's xxh3-64 in the high 64 bits, an xxh3-64
    /// of its stat fields and path in the low 64 (see [`path_key`]).
    pub prints: Vec<u128>,
    /// The bytes [`StatPrints::add`] hashes, kept to be reused.
    record: Vec<u8>,
    /// The latest mtime or ctime among the entries, ns: an entry changed within the
    /// timestamp granularity of the walk could change again with every stat field as it was.
    pub newest_ns: i64,
}

/// An entry's mtime and ctime, ns.
fn times_ns(md: &fs::Metadata) -> (i64, i64) {
    (
        md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    )
}

/// The later of an entry's mtime and ctime, ns.
pub(crate) fn changed_ns(md: &fs::Metadata) -> i64 {
    let (mtime, ctime) = times_ns(md);
    mtime.max(ctime)
}

impl StatPrints {
    /// Adds the entry `rel` with stat `md`: the path's key, and an xxh3-64 over the stat
    /// fields and the path laid end to end (a print tells walks apart; it is not content's
    /// integrity, which blake3 keeps). Sorted, two walks' prints pair up by path.
    fn add(&mut self, rel: &[u8], md: &fs::Metadata) {
        self.add_fields(rel, &Fields::of(md));
    }

    fn add_fields(&mut self, rel: &[u8], fields: &Fields) {
        self.prints
            .push(print_fields(&mut self.record, rel, fields));
        self.newest_ns = self.newest_ns.max(fields.changed_ns());
    }

    fn absorb(&mut self, other: StatPrints) {
        self.prints.extend(other.prints);
        self.newest_ns = self.newest_ns.max(other.newest_ns);
    }

    /// One digest of all the prints: the same entries with the same stats give the same
    /// digest, whichever order the walk's threads found them in.
    pub fn digest(&mut self) -> [u8; 32] {
        self.prints.sort_unstable();
        *blake3::hash(&encode_prints(&self.prints)).as_bytes()
    }
}

/// Prints laid out as [`StatPrints::digest`] hashes them: their count, then each, little
/// endian.
pub fn encode_prints(prints: &[u128]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 * prints.len());
    out.extend_from_slice(&(prints.len() as u64).to_le_bytes());
    for p in prints {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out
}

/// The prints [`encode_prints`] laid out; `None` for bytes of another shape.
pub fn decode_prints(bytes: &[u8]) -> Option<Vec<u128>> {
    let (count, rest) = bytes.split_first_chunk::<8>()?;
    let (chunks, tail) = rest.as_chunks::<16>();
    (tail.is_empty() && u64::from_le_bytes(*count) == chunks.len() as u64)
        .then(|| chunks.iter().map(|c| u128::from_le_bytes(*c)).collect())
}

/// The stat fields a print is made of, in its order: mode, owner, group, size, mtime and
/// ctime (ns), inode, links, device (of a device file).
struct Fields([u64; 9]);

impl Fields {
    fn of(md: &fs::Metadata) -> Fields {
        let (mtime, ctime) = times_ns(md);
        Fields([
            u64::from(md.mode()),
            u64::from(md.uid()),
            u64::from(md.gid()),
            md.size(),
            mtime as u64,
            ctime as u64,
            md.ino(),
            md.nlink(),
            md.rdev(),
        ])
    }

    /// The same fields from a statx, as the standard library makes its `Metadata` of one.
    fn of_statx(st: &rustix::fs::Statx) -> Fields {
        Fields([
            u64::from(st.stx_mode),
            u64::from(st.stx_uid),
            u64::from(st.stx_gid),
            st.stx_size,
            listings::ns(st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec) as u64,
            listings::ns(st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec) as u64,
            st.stx_ino,
            u64::from(st.stx_nlink),
            rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        ])
    }

    /// The later of mtime and ctime, ns.
    fn changed_ns(&self) -> i64 {
        (self.0[4] as i64).max(self.0[5] as i64)
    }
}

/// The print of the entry `rel` with stat `md` (see [`StatPrints::add`]), made in `record`.
fn print_into(record: &mut Vec<u8>, rel: &[u8], md: &fs::Metadata) -> u128 {
    print_fields(record, rel, &Fields::of(md))
}

/// [`print_into`] of fields.
fn print_fields(record: &mut Vec<u8>, rel: &[u8], fields: &Fields) -> u128 {
    let fields = fields.0;
    record.clear();
    for field in fields {
        record.extend_from_slice(&field.to_le_bytes());
    }
    record.extend_from_slice(rel);
    let stat = xxhash_rust::xxh3::xxh3_64(record);
    u128::from(path_key(rel)) << 64 | u128::from(stat)
}

/// The print of one entry, as a walk makes it.
pub fn print(rel: &[u8], md: &fs::Metadata) -> u128 {
    print_into(&mut Vec::new(), rel, md)
}

/// The key of a path in [`StatPrints::prints`]: the high 64 bits of its entry's print.
pub fn path_key(rel: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(rel)
}

impl LocalScan {
    /// Adds what another thread of the same walk found.
    fn absorb(&mut self, other: LocalScan) {
        self.index_updates.extend(other.index_updates);
        self.ignored.extend(other.ignored);
        self.warnings.extend(other.warnings);
        self.unstable.extend(other.unstable);
        self.hashed += other.hashed;
        self.indexed += other.indexed;
        self.temporaries.extend(other.temporaries);
        self.linked.extend(other.linked);
        self.prints.absorb(other.prints);
        self.changed_after |= other.changed_after;
        self.changed.extend(other.changed);
        self.listed.extend(other.listed);
        self.dirs_reused += other.dirs_reused;
    }

    /// Puts what a walk found in path order (its threads found it in any order): a run
    /// says the same things in the same order whichever thread read what.
    fn sort_findings(&mut self) {
        self.index_updates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.ignored.sort_unstable();
        self.warnings.sort();
        self.unstable.sort_unstable();
        self.temporaries.sort_unstable();
        self.linked.sort_unstable();
        self.changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
}

/// A workspace entry as its stat `md` shows it: [`tree_entry`] of
/// [`crate::fs_remote::entry_from_metadata`] without its copies, and with no remote inode
/// (content and target filled in separately).
pub(crate) fn local_entry(name: &[u8], md: &fs::Metadata) -> Entry {
    let kind = crate::fs_remote::kind_of(md.file_type());
    let mut e = Entry::new(name, kind);
    e.mode = if kind == EntryKind::Symlink {
        0o777
    } else {
        md.mode() & 0o7777
    };
    e.uid = md.uid();
    e.gid = md.gid();
    e.mtime_ns = md.mtime() * 1_000_000_000 + md.mtime_nsec();
    e.size = if kind == EntryKind::Dir { 0 } else { md.size() };
    if matches!(kind, EntryKind::BlockDevice | EntryKind::CharDevice) {
        e.rdev = md.rdev();
    }
    e
}

/// Turns a remote entry into a tree entry (content filled in separately for files).
pub fn tree_entry(r: &RemoteEntry) -> Entry {
    let mut e = Entry::new(&r.name, r.kind);
    e.mode = if r.kind == EntryKind::Symlink {
        0o777
    } else {
        r.mode
    };
    e.uid = r.uid;
    e.gid = r.gid;
    e.mtime_ns = r.mtime_ns;
    e.size = r.size;
    e.target = r.target.clone();
    if matches!(r.kind, EntryKind::BlockDevice | EntryKind::CharDevice) {
        e.rdev = r.rdev;
    }
    e.remote_ino = r.ino;
    e
}

/// The index entry for a file just written or hashed.
pub fn index_entry_of(md: &fs::Metadata, file: cachesync_objects::FileId) -> IndexEntry {
    index_entry(md, file)
}

fn index_entry(md: &fs::Metadata, file: cachesync_objects::FileId) -> IndexEntry {
    crate::index::Stat::of(md).with_file(file)
}

/// Hashes (and stores) a local file, making sure it did not change while it was read.
///
/// # Errors
/// [`SyncError::Io`] when it cannot be read or keeps changing.
pub fn ingest_local(store: &Store, path: &Path) -> Result<(IndexEntry, fs::Metadata)> {
    for _ in 0..3 {
        let before = fs::symlink_metadata(path).map_err(|e| SyncError::io(path, e))?;
        let file = fs::File::open(path).map_err(|e| SyncError::io(path, e))?;
        let (id, size, _) = store
            .ingest_expecting(file, before.size())
            .map_err(|e| match e {
                cachesync_objects::ObjectError::Read(io) => SyncError::io(path, io),
                other => other.into(),
            })?;
        let after = fs::symlink_metadata(path).map_err(|e| SyncError::io(path, e))?;
        let stable = before.size() == after.size()
            && before.mtime() == after.mtime()
            && before.mtime_nsec() == after.mtime_nsec()
            && before.ctime_nsec() == after.ctime_nsec()
            && size == after.size();
        if stable {
            return Ok((index_entry(&after, id), after));
        }
    }
    Err(SyncError::Unstable {
        path: path.display().to_string(),
    })
}

/// The longest path the system takes, its terminating NUL included.
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// Scans the workspace at `root`.
///
/// # Errors
/// I/O errors on directories; store errors.
pub fn scan_local(
    root: &Path,
    rules: &IgnoreRules,
    store: &Store,
    index: &crate::index::Index,
) -> Result<LocalScan> {
    let mut out = LocalScan::default();
    // Gathered, then made into the map at once: a map built from sorted entries has full
    // nodes (one built by inserts in walk order is about half empty). The index's size is
    // a good guess at the workspace's (no copies of a growing list).
    let mut found = Vec::with_capacity(index.len() + index.len() / 8);
    let local = LocalWalk {
        root,
        rules,
        store,
        index,
        contents: true,
        // The entries a status cannot trust the stat of (see `status/memo.rs`), if few.
        changed_after: Some(crate::now_ns().saturating_sub(crate::index::RACY_WINDOW_NS)),
        keep_changed: RECENT_KEPT,
        listings: None,
    };
    local.walk(Vec::new(), &mut found, &mut out)?;
    // Sorted first, in place and unstably (paths are unique): the map's own stable sort of
    // 100,000 unsorted entries cost more (a status of 100,000 files: 1.43 s -> 1.26 s).
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.tree = found.into_iter().collect();
    if out.indexed < index.len() {
        for path in index.keys() {
            if !out.tree.contains_key(path) {
                out.index_removals.push(path.clone());
            }
        }
        out.index_removals.sort_unstable();
    }
    Ok(out)
}

/// How many entries changed within [`crate::index::RACY_WINDOW_NS`] of its start a walk of
/// the workspace notes ([`LocalScan::changed`]), per thread.
pub const RECENT_KEPT: usize = 256;

/// Walks the workspace at `root` for the stats of its entries only ([`LocalScan::prints`];
/// no entries made, no file read, no index needed), and what the walk notes on its way
/// (ignored paths, temporaries, paths too deep).
///
/// # Errors
/// I/O errors on directories.
///
/// With `changed_after`, the entries kept whose mtime or ctime is later go to
/// [`LocalScan::changed`] (a walk whose newest entry was then cannot have printed them
/// so), up to `keep_changed` of them per thread: at the next, the walk stops
/// ([`LocalScan::changed_after`] set) and its prints are not made whole.
///
/// With `listings`, a directory whose listing still holds is not read, and every
/// directory's listing goes to [`LocalScan::listed`] (see `scan/listings.rs`).
pub fn scan_stats(
    root: &Path,
    rules: &IgnoreRules,
    store: &Store,
    changed_after: Option<i64>,
    keep_changed: usize,
    listings: Option<&Listings>,
) -> Result<LocalScan> {
    let mut out = LocalScan::default();
    let walk = LocalWalk {
        root,
        rules,
        store,
        index: &crate::index::Index::default(),
        contents: false,
        changed_after,
        keep_changed,
        listings,
    };
    walk.walk(Vec::new(), &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// What a walk of the workspace (or of part of it) reads with.
pub struct LocalWalk<'a> {
    /// The workspace root.
    pub root: &'a Path,
    /// What is left out.
    pub rules: &'a IgnoreRules,
    /// Where content goes.
    pub store: &'a Store,
    /// The stat cache.
    pub index: &'a crate::index::Index,
    /// Whether entries are made (with their content, from the index or hashed now), or
    /// only their stats printed ([`LocalScan::prints`]).
    pub contents: bool,
    /// A walk for stats only: note the entries changed after this (ns), and stop at the
    /// first past [`LocalWalk::keep_changed`] of them (see [`scan_stats`]).
    pub changed_after: Option<i64>,
    /// How many entries changed after [`LocalWalk::changed_after`] a thread notes.
    pub keep_changed: usize,
    /// A walk for stats only: the directory listings kept (see `scan/listings.rs`). Each
    /// directory whose listing still holds is not read; the others are read and listed
    /// ([`LocalScan::listed`]).
    pub listings: Option<&'a Listings>,
}

impl LocalWalk<'_> {
    /// Walks the directory `top` (the root when empty) and everything under it, adding
    /// every entry found under it (not `top` itself) to `found`, in no particular order.
    /// Directories are shared out among [`walk_threads`] threads: the walk is a stat per
    /// entry (and a hash per changed file), which a second core halves.
    ///
    /// # Errors
    /// I/O errors on directories; store errors.
    pub fn walk(
        &self,
        top: Vec<u8>,
        found: &mut Vec<(Vec<u8>, Entry)>,
        out: &mut LocalScan,
    ) -> Result<()> {
        let queue = WalkQueue {
            state: Mutex::new(QueueState {
                dirs: vec![top],
                busy: 0,
                failed: false,
            }),
            cv: Condvar::new(),
        };
        // One list for all threads, each directory's entries added at once: a list per
        // thread, grown by doubling and then copied into this one, was the peak of a
        // no-change sync of 100,000 files (41 MB of 169).
        let sink = Mutex::new(found);
        let parts: Vec<Result<LocalScan>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..walk_threads())
                .map(|_| s.spawn(|| self.walk_worker(&queue, &sink)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a workspace walk thread does not panic"))
                .collect()
        });
        for part in parts {
            out.absorb(part?);
        }
        out.sort_findings();
        Ok(())
    }

    /// One thread of [`LocalWalk::walk`]: takes directories from `queue` until none is left
    /// and none is being read (or another thread failed), adding their entries to `sink`.
    fn walk_worker(
        &self,
        queue: &WalkQueue,
        sink: &Mutex<&mut Vec<(Vec<u8>, Entry)>>,
    ) -> Result<LocalScan> {
        let mut found = Vec::new();
        let mut out = LocalScan::default();
        let mut subdirs = Vec::new();
        while let Some(dir) = queue.take() {
            let done = self.read_dir(dir, &mut found, &mut subdirs, &mut out);
            if !found.is_empty() {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut found);
            }
            // A walk for stats only that found more entries changed after its bound than
            // it notes stops every thread, as an error does (a whole walk goes on).
            let stop = out.changed_after && !self.contents;
            queue.give(&mut subdirs, done.is_err() || stop);
            done?;
        }
        Ok(out)
    }

    /// Reads the directory `dir`: each entry in it goes to `found`, each directory in it
    /// also to `subdirs`.
    fn read_dir(
        &self,
        dir: Vec<u8>,
        found: &mut Vec<(Vec<u8>, Entry)>,
        subdirs: &mut Vec<Vec<u8>>,
        out: &mut LocalScan,
    ) -> Result<()> {
        let abs = under(self.root, &dir);
        let mut listing = None;
        if let Some(listings) = self.listings.filter(|_| !self.contents) {
            // Stat'ed before it is read: the names read are at least as new as the key. A
            // directory that cannot be stat'ed is read, and the reading says what it is.
            if let Ok(key) = DirKey::of(&abs) {
                if let Some(kept) = listings.get(&dir, &key) {
                    if self.read_listed(&dir, &abs, kept, subdirs, out) {
                        out.dirs_reused += 1;
                        out.listed.push((dir, kept.clone()));
                        return Ok(());
                    }
                }
                listing = Some(DirListing::new(key));
            }
        }
        let rd = match fs::read_dir(&abs) {
            Ok(rd) => rd,
            // Deleted since its parent was read: its subtree is left out of this run (its
            // files are not taken for deletions; the next run sees what is there).
            Err(e) if !dir.is_empty() && e.kind() == std::io::ErrorKind::NotFound => {
                out.warnings.push(format!(
                    "{} was deleted while it was being read; it is left for the next run",
                    display(&dir)
                ));
                out.unstable.push(dir);
                return Ok(());
            }
            Err(e) => return Err(SyncError::io(&abs, e)),
        };
        // A walk for stats only makes each path in this buffer (no allocation per entry).
        let mut rel = Vec::new();
        for item in rd {
            let item = item.map_err(|e| SyncError::io(&abs, e))?;
            if let Some(l) = listing.as_mut() {
                l.push(item.file_name().as_bytes());
            }
            // Relative to the open directory (fstatat, not following symlinks): no path
            // walk per entry.
            let md = match item.metadata() {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SyncError::io(item.path(), e)),
            };
            child_path(&mut rel, &dir, item.file_name().as_bytes());
            if !self.contents {
                if self.keep(&rel, &md, out) {
                    if !self.note_changed(&rel, &md, out) {
                        return Ok(());
                    }
                    out.prints.add(&rel, &md);
                    if md.is_dir() {
                        subdirs.push(rel.clone());
                    }
                }
                continue;
            }
            let rel = rel.clone();
            if let Some(entry) = self.entry(&rel, &md, out)? {
                self.note_changed(&rel, &md, out);
                out.prints.add(&rel, &md);
                if entry.kind == EntryKind::Dir {
                    subdirs.push(rel.clone());
                }
                found.push((rel, entry));
            }
        }
        if let Some(l) = listing {
            out.listed.push((dir, l));
        }
        Ok(())
    }

    /// Walks the directory `dir` (at `abs`) from its listing `kept` instead of reading it:
    /// a stat per name. `false`, with nothing noted, when a name is gone or changed after
    /// the walk's bound ([`LocalWalk::changed_after`]): the directory is then read.
    fn read_listed(
        &self,
        dir: &[u8],
        abs: &Path,
        kept: &DirListing,
        subdirs: &mut Vec<Vec<u8>>,
        out: &mut LocalScan,
    ) -> bool {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(fd) = rustix::fs::openat(rustix::fs::CWD, abs, flags, Mode::empty()) else {
            return false;
        };
        let mut stats = Vec::new();
        for name in kept.names() {
            let Ok(st) = rustix::fs::statx(
                &fd,
                name,
                AtFlags::SYMLINK_NOFOLLOW,
                StatxFlags::BASIC_STATS,
            ) else {
                return false;
            };
            let fields = Fields::of_statx(&st);
            let is_dir = FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Directory;
            // The walk notes such entries, when it keeps them, with their `Metadata`: the
            // reading gives it.
            if self.changed_after.is_some_and(|t| fields.changed_ns() > t) {
                let rel = join(dir, name);
                if !IgnoreRules::is_internal(&rel) && !self.rules.is_ignored(&rel, is_dir) {
                    return false;
                }
            }
            stats.push((name, fields, is_dir));
        }
        let mut rel = Vec::new();
        for (name, fields, is_dir) in stats {
            child_path(&mut rel, dir, name);
            if self.keep_kind(&rel, is_dir, out) {
                out.prints.add_fields(&rel, &fields);
                if is_dir {
                    subdirs.push(rel.clone());
                }
            }
        }
        true
    }

    /// Notes the entry `rel` (stat `md`) in [`LocalScan::changed`] when it changed after
    /// [`LocalWalk::changed_after`], if there is room; else sets
    /// [`LocalScan::changed_after`]. `false`: a walk for stats only stops here.
    fn note_changed(&self, rel: &[u8], md: &fs::Metadata, out: &mut LocalScan) -> bool {
        if self.changed_after.is_some_and(|t| changed_ns(md) > t) {
            if out.changed.len() < self.keep_changed {
                out.changed.push((rel.to_vec(), md.clone()));
            } else {
                out.changed_after = true;
                return self.contents;
            }
        }
        true
    }

    /// Whether the workspace path `rel` (stat `md`) is walked: not when it is ignored,
    /// cachesync's own, a temporary or too deep (noted in `out`).
    fn keep(&self, rel: &[u8], md: &fs::Metadata, out: &mut LocalScan) -> bool {
        self.keep_kind(rel, md.is_dir(), out)
    }

    /// [`LocalWalk::keep`] of an entry that is a directory or not.
    fn keep_kind(&self, rel: &[u8], is_dir: bool, out: &mut LocalScan) -> bool {
        if too_deep(rel, self.root, out) {
            return false;
        }
        if IgnoreRules::is_internal(rel) || self.rules.is_ignored(rel, is_dir) {
            let name = crate::paths::split_parent(rel).1;
            if name.starts_with(crate::ignore_rules::TMP_PREFIX.as_bytes()) {
                out.temporaries.push(rel.to_vec());
            } else if !IgnoreRules::is_internal(rel) {
                out.ignored.push(rel.to_vec());
            }
            return false;
        }
        true
    }

    /// The entry for the workspace path `rel` (stat `md`), as a walk records it; `None` when
    /// it is left out (ignored, cachesync's own, a temporary, too deep, or a file that could
    /// not be read and has no known content), noted in `out`.
    ///
    /// # Errors
    /// I/O errors reading a symlink; store errors.
    pub fn entry(
        &self,
        rel: &[u8],
        md: &fs::Metadata,
        out: &mut LocalScan,
    ) -> Result<Option<Entry>> {
        if !self.keep(rel, md, out) {
            return Ok(None);
        }
        let name = crate::paths::split_parent(rel).1;
        let mut entry = local_entry(name, md);
        // The absolute path, made only when it is needed (most files are looked at by stat
        // alone).
        let path = || under(self.root, rel);
        if entry.kind == EntryKind::File
            && !file_content(self.store, self.index, rel, &path, md, &mut entry, out)
        {
            return Ok(None);
        }
        if entry.kind == EntryKind::File && md.nlink() > 1 {
            out.linked.push(rel.to_vec());
        }
        if entry.kind == EntryKind::Symlink {
            let path = path();
            entry.target = fs::read_link(&path)
                .map_err(|e| SyncError::io(&path, e))?
                .into_os_string()
                .as_bytes()
                .to_vec();
        }
        Ok(Some(entry))
    }
}

/// Makes in `rel` the path of the entry `name` of the directory `dir` (the root when
/// empty), reusing its buffer.
fn child_path(rel: &mut Vec<u8>, dir: &[u8], name: &[u8]) {
    rel.clear();
    if !dir.is_empty() {
        rel.extend_from_slice(dir);
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
}

/// How many threads walk the workspace: one per core, at most eight.
fn walk_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// The directories a [`LocalWalk`] has still to read, shared by its threads.
struct WalkQueue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

struct QueueState {
    dirs: Vec<Vec<u8>>,
    /// Threads reading a directory (each may yet add more).
    busy: usize,
    /// A thread failed: the others stop.
    failed: bool,
}

impl WalkQueue {
    /// The next directory to read; `None` when the walk is over.
    fn take(&self) -> Option<Vec<u8>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.failed {
                return None;
            }
            if let Some(dir) = st.dirs.pop() {
                st.busy += 1;
                return Some(dir);
            }
            if st.busy == 0 {
                return None;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends the reading of one directory, handing on the directories found in it.
    fn give(&self, subdirs: &mut Vec<Vec<u8>>, failed: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.busy -= 1;
        st.failed |= failed;
        st.dirs.append(subdirs);
        drop(st);
        self.cv.notify_all();
    }
}

/// True when the workspace path `rel` (under `root`) is deeper than the system lets a path
/// go (a mount of the workspace can make one): left as it is on both sides, every run, with
/// a warning.
pub fn too_deep(rel: &[u8], root: &Path, out: &mut LocalScan) -> bool {
    // The length of `under(root, rel)`, without making it.
    let root = root.as_os_str().as_bytes();
    let sep = usize::from(!rel.is_empty() && root.last() != Some(&b'/'));
    if root.len() + sep + rel.len() < PATH_MAX {
        return false;
    }
    out.warnings.push(format!(
        "skipped {}: its path in the workspace is longer than the system allows; it is left \
         as it is on both sides",
        display(rel)
    ));
    out.unstable.push(rel.to_vec());
    true
}

/// Fills in the content of the workspace file `rel` (at `path`, stat `md`): the index's, when
/// its entry still vouches for the file, else hashed (and stored) now. A file that could not
/// be read is left out of this run (in `unstable`), with its last known content if it has
/// one; `false` when it has none (nothing to list).
fn file_content(
    store: &Store,
    index: &crate::index::Index,
    rel: &[u8],
    path: &dyn Fn() -> PathBuf,
    md: &fs::Metadata,
    entry: &mut Entry,
    out: &mut LocalScan,
) -> bool {
    let fresh = index_entry(md, cachesync_objects::FileId([0; 32]));
    let known = index.get(rel);
    out.indexed += usize::from(known.is_some());
    match known {
        Some(known) if known.still_valid(&fresh) => entry.file = Some(known.file),
        _ => match ingest_local(store, &path()) {
            Ok((ie, md2)) => {
                entry.file = Some(ie.file);
                entry.size = md2.size();
                entry.mtime_ns = ie.mtime_ns;
                out.hashed += 1;
                out.index_updates.push((rel.to_vec(), ie));
            }
            Err(e) => {
                // Not recorded with content it never had: left out of this run.
                out.warnings.push(format!("skipped {}: {e}", display(rel)));
                out.unstable.push(rel.to_vec());
                let Some(known) = index.get(rel) else {
                    return false;
                };
                entry.file = Some(known.file);
                entry.size = known.size;
                entry.mtime_ns = known.mtime_ns;
            }
        },
    }
    true
}

/// Every remote entry found, with its relative path.
pub type Listing = Vec<(Vec<u8>, RemoteEntry)>;

/// Files to read: path, as listed, and the content it is expected to still hold, if any.
type ToFetch = Vec<(Vec<u8>, RemoteEntry, Option<cachesync_objects::FileId>)>;

/// What [`walk_remote`] found.
#[derive(Debug)]
pub struct Walk {
    /// Every entry listed, with its attributes.
    pub entries: Listing,
    /// Directory listings made.
    pub listings: u64,
    /// Directories that were listed in their parent, then were gone when they were to be
    /// listed themselves (deleted during the walk): what is under them is not known this
    /// time.
    pub vanished: Vec<Vec<u8>>,
}

/// Each file read: its path, when its read started (ns), and the outcome.
type Fetched = Vec<(
    Vec<u8>,
    i64,
    Result<(cachesync_objects::FileId, RemoteEntry)>,
)>;

/// What the remote scan found.
#[derive(Default)]
pub struct RemoteScan {
    /// The remote as it is.
    pub tree: Flat,
    /// Temporary files of cachesync writes found on the remote.
    pub temporaries: Vec<Vec<u8>>,
    /// Files read because their stat changed.
    pub fetched: u64,
    /// Bytes read from the remote.
    pub bytes: u64,
    /// Directory listings made.
    pub listings: u64,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Paths left out of this run: content that could not be read consistently, and the
    /// [`RemoteScan::unreadable`] entries.
    pub unstable: Vec<Vec<u8>>,
    /// Entries the listing shows but whose content or target could not be read.
    pub unreadable: Vec<Unreadable>,
    /// The files read whose read time matters, with when each read started (ns): whether
    /// a file's stat can vouch for its content is judged from then (see
    /// [`crate::racy::read_time_matters`]).
    pub read_ns: std::collections::HashMap<Vec<u8>, i64>,
}

/// A remote entry the listing shows but whose content (a file) or target (a symlink) cannot
/// be read: the server refuses it (EPERM, EACCES), or fails on that one entry while it
/// answers for the others. It is left out of the run on both sides, as it was last seen (or
/// absent if never read): never taken for a deletion, never written over. The run does
/// everything else and says it is incomplete; the next run tries the entry again.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unreadable {
    /// The path, displayable.
    pub path: String,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `file` or `symlink`.
    pub kind: &'static str,
    /// What could not be read, and the error.
    pub reason: String,
    /// What to do about it.
    pub remedy: String,
    /// The path's bytes.
    #[serde(skip)]
    pub path_bytes: Vec<u8>,
}

impl Unreadable {
    /// One with its words said (as a walk reports it, or read back from the store).
    pub(crate) fn restored(path: &[u8], kind: EntryKind, reason: String, remedy: String) -> Self {
        Unreadable {
            path: display(path),
            path_hex: std::str::from_utf8(path)
                .is_err()
                .then(|| crate::paths::hex(path)),
            kind: kind.as_str(),
            reason,
            remedy,
            path_bytes: path.to_vec(),
        }
    }

    fn new(path: &[u8], kind: EntryKind, error: &std::io::Error) -> Unreadable {
        let errno = error.raw_os_error();
        let symlink = kind == EntryKind::Symlink;
        // "Permission denied", not "Permission denied (os error 13)".
        let text = error.to_string();
        let text = match text.rfind(" (os error ") {
            Some(i) if errno.is_some() => &text[..i],
            _ => &text,
        };
        let reason = if symlink {
            format!("its target cannot be read ({text})")
        } else {
            format!("it cannot be read ({text})")
        };
        let remedy = if symlink && errno == Some(libc::EPERM) {
            "if the share is an sshfs mount: sshfs refuses symlinks whose target is absolute \
             or contains `..` (its contain_symlinks option), so mount it with \
             `-o no_contain_symlinks`"
        } else if matches!(errno, Some(libc::EPERM | libc::EACCES)) {
            "the server does not let you read it: have its permissions changed there"
        } else if error
            .raw_os_error()
            .is_some_and(|n| crate::remote::is_network_error(&std::io::Error::from_raw_os_error(n)))
        {
            "the server failed on this entry alone (a damaged file?): look at it there"
        } else {
            "look at it on the server"
        };
        Unreadable::restored(
            path,
            kind,
            reason,
            format!("{remedy}; or add it to .cachesyncignore to leave it out"),
        )
    }
}

/// The error that makes a run with unreadable entries incomplete (exit 1), if there are any:
/// it names the first, and `cachesync status` lists them all with what to do.
pub fn unreadable_error(unreadable: &[Unreadable]) -> Option<SyncError> {
    let first = unreadable.first()?;
    let rest = match unreadable.len() - 1 {
        0 => "it is left as it is on both sides until it can be read (`cachesync status` \
              says what to do)"
            .to_string(),
        n => format!(
            "it and {n} other unreadable {} are left as they are on both sides until they can \
             be read (`cachesync status` lists them, with what to do)",
            if n == 1 { "entry" } else { "entries" }
        ),
    };
    Some(SyncError::RemoteIo {
        path: first.path.clone().into(),
        source: std::io::Error::other(format!("{}: {rest}", first.reason)),
    })
}

struct Shared {
    queue: VecDeque<Vec<u8>>,
    busy: usize,
    failed: Option<SyncError>,
    entries: Vec<(Vec<u8>, RemoteEntry)>,
    listings: u64,
    vanished: Vec<Vec<u8>>,
}

/// Walks the remote with `parallel` listings in flight at once, taking attributes from the
/// listings. A directory that cannot be read fails the scan: it is never taken as empty.
///
/// # Errors
/// [`SyncError::Disconnected`] and remote I/O errors.
pub fn walk_remote(remote: &TimedRemote, rules: &IgnoreRules, parallel: usize) -> Result<Walk> {
    let shared = Arc::new((
        Mutex::new(Shared {
            queue: VecDeque::from([Vec::new()]),
            busy: 0,
            failed: None,
            entries: Vec::new(),
            listings: 0,
            vanished: Vec::new(),
        }),
        Condvar::new(),
    ));
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            let shared = Arc::clone(&shared);
            s.spawn(move || {
                let (lock, cv) = &*shared;
                loop {
                    let dir = {
                        let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            if st.failed.is_some() {
                                return;
                            }
                            if let Some(d) = st.queue.pop_front() {
                                st.busy += 1;
                                break d;
                            }
                            if st.busy == 0 {
                                cv.notify_all();
                                return;
                            }
                            st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let result = remote.list(&dir);
                    let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                    st.busy -= 1;
                    st.listings += 1;
                    match result {
                        Ok(list) => {
                            for e in list {
                                let rel = join(&dir, &e.name);
                                if e.kind == EntryKind::Dir
                                    && !IgnoreRules::is_internal(&rel)
                                    && !rules.is_ignored(&rel, true)
                                {
                                    st.queue.push_back(rel.clone());
                                }
                                st.entries.push((rel, e));
                            }
                        }
                        // Gone since its parent was listed: a definite answer about this
                        // directory (not an outage), but not a deletion to act on either.
                        Err(SyncError::RemoteIo { source, .. })
                            if !dir.is_empty() && source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            st.vanished.push(dir);
                        }
                        Err(e) => st.failed = Some(e),
                    }
                    cv.notify_all();
                }
            });
        }
    });
    let shared = Arc::try_unwrap(shared)
        .ok()
        .expect("all scan threads have ended")
        .0
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(e) = shared.failed {
        return Err(e);
    }
    Ok(Walk {
        entries: shared.entries,
        listings: shared.listings,
        vanished: shared.vanished,
    })
}

/// The second half of a remote scan, after [`walk_remote`]: reads (and stores) the files of
/// the walk whose size or mtime differ from `previous` (the last remote snapshot), that were
/// `racy` in it (see [`crate::racy`]), or whose content is not in the store, except
/// remote-only ones. `scan_started_ns` is when the scan started (the racy window is
/// measured from it).
///
/// # Errors
/// [`SyncError::Disconnected`], remote I/O and store errors.
#[allow(clippy::too_many_arguments)]
pub fn fetch_changed(
    remote: &TimedRemote,
    walk: Walk,
    rules: &IgnoreRules,
    store: &Store,
    (previous, scan_started_ns): (&Flat, i64),
    racy: &std::collections::HashSet<Vec<u8>>,
    remote_only: &std::collections::HashSet<Vec<u8>>,
    (parallel, staging): (usize, Option<Staging>),
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RemoteScan> {
    let Walk {
        mut entries,
        listings,
        vanished,
    } = walk;
    // In path order, in place and unstably (paths are unique): the tree made from them at
    // the end then needs no sort of its own (the map's stable sort of 100,000 entries in
    // walk order was a quarter of a no-change sync's look at the listing), and the lookups
    // in `previous` go through it in order.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = RemoteScan {
        listings,
        ..RemoteScan::default()
    };
    let known = Known {
        store,
        previous,
        racy,
        remote_only,
    };
    // Made into the map at once, as in `scan_local`.
    let mut listed = under_vanished(vanished, previous, &mut out);
    let to_fetch = sort_listing(remote, entries, rules, &known, &mut listed, &mut out)?;
    out.tree = listed.into_iter().collect();
    let results = fetch_all(remote, store, to_fetch, (parallel, staging), progress);
    take_fetched(results, previous, scan_started_ns, &mut out)?;
    warn_unreadable(&mut out);
    Ok(out)
}

/// What [`fetch_changed`] knows of the remote before reading any file: whether a listed
/// file's content is already at hand.
struct Known<'a> {
    store: &'a Store,
    /// The last remote snapshot.
    previous: &'a Flat,
    /// Its racy paths (see [`crate::racy`]).
    racy: &'a std::collections::HashSet<Vec<u8>>,
    /// Remote-only paths: their content is never read by a scan.
    remote_only: &'a std::collections::HashSet<Vec<u8>>,
}

/// A directory deleted during the walk: what was under it is taken as last seen (returned,
/// as listed entries), and the whole subtree is left out of this run (the next one sees
/// what is there).
fn under_vanished(
    vanished: Vec<Vec<u8>>,
    previous: &Flat,
    out: &mut RemoteScan,
) -> Vec<(Vec<u8>, Entry)> {
    let mut listed = Vec::new();
    for dir in vanished {
        let mut under = dir.clone();
        under.push(b'/');
        listed.extend(
            previous
                .range(under.clone()..)
                .take_while(|(p, _)| p.starts_with(&under))
                .map(|(p, e)| (p.clone(), e.clone())),
        );
        out.warnings.push(format!(
            "{} was deleted on the remote while it was being read; it is left for the next run",
            display(&dir)
        ));
        out.unstable.push(dir);
    }
    listed
}

/// How many of the walk's entries [`sort_listing`] takes between two shrinks of the list (a
/// shrink in place: the allocator takes back the end of the list, nothing is copied).
const GIVE_BACK_EVERY: usize = 1 << 14;

/// Goes through the walk's entries: cachesync's own names and ignored paths are left out
/// (temporaries noted in `out`), an entry whose target cannot be read is kept as last seen,
/// a file whose content is at hand (or remote-only) gets its id; each is pushed on
/// `listed`. Returns the files to read.
///
/// # Errors
/// [`SyncError::Disconnected`] when reading a target failed for an outage.
fn sort_listing(
    remote: &TimedRemote,
    entries: Listing,
    rules: &IgnoreRules,
    known: &Known<'_>,
    listed: &mut Vec<(Vec<u8>, Entry)>,
    out: &mut RemoteScan,
) -> Result<ToFetch> {
    let mut to_fetch = Vec::new();
    listed.reserve(entries.len());
    let at_hand = content_at_hand(&entries, known)?;
    // Taken from the back of the reversed list (the walk's order kept), which gives its
    // memory back as it goes: the walk's list and the tree made from it were both whole
    // at the peak of a no-change sync.
    let mut entries = entries;
    entries.reverse();
    let mut taken = 0usize;
    while let Some((rel, r)) = entries.pop() {
        taken += 1;
        if taken.is_multiple_of(GIVE_BACK_EVERY) {
            entries.shrink_to_fit();
        }
        if IgnoreRules::is_internal(&rel) {
            if crate::paths::split_parent(&rel)
                .1
                .starts_with(crate::ignore_rules::TMP_PREFIX.as_bytes())
            {
                out.temporaries.push(rel);
            }
            continue;
        }
        if rules.is_ignored(&rel, r.kind == EntryKind::Dir) {
            continue;
        }
        if let Some(errno) = r.target_errno {
            let error = std::io::Error::from_raw_os_error(errno);
            match remote.entry_failure("reading the target of", &rel, error) {
                SyncError::RemoteIo { source, .. } => {
                    out.unreadable.push(Unreadable::new(&rel, r.kind, &source));
                    // As last seen, if it ever was: left out of the run.
                    if let Some(p) = known.previous.get(&rel) {
                        listed.push((rel.clone(), p.clone()));
                    }
                    out.unstable.push(rel);
                    continue;
                }
                outage => return Err(outage),
            }
        }
        let mut entry = tree_entry(&r);
        if r.kind == EntryKind::File {
            let not_here = known.remote_only.contains(&rel);
            match known.previous.get(&rel) {
                Some(p)
                    if p.kind == EntryKind::File
                        && p.size == r.size
                        && p.mtime_ns == r.mtime_ns
                        && (not_here
                            || (!known.racy.contains(&rel)
                                && p.file.is_some_and(|f| at_hand.binary_search(&f).is_ok()))) =>
                {
                    entry.file = p.file;
                }
                // Remote-only: the content is not fetched; its stat stands for it.
                _ if not_here => entry.file = Some(cachesync_objects::FileId::NOT_CACHED),
                previous => {
                    // Read again only to learn whether it still holds what it held (racy,
                    // or about to be written over): hashed first, stored only if not.
                    let expected = previous
                        .filter(|p| {
                            p.kind == EntryKind::File
                                && p.size == r.size
                                && p.mtime_ns == r.mtime_ns
                        })
                        .and_then(|p| p.file)
                        .filter(|f| {
                            crate::presence::is_known(*f)
                                && known.store.has_file(*f).unwrap_or(false)
                        });
                    to_fetch.push((rel.clone(), r.clone(), expected));
                }
            }
        }
        listed.push((rel, entry));
    }
    Ok(to_fetch)
}

/// The contents, among those the last remote snapshot gave the listed files whose stat did
/// not change, that the store holds (sorted): asked in one ordered pass over the file
/// objects instead of a lookup per file (at a million files most lookups read a block).
///
/// # Errors
/// Store errors.
fn content_at_hand(entries: &Listing, known: &Known<'_>) -> Result<Vec<FileId>> {
    let mut ids: Vec<FileId> = entries
        .iter()
        .filter(|(_, r)| r.kind == EntryKind::File)
        .filter_map(|(rel, r)| {
            let p = known.previous.get(rel)?;
            (p.kind == EntryKind::File && p.size == r.size && p.mtime_ns == r.mtime_ns)
                .then_some(p.file)
                .flatten()
        })
        .filter(|f| crate::presence::is_known(*f))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let present = known.store.has_files_sorted(&ids)?;
    let mut i = 0;
    ids.retain(|_| {
        i += 1;
        present[i - 1]
    });
    Ok(ids)
}

/// Reads `to_fetch` into the store with `parallel` reads in flight, reporting the bytes
/// read to `progress`. Small files go in batches, each read in one remote call (see
/// [`fetch_small`]), and those `staging` wants are staged for the apply; an outage stops
/// the reads not yet started; each file's outcome is returned.
fn fetch_all(
    remote: &TimedRemote,
    store: &Store,
    to_fetch: ToFetch,
    (parallel, staging): (usize, Option<Staging>),
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Fetched {
    let total: u64 = to_fetch.iter().map(|(_, r, _)| r.size).sum();
    let done = Mutex::new(0u64);
    let results: Mutex<Fetched> = Mutex::new(Vec::new());
    let queue = Mutex::new(batches(to_fetch, parallel.max(1)));
    let report = |outcomes: Fetched| {
        let read: u64 = outcomes
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .map(|(_, e)| e.size)
            .sum();
        if read > 0 {
            let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
            *d += read;
            progress(*d, total);
        }
        let disconnected = outcomes
            .iter()
            .any(|(_, _, r)| matches!(r, Err(SyncError::Disconnected { .. })));
        results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(outcomes);
        if disconnected {
            queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    };
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(batch) = next else {
                    return;
                };
                let started_ns = crate::now_ns();
                report(match batch {
                    Batch::One(rel, listed, expected) => {
                        let r = match staging.filter(|st| expected.is_none() && (st.wanted)(&rel)) {
                            Some(st) => fetch_staged(remote, store, &rel, listed, st),
                            None => fetch_expecting(remote, store, &rel, listed, expected),
                        };
                        vec![(rel, started_ns, r)]
                    }
                    Batch::Small(files) => fetch_small(remote, store, files, started_ns, staging),
                });
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Work for one thread of [`fetch_all`].
enum Batch {
    /// A file read on its own (a big one): path, as listed, the content expected.
    One(Vec<u8>, RemoteEntry, Option<cachesync_objects::FileId>),
    /// Small files read in one remote call: path and as listed.
    Small(Vec<(Vec<u8>, RemoteEntry)>),
}

/// Most files in one [`Batch::Small`].
const BATCH_FILES: usize = 64;

/// Most bytes (as listed) in one [`Batch::Small`].
const BATCH_BYTES: u64 = 4 << 20;

/// `to_fetch` as batches, in reverse (threads pop from the end, so the reads go in path
/// order). Small files neighbouring in path order go together, at most [`BATCH_FILES`] and
/// [`BATCH_BYTES`], and fewer when there are few, so that every thread has batches to read
/// (over a slow link each file of a batch is a round trip or more, read one after the other).
fn batches(to_fetch: ToFetch, parallel: usize) -> Vec<Batch> {
    let small = to_fetch
        .iter()
        .filter(|(_, r, _)| r.size <= SMALL_FILE)
        .count();
    let per = (small / (parallel * 4)).clamp(1, BATCH_FILES);
    let mut out = Vec::new();
    let mut files: Vec<(Vec<u8>, RemoteEntry)> = Vec::new();
    let mut bytes = 0;
    for (rel, listed, expected) in to_fetch {
        if listed.size > SMALL_FILE {
            out.push(Batch::One(rel, listed, expected));
            continue;
        }
        if files.len() == per || bytes + listed.size > BATCH_BYTES {
            out.push(Batch::Small(std::mem::take(&mut files)));
            bytes = 0;
        }
        bytes += listed.size;
        files.push((rel, listed));
    }
    if !files.is_empty() {
        out.push(Batch::Small(files));
    }
    out.reverse();
    out
}

/// Reads a batch of small files in one remote call and stores them: [`fetch`] of each,
/// except that the first read of all is one call. A file that changed while it was read,
/// or grew past [`SMALL_FILE`] since it was listed, is fetched again on its own. Each
/// outcome is noted as read from `started_ns` (the batch's start: no later than the file's).
/// A file read and stored whole is staged when `staging` wants it.
fn fetch_small(
    remote: &TimedRemote,
    store: &Store,
    files: Vec<(Vec<u8>, RemoteEntry)>,
    started_ns: i64,
    staging: Option<Staging>,
) -> Fetched {
    crate::failpoint::hit("fetching");
    let paths: Vec<Vec<u8>> = files.iter().map(|(rel, _)| rel.clone()).collect();
    let reads = match remote.read_small_many(paths, SMALL_FILE) {
        Ok(reads) => reads,
        // The call failed as a whole (an outage trips the pool: the fetches below fail at
        // once): each file on its own says what that means for it.
        Err(_) => {
            return files
                .into_iter()
                .map(|(rel, listed)| {
                    let r = fetch(remote, store, &rel, Some(listed));
                    (rel, started_ns, r)
                })
                .collect();
        }
    };
    // The files read whole and unchanged meanwhile are stored in one write.
    let whole: Vec<&[u8]> = files
        .iter()
        .zip(&reads)
        .filter_map(|((_, listed), read)| match read {
            Ok(Some((bytes, after))) if read_whole(listed, after, bytes.len() as u64) => {
                Some(bytes.as_slice())
            }
            _ => None,
        })
        .collect();
    let mut ids = match store.ingest_many(&whole) {
        Ok(ids) => ids.into_iter().map(Ok),
        // A store failure ends the run (see `take_fetched`): it is reported once.
        Err(e) => {
            let (rel, _) = files.into_iter().next().expect("a batch is never empty");
            return vec![(rel, started_ns, Err(e.into()))];
        }
    };
    files
        .into_iter()
        .zip(reads)
        .map(|((rel, listed), read)| {
            let r = match read {
                Ok(Some((bytes, after))) if read_whole(&listed, &after, bytes.len() as u64) => {
                    let id = ids.next().expect("an id per file stored");
                    if let (Ok(id), Some(st)) = (&id, staging) {
                        if (st.wanted)(&rel) {
                            st.put(&rel, &tree_entry(&after), *id, &bytes);
                        }
                    }
                    id.map(|id| (id, after))
                }
                // Changed while it was read, or grew past the limit: on its own.
                Ok(_) => fetch(remote, store, &rel, None),
                Err(e) => Err(e),
            };
            (rel, started_ns, r)
        })
        .collect()
}

/// Puts the files read into `out.tree`. A file deleted since the listing is gone; one that
/// kept changing or failed on its own is left out of the run, as last seen.
///
/// # Errors
/// The first other failure ([`SyncError::Disconnected`], store errors).
fn take_fetched(
    results: Fetched,
    previous: &Flat,
    scan_started_ns: i64,
    out: &mut RemoteScan,
) -> Result<()> {
    // A file read is listed (nearly always): its entry is set in place. The edits that add
    // or take out a path are applied at once at the end (one pass, not one move of the
    // tree's tail per path; a list of every file read, sorted, was as big as the tree).
    let mut edits = Vec::new();
    for (rel, started_ns, r) in results {
        match r {
            Ok((id, stat)) => {
                let mut entry = tree_entry(&stat);
                entry.name =
                    cachesync_objects::Name::from_slice(crate::paths::split_parent(&rel).1);
                entry.file = Some(id);
                out.fetched += 1;
                out.bytes += stat.size;
                // (The earlier of the two: a clock stepped back makes a read look earlier.)
                if crate::racy::read_time_matters(&entry, scan_started_ns.min(started_ns)) {
                    out.read_ns.insert(rel.clone(), started_ns);
                }
                match out.tree.get_mut(&rel) {
                    Some(slot) => *slot = entry,
                    None => edits.push((rel, Some(entry))),
                }
            }
            Err(SyncError::RemoteIo { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // Deleted between the listing and the read: it is gone.
                edits.push((rel, None));
            }
            Err(e) => {
                match e {
                    SyncError::Unstable { .. } => out.warnings.push(e.to_string()),
                    // Refused, or failed on this file alone (outages are `Disconnected`).
                    SyncError::RemoteIo { source, .. } => {
                        out.unreadable
                            .push(Unreadable::new(&rel, EntryKind::File, &source))
                    }
                    e => return Err(e),
                }
                // Left out of the run, as last seen (or absent if never read).
                edits.push((rel.clone(), previous.get(&rel).cloned()));
                out.unstable.push(rel);
            }
        }
    }
    out.tree.apply(edits);
    Ok(())
}

/// Sorts the unreadable entries and adds a warning for each, then each distinct remedy once.
fn warn_unreadable(out: &mut RemoteScan) {
    out.unreadable
        .sort_by(|a, b| a.path_bytes.cmp(&b.path_bytes));
    for u in &out.unreadable {
        out.warnings.push(format!(
            "{}: {}; left as it is on both sides, and tried again next run",
            u.path, u.reason
        ));
    }
    let mut remedies: Vec<&str> = out.unreadable.iter().map(|u| u.remedy.as_str()).collect();
    remedies.sort_unstable();
    remedies.dedup();
    for r in remedies {
        out.warnings.push(format!("what to do: {r}"));
    }
}

/// Reads one remote file into the store, making sure it did not change while it was read:
/// its stat before (`listed`, the attributes its directory listing gave, saving a round
/// trip; else a stat) and after the read must agree, and with the bytes read. Tried three
/// times.
///
/// # Errors
/// [`SyncError::Disconnected`], remote I/O and store errors; [`SyncError::Unstable`] if it
/// kept changing.
pub fn fetch(
    remote: &TimedRemote,
    store: &Store,
    rel: &[u8],
    listed: Option<RemoteEntry>,
) -> Result<(cachesync_objects::FileId, RemoteEntry)> {
    fetch_observed(remote, store, rel, listed, None)
}

/// [`fetch`] of a file expected to hold `expected` (the content it had at the last scan,
/// its stat unchanged). A big one is first read and hashed only: when it holds that, it is
/// not stored again (chunked, hashed per chunk, looked up); when it does not, it is fetched.
///
/// # Errors
/// As [`fetch`].
pub fn fetch_expecting(
    remote: &TimedRemote,
    store: &Store,
    rel: &[u8],
    listed: RemoteEntry,
    expected: Option<cachesync_objects::FileId>,
) -> Result<(cachesync_objects::FileId, RemoteEntry)> {
    if let Some(id) = expected.filter(|_| listed.size > SMALL_FILE) {
        let mut reader = remote.open(rel)?;
        let held = crate::racy::holds(&mut reader, id);
        if let Some(e) = reader.error.take() {
            return Err(e);
        }
        let held = held.map_err(|source| SyncError::RemoteIo {
            path: display(rel).into(),
            source,
        })?;
        drop(reader);
        if held {
            if let Some(after) = remote.stat(rel)? {
                if read_whole(&listed, &after, listed.size) {
                    return Ok((id, after));
                }
            }
        }
    }
    fetch(remote, store, rel, Some(listed))
}

/// True when a file read as `size` bytes did not change while it was read: its stat before
/// and after agree, and with the bytes read.
fn read_whole(before: &RemoteEntry, after: &RemoteEntry, size: u64) -> bool {
    before.size == after.size && before.mtime_ns == after.mtime_ns && size == after.size
}

/// Files up to this size are read in one remote call (see [`Remote::read_small`]).
///
/// [`Remote::read_small`]: crate::remote::Remote::read_small
const SMALL_FILE: u64 = 256 << 10;

/// Sees the bytes of a file as a fetch reads them, with their offset. A fetch that reads the
/// file again (it changed while it was read) starts again at offset 0.
pub type Observer<'b, 'a> = &'b mut (dyn FnMut(u64, &[u8]) + 'a);

/// A reader that shows what it reads to an [`Observer`].
struct Tee<'b, 'a, R> {
    inner: R,
    pos: u64,
    observer: Option<Observer<'b, 'a>>,
}

impl<R: std::io::Read> std::io::Read for Tee<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(o) = self.observer.as_mut() {
            o(self.pos, &buf[..n]);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// [`fetch`] of a big file, staged as it is read (see [`crate::sync::stage`]).
///
/// # Errors
/// As [`fetch`].
fn fetch_staged(
    remote: &TimedRemote,
    store: &Store,
    rel: &[u8],
    listed: RemoteEntry,
    staging: Staging,
) -> Result<(cachesync_objects::FileId, RemoteEntry)> {
    let mut incoming = staging.stage.begin(rel);
    let mut observe = |pos: u64, bytes: &[u8]| {
        if let Some(i) = incoming.as_mut() {
            i.write_at(pos, bytes);
        }
    };
    let fetched = fetch_teed(remote, store, rel, Some(listed), Some(&mut observe), true);
    if let (Ok((id, after)), Some(i)) = (&fetched, incoming) {
        if let Some(key) = i.finish(rel, &tree_entry(after), *id) {
            staging.land(rel, key);
        }
    }
    fetched
}

/// [`fetch`], showing the bytes to `observer` as they are read (the mounted view serves a
/// file's first bytes while the rest is still coming).
///
/// # Errors
/// As [`fetch`].
pub fn fetch_observed(
    remote: &TimedRemote,
    store: &Store,
    rel: &[u8],
    listed: Option<RemoteEntry>,
    observer: Option<Observer<'_, '_>>,
) -> Result<(cachesync_objects::FileId, RemoteEntry)> {
    let buffered = observer.is_none();
    fetch_teed(remote, store, rel, listed, observer, buffered)
}

/// [`fetch_observed`]; `buffered`: the remote is read a MiB per call, the first call sized
/// for the file as listed (else a reader waiting for a file's first bytes, the mount, gets
/// the first 64 KiB as soon as they come, then more at each call).
fn fetch_teed(
    remote: &TimedRemote,
    store: &Store,
    rel: &[u8],
    mut listed: Option<RemoteEntry>,
    mut observer: Option<Observer<'_, '_>>,
    buffered: bool,
) -> Result<(cachesync_objects::FileId, RemoteEntry)> {
    let gone = || SyncError::RemoteIo {
        path: display(rel).into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    for _ in 0..3 {
        let before = match listed.take() {
            Some(l) => l,
            None => remote.stat(rel)?.ok_or_else(gone)?,
        };
        crate::failpoint::hit("fetching");
        if observer.is_none() && before.size <= SMALL_FILE {
            // One call for the whole file and its stat after the read (its close done).
            let Some((bytes, after)) = remote.read_small(rel, SMALL_FILE)? else {
                continue; // It grew past the limit since it was listed: look again.
            };
            let (id, size, _) = store.ingest(bytes.as_slice())?;
            if read_whole(&before, &after, size) {
                return Ok((id, after));
            }
            continue;
        }
        let mut reader = remote.open(rel)?;
        let tee = Tee {
            inner: &mut reader,
            pos: 0,
            observer: observer.as_deref_mut(),
        };
        // Each read of a remote file is a bounded call (a pool thread, and the helper's pipe
        // both ways): the chunker reads a block (a MiB) per call, the first sized for the
        // file as listed. A reader waiting for a file's first bytes (the mount) gets them as
        // they come.
        let ingested = if buffered {
            store.ingest_expecting(tee, before.size)
        } else {
            store.ingest(tee)
        };
        let (id, size) = match ingested {
            Ok((id, size, _)) => (id, size),
            Err(e) => {
                return Err(reader.error.take().unwrap_or_else(|| e.into()));
            }
        };
        let after = remote.stat(rel)?.ok_or_else(gone)?;
        if read_whole(&before, &after, size) {
            return Ok((id, after));
        }
    }
    Err(SyncError::Unstable { path: display(rel) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A workspace entry made straight from the stat is the one the remote's shape gave,
    /// less the inode, for a file, a directory, a symlink and a fifo.
    #[test]
    fn a_local_entry_is_the_remote_shaped_one_without_its_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::write(root.join("f"), "x").expect("write");
        fs::create_dir(root.join("d")).expect("mkdir");
        std::os::unix::fs::symlink("f", root.join("l")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("p"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o640),
            0,
        )
        .expect("mkfifo");
        for name in ["f", "d", "l", "p"] {
            let md = fs::symlink_metadata(root.join(name)).expect("stat");
            let mut want = tree_entry(&crate::fs_remote::entry_from_metadata(name.as_bytes(), &md));
            want.remote_ino = 0;
            assert_eq!(local_entry(name.as_bytes(), &md), want, "{name}");
        }
    }

    /// The length `too_deep` judges is that of the path it would make: one byte under the
    /// limit passes, at the limit it is left out, whether the root ends in `/` or not.
    #[test]
    fn stat_prints_tell_entries_and_stats_apart_in_any_order() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::write(&a, "a").expect("write");
        fs::write(&b, "b").expect("write");
        let stat = |p: &Path| fs::symlink_metadata(p).expect("stat");
        let digest = |entries: &[(&[u8], &Path)]| {
            let mut prints = StatPrints::default();
            for (rel, p) in entries {
                prints.add(rel, &stat(p));
            }
            prints.digest()
        };
        let both = digest(&[(b"a", &a), (b"b", &b)]);
        assert_eq!(both, digest(&[(b"b", &b), (b"a", &a)]), "order");
        assert_ne!(both, digest(&[(b"a", &a)]), "an entry fewer");
        assert_ne!(both, digest(&[(b"a", &a), (b"c", &b)]), "another name");
        fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_ne!(both, digest(&[(b"a", &a), (b"b", &b)]), "another mode");
    }

    #[test]
    fn too_deep_counts_the_path_it_would_make() {
        for root in ["/", "/work/ws", "/work/ws/"] {
            let root = Path::new(root);
            let made = |rel: &[u8]| under(root, rel).as_os_str().len();
            let long = vec![b'a'; PATH_MAX];
            let rel_fits = (1..PATH_MAX)
                .map(|n| &long[..n])
                .find(|rel| made(rel) == PATH_MAX - 1)
                .expect("a length that fits");
            let mut out = LocalScan::default();
            assert!(!too_deep(rel_fits, root, &mut out), "{}", root.display());
            assert!(out.warnings.is_empty());
            let at_limit = [rel_fits, b"b"].concat();
            assert_eq!(made(&at_limit), PATH_MAX);
            assert!(too_deep(&at_limit, root, &mut out), "{}", root.display());
            assert_eq!(out.unstable, vec![at_limit]);
        }
    }
}
