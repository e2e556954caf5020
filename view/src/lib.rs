//! `cachesync mount`: a workspace served as a FUSE file system that programs use as if it
//! were the share, online or offline.
//!
//! The view shows the whole tree the workspace knows: the files in the workspace directory
//! and the remote-only files (listed from the base snapshot with their size, mode, owner and
//! times). A remote-only file is fetched when a program opens it (through the workspace's
//! remote helper, within its timeout); offline, the open fails at once with EDISCONDATA's
//! errno (see [`errno`]). Every change goes to the workspace directory, so `cachesync sync`
//! finds it as it finds any other change, and nothing written through the view depends on
//! the view staying up. The cache's state of each path is an extended attribute ([`xattr`]).
//!
//! The daemon holds the workspace lock while it runs.

mod abs;
mod attr;
mod change;
pub mod control;
pub mod errno;
mod fs;
mod inodes;
mod invalidate;
mod known;
pub mod monitor;
pub mod state;
pub mod stream;
pub mod variants;
pub mod xattr;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cachesync_engine::{Result, SyncError, Workspace};
use fuser::{Config, MountOption};

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to mount (an existing, empty directory).
    pub mountpoint: PathBuf,
    /// The `cachesync` binary, to sync every `view_sync_seconds` (none: never).
    pub sync_with: Option<PathBuf>,
    /// Let every user use the view (FUSE's `allow_other`; others than root need
    /// `user_allow_other` in /etc/fuse.conf). Without it only the user who mounted it can.
    pub allow_other: bool,
}

/// A file at the root of the view (found by name, not listed) that holds the workspace's
/// root, one line: a cachesync command run inside the view finds its workspace through it.
pub const MARKER: &str = ".cachesync-view";

/// The workspace directory that stands for `cwd` when `cwd` is inside a view (found by the
/// [`MARKER`] in it or above it), else `None`.
pub fn workspace_dir_for(cwd: &Path) -> Option<PathBuf> {
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        if let Ok(text) = std::fs::read_to_string(d.join(MARKER)) {
            let root = PathBuf::from(text.trim_end_matches('\n'));
            let rest = cwd.strip_prefix(d).ok()?;
            return Some(root.join(rest));
        }
        dir = d.parent();
    }
    None
}

/// How often the daemon looks for a signal or an unmount.
const WATCH: Duration = Duration::from_millis(100);

/// Mounts the view of `ws` at [`Options::mountpoint`] and serves it until it is unmounted
/// (`cachesync umount`, `fusermount3 -u`) or the process gets SIGTERM, SIGINT or SIGHUP
/// (it then unmounts lazily, and returns once no program uses the view any more). A stale mount left at the mount point by a killed daemon (its calls
/// fail with ENOTCONN) is lazily unmounted first.
///
/// # Errors
/// [`SyncError::Usage`] when the mount point is not a directory or already holds a live
/// mount; I/O errors from mounting; store errors.
pub fn run(ws: Workspace, opts: &Options) -> Result<()> {
    let mp = &opts.mountpoint;
    recover_stale(mp)?;
    if !mp.is_dir() {
        return Err(SyncError::Usage(format!(
            "{}: the mount point must be an existing directory",
            mp.display()
        )));
    }
    if is_mounted(mp) {
        return Err(SyncError::Usage(format!(
            "{}: something is already mounted there (`cachesync umount {}`)",
            mp.display(),
            mp.display()
        )));
    }
    let every = ws
        .config
        .view_sync_seconds
        .unwrap_or(cachesync_engine::config::VIEW_SYNC_SECONDS);
    let (root, meta) = (ws.root.clone(), ws.meta_dir());
    let state = state::State::new(ws).map_err(|e| io_error(mp, e))?;
    let monitor = monitor::Monitor::start(&root);
    let state = Arc::new(std::sync::Mutex::new(state));
    {
        let mut s = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.me = Arc::downgrade(&state);
        s.monitor = monitor;
    }
    let socket = meta.join(control::SOCKET);
    if let Err(e) = control::serve(&socket, Arc::clone(&state)) {
        eprintln!(
            "cachesync: {}: no control socket ({e}): other commands wait for `cachesync umount`",
            socket.display()
        );
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("cachesync".into()),
        MountOption::Subtype("cachesync".into()),
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(1);
    if opts.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    // Before the mount: from the moment it answers, a SIGTERM must unmount and exit 0,
    // never kill the daemon with the view still listed (a test that stopped it as soon as
    // it answered saw the signal's default action).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| SyncError::io(mp, e))?;
    }
    let session = fuser::spawn_mount(fs::View::new(Arc::clone(&state)), mp, &config)
        .map_err(|e| SyncError::io(mp, e))?;
    {
        // With a monitor, the kernel's answers live long and are forgotten on each change.
        let mut s = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = s.monitor.clone() {
            let changes = invalidate::start(session.notifier(), Arc::downgrade(&state));
            m.tell(changes.clone());
            s.changes = Some(changes);
        }
    }
    drop(state);
    if let (Some(exe), true) = (&opts.sync_with, every > 0) {
        let log = meta.join("mount.log");
        let every = Duration::from_secs(every);
        control::sync_every(exe.clone(), root, log, every, Arc::clone(&stop));
    }
    while !stop.load(Ordering::Relaxed) && !session.guard.is_finished() {
        std::thread::park_timeout(WATCH);
    }
    if !session.guard.is_finished() {
        // Detach now; the kernel ends the session once the last program using the view
        // lets go, and the files they still have open keep working until then.
        unmount(mp, true)?;
    }
    stop.store(true, Ordering::Relaxed);
    let ended = session.join().map_err(|e| SyncError::io(mp, e));
    let _ = std::fs::remove_file(&socket);
    ended
}

fn io_error(mp: &Path, e: fuser::Errno) -> SyncError {
    SyncError::io(mp, std::io::Error::from_raw_os_error(i32::from(e)))
}

/// True when `path` is a mount point (its device differs from its parent's, or the kernel
/// says the connection behind it is gone).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else {
        return false;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        (Err(e), _) => e.raw_os_error() == Some(libc::ENOTCONN),
        _ => false,
    }
}

/// Unmounts (lazily) a FUSE mount whose daemon is gone: every call on it fails with
/// ENOTCONN ("Transport endpoint is not connected").
///
/// # Errors
/// I/O errors running `fusermount3`.
pub fn recover_stale(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => unmount(path, true),
        _ => Ok(()),
    }
}

/// How long [`unmount_and_wait`] waits for the daemon to let go of the workspace.
const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Unmounts the view at `path` (see [`unmount`]) and, unless `lazy`, waits until its daemon
/// has let go of the workspace lock, so that the next command (another `mount`, a `sync`)
/// finds the workspace free. Returns false when the daemon still held it after
/// [`EXIT_WAIT`] (or `path` was no view of ours, and there is nothing to wait for: true).
///
/// # Errors
/// As [`unmount`].
pub fn unmount_and_wait(path: &Path, lazy: bool) -> Result<bool> {
    let lock = std::fs::read_to_string(path.join(MARKER)).ok().map(|root| {
        PathBuf::from(root.trim_end_matches('\n'))
            .join(cachesync_engine::ignore_rules::META_DIR)
            .join("lock")
    });
    unmount(path, lazy)?;
    let Some(lock) = lock.filter(|_| !lazy) else {
        return Ok(true);
    };
    let start = std::time::Instant::now();
    loop {
        match cachesync_engine::lock::WorkspaceLock::acquire(&lock) {
            Err(SyncError::Locked { .. }) if start.elapsed() < EXIT_WAIT => {
                std::thread::park_timeout(Duration::from_millis(20));
            }
            Err(SyncError::Locked { .. }) => return Ok(false),
            _ => return Ok(true),
        }
    }
}

/// Unmounts the view at `path` with `fusermount3 -u` (`-uz`, lazily, when `lazy`: it goes
/// once the last program using it lets go).
///
/// # Errors
/// [`SyncError::Usage`] naming what `fusermount3` said when it refuses (nothing mounted
/// there, the mount busy); I/O errors when it cannot run.
pub fn unmount(path: &Path, lazy: bool) -> Result<()> {
    let out = std::process::Command::new("fusermount3")
        .arg(if lazy { "-uz" } else { "-u" })
        .arg(path)
        .output()
        .map_err(|e| SyncError::io(Path::new("fusermount3"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(SyncError::Usage(format!(
        "{}: cannot unmount: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
