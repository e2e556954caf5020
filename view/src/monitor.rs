//! What changes in the workspace directory while the view runs, for the commands it lends
//! the workspace to (see `cachesync_engine::fsmonitor`).
//!
//! Every directory of the workspace is watched (inotify): what programs write through the
//! view lands there, and so does what is written behind the view's back. The paths the
//! events name gather in a set; each hand-over to a command writes the set out and starts a
//! new one. Events are read and applied under one lock, and a hand-over reads every queued
//! event first, so a change made before a hand-over is in it. A directory made or moved in
//! is watched with everything under it (the command walks such a directory whole, so what
//! was made in it before its watch was added is found too); one moved out is no longer
//! watched. When the kernel's queue overflows, or no watch is left to add, the hand-over
//! says it is incomplete and the command walks the whole tree.

use std::collections::{BTreeSet, HashMap};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use cachesync_engine::fsmonitor::Handoff;
use cachesync_engine::ignore_rules::META_DIR;
use cachesync_engine::paths::{is_within, join, under};
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};

/// The events that change what a scan finds.
fn mask() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::EXCL_UNLINK
}

/// The watcher of one workspace directory.
pub struct Monitor {
    fd: OwnedFd,
    inner: Mutex<Inner>,
}

struct Inner {
    root: PathBuf,
    /// This run's number (hand-over numbers count within it).
    session: u64,
    /// The last hand-over's number.
    handed: u64,
    /// No event lost since the last hand-over.
    complete: bool,
    /// A watch could not be added (the per-user limit): every hand-over is incomplete.
    short_of_watches: bool,
    /// The paths changed since the last hand-over.
    paths: BTreeSet<Vec<u8>>,
    /// The hard-linked files changed since (inode numbers): a change through one name is
    /// reported under that name only.
    inodes: BTreeSet<u64>,
    /// Each watch's directory.
    dirs: HashMap<i32, Vec<u8>>,
    /// Where each changed path is also sent (the kernel is told to forget it).
    tell: Option<crate::invalidate::Changes>,
}

impl Monitor {
    /// Watches the workspace at `root`; `None` when inotify is not to be had (the commands
    /// then walk the whole tree, as without a view).
    pub fn start(root: &Path) -> Option<Arc<Monitor>> {
        let fd =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
        let session = u64::from_le_bytes(
            blake3::hash(
                format!(
                    "{} {:?} {}",
                    std::process::id(),
                    std::time::SystemTime::now(),
                    root.display()
                )
                .as_bytes(),
            )
            .as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let m = Arc::new(Monitor {
            fd,
            inner: Mutex::new(Inner {
                root: root.to_path_buf(),
                session,
                handed: 0,
                complete: true,
                short_of_watches: false,
                paths: BTreeSet::new(),
                inodes: BTreeSet::new(),
                dirs: HashMap::new(),
                tell: None,
            }),
        });
        {
            let mut inner = m.lock();
            m.watch_tree(&mut inner, &[]);
        }
        let weak = Arc::downgrade(&m);
        std::thread::Builder::new()
            .name("view-monitor".into())
            .spawn(move || follow(&weak))
            .ok()?;
        Some(m)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the changes since the last hand-over to `meta_dir` (folded into a hand-over
    /// no command consumed) and starts a new set. Returns the hand-over's session and
    /// number, which the command is told. Nothing changes here when the write fails.
    ///
    /// # Errors
    /// I/O errors writing the hand-over.
    pub fn hand_over(&self, meta_dir: &Path) -> std::io::Result<(u64, u64)> {
        let mut inner = self.lock();
        self.drain(&mut inner);
        let mut h = Handoff {
            session: inner.session,
            since: inner.handed,
            upto: inner.handed + 1,
            complete: inner.complete && !inner.short_of_watches,
            paths: inner.paths.clone(),
            inodes: inner.inodes.clone(),
        };
        if let Some(left) = Handoff::read(meta_dir).filter(|l| l.session == inner.session) {
            h.since = left.since;
            h.complete &= left.complete;
            h.paths.extend(left.paths);
            h.inodes.extend(left.inodes);
        }
        h.write(meta_dir)?;
        inner.handed = h.upto;
        inner.complete = true;
        inner.paths.clear();
        inner.inodes.clear();
        Ok((h.session, h.upto))
    }

    /// Reads every queued event and applies it. The watches follow once all are read:
    /// first the directories moved away lose theirs, then the directories made, moved in or
    /// changed are watched again where they are now (a swap of two directories reports
    /// both moves before either is seen where it went).
    fn drain(&self, inner: &mut Inner) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut events = Vec::new();
        let mut away: Vec<Vec<u8>> = Vec::new();
        let mut here: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut reader = inotify::Reader::new(self.fd.as_fd(), &mut buf);
            // One read's worth (AGAIN: nothing queued), applied before the next read.
            while let Ok(e) = reader.next() {
                events.push((
                    e.wd(),
                    e.events(),
                    e.file_name().map(|n| n.to_bytes().to_vec()),
                ));
                if reader.is_buffer_empty() {
                    break;
                }
            }
            if events.is_empty() {
                break;
            }
            for (wd, flags, name) in events.drain(..) {
                self.apply(inner, wd, flags, name.as_deref(), &mut away, &mut here);
            }
        }
        for p in away {
            let gone: Vec<i32> = inner
                .dirs
                .iter()
                .filter(|(_, d)| is_within(d, &p))
                .map(|(w, _)| *w)
                .collect();
            for w in gone {
                inner.dirs.remove(&w);
                let _ = inotify::remove_watch(&self.fd, w);
            }
        }
        for p in here {
            self.watch_tree(inner, &p);
        }
    }

    fn apply(
        &self,
        inner: &mut Inner,
        wd: i32,
        flags: ReadFlags,
        name: Option<&[u8]>,
        away: &mut Vec<Vec<u8>>,
        here: &mut Vec<Vec<u8>>,
    ) {
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            // Events were lost, directories made meanwhile among them: watch the tree again.
            inner.complete = false;
            here.push(Vec::new());
            return;
        }
        if flags.contains(ReadFlags::IGNORED) {
            inner.dirs.remove(&wd);
            return;
        }
        let Some(dir) = inner.dirs.get(&wd) else {
            return;
        };
        let path = match name {
            Some(n) => join(dir, n),
            None => dir.clone(),
        };
        if path.is_empty() || is_within(&path, META_DIR.as_bytes()) {
            return;
        }
        if flags.contains(ReadFlags::ISDIR) {
            if flags.contains(ReadFlags::MOVED_FROM) {
                away.push(path.clone());
            } else if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::ATTRIB)
            {
                // Attributes too: a directory that could not be watched may be now.
                here.push(path.clone());
            }
        }
        // A path already changed since the last hand-over was looked at then (a stat per
        // write of a big file would cost more than the write).
        if !inner.paths.contains(&path)
            && !flags.contains(ReadFlags::ISDIR)
            && flags.intersects(
                ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::MODIFY | ReadFlags::ATTRIB,
            )
        {
            use std::os::unix::fs::MetadataExt;
            if let Ok(md) = std::fs::symlink_metadata(under(&inner.root, &path)) {
                if md.is_file() && md.nlink() > 1 {
                    inner.inodes.insert(md.ino());
                }
            }
        }
        if let Some(tell) = &inner.tell {
            let gone = flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM);
            let _ = tell.send((path.clone(), gone));
        }
        inner.paths.insert(path);
    }

    /// From now on, also sends each changed path to `changes`.
    pub fn tell(&self, changes: crate::invalidate::Changes) {
        self.lock().tell = Some(changes);
    }

    /// Notes that the workspace file with inode number `ino`, which has more than one name,
    /// is being changed (the view calls this before it writes through one of its names).
    pub fn note_linked(&self, ino: u64) {
        self.lock().inodes.insert(ino);
    }

    /// Watches the directory `top` and every directory under it (symlinks not followed).
    fn watch_tree(&self, inner: &mut Inner, top: &[u8]) {
        let mut stack = vec![top.to_vec()];
        while let Some(dir) = stack.pop() {
            let abs = under(&inner.root, &dir);
            match inotify::add_watch(&self.fd, &abs, mask()) {
                Ok(wd) => {
                    inner.dirs.insert(wd, dir.clone());
                }
                Err(rustix::io::Errno::NOSPC) => {
                    if !inner.short_of_watches {
                        eprintln!(
                            "cachesync: no inotify watch left for {} (see \
                             /proc/sys/fs/inotify/max_user_watches): commands scan the whole \
                             workspace",
                            abs.display()
                        );
                    }
                    inner.short_of_watches = true;
                    return;
                }
                // Gone, or no directory (a symlink is not followed): its parent's events
                // say so.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => continue,
                // Not watched (no permission, ...): this hand-over cannot be complete.
                Err(_) => {
                    inner.complete = false;
                    continue;
                }
            }
            for child in subdirs(&abs) {
                let child = join(&dir, &child);
                if child != META_DIR.as_bytes() {
                    stack.push(child);
                }
            }
        }
    }
}

/// The names of the directories in `dir`, read without following a symlink at `dir`
/// (a symlink to the view itself would make the watcher wait on the view).
fn subdirs(dir: &Path) -> Vec<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(dir, flags, Mode::empty()) else {
        return Vec::new();
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| match e.file_type() {
            rustix::fs::FileType::Directory => true,
            // A file system that does not say: ask.
            rustix::fs::FileType::Unknown => {
                rustix::fs::statat(&fd, e.file_name(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| {
                        rustix::fs::FileType::from_raw_mode(st.st_mode)
                            == rustix::fs::FileType::Directory
                    })
            }
            _ => false,
        })
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect()
}

/// Reads events as they come, until the monitor is dropped.
fn follow(monitor: &Weak<Monitor>) {
    loop {
        let Some(m) = monitor.upgrade() else {
            return;
        };
        let mut fds = [rustix::event::PollFd::new(
            &m.fd,
            rustix::event::PollFlags::IN,
        )];
        let half_a_second = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 500_000_000,
        };
        if matches!(rustix::event::poll(&mut fds, Some(&half_a_second)), Ok(n) if n > 0) {
            let mut inner = m.lock();
            m.drain(&mut inner);
        }
    }
}
