//! The remote, reached through a helper process, so that a hung mount never hangs cachesync.
//!
//! A call stuck in FUSE (or on a hard NFS mount) cannot be interrupted, not even by SIGKILL,
//! and a process holding such a thread cannot exit. So the process the user waits for never
//! makes a call on the remote itself: it starts `cachesync remote-helper ROOT`, sends it
//! requests over a pipe and waits for the answers with a timeout ([`crate::timed`]). When the
//! remote hangs, the helper is abandoned: the user's command reports "disconnected" and exits;
//! the helper ends by itself once its stuck call returns (the server answers, or the mount is
//! aborted) and it sees that its parent is gone.
//!
//! The protocol: frames of a u32 little-endian length and a payload. A request is its id
//! (u64), an op code (u8) and the op's arguments; a reply is the id, a status (0 done, 1
//! failed with an errno and a message, 2 still working: a tick that keeps the caller's timeout
//! from expiring during a long listing) and the op's result. Integers are little-endian, byte
//! strings are a u32 length and the bytes, as in the store's encodings.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cachesync_objects::encoding::{Decoder, Encoder};
use cachesync_objects::EntryKind;
use crossbeam_channel::{bounded, unbounded, Sender};

use crate::fs_remote::FsRemote;
use crate::remote::{Remote, RemoteEntry, RemoteRead, RemoteWrite, SmallRead};

static HELPER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every workspace reach its remote through `exe remote-helper ROOT` (the cli calls this
/// with its own path at start-up). Without it, remote calls run in-process (engine tests).
pub fn use_helper_process(exe: PathBuf) {
    let _ = HELPER_EXE.set(exe);
}

/// The helper executable, if one was set.
pub fn helper_exe() -> Option<&'static Path> {
    HELPER_EXE.get().map(PathBuf::as_path)
}

mod op {
    pub const LIST: u8 = 1;
    pub const STAT: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const READ: u8 = 4;
    pub const CLOSE: u8 = 5;
    pub const CREATE: u8 = 6;
    pub const WRITE: u8 = 7;
    pub const FINISH: u8 = 8;
    pub const RENAME: u8 = 9;
    pub const REMOVE_FILE: u8 = 10;
    pub const REMOVE_DIR: u8 = 11;
    pub const MKDIR: u8 = 12;
    pub const SET_MODE: u8 = 13;
    pub const SYMLINK: u8 = 14;
    pub const MKNOD: u8 = 15;
    pub const CANONICAL: u8 = 16;
    pub const RENAME_ATOMIC: u8 = 17;
    pub const READ_SMALL: u8 = 18;
    pub const COPIES_ON_SERVER: u8 = 19;
    pub const OPEN_IN_PLACE: u8 = 20;
    pub const COPY_RANGE: u8 = 21;
    pub const WRITE_AT: u8 = 22;
    pub const SET_LEN: u8 = 23;
    pub const READ_SMALL_MANY: u8 = 24;
}

const DONE: u8 = 0;
const FAILED: u8 = 1;
const TICK: u8 = 2;

/// At most one tick per this long during a listing (each tick is a message).
const TICK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

fn kind_from(c: u8) -> io::Result<EntryKind> {
    EntryKind::from_code(c).ok_or_else(|| protocol("unknown kind"))
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("remote helper protocol: {what}"),
    )
}

/// The errno an error crosses the pipe with. One made without an errno (a file found gone
/// by a stat that answered nothing) keeps its kind as the errno of that kind: else it
/// would arrive as "other", and a file deleted while it was read would be taken for one
/// the server refuses to give.
fn errno_of(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or(match err.kind() {
        io::ErrorKind::NotFound => Some(libc::ENOENT),
        io::ErrorKind::PermissionDenied => Some(libc::EACCES),
        io::ErrorKind::AlreadyExists => Some(libc::EEXIST),
        _ => None,
    })
}

fn decode_err(e: cachesync_objects::ObjectError) -> io::Error {
    protocol(&e.to_string())
}

fn put_entry(e: &mut Encoder, r: &RemoteEntry) {
    e.bytes(&r.name);
    e.u8(r.kind.code());
    e.u32(r.mode);
    e.u32(r.uid);
    e.u32(r.gid);
    e.i64(r.mtime_ns);
    e.u64(r.size);
    e.u64(r.ino);
    e.u64(r.rdev);
    e.bytes(&r.target);
    // 0 is no errno.
    e.u32(r.target_errno.map_or(0, |n| n as u32));
}

fn get_entry(d: &mut Decoder<'_>) -> io::Result<RemoteEntry> {
    Ok(RemoteEntry {
        name: d.bytes().map_err(decode_err)?.to_vec(),
        kind: kind_from(d.u8().map_err(decode_err)?)?,
        mode: d.u32().map_err(decode_err)?,
        uid: d.u32().map_err(decode_err)?,
        gid: d.u32().map_err(decode_err)?,
        mtime_ns: d.i64().map_err(decode_err)?,
        size: d.u64().map_err(decode_err)?,
        ino: d.u64().map_err(decode_err)?,
        rdev: d.u64().map_err(decode_err)?,
        target: d.bytes().map_err(decode_err)?.to_vec(),
        target_errno: match d.u32().map_err(decode_err)? {
            0 => None,
            n => Some(n as i32),
        },
    })
}

/// An error as the helper sends it: the errno (or none) and the message.
fn put_error(e: &mut Encoder, err: &io::Error) {
    e.u32(errno_of(err).map_or(u32::MAX, |n| n as u32));
    e.bytes(err.to_string().as_bytes());
}

/// An error [`put_error`] sent: the errno kept, so that the caller can tell what it means.
fn get_error(d: &mut Decoder<'_>) -> io::Error {
    let errno = d.u32().unwrap_or(u32::MAX);
    let msg = d
        .bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    if errno == u32::MAX {
        io::Error::other(msg)
    } else {
        io::Error::from_raw_os_error(errno as i32)
    }
}

/// A small file's read as READ_SMALL replies it: `0` (larger than asked), or `1`, the
/// bytes and the entry after the read.
fn put_small(out: &mut Encoder, read: &SmallRead) {
    match read {
        Some((bytes, entry)) => {
            out.u8(1);
            out.bytes(bytes);
            put_entry(out, entry);
        }
        None => out.u8(0),
    }
}

/// What [`put_small`] sent, after its first byte `tag`.
fn get_small(tag: u8, d: &mut Decoder<'_>) -> io::Result<SmallRead> {
    if tag == 0 {
        return Ok(None);
    }
    let bytes = d.bytes().map_err(decode_err)?.to_vec();
    Ok(Some((bytes, get_entry(d)?)))
}

fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| protocol("frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

// ---- the helper (server) side ----

enum Handle {
    Reader(Arc<Mutex<Box<dyn RemoteRead>>>),
    Writer(Arc<Mutex<Option<Box<dyn RemoteWrite>>>>),
}

struct Server {
    remote: FsRemote,
    root: PathBuf,
    handles: Mutex<HashMap<u64, Handle>>,
    /// The path each read handle was opened with (for the pause point of its close).
    opened: Mutex<HashMap<u64, Vec<u8>>>,
    next_handle: AtomicU64,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Server {
    fn reply(&self, id: u64, status: u8, body: &[u8]) {
        let mut e = Encoder::new();
        e.u64(id);
        e.u8(status);
        e.raw(body);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // The client is gone if this fails; the read loop sees EOF and ends the helper.
        let _ = write_frame(&mut *out, &e.finish());
    }

    fn handle(&self, id: u64, request: &[u8]) {
        match self.dispatch(id, request) {
            Ok(body) => self.reply(id, DONE, &body),
            Err(err) => {
                let mut e = Encoder::new();
                put_error(&mut e, &err);
                self.reply(id, FAILED, &e.finish());
            }
        }
    }

    fn new_handle(&self, h: Handle) -> Vec<u8> {
        let n = self.next_handle.fetch_add(1, Ordering::SeqCst);
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, h);
        n.to_le_bytes().to_vec()
    }

    fn get_handle(&self, n: u64) -> io::Result<Handle> {
        let map = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&n) {
            Some(Handle::Reader(r)) => Ok(Handle::Reader(Arc::clone(r))),
            Some(Handle::Writer(w)) => Ok(Handle::Writer(Arc::clone(w))),
            None => Err(protocol("unknown handle")),
        }
    }

    /// Decodes one request and runs its op; the reply's body, or the error to send back.
    /// One arm per op of the protocol: those with more to do than one remote call are the
    /// methods below.
    fn dispatch(&self, id: u64, request: &[u8]) -> io::Result<Vec<u8>> {
        let mut d = Decoder::new(request, "remote helper request");
        let code = d.u8().map_err(decode_err)?;
        let mut out = Encoder::new();
        match code {
            op::LIST => self.serve_list(id, &mut d, &mut out)?,
            op::STAT => match self.remote.stat(&path_arg(&mut d)?)? {
                Some(e) => {
                    out.u8(1);
                    put_entry(&mut out, &e);
                }
                None => out.u8(0),
            },
            op::OPEN => return self.serve_open(&mut d),
            op::READ_SMALL => self.serve_read_small(&mut d, &mut out)?,
            op::READ_SMALL_MANY => self.serve_read_small_many(id, &mut d, &mut out)?,
            op::CREATE => {
                let w = self.remote.create(&path_arg(&mut d)?)?;
                return Ok(self.new_handle(Handle::Writer(Arc::new(Mutex::new(Some(w))))));
            }
            op::COPIES_ON_SERVER => out.u8(u8::from(self.remote.copies_on_server()?)),
            op::OPEN_IN_PLACE => {
                let w = self.remote.open_in_place(&path_arg(&mut d)?)?;
                return Ok(self.new_handle(Handle::Writer(Arc::new(Mutex::new(Some(w))))));
            }
            op::READ => self.serve_read(&mut d, &mut out)?,
            op::WRITE | op::COPY_RANGE | op::WRITE_AT | op::SET_LEN => {
                self.serve_write(code, &mut d)?;
            }
            op::FINISH => self.serve_finish(&mut d)?,
            op::CLOSE => self.serve_close(&mut d)?,
            op::RENAME => {
                let from = path_arg(&mut d)?;
                self.remote.rename(&from, &path_arg(&mut d)?)?;
            }
            op::RENAME_ATOMIC => {
                let from = path_arg(&mut d)?;
                let to = path_arg(&mut d)?;
                let exchange = d.u8().map_err(decode_err)? != 0;
                out.u8(u8::from(self.remote.rename_atomic(&from, &to, exchange)?));
            }
            op::REMOVE_FILE => self.remote.remove_file(&path_arg(&mut d)?)?,
            op::REMOVE_DIR => self.remote.remove_dir(&path_arg(&mut d)?)?,
            op::MKDIR => {
                let p = path_arg(&mut d)?;
                self.remote.mkdir(&p, d.u32().map_err(decode_err)?)?;
            }
            op::SET_MODE => {
                let p = path_arg(&mut d)?;
                self.remote.set_mode(&p, d.u32().map_err(decode_err)?)?;
            }
            op::SYMLINK => {
                let target = path_arg(&mut d)?;
                self.remote.symlink(&target, &path_arg(&mut d)?)?;
            }
            op::MKNOD => self.serve_mknod(&mut d)?,
            op::CANONICAL => {
                let c = std::fs::canonicalize(&self.root)?;
                out.bytes(crate::paths::bytes(&c));
            }
            _ => return Err(protocol("unknown op")),
        }
        Ok(out.finish())
    }

    /// LIST: the entries of a directory. A long listing sends ticks (at most one per
    /// [`TICK_EVERY`]) so that the caller's timeout does not expire while it runs.
    fn serve_list(&self, id: u64, d: &mut Decoder<'_>, out: &mut Encoder) -> io::Result<()> {
        let p = path_arg(d)?;
        let last = std::cell::Cell::new(std::time::Instant::now());
        let tick = || {
            if last.get().elapsed() >= TICK_EVERY {
                last.set(std::time::Instant::now());
                self.reply(id, TICK, &[]);
            }
        };
        let list = self.remote.list(&p, &tick)?;
        out.u32(list.len() as u32);
        for e in &list {
            put_entry(out, e);
        }
        Ok(())
    }

    /// OPEN: a read handle, remembering the path it was opened with (for the pause point of
    /// its close). The reply is the handle.
    fn serve_open(&self, d: &mut Decoder<'_>) -> io::Result<Vec<u8>> {
        let p = path_arg(d)?;
        let r = self.remote.open(&p)?;
        let h = self.new_handle(Handle::Reader(Arc::new(Mutex::new(r))));
        if let Ok(n) = <[u8; 8]>::try_from(h.as_slice()) {
            self.opened
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(u64::from_le_bytes(n), p);
        }
        Ok(h)
    }

    /// READ_SMALL: a whole file of at most the bytes asked for (at most 1 MiB), closed,
    /// then its attributes: `1`, the bytes and the entry; or `0` when it is larger.
    fn serve_read_small(&self, d: &mut Decoder<'_>, out: &mut Encoder) -> io::Result<()> {
        let p = path_arg(d)?;
        let max = d.u64().map_err(decode_err)?.min(1 << 20);
        put_small(out, &self.read_small(&p, max)?);
        Ok(())
    }

    /// One small file read whole, closed, then stat'ed (see [`Remote::read_small`]).
    fn read_small(&self, p: &[u8], max: u64) -> io::Result<SmallRead> {
        crate::remote::read_small_with(&self.remote, p, max, || {
            // As at a CLOSE (CACHESYNC_PAUSE=helper-close:PATH).
            crate::failpoint::hit(&format!("helper-close:{}", crate::paths::display(p)));
        })
    }

    /// READ_SMALL_MANY: [`Server::serve_read_small`] for each of several paths (at most
    /// 1,024), ticking as a listing does: the count, then per path `2` and its error, or what
    /// READ_SMALL replies.
    fn serve_read_small_many(
        &self,
        id: u64,
        d: &mut Decoder<'_>,
        out: &mut Encoder,
    ) -> io::Result<()> {
        let max = d.u64().map_err(decode_err)?.min(1 << 20);
        let n = d.u32().map_err(decode_err)?;
        if n > 1024 {
            return Err(protocol("too many paths in one read"));
        }
        let paths = (0..n)
            .map(|_| path_arg(d))
            .collect::<io::Result<Vec<_>>>()?;
        let last = std::cell::Cell::new(std::time::Instant::now());
        out.u32(n);
        for p in &paths {
            match self.read_small(p, max) {
                Ok(read) => put_small(out, &read),
                Err(err) => {
                    out.u8(2);
                    put_error(out, &err);
                }
            }
            if last.get().elapsed() >= TICK_EVERY {
                last.set(std::time::Instant::now());
                self.reply(id, TICK, &[]);
            }
        }
        Ok(())
    }

    /// READ: up to the bytes asked for (at most 1 MiB) from a read handle.
    fn serve_read(&self, d: &mut Decoder<'_>, out: &mut Encoder) -> io::Result<()> {
        let h = d.u64().map_err(decode_err)?;
        let want = d.u32().map_err(decode_err)? as usize;
        let Handle::Reader(r) = self.get_handle(h)? else {
            return Err(protocol("not a reader"));
        };
        let mut buf = vec![0u8; want.min(1 << 20)];
        let n = r.lock().unwrap_or_else(|p| p.into_inner()).read(&mut buf)?;
        buf.truncate(n);
        out.bytes(&buf);
        Ok(())
    }

    /// WRITE (bytes appended), COPY_RANGE (a range of another remote file appended, copied
    /// on the server), WRITE_AT (bytes written at an offset), SET_LEN: on a write handle
    /// not yet finished.
    fn serve_write(&self, code: u8, d: &mut Decoder<'_>) -> io::Result<()> {
        let h = d.u64().map_err(decode_err)?;
        let Handle::Writer(w) = self.get_handle(h)? else {
            return Err(protocol("not a writer"));
        };
        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
        let w = w
            .as_mut()
            .ok_or_else(|| protocol("file already finished"))?;
        match code {
            op::WRITE => w.write_all(d.bytes().map_err(decode_err)?),
            op::COPY_RANGE => {
                let src = path_arg(d)?;
                let from = d.u64().map_err(decode_err)?;
                w.copy_range(&src, from, d.u64().map_err(decode_err)?)
            }
            op::WRITE_AT => {
                let at = d.u64().map_err(decode_err)?;
                w.write_at(at, d.bytes().map_err(decode_err)?)
            }
            _ => w.set_len(d.u64().map_err(decode_err)?),
        }
    }

    /// FINISH: a write handle's file gets its mode and mtime and is done; the handle goes.
    fn serve_finish(&self, d: &mut Decoder<'_>) -> io::Result<()> {
        let h = d.u64().map_err(decode_err)?;
        let mode = d.u32().map_err(decode_err)?;
        let mtime = d.i64().map_err(decode_err)?;
        let Handle::Writer(w) = self.get_handle(h)? else {
            return Err(protocol("not a writer"));
        };
        let file = w.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&h);
        file.ok_or_else(|| protocol("file already finished"))?
            .finish(mode, mtime)
    }

    /// CLOSE: a handle goes (a read handle's file is closed with it).
    fn serve_close(&self, d: &mut Decoder<'_>) -> io::Result<()> {
        let h = d.u64().map_err(decode_err)?;
        let opened = self
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&h);
        if let Some(p) = opened {
            // A test pauses here to show that nothing replaces or removes a file
            // before its close is done (CACHESYNC_PAUSE=helper-close:PATH).
            crate::failpoint::hit(&format!("helper-close:{}", crate::paths::display(&p)));
        }
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&h);
        Ok(())
    }

    /// MKNOD: a device, fifo or socket node.
    fn serve_mknod(&self, d: &mut Decoder<'_>) -> io::Result<()> {
        let p = path_arg(d)?;
        let kind = kind_from(d.u8().map_err(decode_err)?)?;
        let mode = d.u32().map_err(decode_err)?;
        let rdev = d.u64().map_err(decode_err)?;
        self.remote.mknod(&p, kind, mode, rdev)
    }
}

/// A path argument of a request.
fn path_arg(d: &mut Decoder<'_>) -> io::Result<Vec<u8>> {
    d.bytes().map(<[u8]>::to_vec).map_err(decode_err)
}

/// Serves requests for the remote at `root` from `input`, answering on `output`, until
/// `input` ends (the client went away). Each request runs on its own worker, so a hung call
/// holds up only itself.
///
/// # Errors
/// Only a failure to read `input`.
pub fn serve(
    root: &Path,
    mut input: impl Read,
    output: impl Write + Send + 'static,
) -> io::Result<()> {
    let server = Arc::new(Server {
        remote: FsRemote::new(root),
        root: root.to_path_buf(),
        handles: Mutex::new(HashMap::new()),
        opened: Mutex::new(HashMap::new()),
        next_handle: AtomicU64::new(1),
        out: Mutex::new(Box::new(output)),
    });
    let (tx, rx) = unbounded::<(u64, Vec<u8>)>();
    for _ in 0..32 {
        let server = Arc::clone(&server);
        let rx = rx.clone();
        std::thread::Builder::new()
            .name("helper-worker".into())
            .spawn(move || {
                for (id, request) in rx {
                    server.handle(id, &request);
                }
            })?;
    }
    while let Some(frame) = read_frame(&mut input)? {
        if frame.len() < 8 {
            return Err(protocol("short frame"));
        }
        let id = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        if tx.send((id, frame[8..].to_vec())).is_err() {
            break;
        }
    }
    Ok(())
}

// ---- the client side ----

enum Reply {
    Done(Vec<u8>),
    Failed(io::Error),
    Tick,
}

/// Calls waiting for their replies, by request id. Shared by the client and its reader
/// thread; the reader holds only this, so dropping the client closes the helper's input.
type Pending = Mutex<HashMap<u64, Sender<Reply>>>;

struct Client {
    writer: Mutex<Option<ChildStdin>>,
    pending: Arc<Pending>,
    next: AtomicU64,
    child: Mutex<Child>,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the remote helper process ended",
    )
}

impl Client {
    fn call(&self, request: &[u8], tick: &dyn Fn()) -> io::Result<Vec<u8>> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = bounded(16);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let mut frame = Vec::with_capacity(8 + request.len());
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(request);
        let sent = {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            match w.as_mut() {
                Some(w) => write_frame(w, &frame),
                None => Err(gone()),
            }
        };
        if let Err(e) = sent {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(if e.kind() == io::ErrorKind::BrokenPipe {
                gone()
            } else {
                e
            });
        }
        loop {
            match rx.recv() {
                Ok(Reply::Tick) => tick(),
                Ok(Reply::Done(body)) => return Ok(body),
                Ok(Reply::Failed(e)) => return Err(e),
                Err(_) => return Err(gone()),
            }
        }
    }
}

fn reader(pending: Arc<Pending>, mut out: impl Read) {
    while let Ok(Some(frame)) = read_frame(&mut out) {
        if frame.len() < 9 {
            break;
        }
        let id = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        let status = frame[8];
        let body = &frame[9..];
        let reply = match status {
            DONE => Reply::Done(body.to_vec()),
            TICK => Reply::Tick,
            _ => Reply::Failed(get_error(&mut Decoder::new(body, "remote helper error"))),
        };
        let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        let finished = !matches!(reply, Reply::Tick);
        let sender = if finished {
            pending.remove(&id)
        } else {
            pending.get(&id).cloned()
        };
        drop(pending);
        if let Some(s) = sender {
            let _ = s.send(reply);
        }
    }
    // The helper ended: every waiting call fails as disconnected.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

impl Drop for Client {
    fn drop(&mut self) {
        // Closing its input ends the helper once its calls return; never wait for it here
        // (it may be stuck in the kernel), only reap it if it is already gone.
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_wait();
    }
}

/// A [`Remote`] served by a helper process.
#[derive(Clone)]
pub struct ProcessRemote {
    client: Arc<Client>,
    root: PathBuf,
}

impl ProcessRemote {
    /// Starts `exe remote-helper ROOT`.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(exe: &Path, root: &Path) -> io::Result<ProcessRemote> {
        let mut child = Command::new(exe)
            .arg("remote-helper")
            .arg(root)
            // Crash points are the command's own (the helper passes none of them); a pause
            // (CACHESYNC_PAUSE) may be at the helper's.
            .env_remove("CACHESYNC_FAILPOINT")
            .env_remove("CACHESYNC_FAILPOINT_TRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Not inherited: a helper stuck in the kernel must not hold the user's pipes open.
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(gone)?;
        let stdout = child.stdout.take().ok_or_else(gone)?;
        let pending: Arc<Pending> = Arc::new(Mutex::new(HashMap::new()));
        let reader_pending = Arc::clone(&pending);
        let client = Arc::new(Client {
            writer: Mutex::new(Some(stdin)),
            pending: Arc::clone(&pending),
            next: AtomicU64::new(1),
            child: Mutex::new(child),
        });
        std::thread::Builder::new()
            .name("helper-reader".into())
            .spawn(move || reader(reader_pending, stdout))?;
        Ok(ProcessRemote {
            client,
            root: root.to_path_buf(),
        })
    }

    fn call(&self, request: Encoder) -> io::Result<Vec<u8>> {
        self.client.call(&request.finish(), &|| {})
    }
}

fn req(code: u8) -> Encoder {
    let mut e = Encoder::new();
    e.u8(code);
    e
}

struct ProcessReader {
    client: Arc<Client>,
    /// The helper's handle, until closed.
    handle: Option<u64>,
}

impl Read for ProcessReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let handle = self.handle.ok_or_else(|| protocol("file already closed"))?;
        let mut e = req(op::READ);
        e.u64(handle);
        e.u32(buf.len().min(1 << 20) as u32);
        let body = self.client.call(&e.finish(), &|| {})?;
        let mut d = Decoder::new(&body, "read reply");
        let data = d.bytes().map_err(decode_err)?;
        buf[..data.len()].copy_from_slice(data);
        Ok(data.len())
    }
}

/// Closes `handle` in the helper and waits until the helper has closed the file: a FUSE
/// mount (sshfs) keeps a file that is still open when it is removed or renamed over as
/// `.fuse_hidden*`, and a close still in flight when the next step reaches the helper (whose
/// workers run requests side by side) left such files on the server for good. The wait has
/// no bound here: [`crate::timed`] runs closes on its pool, with the call timeout.
fn close_handle(client: &Client, handle: u64) -> io::Result<()> {
    let mut e = req(op::CLOSE);
    e.u64(handle);
    client.call(&e.finish(), &|| {}).map(drop)
}

/// Releases a handle dropped without a close (the remote was given up on, or the caller
/// failed): sends the close and does not wait, since the remote may hang.
fn close_in_background(client: &Arc<Client>, handle: u64) {
    let client = Arc::clone(client);
    let _ = std::thread::Builder::new()
        .name("helper-close".into())
        .spawn(move || {
            let _ = close_handle(&client, handle);
        });
}

impl RemoteRead for ProcessReader {
    fn close(mut self: Box<Self>) -> io::Result<()> {
        match self.handle.take() {
            Some(h) => close_handle(&self.client, h),
            None => Ok(()),
        }
    }
}

impl Drop for ProcessReader {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            close_in_background(&self.client, h);
        }
    }
}

struct ProcessWriter {
    client: Arc<Client>,
    handle: u64,
    /// Still open in the helper (a finish closes it there).
    open: bool,
}

impl Write for ProcessWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = &buf[..buf.len().min(1 << 20)];
        let mut e = req(op::WRITE);
        e.u64(self.handle);
        e.bytes(chunk);
        self.client.call(&e.finish(), &|| {})?;
        Ok(chunk.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ProcessWriter {
    fn drop(&mut self) {
        // An abandoned write (finish not reached, or failed) releases its handle in the
        // helper; after a finish the handle is already gone there.
        if self.open {
            close_in_background(&self.client, self.handle);
        }
    }
}

impl RemoteWrite for ProcessWriter {
    fn finish(mut self: Box<Self>, mode: u32, mtime_ns: i64) -> io::Result<()> {
        let mut e = req(op::FINISH);
        e.u64(self.handle);
        e.u32(mode);
        e.i64(mtime_ns);
        self.client.call(&e.finish(), &|| {})?;
        self.open = false;
        Ok(())
    }

    fn close(mut self: Box<Self>) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        close_handle(&self.client, self.handle)
    }

    fn copy_range(&mut self, src: &[u8], from: u64, len: u64) -> io::Result<()> {
        let mut e = req(op::COPY_RANGE);
        e.u64(self.handle);
        e.bytes(src);
        e.u64(from);
        e.u64(len);
        self.client.call(&e.finish(), &|| {}).map(drop)
    }

    fn write_at(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        // In frames of at most 1 MiB, as appended writes are.
        let mut at = at;
        for part in data.chunks(1 << 20) {
            let mut e = req(op::WRITE_AT);
            e.u64(self.handle);
            e.u64(at);
            e.bytes(part);
            self.client.call(&e.finish(), &|| {})?;
            at += part.len() as u64;
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut e = req(op::SET_LEN);
        e.u64(self.handle);
        e.u64(len);
        self.client.call(&e.finish(), &|| {}).map(drop)
    }
}

fn handle_of(body: &[u8]) -> io::Result<u64> {
    Decoder::new(body, "handle").u64().map_err(decode_err)
}

impl Remote for ProcessRemote {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>> {
        let mut e = req(op::LIST);
        e.bytes(dir);
        let body = self.client.call(&e.finish(), tick)?;
        let mut d = Decoder::new(&body, "list reply");
        let n = d.u32().map_err(decode_err)? as usize;
        let mut out = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            out.push(get_entry(&mut d)?);
        }
        Ok(out)
    }

    fn stat(&self, path: &[u8]) -> io::Result<Option<RemoteEntry>> {
        let mut e = req(op::STAT);
        e.bytes(path);
        let body = self.call(e)?;
        let mut d = Decoder::new(&body, "stat reply");
        match d.u8().map_err(decode_err)? {
            0 => Ok(None),
            _ => Ok(Some(get_entry(&mut d)?)),
        }
    }

    fn read_small(&self, path: &[u8], max: u64) -> io::Result<SmallRead> {
        let mut e = req(op::READ_SMALL);
        e.bytes(path);
        e.u64(max.min(1 << 20));
        let body = self.call(e)?;
        let mut d = Decoder::new(&body, "read_small reply");
        let tag = d.u8().map_err(decode_err)?;
        get_small(tag, &mut d)
    }

    fn read_small_many(
        &self,
        paths: &[Vec<u8>],
        max: u64,
        tick: &dyn Fn(),
    ) -> io::Result<Vec<io::Result<SmallRead>>> {
        let mut out = Vec::with_capacity(paths.len());
        // The helper takes at most 1,024 paths a call.
        for some in paths.chunks(1024) {
            let mut e = req(op::READ_SMALL_MANY);
            e.u64(max.min(1 << 20));
            e.u32(some.len() as u32);
            for p in some {
                e.bytes(p);
            }
            let body = self.client.call(&e.finish(), tick)?;
            let mut d = Decoder::new(&body, "read_small_many reply");
            let n = d.u32().map_err(decode_err)? as usize;
            if n != some.len() {
                return Err(protocol("read_small_many: a reply per path"));
            }
            for _ in 0..n {
                out.push(match d.u8().map_err(decode_err)? {
                    2 => Err(get_error(&mut d)),
                    tag => Ok(get_small(tag, &mut d)?),
                });
            }
        }
        Ok(out)
    }

    fn open(&self, path: &[u8]) -> io::Result<Box<dyn RemoteRead>> {
        let mut e = req(op::OPEN);
        e.bytes(path);
        let handle = handle_of(&self.call(e)?)?;
        Ok(Box::new(ProcessReader {
            client: Arc::clone(&self.client),
            handle: Some(handle),
        }))
    }

    fn create(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        let mut e = req(op::CREATE);
        e.bytes(path);
        let handle = handle_of(&self.call(e)?)?;
        Ok(Box::new(ProcessWriter {
            client: Arc::clone(&self.client),
            handle,
            open: true,
        }))
    }

    fn copies_on_server(&self) -> io::Result<bool> {
        let body = self.call(req(op::COPIES_ON_SERVER))?;
        Ok(Decoder::new(&body, "copies_on_server reply")
            .u8()
            .map_err(decode_err)?
            != 0)
    }

    fn open_in_place(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        let mut e = req(op::OPEN_IN_PLACE);
        e.bytes(path);
        let handle = handle_of(&self.call(e)?)?;
        Ok(Box::new(ProcessWriter {
            client: Arc::clone(&self.client),
            handle,
            open: true,
        }))
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let mut e = req(op::RENAME);
        e.bytes(from);
        e.bytes(to);
        self.call(e).map(drop)
    }

    fn rename_atomic(&self, from: &[u8], to: &[u8], exchange: bool) -> io::Result<bool> {
        let mut e = req(op::RENAME_ATOMIC);
        e.bytes(from);
        e.bytes(to);
        e.u8(u8::from(exchange));
        let body = self.call(e)?;
        Ok(Decoder::new(&body, "rename reply")
            .u8()
            .map_err(decode_err)?
            != 0)
    }

    fn remove_file(&self, path: &[u8]) -> io::Result<()> {
        let mut e = req(op::REMOVE_FILE);
        e.bytes(path);
        self.call(e).map(drop)
    }

    fn remove_dir(&self, path: &[u8]) -> io::Result<()> {
        let mut e = req(op::REMOVE_DIR);
        e.bytes(path);
        self.call(e).map(drop)
    }

    fn mkdir(&self, path: &[u8], mode: u32) -> io::Result<()> {
        let mut e = req(op::MKDIR);
        e.bytes(path);
        e.u32(mode);
        self.call(e).map(drop)
    }

    fn set_mode(&self, path: &[u8], mode: u32) -> io::Result<()> {
        let mut e = req(op::SET_MODE);
        e.bytes(path);
        e.u32(mode);
        self.call(e).map(drop)
    }

    fn symlink(&self, target: &[u8], path: &[u8]) -> io::Result<()> {
        let mut e = req(op::SYMLINK);
        e.bytes(target);
        e.bytes(path);
        self.call(e).map(drop)
    }

    fn mknod(&self, path: &[u8], kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()> {
        let mut e = req(op::MKNOD);
        e.bytes(path);
        e.u8(kind.code());
        e.u32(mode);
        e.u64(rdev);
        self.call(e).map(drop)
    }

    fn canonical_root(&self) -> io::Result<PathBuf> {
        let body = self.call(req(op::CANONICAL))?;
        let mut d = Decoder::new(&body, "canonical reply");
        let b = d.bytes().map_err(decode_err)?;
        Ok(PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b),
        ))
    }
}
