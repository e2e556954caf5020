//! A test double: a [`FsRemote`] that can be told to hang or fail on chosen calls, to show
//! that a hung or broken mount never hangs cachesync and is never taken for deletions.

use std::io;
use std::sync::{Arc, Mutex};

use cachesync_objects::EntryKind;

use crate::fs_remote::FsRemote;
use crate::remote::{Remote, RemoteEntry, RemoteRead, RemoteWrite};

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
/// [`Remote`] method names (`list`, `stat`, `open`, `create`, `rename`, ...).
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

impl Remote for FaultRemote {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>> {
        self.check("list", dir)?;
        self.inner.list(dir, tick)
    }
    fn stat(&self, path: &[u8]) -> io::Result<Option<RemoteEntry>> {
        self.check("stat", path)?;
        self.inner.stat(path)
    }
    fn open(&self, path: &[u8]) -> io::Result<Box<dyn RemoteRead>> {
        self.check("open", path)?;
        self.inner.open(path)
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
    use crate::ignore_rules::IgnoreRules;
    use crate::timed::TimedRemote;
    use crate::SyncError;

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
        let err = crate::scan::walk_remote(&remote, &rules, 4).expect_err("must not succeed");
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
            let err = crate::scan::walk_remote(&remote, &rules, 2).expect_err("must fail");
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
        let err = crate::scan::walk_remote(&remote, &rules, 2).expect_err("must fail");
        assert!(matches!(err, SyncError::RemoteIo { .. }), "{err}");
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
