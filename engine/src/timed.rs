//! Remote calls with a timeout: a hung mount never hangs cachesync's caller.
//!
//! Every remote call runs on a worker thread of a [`CallPool`]; the caller waits at most the
//! timeout. A call that outlives it is abandoned (the thread may stay stuck in the kernel: a
//! call stuck in FUSE cannot be interrupted) and the pool *trips*: every later call fails at
//! once as disconnected, so one hung mount costs one timeout, not one per file. Network-class
//! errors trip it too. Both become [`SyncError::Disconnected`], never "not found".
//!
//! Except for one entry's content: an error opening or reading one file, or reading one
//! symlink's target, may be about that entry alone (the server refuses it, or fails on that
//! file) while the share answers for everything else. EPERM and EACCES are; a network-class
//! error (EIO) is only when the share answers a probe made right after it (a lookup of a
//! name that does not exist, which no cache can answer); otherwise it is the outage it
//! looks like. See [`TimedRemote::entry_failure`].

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachesync_objects::EntryKind;
use crossbeam_channel::{bounded, unbounded, RecvTimeoutError, Sender};

use crate::error::{Result, SyncError};
use crate::paths::display;

/// A remote path for messages; the root has a name too.
fn place(path: &[u8]) -> String {
    if path.is_empty() {
        "the remote root".into()
    } else {
        display(path)
    }
}
use crate::remote::{is_network_error, Remote, RemoteEntry, RemoteRead, RemoteWrite, SmallRead};

type Job = Box<dyn FnOnce() + Send>;

struct PoolInner {
    jobs: Sender<Job>,
    receiver: crossbeam_channel::Receiver<Job>,
    idle: AtomicUsize,
    tripped: AtomicBool,
    reason: Mutex<String>,
}

/// Worker threads that run remote calls, each awaited with a timeout.
#[derive(Clone)]
pub struct CallPool {
    inner: Arc<PoolInner>,
    timeout: Duration,
}

impl CallPool {
    /// A pool whose calls time out after `timeout`.
    pub fn new(timeout: Duration) -> CallPool {
        let (jobs, receiver) = unbounded::<Job>();
        CallPool {
            inner: Arc::new(PoolInner {
                jobs,
                receiver,
                idle: AtomicUsize::new(0),
                tripped: AtomicBool::new(false),
                reason: Mutex::new(String::new()),
            }),
            timeout,
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True once a call timed out or failed with a network-class error.
    pub fn is_tripped(&self) -> bool {
        self.inner.tripped.load(Ordering::SeqCst)
    }

    fn trip(&self, reason: String) -> SyncError {
        self.inner.tripped.store(true, Ordering::SeqCst);
        let mut r = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_empty() {
            *r = reason.clone();
        }
        SyncError::Disconnected { reason }
    }

    fn spawn_worker(&self) {
        let inner = Arc::clone(&self.inner);
        std::thread::Builder::new()
            .name("remote-call".into())
            .spawn(move || loop {
                inner.idle.fetch_add(1, Ordering::SeqCst);
                let job = inner.receiver.recv();
                inner.idle.fetch_sub(1, Ordering::SeqCst);
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
    }

    /// Runs `f` on a worker and waits at most the timeout. `what` names the call for messages.
    ///
    /// # Errors
    /// [`SyncError::Disconnected`] on a timeout, a network-class error, or once tripped;
    /// [`SyncError::RemoteIo`] for other I/O errors (at `path`).
    pub fn run<T: Send + 'static>(
        &self,
        what: &str,
        path: &[u8],
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run_ticking(what, path, move |_| f())
    }

    /// Like [`CallPool::run`], for a call made of many small remote calls: `f` gets a `tick`
    /// to call after each, and the timeout applies between ticks rather than to the whole.
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn run_ticking<T: Send + 'static>(
        &self,
        what: &str,
        path: &[u8],
        f: impl FnOnce(&dyn Fn()) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        match self.run_raw(what, path, f)? {
            Ok(v) => Ok(v),
            Err(e) if is_network_error(&e) => {
                Err(self.trip(format!("{what} {}: {e}", place(path))))
            }
            Err(e) => Err(SyncError::RemoteIo {
                path: PathBuf::from(place(path)),
                source: e,
            }),
        }
    }

    /// Like [`CallPool::run_ticking`], but the call's own error is returned as it is, for the
    /// caller to classify: only a timeout (or a tripped pool) is an error here.
    ///
    /// # Errors
    /// [`SyncError::Disconnected`] on a timeout, or once tripped.
    fn run_raw<T: Send + 'static>(
        &self,
        what: &str,
        path: &[u8],
        f: impl FnOnce(&dyn Fn()) -> io::Result<T> + Send + 'static,
    ) -> Result<io::Result<T>> {
        if self.is_tripped() {
            let reason = self
                .inner
                .reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(SyncError::Disconnected { reason });
        }
        let (tx, rx) = bounded(1);
        if self.inner.idle.load(Ordering::SeqCst) == 0 {
            self.spawn_worker();
        }
        let ticks = Arc::new(AtomicUsize::new(0));
        let job_ticks = Arc::clone(&ticks);
        let job: Job = Box::new(move || {
            let tick = move || {
                job_ticks.fetch_add(1, Ordering::Relaxed);
            };
            let _ = tx.send(f(&tick));
        });
        self.inner
            .jobs
            .send(job)
            .expect("the pool holds its own receiver, so the channel is open");
        let mut seen = 0;
        let received = loop {
            match rx.recv_timeout(self.timeout) {
                Err(RecvTimeoutError::Timeout) => {
                    let now = ticks.load(Ordering::Relaxed);
                    if now == seen {
                        break Err(RecvTimeoutError::Timeout);
                    }
                    seen = now;
                }
                other => break other,
            }
        };
        match received {
            Ok(result) => Ok(result),
            Err(RecvTimeoutError::Timeout) => Err(self.trip(format!(
                "{what} {} did not answer within {:.1} s",
                place(path),
                self.timeout.as_secs_f64()
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.trip(format!("{what} {}: the call panicked", place(path))))
            }
        }
    }
}

/// A [`Remote`] whose every call is bounded by a [`CallPool`].
#[derive(Clone)]
pub struct TimedRemote {
    inner: Arc<dyn Remote>,
    pool: CallPool,
}

macro_rules! timed {
    ($self:ident, $what:expr, $path:expr, |$r:ident| $body:expr) => {{
        let $r = Arc::clone(&$self.inner);
        $self.pool.run($what, $path, move || $body)
    }};
}

impl TimedRemote {
    /// Wraps `inner` with calls bounded by `timeout`.
    pub fn new(inner: Arc<dyn Remote>, timeout: Duration) -> TimedRemote {
        TimedRemote {
            inner,
            pool: CallPool::new(timeout),
        }
    }

    /// The pool (to ask whether it tripped).
    pub fn pool(&self) -> &CallPool {
        &self.pool
    }

    /// See [`Remote::describe`].
    pub fn describe(&self) -> String {
        self.inner.describe()
    }

    /// See [`Remote::list`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn list(&self, dir: &[u8]) -> Result<Vec<RemoteEntry>> {
        let d = dir.to_vec();
        let r = Arc::clone(&self.inner);
        self.pool
            .run_ticking("listing", dir, move |tick| r.list(&d, tick))
    }

    /// See [`Remote::stat`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn stat(&self, path: &[u8]) -> Result<Option<RemoteEntry>> {
        let p = path.to_vec();
        timed!(self, "stat of", path, |r| r.stat(&p))
    }

    /// A whole small file and its attributes after the read (see [`Remote::read_small`]),
    /// bounded as one call. An error about this one file is not an outage (see
    /// [`TimedRemote::entry_failure`]).
    ///
    /// # Errors
    /// As [`CallPool::run`], and as [`TimedRemote::entry_failure`].
    pub fn read_small(&self, path: &[u8], max: u64) -> Result<SmallRead> {
        let p = path.to_vec();
        let r = Arc::clone(&self.inner);
        match self
            .pool
            .run_raw("reading", path, move |_| r.read_small(&p, max))?
        {
            Ok(read) => Ok(read),
            Err(e) => Err(self.entry_failure("reading", path, e)),
        }
    }

    /// [`TimedRemote::read_small`] of several files in one call (see
    /// [`Remote::read_small_many`]), bounded per file: one result per path, in order, each
    /// error classified as [`TimedRemote::read_small`]'s.
    ///
    /// # Errors
    /// As [`CallPool::run`], for the call as a whole.
    pub fn read_small_many(&self, paths: Vec<Vec<u8>>, max: u64) -> Result<Vec<Result<SmallRead>>> {
        let paths = Arc::new(paths);
        let (r, call_paths) = (Arc::clone(&self.inner), Arc::clone(&paths));
        let first = paths.first().map_or(&[][..], Vec::as_slice);
        let reads = self.pool.run_ticking("reading", first, move |tick| {
            r.read_small_many(&call_paths, max, tick)
        })?;
        Ok(reads
            .into_iter()
            .zip(paths.iter())
            .map(|(read, path)| read.map_err(|e| self.entry_failure("reading", path, e)))
            .collect())
    }

    /// Opens a file; each read of the result is bounded too. An error about this one file
    /// is not an outage (see [`TimedRemote::entry_failure`]), neither when opening nor when
    /// reading.
    ///
    /// # Errors
    /// As [`CallPool::run`], and as [`TimedRemote::entry_failure`].
    pub fn open(&self, path: &[u8]) -> Result<TimedReader> {
        let p = path.to_vec();
        let r = Arc::clone(&self.inner);
        let file = match self.pool.run_raw("opening", path, move |_| r.open(&p))? {
            Ok(file) => file,
            Err(e) => return Err(self.entry_failure("opening", path, e)),
        };
        Ok(TimedReader {
            file: Arc::new(Mutex::new(Some(file))),
            remote: self.clone(),
            path: path.to_vec(),
            error: None,
        })
    }

    /// What the error `e` of a call on the one entry at `path` (`what`: "opening",
    /// "reading", ...) means. A network-class error is an outage unless the share answers a
    /// probe made now: a lookup of a name that does not exist next to the entry (a fresh
    /// one each time, so no cache of the mount can answer it). Whatever the share answers,
    /// the error was about that entry alone. An outage trips the pool, as any call's
    /// network-class error does.
    ///
    /// Returns [`SyncError::RemoteIo`] with `e` (its errno kept) for an error about the entry
    /// alone, [`SyncError::Disconnected`] for an outage.
    pub fn entry_failure(&self, what: &str, path: &[u8], e: io::Error) -> SyncError {
        if is_network_error(&e) {
            let probe = probe_name(path);
            let r = Arc::clone(&self.inner);
            let p = probe.clone();
            match self.pool.run_raw("probing", &probe, move |_| r.stat(&p)) {
                Ok(Ok(_)) => {}
                Ok(Err(answer)) if !is_network_error(&answer) => {}
                Ok(Err(_)) => return self.pool.trip(format!("{what} {}: {e}", place(path))),
                Err(disconnected) => return disconnected,
            }
        }
        SyncError::RemoteIo {
            path: PathBuf::from(place(path)),
            source: e,
        }
    }

    /// Creates a new file; each write of the result is bounded too.
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn create(&self, path: &[u8]) -> Result<TimedWriter> {
        let p = path.to_vec();
        let file = timed!(self, "creating", path, |r| r.create(&p))?;
        Ok(TimedWriter {
            file: Arc::new(Mutex::new(Some(file))),
            pool: self.pool.clone(),
            path: path.to_vec(),
        })
    }

    /// See [`Remote::copies_on_server`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn copies_on_server(&self) -> Result<bool> {
        timed!(self, "asking the file system of", b"", |r| r
            .copies_on_server())
    }

    /// Opens an existing file to write in place (see [`Remote::open_in_place`]); each call
    /// on the result is bounded too.
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn open_in_place(&self, path: &[u8]) -> Result<TimedWriter> {
        let p = path.to_vec();
        let file = timed!(self, "opening", path, |r| r.open_in_place(&p))?;
        Ok(TimedWriter {
            file: Arc::new(Mutex::new(Some(file))),
            pool: self.pool.clone(),
            path: path.to_vec(),
        })
    }

    /// See [`Remote::rename`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let (f, t) = (from.to_vec(), to.to_vec());
        timed!(self, "renaming", to, |r| r.rename(&f, &t))
    }

    /// See [`Remote::rename_atomic`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn rename_atomic(&self, from: &[u8], to: &[u8], exchange: bool) -> Result<bool> {
        let (f, t) = (from.to_vec(), to.to_vec());
        timed!(self, "renaming", to, |r| r.rename_atomic(&f, &t, exchange))
    }

    /// See [`Remote::remove_file`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn remove_file(&self, path: &[u8]) -> Result<()> {
        let p = path.to_vec();
        timed!(self, "removing", path, |r| r.remove_file(&p))
    }

    /// See [`Remote::remove_dir`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn remove_dir(&self, path: &[u8]) -> Result<()> {
        let p = path.to_vec();
        timed!(self, "removing directory", path, |r| r.remove_dir(&p))
    }

    /// See [`Remote::mkdir`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn mkdir(&self, path: &[u8], mode: u32) -> Result<()> {
        let p = path.to_vec();
        timed!(self, "creating directory", path, |r| r.mkdir(&p, mode))
    }

    /// See [`Remote::set_mode`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn set_mode(&self, path: &[u8], mode: u32) -> Result<()> {
        let p = path.to_vec();
        timed!(self, "changing mode of", path, |r| r.set_mode(&p, mode))
    }

    /// See [`Remote::symlink`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn symlink(&self, target: &[u8], path: &[u8]) -> Result<()> {
        let (t, p) = (target.to_vec(), path.to_vec());
        timed!(self, "creating symlink", path, |r| r.symlink(&t, &p))
    }

    /// See [`Remote::canonical_root`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn canonical_root(&self) -> Result<PathBuf> {
        let r = Arc::clone(&self.inner);
        self.pool.run("resolving", b"", move || r.canonical_root())
    }

    /// See [`Remote::mknod`].
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn mknod(&self, path: &[u8], kind: EntryKind, mode: u32, rdev: u64) -> Result<()> {
        let p = path.to_vec();
        timed!(self, "creating node", path, |r| r
            .mknod(&p, kind, mode, rdev))
    }
}

/// A name next to `path` that does not exist: a new one at each call.
fn probe_name(path: &[u8]) -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "{}probe.{}.{n}",
        crate::ignore_rules::TMP_PREFIX,
        std::process::id()
    );
    crate::paths::join(crate::paths::split_parent(path).0, name.as_bytes())
}

/// A remote file being read, each read bounded by the pool's timeout.
///
/// Dropping it closes the file and waits until the remote has closed it (at most the
/// timeout; a close that does not answer trips the pool like any call), so that a step that
/// removes or renames over the file always comes after the close (see
/// [`RemoteRead::close`]).
pub struct TimedReader {
    /// The file, until closed.
    file: Arc<Mutex<Option<Box<dyn RemoteRead>>>>,
    remote: TimedRemote,
    path: Vec<u8>,
    /// The engine error behind the last failed read (the `io::Error` only carries its text).
    pub error: Option<SyncError>,
}

impl Read for TimedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let file = Arc::clone(&self.file);
        let want = buf.len().min(1 << 20);
        let result = self.remote.pool.run_raw("reading", &self.path, move |_| {
            let mut tmp = vec![0u8; want];
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let n = f
                .as_mut()
                .ok_or_else(|| io::Error::other("file already closed"))?
                .read(&mut tmp)?;
            tmp.truncate(n);
            Ok(tmp)
        });
        let result = match result {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(e)) => Err(self.remote.entry_failure("reading", &self.path, e)),
            Err(disconnected) => Err(disconnected),
        };
        match result {
            Ok(data) => {
                buf[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            }
            Err(e) => {
                let err = io::Error::other(e.to_string());
                self.error = Some(e);
                Err(err)
            }
        }
    }
}

impl Drop for TimedReader {
    fn drop(&mut self) {
        let file = Arc::clone(&self.file);
        // Not run once the pool has tripped: the file is then dropped, and its close sent
        // without waiting (the remote does not answer).
        let _ = self.remote.pool.run("closing", &self.path, move || {
            let f = file.lock().unwrap_or_else(|p| p.into_inner()).take();
            f.map_or(Ok(()), RemoteRead::close)
        });
    }
}

/// The most one bounded call copies on the server (a copy of a few GiB on a slow share
/// must not look like a hung call).
pub const COPY_STEP: u64 = 64 << 20;

/// A new remote file being written, each write bounded by the pool's timeout. Dropping it
/// before [`TimedWriter::finish`] closes the file as dropping a [`TimedReader`] does.
pub struct TimedWriter {
    file: Arc<Mutex<Option<Box<dyn RemoteWrite>>>>,
    pool: CallPool,
    path: Vec<u8>,
}

impl TimedWriter {
    /// Writes all of `data`.
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn write_all(&mut self, data: Vec<u8>) -> Result<()> {
        self.on_file("writing", move |f| f.write_all(&data))
    }

    /// One call on the open file, bounded.
    fn on_file(
        &mut self,
        what: &str,
        call: impl FnOnce(&mut dyn RemoteWrite) -> io::Result<()> + Send + 'static,
    ) -> Result<()> {
        let file = Arc::clone(&self.file);
        self.pool.run(what, &self.path, move || {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            match f.as_mut() {
                Some(f) => call(f.as_mut()),
                None => Err(io::Error::other("file already finished")),
            }
        })
    }

    /// Appends a range of the remote file `src`, copied on the server (see
    /// [`RemoteWrite::copy_range`]); one bounded call per [`COPY_STEP`] bytes.
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn copy_range(&mut self, src: &[u8], from: u64, len: u64) -> Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(COPY_STEP);
            let s = src.to_vec();
            let at = from + done;
            self.on_file("copying into", move |f| f.copy_range(&s, at, n))?;
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at offset `at` (see [`RemoteWrite::write_at`]).
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn write_at(&mut self, at: u64, data: Vec<u8>) -> Result<()> {
        self.on_file("writing", move |f| f.write_at(at, &data))
    }

    /// Cuts or extends the file (see [`RemoteWrite::set_len`]).
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        self.on_file("resizing", move |f| f.set_len(len))
    }

    /// Sets mode and mtime, fsyncs and closes (see [`RemoteWrite::finish`]).
    ///
    /// # Errors
    /// As [`CallPool::run`].
    pub fn finish(self, mode: u32, mtime_ns: i64) -> Result<()> {
        let file = Arc::clone(&self.file);
        self.pool.run("syncing", &self.path, move || {
            let f = file.lock().unwrap_or_else(|p| p.into_inner()).take();
            match f {
                Some(f) => f.finish(mode, mtime_ns),
                None => Err(io::Error::other("file already finished")),
            }
        })
    }
}

impl Drop for TimedWriter {
    fn drop(&mut self) {
        // Finished (or being finished by a call the pool gave up on): nothing to close here.
        if !self.file.try_lock().is_ok_and(|f| f.is_some()) {
            return;
        }
        let file = Arc::clone(&self.file);
        let _ = self.pool.run("closing", &self.path, move || {
            let f = file.lock().unwrap_or_else(|p| p.into_inner()).take();
            f.map_or(Ok(()), RemoteWrite::close)
        });
    }
}
