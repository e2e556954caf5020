//! A big file the share already holds in its base version is patched, not sent again: only
//! the chunks that changed cross the network (see docs/architecture.md, "Big files").
//!
//! Two ways, chosen by what the share can do ([`crate::config::PatchBigFiles`]):
//! - **copy**: where the share copies on the server (local file systems, NFS 4.2, SMB), the
//!   temporary file is made of ranges copied from the file it replaces plus the changed
//!   chunks, then renamed over it as any write is: atomic as ever.
//! - **in place**: where it cannot (sshfs), the changed chunks are written into the file
//!   itself, after a synced record of the patch ([`PendingPatch`]). A run killed or cut off
//!   mid-patch leaves the record; the next run finishes the patch before it scans, once it
//!   has read the file and found every byte to be the base's or the target's (so a file
//!   someone else changed meanwhile is never written into: it is left to the reconcile,
//!   which keeps both versions). Readers of the share can see the file half-patched while a
//!   patch runs; never after. A patch the share refuses midway (a full disk, a quota, an
//!   I/O error: the share answers, but no) is rolled back at once: the base's chunks are
//!   written back where they differ and the file cut to the base's size, with its mode and
//!   mtime. Putting bytes back over bytes needs no new space, where finishing the patch
//!   might; so the file is whole again (the base) and the change stays to be pushed.
//!
//! Either way the remote must be known to hold the base: the file's content was read and
//! hashed by this run's scan (`verify_before_overwrite`), not vouched for by its stat.

use std::io::Read;

use cachesync_objects::patch::{self, Moves, Piece};
use cachesync_objects::{keys, Batch, Entry, EntryKind, FileId, FileObject, Store};
use serde::{Deserialize, Serialize};

use crate::config::PatchBigFiles;
use crate::error::{Result, SyncError};
use crate::paths::{display, hex, unhex};
use crate::state_keys::PENDING_PATCH_PREFIX;
use crate::timed::{TimedRemote, TimedWriter};
use crate::workspace::Workspace;

/// Files smaller than this are always written whole (a patch saves little and the rename
/// of a whole new file is the simplest atomic write).
pub const PATCH_MIN: u64 = 8 << 20;

/// How a big file goes to the share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum How {
    /// A temporary made by a copy on the server, patched, renamed over the file.
    Copy,
    /// The file itself patched, journalled.
    InPlace,
}

/// A patch about to be made.
pub(super) struct Patch {
    pub how: How,
    pub base: FileId,
    pub pieces: Vec<Piece>,
}

/// The patch for writing `target` over a remote file expected to be `expect`, or `None`
/// when it goes whole (small, not a file before, base not verified, most of it changed).
/// `copies` caches whether the share copies on the server.
///
/// # Errors
/// Store errors; remote errors asking the share what it can do.
pub(super) fn plan_for(
    ws: &Workspace,
    remote: &TimedRemote,
    copies: &mut Option<bool>,
    expect: Option<&Entry>,
    target: &Entry,
) -> Result<Option<Patch>> {
    let Some(base) = expect
        .filter(|e| e.kind == EntryKind::File && target.kind == EntryKind::File)
        .and_then(|e| e.file)
        .filter(|f| crate::presence::is_known(*f))
    else {
        return Ok(None);
    };
    let Some(id) = target.file else {
        return Ok(None);
    };
    if ws.config.patch_big_files == PatchBigFiles::Off
        || !ws.config.verify_before_overwrite
        || target.size < PATCH_MIN
        || expect.is_some_and(|e| e.size < PATCH_MIN)
    {
        return Ok(None);
    }
    let how = match ws.config.patch_big_files {
        PatchBigFiles::Copy => How::Copy,
        PatchBigFiles::InPlace => How::InPlace,
        _ => {
            let can = match *copies {
                Some(can) => can,
                None => match remote.copies_on_server() {
                    Ok(can) => *copies.insert(can),
                    Err(e @ SyncError::Disconnected { .. }) => return Err(e),
                    // The share would not say: the file goes whole, as before patches.
                    Err(_) => return Ok(None),
                },
            };
            if can {
                How::Copy
            } else {
                How::InPlace
            }
        }
    };
    let (Some(b), Some(t)) = (ws.store.file_object(base)?, ws.store.file_object(id)?) else {
        return Ok(None);
    };
    let moves = match how {
        How::Copy => Moves::Anywhere,
        How::InPlace => Moves::InPlace,
    };
    let pieces = patch::plan(&b, &t, moves);
    // Mostly new: a whole write costs about as much, and is atomic everywhere.
    if patch::written(&pieces) > t.size / 2 {
        return Ok(None);
    }
    Ok(Some(Patch { how, base, pieces }))
}

/// Makes the new file `w` from the pieces: kept ranges copied on the server from `src` (the
/// remote file being replaced), the rest written from the store. Returns the bytes sent.
///
/// # Errors
/// Store and remote errors.
pub(super) fn write_copied(
    store: &Store,
    w: &mut TimedWriter,
    src: &[u8],
    pieces: &[Piece],
    mut after_first: impl FnMut(),
) -> Result<u64> {
    let mut sent = 0;
    for (n, p) in pieces.iter().enumerate() {
        match *p {
            Piece::Keep { from, len, .. } => w.copy_range(src, from, len)?,
            Piece::Write { chunk, .. } => {
                let data = store.chunk(chunk)?;
                sent += data.len() as u64;
                w.write_all(data)?;
            }
        }
        if n == 0 {
            after_first();
        }
    }
    Ok(sent)
}

/// The record of a patch in place, written (synced) before its first write and removed when
/// it is done: `pending-patch/` + path → this, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPatch {
    /// The file, as hex.
    pub path_hex: String,
    /// The content the file held before (hex of its id).
    pub base: String,
    /// The content it is being patched to.
    pub target: String,
    /// The mode and mtime it gets when done.
    pub mode: u32,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// The mode and mtime the file had before, put back by a rollback (absent from records
    /// written before rollbacks existed: those are only ever finished).
    #[serde(default)]
    pub base_mode: Option<u32>,
    /// Nanoseconds since the epoch.
    #[serde(default)]
    pub base_mtime_ns: Option<i64>,
}

impl PendingPatch {
    fn ids(&self) -> Option<(Vec<u8>, FileId, FileId)> {
        Some((
            unhex(&self.path_hex)?,
            FileId::from_hex(&self.base)?,
            FileId::from_hex(&self.target)?,
        ))
    }
}

/// The patches in place not known to be done.
///
/// # Errors
/// Store errors; [`SyncError::DamagedRecord`] for a record that does not decode.
pub fn pending(store: &Store) -> Result<Vec<PendingPatch>> {
    let table = store.table(keys::CF_STATE);
    let mut out = Vec::new();
    for (key, value) in table.scan_prefix(PENDING_PATCH_PREFIX)? {
        let record: Option<PendingPatch> = serde_json::from_slice(&value).ok();
        match record {
            Some(r) if r.ids().is_some() => out.push(r),
            _ => {
                return Err(SyncError::damaged(
                    format!(
                        "pending patch {}",
                        display(&key[PENDING_PATCH_PREFIX.len()..])
                    ),
                    "does not decode",
                ))
            }
        }
    }
    Ok(out)
}

fn key(path: &[u8]) -> Vec<u8> {
    [PENDING_PATCH_PREFIX, path].concat()
}

/// Writes `pieces` (planned with [`Moves::InPlace`]) into the remote file at `path`, which
/// holds `before` (the base), making it `target`. Returns the bytes sent.
///
/// `Ok(None)` when the file cannot be opened to be written into (another hard link, a
/// refusal): nothing was written, the file goes whole instead.
///
/// # Errors
/// Store and remote errors. After an error with the share still reachable, the file has
/// been rolled back to the base (see [`roll_back`]) and the record dropped; after an outage
/// (or a rollback that failed too) the record stays: the next run finishes the patch, or
/// rolls it back (see [`finish_pending`]).
pub(super) fn patch_in_place(
    ws: &Workspace,
    remote: &TimedRemote,
    path: &[u8],
    before: &Entry,
    target: &Entry,
    pieces: &[Piece],
    step: usize,
) -> Result<Option<u64>> {
    let base = before.file.expect("file entries have content");
    let id = target.file.expect("file entries have content");
    let record = PendingPatch {
        path_hex: hex(path),
        base: base.to_hex(),
        target: id.to_hex(),
        mode: target.mode,
        mtime_ns: target.mtime_ns,
        base_mode: Some(before.mode),
        base_mtime_ns: Some(before.mtime_ns),
    };
    let mut batch = Batch::new();
    batch.put(
        keys::CF_STATE,
        &key(path),
        &serde_json::to_vec(&record).expect("a record serializes"),
    );
    ws.store.commit(batch)?;
    let w = match remote.open_in_place(path) {
        Ok(w) => w,
        // Nothing written yet: nothing to finish. An outage is an error as anywhere.
        Err(e) => {
            drop_record(&ws.store, path)?;
            return if remote.pool().is_tripped() {
                Err(e)
            } else {
                Ok(None)
            };
        }
    };
    let done = patch_file(
        &ws.store,
        w,
        pieces,
        (target.size, target.mode, target.mtime_ns),
        || {
            crate::failpoint::hit_n("mid-patch", step);
        },
    );
    match done {
        Ok(sent) => {
            drop_record(&ws.store, path)?;
            Ok(Some(sent))
        }
        Err(e) if !remote.pool().is_tripped() => {
            if roll_back(ws, remote, &record).is_ok() {
                drop_record(&ws.store, path)?;
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Writes the pieces into `w`, then sets its size, mode and mtime (`to`) and syncs it.
/// Returns the bytes sent.
fn patch_file(
    store: &Store,
    mut w: TimedWriter,
    pieces: &[Piece],
    to: (u64, u32, i64),
    after_first: impl FnMut(),
) -> Result<u64> {
    let (size, mode, mtime_ns) = to;
    let sent = write_in_place(store, &mut w, pieces, after_first)?;
    w.set_len(size)?;
    w.finish(mode, mtime_ns)?;
    Ok(sent)
}

/// Puts back the base of a patch left midway, over a file holding a mix of the base and
/// the target: the base's chunks written where the target's differ at the same offset
/// (everywhere else the two hold the same bytes), the file cut to the base's size, its
/// mode and mtime restored. Bytes written over bytes need no new space.
///
/// # Errors
/// [`SyncError::Usage`] for a record written before rollbacks existed (it does not say the
/// base's mode and mtime); store errors (a content gone); remote errors.
fn roll_back(ws: &Workspace, remote: &TimedRemote, record: &PendingPatch) -> Result<()> {
    let (path, base, target) = record.ids().expect("checked by pending()");
    let (Some(mode), Some(mtime_ns)) = (record.base_mode, record.base_mtime_ns) else {
        return Err(SyncError::Usage(format!(
            "{}: an interrupted patch from an older version cannot be rolled back",
            display(&path)
        )));
    };
    let (Some(b), Some(t)) = (ws.store.file_object(base)?, ws.store.file_object(target)?) else {
        return Err(SyncError::Usage(format!(
            "{}: the content to roll an interrupted patch back is gone from the store",
            display(&path)
        )));
    };
    let pieces = patch::plan(&t, &b, Moves::InPlace);
    let w = remote.open_in_place(&path)?;
    patch_file(&ws.store, w, &pieces, (b.size, mode, mtime_ns), || {})?;
    Ok(())
}

fn write_in_place(
    store: &Store,
    w: &mut TimedWriter,
    pieces: &[Piece],
    mut after_first: impl FnMut(),
) -> Result<u64> {
    let mut sent = 0;
    let mut first = true;
    for p in pieces {
        if let Piece::Write { chunk, at, .. } = *p {
            let data = store.chunk(chunk)?;
            sent += data.len() as u64;
            w.write_at(at, data)?;
            if std::mem::take(&mut first) {
                after_first();
            }
        }
    }
    Ok(sent)
}

fn drop_record(store: &Store, path: &[u8]) -> Result<()> {
    let mut batch = Batch::new();
    batch.delete(keys::CF_STATE, &key(path));
    Ok(store.commit(batch)?)
}

/// What became of a patch a run left unfinished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Finished: the file holds the target.
    Finished(Vec<u8>),
    /// The file held something else than a mix of base and target (changed meanwhile on
    /// the server) or was gone: left alone, for the reconcile to see.
    LeftAlone(Vec<u8>),
    /// The share refused to let the patch be finished (the error, as text): the file was
    /// put back to the base instead, and the change is pushed again as any other.
    RolledBack(Vec<u8>, String),
}

/// Finishes the patches in place a run left behind (killed, or cut off from the share
/// mid-patch). Each file is read whole first: only when every byte is the base's or the
/// target's at its offset is the patch made again (it is idempotent) and the record
/// dropped. A record stays when the share is unreachable.
///
/// # Errors
/// Store errors, remote errors.
pub fn finish_pending(ws: &Workspace, remote: &TimedRemote) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    for record in pending(&ws.store)? {
        let (path, base, target) = record.ids().expect("checked by pending()");
        // Both contents are kept by gc while the record names them; should one be gone
        // all the same, the file cannot be checked: it is left to the reconcile, which
        // reads it as any server edit.
        let objects = (ws.store.file_object(base)?, ws.store.file_object(target)?);
        let mixed = match (remote.stat(&path)?, &objects) {
            (Some(e), (Some(b), Some(t))) if e.kind == EntryKind::File => {
                is_mix(ws, remote, &path, b, t)?
            }
            _ => false,
        };
        if let (true, (Some(b), Some(t))) = (mixed, objects) {
            let pieces = patch::plan(&b, &t, Moves::InPlace);
            let to = (t.size, record.mode, record.mtime_ns);
            let done = remote
                .open_in_place(&path)
                .and_then(|w| patch_file(&ws.store, w, &pieces, to, || {}));
            match done {
                Ok(_) => out.push(Leftover::Finished(path.clone())),
                // A share that answers but will not take the rest (full, over quota): the
                // file goes back to the base rather than stay mixed, or the run stops here
                // with the record kept.
                Err(e) if !remote.pool().is_tripped() => {
                    if roll_back(ws, remote, &record).is_err() {
                        return Err(e);
                    }
                    out.push(Leftover::RolledBack(path.clone(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        } else {
            out.push(Leftover::LeftAlone(path.clone()));
        }
        drop_record(&ws.store, &path)?;
    }
    Ok(out)
}

/// Whether every byte of the remote file is the base's or the target's at its offset.
fn is_mix(
    ws: &Workspace,
    remote: &TimedRemote,
    path: &[u8],
    base: &FileObject,
    target: &FileObject,
) -> Result<bool> {
    const BLOCK: usize = 1 << 20;
    let mut file = remote.open(path)?;
    let mut b = ObjectReader::new(&ws.store, base);
    let mut t = ObjectReader::new(&ws.store, target);
    let mut buf = vec![0u8; BLOCK];
    let (mut bb, mut tb) = (Vec::with_capacity(BLOCK), Vec::with_capacity(BLOCK));
    loop {
        let n = read_full(&mut file, &mut buf).map_err(|e| remote_io(path, e))?;
        if let Some(e) = file.error.take() {
            return Err(e);
        }
        if n == 0 {
            return Ok(true);
        }
        b.next_bytes(n, &mut bb)?;
        t.next_bytes(n, &mut tb)?;
        let same = buf[..n]
            .iter()
            .enumerate()
            .all(|(i, x)| bb.get(i) == Some(x) || tb.get(i) == Some(x));
        if !same {
            return Ok(false);
        }
    }
}

fn remote_io(path: &[u8], source: std::io::Error) -> SyncError {
    SyncError::RemoteIo {
        path: display(path).into(),
        source,
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A stored file's content read in order, chunk by chunk (each verified).
struct ObjectReader<'a> {
    store: &'a Store,
    chunks: std::slice::Iter<'a, (cachesync_objects::ChunkId, u32)>,
    current: Vec<u8>,
    used: usize,
}

impl<'a> ObjectReader<'a> {
    fn new(store: &'a Store, object: &'a FileObject) -> ObjectReader<'a> {
        ObjectReader {
            store,
            chunks: object.chunks.iter(),
            current: Vec::new(),
            used: 0,
        }
    }

    /// The next `n` bytes into `out` (fewer at the end).
    fn next_bytes(&mut self, n: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        while out.len() < n {
            if self.used == self.current.len() {
                let Some((id, _)) = self.chunks.next() else {
                    break;
                };
                self.current = self.store.chunk(*id)?;
                self.used = 0;
            }
            let take = (n - out.len()).min(self.current.len() - self.used);
            out.extend_from_slice(&self.current[self.used..self.used + take]);
            self.used += take;
        }
        Ok(())
    }
}
