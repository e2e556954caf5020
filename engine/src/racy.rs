//! Racy remote entries. Between scans a remote file's size and mtime stand for its content
//! (that is what makes a no-change sync a walk of listings), but only when a later edit could
//! not leave both as they were. A file modified shortly before a scan can be modified again
//! within the same timestamp, keeping its size; over file systems that keep whole seconds
//! (sshfs, SMB) that is any edit in the same second. As git does for its index, such entries
//! are racy: the next scan reads their content again instead of trusting the stat, and a step
//! that would overwrite or remove one on the remote checks its content first.
//!
//! An entry is racy when its mtime is at most [`WINDOW_NS`] before the scan started (for a
//! file the scan read, before its read started), by the workspace's clock (a server whose clock runs ahead makes more entries racy, never fewer;
//! one running behind by more than the window is the limit of this check). A racy path stays
//! racy until a scan has read it again: remote-only files (their content is not read) and
//! paths a scan left out keep the mark. Racy paths are kept under `racy/` + path in the state
//! table, written with the remote snapshot they describe.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use cachesync_objects::{Batch, Entry, EntryKind, FileId, Store};

use crate::error::Result;
use crate::paths::is_within;
use crate::scan::RemoteScan;

const RACY: crate::path_set::PathSet = crate::path_set::PathSet(crate::state_keys::RACY_PREFIX);

/// How close to the scan an mtime makes an entry racy: five seconds (whole-second mtimes use
/// up one of them; the rest allows for a server clock a little behind).
pub const WINDOW_NS: i64 = 5_000_000_000;

/// How far before a reading of the remote's clock a file's mtime must be for any later edit
/// to give it another: the coarsest mtime the file systems cachesync meets keep (whole
/// seconds on sshfs and SMB, two on FAT).
pub const GRAIN_NS: i64 = 2_000_000_000;

/// The remote's clock now, as its server sets it: the mtime of a directory made for the
/// purpose (`.cachesync-tmp.<workspace>.clock`, removed at once). `None` where none can be
/// made (a read-only share) or on any failure: the entries are then judged by the
/// workspace's clock alone. Read before a run reads files, it lets a file whose mtime is
/// a [`GRAIN_NS`] older be trusted whatever the two clocks say (as git trusts an entry
/// older than its index file); a first copy of files written seconds before is then not
/// read again by the next run.
pub fn remote_clock(remote: &crate::timed::TimedRemote, workspace_id: &str) -> Option<i64> {
    let name = format!("{}{workspace_id}.clock", crate::ignore_rules::TMP_PREFIX);
    let name = name.as_bytes();
    // One left by a run killed here goes first: its mtime is older than now.
    if remote.mkdir(name, 0o700).is_err()
        && (remote.remove_dir(name).is_err() || remote.mkdir(name, 0o700).is_err())
    {
        return None;
    }
    let clock = remote
        .stat(name)
        .ok()
        .flatten()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.mtime_ns);
    let _ = remote.remove_dir(name);
    clock
}

/// The racy paths recorded with the last remote snapshot.
///
/// # Errors
/// Store errors.
pub fn load(store: &Store) -> Result<HashSet<Vec<u8>>> {
    RACY.load(store)
}

/// True when `e` is a file whose mtime is too close to `scan_started_ns` to vouch for it.
fn is_racy(e: &Entry, scan_started_ns: i64) -> bool {
    e.kind == EntryKind::File && e.mtime_ns >= scan_started_ns.saturating_sub(WINDOW_NS)
}

/// Whether the time `e` was read at can change [`after_scan`]'s judgement of it: only for a
/// file racy from the scan's start (a read comes later, and a later time judges fewer
/// files racy). The scan keeps the read times of those alone (at a million files read,
/// the times of all were about 100 MB, for an old tree's first copy none of them needed).
pub fn read_time_matters(e: &Entry, scan_started_ns: i64) -> bool {
    is_racy(e, scan_started_ns)
}

/// The racy paths after a scan: its files with a recent mtime, and the racy paths it did
/// not read again (remote-only files, subtrees left out of the run), which stay racy until a
/// scan does. With `remote_clock` (see [`remote_clock`]), read before the scan read any
/// file, a file it read is not racy if its mtime is [`GRAIN_NS`] older than that.
pub fn after_scan(
    scan: &RemoteScan,
    previous: &HashSet<Vec<u8>>,
    scan_started_ns: i64,
    remote_clock: Option<i64>,
) -> HashSet<Vec<u8>> {
    let unread = |p: &[u8]| {
        scan.tree.get(p).is_some_and(|e| {
            e.file == Some(FileId::NOT_CACHED) || scan.unstable.iter().any(|u| is_within(p, u))
        })
    };
    // A file read by this scan is judged from when it was read (its content and the stat
    // after the read agree as of then; only a later edit within its mtime's tick could keep
    // that stat): after a long first copy, the files read more than the window after their
    // last change are not racy. The others, from the scan's start.
    // And a file read after the remote's clock was read, with an mtime a grain older than
    // it: any edit after the read is later by the server's own clock, so it moves the mtime.
    let older = |e: &Entry| remote_clock.is_some_and(|r| e.mtime_ns <= r - GRAIN_NS);
    scan.tree
        .iter()
        .filter(|(p, e)| match scan.read_ns.get(*p) {
            Some(read) => is_racy(e, *read) && !older(e),
            None => is_racy(e, scan_started_ns),
        })
        .map(|(p, _)| p.clone())
        .chain(previous.iter().filter(|p| unread(p)).cloned())
        .collect()
}

/// The racy paths after a run wrote `written` (path: its entry as stat'ed after the write,
/// or none if removed) to the remote: a written file is racy if its mtime is recent (a push
/// keeps the workspace file's), the others stay as the scan found them.
pub fn after_writes(
    scanned: &HashSet<Vec<u8>>,
    written: &HashMap<Vec<u8>, Option<Entry>>,
    scan_started_ns: i64,
) -> HashSet<Vec<u8>> {
    scanned
        .iter()
        .filter(|p| !written.contains_key(*p))
        .cloned()
        .chain(
            written
                .iter()
                .filter(|(_, e)| e.as_ref().is_some_and(|e| is_racy(e, scan_started_ns)))
                .map(|(p, _)| p.clone()),
        )
        .collect()
}

/// Adds "the racy paths are now `new`" to a batch (`old` is what is recorded).
pub fn put(batch: &mut Batch, old: &HashSet<Vec<u8>>, new: &HashSet<Vec<u8>>) {
    for p in old.difference(new) {
        RACY.remove(batch, p);
    }
    for p in new.difference(old) {
        RACY.insert(batch, p, b"");
    }
}

/// True when `source` holds the content `id` names (read whole and hashed).
///
/// # Errors
/// The reader's errors.
pub fn holds(mut source: impl Read, id: FileId) -> std::io::Result<bool> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().as_bytes() == id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn file(mtime_ns: i64) -> Entry {
        let mut e = Entry::new(b"f", EntryKind::File);
        e.mtime_ns = mtime_ns;
        e.file = Some(FileId::from_slice(&[7; 32]).expect("id"));
        e
    }

    #[test]
    fn a_file_is_judged_from_when_it_was_read() {
        let changed = 100 * SECOND;
        let mut scan = RemoteScan::default();
        for p in ["read-late", "read-early", "listed-only"] {
            scan.tree.insert(p.as_bytes().to_vec(), file(changed));
        }
        // The scan started a second after the change; one file was read 30 s later, one at
        // once, one not at all (its stat alone stood for it).
        let started = changed + SECOND;
        scan.read_ns
            .insert(b"read-late".to_vec(), changed + 30 * SECOND);
        scan.read_ns.insert(b"read-early".to_vec(), started);
        let racy = after_scan(&scan, &HashSet::new(), started, None);
        let mut racy: Vec<&[u8]> = racy.iter().map(Vec::as_slice).collect();
        racy.sort_unstable();
        assert_eq!(racy, [&b"listed-only"[..], b"read-early"]);
        // Read within the window of its change: racy, whenever the scan started.
        scan.read_ns
            .insert(b"read-late".to_vec(), changed + WINDOW_NS);
        assert!(after_scan(&scan, &HashSet::new(), started, None).contains(b"read-late".as_slice()));
    }

    proptest::proptest! {
        /// The scan keeps a read time only where [`read_time_matters`]: leaving out the
        /// others changes no judgement, with or without the server's clock, whether the
        /// read came after the scan's start or (a clock stepped back) before it.
        #[test]
        fn a_read_time_left_out_changes_nothing(
            mtime in 0i64..40,
            started in 0i64..40,
            read in 0i64..40,
            clock in proptest::option::of(0i64..40),
        ) {
            let s = |n: i64| 1_000 * SECOND + n * SECOND / 4;
            let (mtime, started, read) = (s(mtime), s(started), s(read));
            let mut scan = RemoteScan::default();
            scan.tree.insert(b"f".to_vec(), file(mtime));
            scan.read_ns.insert(b"f".to_vec(), read);
            let kept = after_scan(&scan, &HashSet::new(), started, clock.map(s));
            if !read_time_matters(&file(mtime), started.min(read)) {
                scan.read_ns.clear();
                let left_out = after_scan(&scan, &HashSet::new(), started, clock.map(s));
                proptest::prop_assert_eq!(kept, left_out);
            }
        }
    }

    #[test]
    fn a_file_read_after_the_remote_clock_and_a_grain_older_than_it_is_trusted() {
        let clock = 1_000 * SECOND;
        let mut scan = RemoteScan::default();
        let older = clock - GRAIN_NS;
        for (p, mtime) in [
            ("older", older),
            ("within-a-grain", older + 1),
            ("listed-only", older),
        ] {
            scan.tree.insert(p.as_bytes().to_vec(), file(mtime));
        }
        // Read at once (all within the window of the workspace's clock).
        for p in ["older", "within-a-grain"] {
            scan.read_ns.insert(p.as_bytes().to_vec(), clock);
        }
        let racy = |remote_clock| {
            let mut r: Vec<Vec<u8>> = after_scan(&scan, &HashSet::new(), clock, remote_clock)
                .into_iter()
                .collect();
            r.sort_unstable();
            r
        };
        let all: Vec<Vec<u8>> = ["listed-only", "older", "within-a-grain"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        assert_eq!(
            racy(None),
            all,
            "no remote clock: the workspace's clock alone"
        );
        // A file not read by this scan is judged as before: its stat was seen before the
        // remote clock was read.
        assert_eq!(
            racy(Some(clock)),
            [b"listed-only".to_vec(), b"within-a-grain".to_vec()]
        );
    }
}
