//! A test double: a [`FsRemote`] that can be told to hang or fail on chosen calls, to show
//! that a hung or broken mount never hangs cachesync and is never taken for deletions.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cachesync_engine::fs_remote::FsRemote;
use cachesync_engine::remote::{Remote, RemoteEntry, RemoteRead, RemoteWrite};
use cachesync_engine::workspace::RemoteFactory;
use cachesync_objects::EntryKind;

/// What to do on a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Block forever, as a call stuck in a frozen FUSE mount does.
    Hang,
    /// Fail with this errno.
    Errno(i32),
}

/// One injected fault: call name, path prefix, what happens.
type Injected = (String, Vec<u8>, Fault);

/// A remote with injected faults: `(call name, path prefix) → fault`. Call names are the
/// [`Remote`] method names (`list`, `stat`, `open`, `create`, `rename`, ...), `read` for the
/// reads of an opened file after its first, and `readlink` for the symlink targets a listing
/// reads (an errno there is reported in the entry, as
/// [`FsRemote`] does: the listing goes on).
#[derive(Clone)]
pub struct FaultRemote {
    inner: FsRemote,
    faults: Arc<Mutex<Vec<Injected>>>,
}

impl FaultRemote {
    /// Wraps a directory remote, with no faults yet.
    pub fn new(inner: FsRemote) -> FaultRemote {
        FaultRemote {
            inner,
            faults: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// From now on, `call` on paths starting with `prefix` does `fault`.
    pub fn inject(&self, call: &str, prefix: &[u8], fault: Fault) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).push((
            call.to_string(),
            prefix.to_vec(),
            fault,
        ));
    }

    /// From now on, no call fails: every injected fault is taken back.
    pub fn clear(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A [`RemoteFactory`] that gives this remote (a clone sharing its faults) to a workspace,
    /// whatever directory it asks for.
    pub fn factory(&self) -> RemoteFactory {
        let remote = self.clone();
        Arc::new(move |_: &Path| Arc::new(remote.clone()) as Arc<dyn Remote>)
    }

    fn check(&self, call: &str, path: &[u8]) -> io::Result<()> {
        let fault = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(c, p, _)| c == call && path.starts_with(p))
            .map(|(_, _, f)| f.clone());
        match fault {
            None => Ok(()),
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Fault::Hang) => loop {
                std::thread::park();
            },
        }
    }
}

/// A file opened on a [`FaultRemote`]: every read after the first checks the `read` fault
/// (so that a test sees the first bytes of a file come, then the rest hang or fail).
struct FaultRead {
    inner: Box<dyn RemoteRead>,
    remote: FaultRemote,
    path: Vec<u8>,
    reads: u64,
}

impl io::Read for FaultRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reads > 0 {
            self.remote.check("read", &self.path)?;
        }
        self.reads += 1;
        self.inner.read(buf)
    }
}

impl RemoteRead for FaultRead {
    fn close(self: Box<Self>) -> io::Result<()> {
        self.inner.close()
    }
}

impl Remote for FaultRemote {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>> {
        self.check("list", dir)?;
        let mut list = self.inner.list(dir, tick)?;
        for e in list.iter_mut().filter(|e| e.kind == EntryKind::Symlink) {
            if let Err(err) = self.check("readlink", &cachesync_engine::paths::join(dir, &e.name)) {
                e.target.clear();
                e.target_errno = Some(err.raw_os_error().unwrap_or(libc::EIO));
            }
        }
        Ok(list)
    }
    fn stat(&self, path: &[u8]) -> io::Result<Option<RemoteEntry>> {
        self.check("stat", path)?;
        self.inner.stat(path)
    }
    fn open(&self, path: &[u8]) -> io::Result<Box<dyn RemoteRead>> {
        self.check("open", path)?;
        Ok(Box::new(FaultRead {
            inner: self.inner.open(path)?,
            remote: self.clone(),
            path: path.to_vec(),
            reads: 0,
        }))
    }
    fn create(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        self.check("create", path)?;
        self.inner.create(path)
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        self.check("rename", to)?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &[u8]) -> io::Result<()> {
        self.check("remove_file", path)?;
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &[u8]) -> io::Result<()> {
        self.check("remove_dir", path)?;
        self.inner.remove_dir(path)
    }
    fn mkdir(&self, path: &[u8], mode: u32) -> io::Result<()> {
        self.check("mkdir", path)?;
        self.inner.mkdir(path, mode)
    }
    fn set_mode(&self, path: &[u8], mode: u32) -> io::Result<()> {
        self.check("set_mode", path)?;
        self.inner.set_mode(path, mode)
    }
    fn symlink(&self, target: &[u8], path: &[u8]) -> io::Result<()> {
        self.check("symlink", path)?;
        self.inner.symlink(target, path)
    }
    fn mknod(&self, path: &[u8], kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()> {
        self.check("mknod", path)?;
        self.inner.mknod(path, kind, mode, rdev)
    }
    fn canonical_root(&self) -> io::Result<std::path::PathBuf> {
        self.check("canonical_root", b"")?;
        self.inner.canonical_root()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use cachesync_engine::ignore_rules::IgnoreRules;
    use cachesync_engine::timed::TimedRemote;
    use cachesync_engine::SyncError;

    fn setup() -> (tempfile::TempDir, FaultRemote) {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["a", "b", "c"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
            std::fs::write(dir.path().join(d).join("f"), d).expect("write");
        }
        let remote = FaultRemote::new(FsRemote::new(dir.path()));
        (dir, remote)
    }

    #[test]
    fn a_hung_listing_is_abandoned_after_the_timeout_and_trips_the_pool() {
        let (dir, fault) = setup();
        fault.inject("list", b"b", Fault::Hang);
        let remote = TimedRemote::new(Arc::new(fault), Duration::from_millis(300));
        let rules = IgnoreRules::load(dir.path()).expect("rules");
        let started = Instant::now();
        let err =
            cachesync_engine::scan::walk_remote(&remote, &rules, 4).expect_err("must not succeed");
        assert!(matches!(err, SyncError::Disconnected { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Every later call fails at once: one hung mount costs one timeout.
        let started = Instant::now();
        assert!(matches!(
            remote.stat(b"a"),
            Err(SyncError::Disconnected { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn network_errors_mean_disconnected_not_missing() {
        for errno in [libc::EIO, libc::ENOTCONN, libc::ETIMEDOUT, libc::ESTALE] {
            let (dir, fault) = setup();
            fault.inject("list", b"c", Fault::Errno(errno));
            let remote = TimedRemote::new(Arc::new(fault), Duration::from_secs(5));
            let rules = IgnoreRules::load(dir.path()).expect("rules");
            let err =
                cachesync_engine::scan::walk_remote(&remote, &rules, 2).expect_err("must fail");
            assert!(
                matches!(err, SyncError::Disconnected { .. }),
                "errno {errno}: {err}"
            );
        }
    }

    #[test]
    fn an_unreadable_directory_is_an_error_never_empty() {
        let (dir, fault) = setup();
        fault.inject("list", b"a", Fault::Errno(libc::EACCES));
        let remote = TimedRemote::new(Arc::new(fault), Duration::from_secs(5));
        let rules = IgnoreRules::load(dir.path()).expect("rules");
        let err = cachesync_engine::scan::walk_remote(&remote, &rules, 2).expect_err("must fail");
        assert!(matches!(err, SyncError::RemoteIo { .. }), "{err}");
    }

    /// Walks and scans the remote (nothing seen before), as a sync does.
    fn scan_remote(
        dir: &std::path::Path,
        remote: &TimedRemote,
        previous: &cachesync_engine::scan::Flat,
    ) -> cachesync_engine::Result<cachesync_engine::scan::RemoteScan> {
        let rules = IgnoreRules::load(dir).expect("rules");
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = cachesync_objects::Store::create(&store_dir.path().join("s")).expect("store");
        let started = cachesync_engine::now_ns();
        let walk = cachesync_engine::scan::walk_remote(remote, &rules, 2)?;
        let none = std::collections::HashSet::new();
        cachesync_engine::scan::fetch_changed(
            remote,
            walk,
            &rules,
            &store,
            (previous, started),
            &none,
            &none,
            (2, None),
            &|_, _| {},
        )
    }

    fn unreadable_paths(scan: &cachesync_engine::scan::RemoteScan) -> Vec<&str> {
        scan.unreadable.iter().map(|u| u.path.as_str()).collect()
    }

    #[test]
    fn a_file_the_server_refuses_to_read_is_left_out_not_a_failed_scan() {
        let (dir, fault) = setup();
        fault.inject("open", b"b/f", Fault::Errno(libc::EACCES));
        let remote = TimedRemote::new(Arc::new(fault), Duration::from_secs(5));
        let scan =
            scan_remote(dir.path(), &remote, &Default::default()).expect("the scan succeeds");
        assert_eq!(unreadable_paths(&scan), ["b/f"]);
        assert!(scan.unreadable[0].reason.contains("Permission denied"));
        assert!(
            scan.unstable.contains(&b"b/f".to_vec()),
            "left out of the run"
        );
        assert!(
            !scan.tree.contains_key(b"b/f".as_slice()),
            "never read: not there"
        );
        assert!(scan.tree.contains_key(b"a/f".as_slice()));
        assert!(scan.tree.contains_key(b"c/f".as_slice()));
        assert!(!remote.pool().is_tripped());
    }

    #[test]
    fn eio_on_one_file_is_about_that_file_only_while_the_share_answers() {
        let (dir, fault) = setup();
        fault.inject("open", b"b/f", Fault::Errno(libc::EIO));
        let remote = TimedRemote::new(Arc::new(fault.clone()), Duration::from_secs(5));
        let scan =
            scan_remote(dir.path(), &remote, &Default::default()).expect("the scan succeeds");
        assert_eq!(unreadable_paths(&scan), ["b/f"]);
        assert!(!remote.pool().is_tripped());

        // The same EIO when the share does not answer either is the outage it looks like.
        fault.inject("stat", b"", Fault::Errno(libc::EIO));
        let remote = TimedRemote::new(Arc::new(fault), Duration::from_secs(5));
        let err = scan_remote(dir.path(), &remote, &Default::default()).err();
        assert!(
            matches!(err, Some(SyncError::Disconnected { .. })),
            "{err:?}"
        );
        assert!(remote.pool().is_tripped());
    }

    #[test]
    fn a_symlink_whose_target_cannot_be_read_is_listed_and_left_as_last_seen() {
        let (dir, fault) = setup();
        std::os::unix::fs::symlink("../x", dir.path().join("a/up")).expect("symlink");
        std::os::unix::fs::symlink("f", dir.path().join("a/plain")).expect("symlink");
        fault.inject("readlink", b"a/up", Fault::Errno(libc::EPERM));
        let remote = TimedRemote::new(Arc::new(fault.clone()), Duration::from_secs(5));
        let scan1 =
            scan_remote(dir.path(), &remote, &Default::default()).expect("the scan succeeds");
        assert_eq!(unreadable_paths(&scan1), ["a/up"]);
        assert_eq!(scan1.unreadable[0].kind, "symlink");
        assert!(
            scan1.unreadable[0].remedy.contains("no_contain_symlinks"),
            "{:?}",
            scan1.unreadable[0]
        );
        assert!(!scan1.tree.contains_key(b"a/up".as_slice()));
        assert_eq!(scan1.tree[b"a/plain".as_slice()].target, b"f");

        // Seen before: kept as it was seen, never taken for a deletion.
        let mut previous = scan1.tree.clone();
        let mut seen = cachesync_objects::Entry::new(b"up", EntryKind::Symlink);
        seen.target = b"old".to_vec();
        previous.insert(b"a/up".to_vec(), seen.clone());
        let scan2 = scan_remote(dir.path(), &remote, &previous).expect("the scan succeeds");
        assert_eq!(scan2.tree.get(b"a/up".as_slice()), Some(&seen));
        assert!(scan2.unstable.contains(&b"a/up".to_vec()));

        // EIO on the target during an outage is the outage.
        fault.inject("readlink", b"a/plain", Fault::Errno(libc::EIO));
        fault.inject("stat", b"", Fault::Errno(libc::EIO));
        let remote = TimedRemote::new(Arc::new(fault), Duration::from_secs(5));
        let err = scan_remote(dir.path(), &remote, &Default::default()).err();
        assert!(
            matches!(err, Some(SyncError::Disconnected { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_slow_but_progressing_listing_is_not_a_timeout() {
        let (dir, fault) = setup();
        for i in 0..30 {
            std::fs::write(dir.path().join("a").join(format!("g{i}")), "x").expect("write");
        }
        // Each entry takes 20 ms: 600 ms in all, with a 200 ms timeout between ticks.
        struct Slow(FaultRemote);
        impl Remote for Slow {
            fn describe(&self) -> String {
                self.0.describe()
            }
            fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>> {
                let slow_tick = || {
                    std::thread::sleep(Duration::from_millis(20));
                    tick();
                };
                self.0.list(dir, &slow_tick)
            }
            fn stat(&self, p: &[u8]) -> io::Result<Option<RemoteEntry>> {
                self.0.stat(p)
            }
            fn open(&self, p: &[u8]) -> io::Result<Box<dyn RemoteRead>> {
                self.0.open(p)
            }
            fn create(&self, p: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
                self.0.create(p)
            }
            fn rename(&self, f: &[u8], t: &[u8]) -> io::Result<()> {
                self.0.rename(f, t)
            }
            fn remove_file(&self, p: &[u8]) -> io::Result<()> {
                self.0.remove_file(p)
            }
            fn remove_dir(&self, p: &[u8]) -> io::Result<()> {
                self.0.remove_dir(p)
            }
            fn mkdir(&self, p: &[u8], m: u32) -> io::Result<()> {
                self.0.mkdir(p, m)
            }
            fn set_mode(&self, p: &[u8], m: u32) -> io::Result<()> {
                self.0.set_mode(p, m)
            }
            fn symlink(&self, t: &[u8], p: &[u8]) -> io::Result<()> {
                self.0.symlink(t, p)
            }
            fn mknod(&self, p: &[u8], k: EntryKind, m: u32, r: u64) -> io::Result<()> {
                self.0.mknod(p, k, m, r)
            }
            fn canonical_root(&self) -> io::Result<std::path::PathBuf> {
                self.0.canonical_root()
            }
        }
        let remote = TimedRemote::new(Arc::new(Slow(fault)), Duration::from_millis(200));
        let list = remote
            .list(b"a")
            .expect("a slow listing that progresses succeeds");
        assert_eq!(list.len(), 31);
    }
}
