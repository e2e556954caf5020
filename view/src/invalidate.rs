//! Keeping the kernel's caches of the view true, so that they may live long.
//!
//! The kernel caches what the view answers (a name's inode, an inode's attributes) for as
//! long as the answer says. What changes through the view updates those caches by itself;
//! what changes behind its back would show late. With a [`crate::monitor::Monitor`] the view
//! hears of every change to the workspace directory, and after a command it reads the store
//! again and sees which remote-only files came, went or changed: each such path is sent here,
//! and a thread of its own tells the kernel to forget the path's entry and the attributes of
//! the path and of its directory, and their pages: a directory's are the listing the kernel
//! keeps (`FUSE_NOTIFY_INVAL_ENTRY`, `FUSE_NOTIFY_INVAL_INODE`). Then the answers can live
//! [`LONG`] and listings stay in the kernel; without a monitor answers live [`SHORT`] and
//! listings are read anew at each open.
//!
//! The thread takes the view's lock only to turn paths into inode numbers, and tells the
//! kernel with no lock held: the kernel may have to wait, to forget an entry, for a request
//! the view is serving, and that request may need the lock.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use cachesync_engine::paths::split_parent;
use fuser::{INodeNo, Notifier};

use crate::state::State;

/// How long the kernel keeps an answer when changes behind the view's back are heard of.
pub const LONG: Duration = Duration::from_secs(60);

/// How long it keeps one otherwise (and for the view's own files: variants, the marker).
pub const SHORT: Duration = Duration::from_secs(1);

/// How long changes gather before the kernel is told of them.
const BATCH: Duration = Duration::from_millis(10);

/// Where changed paths are sent: each with whether its name may now stand for nothing (it
/// was removed or renamed away), when the kernel must forget the name itself. Otherwise a
/// name keeps its inode number (numbers follow paths, see `inodes.rs`) and only what the
/// kernel knows of that inode goes: forgetting a name that still stands, a directory
/// just made through the view say, would cut off a program whose working directory it is.
pub type Changes = Sender<(Vec<u8>, bool)>;

/// Starts the thread that tells the kernel to forget what changed; it ends when every
/// sender is gone or the view is.
pub fn start(notifier: Notifier, state: Weak<Mutex<State>>) -> Changes {
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("view-invalidate".into())
        .spawn(move || forget(&notifier, &state, &rx))
        .expect("a thread starts");
    tx
}

/// What the kernel is told to forget for one path: its directory's number and its own
/// (when known), its name, and whether the name itself goes.
type Target = (Option<u64>, Option<u64>, Vec<u8>, bool);

fn forget(notifier: &Notifier, state: &Weak<Mutex<State>>, rx: &Receiver<(Vec<u8>, bool)>) {
    while let Ok(first) = rx.recv() {
        // What comes within a few milliseconds goes in one batch: a big file written
        // behind the view's back (or through it) is forgotten once per batch, not per write.
        let mut paths = vec![first];
        let until = std::time::Instant::now() + BATCH;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(p) => paths.push(p),
                Err(_) => break,
            }
        }
        paths.sort();
        paths.dedup();
        let Some(state) = state.upgrade() else {
            return;
        };
        // Numbers only for what the kernel may have been told of (known numbers).
        let targets: Vec<Target> = {
            let s = state.lock().unwrap_or_else(PoisonError::into_inner);
            paths
                .iter()
                .map(|(p, gone)| {
                    let (dir, name) = split_parent(p);
                    (s.inodes.known(dir), s.inodes.known(p), name.to_vec(), *gone)
                })
                .collect()
        };
        drop(state);
        // Offset 0: the pages go too, which for a directory are the listing the kernel
        // keeps (`FOPEN_CACHE_DIR`), and for a file what was read of it.
        for (dir, me, name, gone) in targets {
            if let Some(dir) = dir {
                if gone {
                    let _ = notifier.inval_entry(INodeNo(dir), OsStr::from_bytes(&name));
                }
                let _ = notifier.inval_inode(INodeNo(dir), 0, 0);
            }
            if let Some(me) = me {
                let _ = notifier.inval_inode(INodeNo(me), 0, 0);
            }
        }
    }
}
