//! The plain-file-system remote: a mounted directory (sshfs, NFS, SMB, a local dir).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachesync_objects::EntryKind;

use crate::remote::{Remote, RemoteEntry, RemoteRead, RemoteWrite};

/// How long removing a directory waits for `.fuse_hidden*` files in it to go. A FUSE mount
/// such as sshfs renames a file removed while it is open to `.fuse_hidden*` and deletes that at
/// the release; the kernel sends the release in the background after close(2) returns, so a
/// file just read and closed, then removed, can be hidden for a moment, and the directory
/// holding it is not empty until the release is done.
const HIDDEN_GRACE: Duration = Duration::from_secs(5);

/// Whether `dir` holds `.fuse_hidden*` files and nothing else (false when it cannot be read).
fn only_fuse_hidden(dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    let mut any = false;
    for e in rd {
        let Ok(e) = e else { return false };
        if !e.file_name().as_bytes().starts_with(b".fuse_hidden") {
            return false;
        }
        any = true;
    }
    any
}

/// How long after a file was closed its FUSE release may still be on its way: a removal or
/// a rename over it within this time checks for a hidden copy (see [`FsRemote::settle`]).
const RELEASE_WINDOW: Duration = Duration::from_secs(2);

/// How long a hidden copy left by a removal is given to go by itself (its release deletes
/// it) before it is taken for one that libfuse will never delete and is removed.
const HIDDEN_SETTLE: Duration = Duration::from_secs(1);

/// A remote that is a directory on a mounted file system.
#[derive(Clone, Debug)]
pub struct FsRemote {
    root: PathBuf,
    /// Files read through this remote and closed in the last [`RELEASE_WINDOW`], with when.
    closed: Arc<Mutex<RecentCloses>>,
}

/// Files closed in the last [`RELEASE_WINDOW`]: when each path was last closed, and the
/// closes in the order they came, so that those out of the window are dropped from the
/// front, a few at each close (a first copy closes thousands of files a second: going
/// through all of them at every close made the helper's reads quadratic).
#[derive(Debug, Default)]
struct RecentCloses {
    last: HashMap<PathBuf, Instant>,
    order: std::collections::VecDeque<(Instant, PathBuf)>,
}

impl RecentCloses {
    /// Notes that `path` was closed at `now`, and forgets the closes out of the window.
    fn note(&mut self, path: PathBuf, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < RELEASE_WINDOW {
                break;
            }
            let (at, old) = self.order.pop_front().expect("a front was just seen");
            // Only if it was not closed again since.
            if self.last.get(&old) == Some(&at) {
                self.last.remove(&old);
            }
        }
        self.last.insert(path.clone(), now);
        self.order.push_back((now, path));
    }

    /// When `path` was last closed, if within the window before `now`.
    fn closed_at(&self, path: &Path, now: Instant) -> Option<Instant> {
        self.last
            .get(path)
            .copied()
            .filter(|at| now.saturating_duration_since(*at) < RELEASE_WINDOW)
    }
}

impl FsRemote {
    /// A remote rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsRemote {
        FsRemote {
            root: root.into(),
            closed: Arc::new(Mutex::new(RecentCloses::default())),
        }
    }

    /// The inode of `abs` when it is a file this remote closed within the release window
    /// (so a removal or a rename over it may meet its release still on the way).
    fn closed_recently(&self, abs: &Path) -> Option<u64> {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        closed.closed_at(abs, Instant::now())?;
        drop(closed);
        fs::symlink_metadata(abs).ok().map(|md| md.ino())
    }

    /// After a removal of, or a rename over, a file closed a moment before (inode `ino`,
    /// in directory `dir`). On a FUSE mount (sshfs through libfuse) a file removed while
    /// open is kept as `.fuse_hidden*` and deleted at its release; the kernel sends the
    /// release after close(2) has returned, and when it crosses the removal, libfuse can
    /// leave the hidden copy for good. The copy (found by its inode: hiding is a rename)
    /// is given [`HIDDEN_SETTLE`] to go with its release, then removed: it is the file
    /// just removed or replaced, under a name nobody chose. Best effort: errors are ignored.
    fn settle(dir: &Path, ino: u64) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let hidden: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().as_bytes().starts_with(b".fuse_hidden"))
            .map(|e| e.path())
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|md| md.ino() == ino))
            .collect();
        for copy in hidden {
            let deadline = Instant::now() + HIDDEN_SETTLE;
            while fs::symlink_metadata(&copy).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = fs::remove_file(&copy);
        }
    }

    /// Removes or renames over `abs` with `op`, then settles a hidden copy of what was there
    /// if it was closed a moment before.
    fn replacing(&self, abs: &Path, op: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let ino = self.closed_recently(abs);
        op()?;
        if let (Some(ino), Some(dir)) = (ino, abs.parent()) {
            FsRemote::settle(dir, ino);
        }
        Ok(())
    }

    /// The absolute path of a relative remote path.
    pub fn abs(&self, rel: &[u8]) -> PathBuf {
        under_root(&self.root, rel)
    }
}

/// Reads kind, mode, owner, times and size from metadata.
pub fn entry_from_metadata(name: &[u8], md: &fs::Metadata) -> RemoteEntry {
    let kind = kind_of(md.file_type());
    RemoteEntry {
        name: name.to_vec(),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        size: if kind == EntryKind::Dir { 0 } else { md.size() },
        ino: md.ino(),
        rdev: md.rdev(),
        target: Vec::new(),
        target_errno: None,
    }
}

/// The kind of entry a file type is.
pub fn kind_of(ft: fs::FileType) -> EntryKind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_socket() {
        EntryKind::Socket
    } else if ft.is_block_device() {
        EntryKind::BlockDevice
    } else if ft.is_char_device() {
        EntryKind::CharDevice
    } else {
        EntryKind::File
    }
}

/// Converts nanoseconds since the epoch to a `SystemTime`.
pub fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// `None` for an entry that is not there (ENOENT: deleted, or, in a listing, deleted by
/// another client between the listing and its stat, as a listing made a moment later would
/// show); every other error stays an error, so an outage (EIO, ENOTCONN, ...) is never taken
/// for an absence.
fn unless_gone(entry: io::Result<RemoteEntry>) -> io::Result<Option<RemoteEntry>> {
    match entry {
        Ok(e) => Ok(Some(e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entry for `md` (of `path`, named `name`), with its target if it is a symlink.
fn entry_with_target(path: &Path, name: &[u8], md: &fs::Metadata) -> io::Result<RemoteEntry> {
    let mut e = entry_from_metadata(name, md);
    if e.kind == EntryKind::Symlink {
        e.target = fs::read_link(path)?.into_os_string().as_bytes().to_vec();
    }
    Ok(e)
}

/// The entry for `md` as a listing gives it: a symlink whose target cannot be read is still
/// listed, with the errno in [`RemoteEntry::target_errno`] (only "not found", the link gone
/// since the directory was read, stays an error).
fn listed_entry(path: &Path, name: &[u8], md: &fs::Metadata) -> io::Result<RemoteEntry> {
    match entry_with_target(path, name, md) {
        Err(e) if md.file_type().is_symlink() && e.kind() != io::ErrorKind::NotFound => {
            let mut entry = entry_from_metadata(name, md);
            entry.target_errno = Some(e.raw_os_error().unwrap_or(libc::EIO));
            Ok(entry)
        }
        other => other,
    }
}

/// A file being read; its close is noted (see [`FsRemote::settle`]).
struct FsRead {
    file: Option<File>,
    abs: PathBuf,
    closed: Arc<Mutex<RecentCloses>>,
}

impl io::Read for FsRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

impl RemoteRead for FsRead {
    fn close(self: Box<Self>) -> io::Result<()> {
        drop(self);
        Ok(())
    }
}

impl Drop for FsRead {
    fn drop(&mut self) {
        drop(self.file.take());
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(std::mem::take(&mut self.abs), Instant::now());
    }
}

struct FsWrite {
    file: File,
    /// The remote root (a copied range's source is relative to it).
    root: PathBuf,
}

impl Write for FsWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl RemoteWrite for FsWrite {
    fn finish(self: Box<Self>, mode: u32, mtime_ns: i64) -> io::Result<()> {
        self.file
            .set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        self.file
            .set_times(fs::FileTimes::new().set_modified(system_time(mtime_ns)))?;
        self.file.sync_all()
    }

    fn copy_range(&mut self, src: &[u8], from: u64, len: u64) -> io::Result<()> {
        let source = File::open(under_root(&self.root, src))?;
        // A file system that shares blocks on copy (XFS, Btrfs) shares whole blocks only,
        // at the same place within a block on both sides; a call that starts off a
        // boundary falls back in the kernel to copying every byte to its end. When the two
        // sides are in step, the part before the first boundary goes alone, so that the
        // rest is shared (a chunk's bounds fall anywhere: without this, a file patched on
        // XFS was copied whole).
        let at = io::Seek::stream_position(&mut &self.file)?;
        let block = rustix::fs::fstat(&self.file).map_or(4096, |st| st.st_blksize.max(1) as u64);
        let head = if from % block == at % block {
            ((block - from % block) % block).min(len)
        } else {
            0
        };
        let mut from = from;
        for part in [head, len - head] {
            let mut left = part;
            while left > 0 {
                let want = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
                let n =
                    rustix::fs::copy_file_range(&source, Some(&mut from), &self.file, None, want)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the source ended before the range copied from it",
                    ));
                }
                left -= n as u64;
            }
        }
        Ok(())
    }

    fn write_at(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, at)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn under_root(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// Whether the file system holding `root` copies ranges without the bytes crossing a
/// network: local disk and memory file systems, NFS from 4.2 (server-side COPY) and SMB
/// (server-side copy chunks). Anything else, FUSE mounts such as sshfs among them, falls
/// back in the kernel to reading and writing through this machine.
fn copies_on_server(root: &Path) -> io::Result<bool> {
    const NFS: u32 = 0x6969;
    const SMB2: u32 = 0xFE53_4D42;
    const CIFS: u32 = 0xFF53_4D42;
    let magic = fs_magic(root)?;
    Ok(match magic {
        SMB2 | CIFS => true,
        NFS => nfs_copies_on_server(root),
        m => is_local_disk(m),
    })
}

/// The type of the file system holding `path` (statfs's magic number).
///
/// # Errors
/// The statfs's.
pub(crate) fn fs_magic(path: &Path) -> io::Result<u32> {
    let st = rustix::fs::statfs(path)?;
    // The magic is a signed word on some targets: compare its low 32 bits.
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    Ok(st.f_type as u32)
}

/// Whether a file system type (statfs's magic) is one of the local disk and memory file
/// systems: ext4, XFS, Btrfs, tmpfs, F2FS, bcachefs, ZFS. Each moves a directory's ctime,
/// in nanoseconds, at every change of its entries, and copies ranges in the kernel.
pub(crate) fn is_local_disk(magic: u32) -> bool {
    const EXT4: u32 = 0xEF53;
    const XFS: u32 = 0x5846_5342;
    const BTRFS: u32 = 0x9123_683E;
    const TMPFS: u32 = 0x0102_1994;
    const F2FS: u32 = 0xF2F5_2010;
    const BCACHEFS: u32 = 0xCA45_1A4E;
    const ZFS: u32 = 0x2FC1_2FC1;
    matches!(magic, EXT4 | XFS | BTRFS | TMPFS | F2FS | BCACHEFS | ZFS)
}

/// For an NFS mount: whether it speaks NFS 4.2 (`vers=4.2` in its mount options), the first
/// version with a server-side COPY.
fn nfs_copies_on_server(root: &Path) -> bool {
    let Ok(root) = fs::canonicalize(root) else {
        return false;
    };
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    speaks_nfs_4_2(&mounts, &root)
}

/// Whether, in a `/proc/self/mountinfo` text, the mount holding `root` (the one with the
/// longest mount point above it) has `vers=4.2` among its options.
fn speaks_nfs_4_2(mounts: &str, root: &Path) -> bool {
    let mut best: Option<(usize, bool)> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = point.replace("\\040", " ");
        if !root.starts_with(&point) {
            continue;
        }
        let four_two = line
            .split(" - ")
            .nth(1)
            .is_some_and(|tail| tail.split([',', ' ']).any(|o| o == "vers=4.2"));
        if best.is_none_or(|(len, _)| point.len() >= len) {
            best = Some((point.len(), four_two));
        }
    }
    best.is_some_and(|(_, four_two)| four_two)
}

impl Remote for FsRemote {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>> {
        let path = self.abs(dir);
        let mut out = Vec::new();
        for item in fs::read_dir(&path)? {
            let item = item?;
            let name = item.file_name();
            // Relative to the open directory (fstatat): no path walk per entry.
            let entry = item
                .metadata()
                .and_then(|md| listed_entry(&item.path(), name.as_bytes(), &md));
            if let Some(e) = unless_gone(entry)? {
                out.push(e);
            }
            tick();
        }
        Ok(out)
    }

    fn stat(&self, path: &[u8]) -> io::Result<Option<RemoteEntry>> {
        let name = cachesync_objects::store::split_parent(path).1;
        let abs = self.abs(path);
        // As a listing gives it: a symlink whose target cannot be read is still there.
        unless_gone(fs::symlink_metadata(&abs).and_then(|md| listed_entry(&abs, name, &md)))
    }

    fn open(&self, path: &[u8]) -> io::Result<Box<dyn RemoteRead>> {
        let abs = self.abs(path);
        Ok(Box::new(FsRead {
            file: Some(File::open(&abs)?),
            abs,
            closed: Arc::clone(&self.closed),
        }))
    }

    fn create(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.abs(path))?;
        Ok(Box::new(FsWrite {
            file,
            root: self.root.clone(),
        }))
    }

    fn copies_on_server(&self) -> io::Result<bool> {
        copies_on_server(&self.root)
    }

    fn open_in_place(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        let file = OpenOptions::new().write(true).open(self.abs(path))?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        // Written into, a file with other names would change under those too (a new file
        // renamed over one name leaves the others as they were).
        if md.nlink() > 1 {
            return Err(io::Error::other("the file has other hard links"));
        }
        Ok(Box::new(FsWrite {
            file,
            root: self.root.clone(),
        }))
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let (from, to) = (self.abs(from), self.abs(to));
        self.replacing(&to, || fs::rename(&from, &to))
    }

    fn rename_atomic(&self, from: &[u8], to: &[u8], exchange: bool) -> io::Result<bool> {
        let flags = if exchange {
            rustix::fs::RenameFlags::EXCHANGE
        } else {
            rustix::fs::RenameFlags::NOREPLACE
        };
        let (from, to) = (self.abs(from), self.abs(to));
        match rustix::fs::renameat_with(rustix::fs::CWD, &from, rustix::fs::CWD, &to, flags) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = io::Error::from(e);
                if crate::localfs::flags_unsupported(&e) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn remove_file(&self, path: &[u8]) -> io::Result<()> {
        let abs = self.abs(path);
        self.replacing(&abs, || fs::remove_file(&abs))
    }

    fn remove_dir(&self, path: &[u8]) -> io::Result<()> {
        let p = self.abs(path);
        let started = Instant::now();
        let mut cleared = false;
        loop {
            match fs::remove_dir(&p) {
                Err(e)
                    if e.kind() == io::ErrorKind::DirectoryNotEmpty
                        && started.elapsed() < HIDDEN_GRACE
                        && only_fuse_hidden(&p) =>
                {
                    // Hidden copies still there after their releases had time to come are
                    // ones libfuse will not delete (a release that crossed the removal; or
                    // a file read by an earlier command): files already removed, under
                    // names nobody chose. Removed once; one still open is hidden again,
                    // and waited for.
                    if !cleared && started.elapsed() >= HIDDEN_SETTLE {
                        cleared = true;
                        for e in fs::read_dir(&p).into_iter().flatten().flatten() {
                            let _ = fs::remove_file(e.path());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                r => return r,
            }
        }
    }

    fn mkdir(&self, path: &[u8], mode: u32) -> io::Result<()> {
        let p = self.abs(path);
        fs::create_dir(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o7777))
    }

    fn set_mode(&self, path: &[u8], mode: u32) -> io::Result<()> {
        fs::set_permissions(self.abs(path), fs::Permissions::from_mode(mode & 0o7777))
    }

    fn symlink(&self, target: &[u8], path: &[u8]) -> io::Result<()> {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), self.abs(path))
    }

    fn mknod(&self, path: &[u8], kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()> {
        mknod(&self.abs(path), kind, mode, rdev)
    }

    fn canonical_root(&self) -> io::Result<PathBuf> {
        fs::canonicalize(&self.root)
    }
}

/// Creates a fifo, socket node or device at `path`.
///
/// # Errors
/// The underlying I/O error; `Unsupported` for other kinds.
pub fn mknod(path: &Path, kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()> {
    use rustix::fs::{FileType, Mode, CWD};
    let ft = match kind {
        EntryKind::Fifo => FileType::Fifo,
        EntryKind::Socket => FileType::Socket,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::CharDevice => FileType::CharacterDevice,
        _ => return Err(io::Error::from(io::ErrorKind::Unsupported)),
    };
    rustix::fs::mknodat(CWD, path, ft, Mode::from_raw_mode(mode & 0o7777), rdev)?;
    // mknod applies the umask; the mode must be the one asked for.
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_closes_are_kept_for_the_window_and_then_forgotten() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut closes = RecentCloses::default();
        closes.note("a".into(), at(0));
        closes.note("b".into(), at(500));
        assert_eq!(closes.closed_at(Path::new("a"), at(1_999)), Some(at(0)));
        assert_eq!(closes.closed_at(Path::new("a"), at(2_000)), None);
        // Closed again: the later close counts, the earlier one's expiry does not drop it.
        closes.note("a".into(), at(1_800));
        closes.note("c".into(), at(2_100));
        assert_eq!(closes.closed_at(Path::new("a"), at(2_100)), Some(at(1_800)));
        // Thousands of closes: those out of the window are dropped as new ones come.
        for i in 0..10_000u64 {
            closes.note(format!("f{i}").into(), at(3_000 + i));
        }
        assert!(closes.order.len() <= 2_001, "{} kept", closes.order.len());
        assert_eq!(closes.last.len(), closes.order.len());
        assert_eq!(
            closes.closed_at(Path::new("f9999"), at(12_999)),
            Some(at(12_999))
        );
        assert_eq!(closes.closed_at(Path::new("a"), at(12_999)), None);
    }

    #[test]
    fn only_a_missing_entry_counts_as_gone_never_an_outage() {
        let missing = io::Error::from_raw_os_error(libc::ENOENT);
        assert!(matches!(unless_gone(Err(missing)), Ok(None)));
        for errno in [libc::EIO, libc::ENOTCONN, libc::ETIMEDOUT, libc::EACCES] {
            let e = unless_gone(Err(io::Error::from_raw_os_error(errno)))
                .expect_err("an outage or a refusal is an error");
            assert_eq!(e.raw_os_error(), Some(errno));
        }
    }

    #[test]
    fn list_and_stat_see_what_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), b"a").expect("write");
        std::os::unix::fs::symlink("a", dir.path().join("l")).expect("symlink");
        let remote = FsRemote::new(dir.path());
        let mut names: Vec<Vec<u8>> = remote
            .list(b"", &|| {})
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, vec![b"a".to_vec(), b"l".to_vec()]);
        let link = remote.stat(b"l").expect("stat").expect("there");
        assert_eq!(link.target, b"a");
        assert!(remote.stat(b"gone").expect("stat").is_none());
    }

    #[test]
    fn removing_a_directory_waits_for_a_fuse_hidden_file_to_go_and_no_longer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = FsRemote::new(dir.path());
        // A file sshfs hid at a removal, deleted at the release a moment later.
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        let hidden = dir.path().join("d/.fuse_hidden0000000a00000001");
        fs::write(&hidden, b"x").expect("write");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            fs::remove_file(hidden).expect("release");
        });
        remote
            .remove_dir(b"d")
            .expect("removed once the release is done");
        release.join().expect("join");
        assert!(!dir.path().join("d").exists());

        // Any other file: not empty, at once.
        fs::create_dir(dir.path().join("e")).expect("mkdir");
        fs::write(dir.path().join("e/.fuse_hidden1"), b"x").expect("write");
        fs::write(dir.path().join("e/new"), b"x").expect("write");
        let started = Instant::now();
        let e = remote.remove_dir(b"e").expect_err("not empty");
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);
        assert!(started.elapsed() < HIDDEN_GRACE, "no wait for a real file");
    }

    #[test]
    fn a_hidden_copy_that_never_goes_is_removed_with_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = FsRemote::new(dir.path());
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        // Left by a release that crossed the removal: nothing will delete it.
        fs::write(dir.path().join("d/.fuse_hidden0000000b00000002"), b"x").expect("write");
        let started = Instant::now();
        remote
            .remove_dir(b"d")
            .expect("removed after the settle time");
        assert!(!dir.path().join("d").exists());
        assert!(started.elapsed() >= HIDDEN_SETTLE && started.elapsed() < HIDDEN_GRACE);
    }

    #[test]
    fn removing_a_file_just_read_removes_its_hidden_copy_and_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = FsRemote::new(dir.path());
        fs::write(dir.path().join("f"), b"content").expect("write");
        fs::write(dir.path().join(".fuse_hidden00000001"), b"someone else's").expect("write");
        let mut read = remote.open(b"f").expect("open");
        let mut bytes = Vec::new();
        read.read_to_end(&mut bytes).expect("read");
        read.close().expect("close");
        // What sshfs does when the removal meets the file still open: the same inode under a
        // hidden name (a hard link stands in for its rename here).
        let copy = dir.path().join(".fuse_hidden00000002");
        fs::hard_link(dir.path().join("f"), &copy).expect("link");
        remote.remove_file(b"f").expect("remove");
        assert!(!copy.exists(), "the copy of the file just removed");
        assert!(
            dir.path().join(".fuse_hidden00000001").exists(),
            "not ours: left"
        );
        // A file not read lately: nothing is looked for.
        fs::write(dir.path().join("g"), b"g").expect("write");
        let other = dir.path().join(".fuse_hidden00000003");
        fs::hard_link(dir.path().join("g"), &other).expect("link");
        remote.remove_file(b"g").expect("remove");
        assert!(other.exists());
    }

    #[test]
    fn local_disks_are_told_from_network_and_fuse_file_systems() {
        for magic in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994] {
            assert!(is_local_disk(magic), "{magic:#x}");
        }
        // NFS, SMB, FUSE (sshfs), FAT.
        for magic in [0x6969, 0xFE53_4D42, 0x6573_5546, 0x4d44] {
            assert!(!is_local_disk(magic), "{magic:#x}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(is_local_disk(fs_magic(dir.path()).expect("statfs")));
    }

    #[test]
    fn ranges_copied_in_step_or_not_with_a_boundary_inside_come_out_whole() {
        // The head before a block boundary goes alone when both sides are in step: every
        // split of the range must still give the bytes asked for.
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = FsRemote::new(dir.path());
        let src: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        fs::write(dir.path().join("src"), &src).expect("write");
        for (lead, from, len) in [
            (0, 0, 40_000),
            (100, 100, 9_000),
            (100, 4_196, 20_000),
            (5, 4_000, 200),
            (4_095, 4_095, 1),
            (0, 4_096, 8_192),
            (7, 13, 30_000),
        ] {
            let mut w = remote.create(b"out").expect("create");
            w.write_all(&src[..lead]).expect("write the lead");
            w.copy_range(b"src", from as u64, len as u64).expect("copy");
            w.finish(0o644, 1_000_000_000).expect("finish");
            let mut want = src[..lead].to_vec();
            want.extend_from_slice(&src[from..from + len]);
            assert!(
                fs::read(dir.path().join("out")).expect("read") == want,
                "lead {lead}, from {from}, len {len}"
            );
            fs::remove_file(dir.path().join("out")).expect("rm");
        }
    }

    #[test]
    fn a_copy_on_the_server_and_a_patch_in_place_write_what_they_are_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = FsRemote::new(dir.path());
        assert!(
            remote.copies_on_server().expect("statfs"),
            "a local disk copies without a network"
        );
        fs::write(dir.path().join("src"), b"0123456789").expect("write");
        let mut w = remote.create(b"new").expect("create");
        w.copy_range(b"src", 2, 3).expect("copy");
        w.write_all(b"-").expect("write");
        w.copy_range(b"src", 0, 2).expect("copy");
        let past_the_end = w.copy_range(b"src", 8, 5).expect_err("only 2 bytes there");
        assert_eq!(past_the_end.kind(), io::ErrorKind::UnexpectedEof);
        w.finish(0o644, 1_000_000_000).expect("finish");
        assert_eq!(fs::read(dir.path().join("new")).expect("read"), b"234-0189");

        let mut p = remote.open_in_place(b"src").expect("open");
        p.write_at(4, b"xy").expect("write at");
        p.write_at(12, b"z").expect("write past the end");
        p.finish(0o600, 2_000_000_000).expect("finish");
        assert_eq!(
            fs::read(dir.path().join("src")).expect("read"),
            b"0123xy6789\0\0z"
        );
        let mut p = remote.open_in_place(b"src").expect("open");
        p.set_len(3).expect("cut");
        p.finish(0o600, 2_000_000_000).expect("finish");
        assert_eq!(fs::read(dir.path().join("src")).expect("read"), b"012");
        let md = fs::metadata(dir.path().join("src")).expect("stat");
        assert_eq!((md.mode() & 0o777, md.mtime()), (0o600, 2));

        assert!(remote.open_in_place(b"missing").is_err(), "never creates");
        fs::hard_link(dir.path().join("src"), dir.path().join("other")).expect("link");
        assert!(
            remote.open_in_place(b"src").is_err(),
            "not with another name"
        );
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        assert!(remote.open_in_place(b"d").is_err(), "only a file");
    }

    #[test]
    fn only_nfs_4_2_among_nfs_mounts_copies_on_the_server() {
        let mounts = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /mnt/new rw,relatime shared:2 - nfs4 srv:/x rw,vers=4.2,rsize=1048576
41 22 0:51 / /mnt/old rw,relatime shared:3 - nfs4 srv:/y rw,vers=4.1,rsize=1048576
42 40 0:52 / /mnt/new/v3 rw,relatime shared:4 - nfs srv:/z rw,vers=3,proto=tcp
";
        assert!(speaks_nfs_4_2(mounts, Path::new("/mnt/new/projects")));
        assert!(speaks_nfs_4_2(mounts, Path::new("/mnt/new")));
        assert!(!speaks_nfs_4_2(mounts, Path::new("/mnt/old/projects")));
        assert!(
            !speaks_nfs_4_2(mounts, Path::new("/mnt/new/v3/p")),
            "the innermost mount counts"
        );
        assert!(!speaks_nfs_4_2(mounts, Path::new("/home")));
    }
}
