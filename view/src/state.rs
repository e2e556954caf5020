//! The view's state and the operations on it, one method per file-system call, each
//! returning the errno a program should see. `fs.rs` only unpacks requests and replies.
//!
//! Every change lands in the workspace directory (the same files a sync reads), so nothing
//! written through the view can be lost when the view goes: a killed daemon leaves the
//! workspace as complete as a killed editor would.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use cachesync_engine::ignore_rules::{META_DIR, TMP_PREFIX};
use cachesync_engine::paths::join;
use cachesync_engine::Workspace;
use cachesync_objects::{Batch, EntryKind};
use fuser::{Errno, FileAttr, FileType};

use crate::errno::{of_error, of_io, EDISCONDATA};
use crate::inodes::Inodes;
use crate::known::Known;
use crate::variants::{place, DIR as VARIANTS};

/// Result of a file-system call: the errno on failure.
pub type Answer<T> = std::result::Result<T, Errno>;

/// One listed directory entry: inode, type, name.
pub type Listed = (u64, FileType, Vec<u8>);

/// An open file of the view.
pub enum Handle {
    /// A workspace file.
    File(File),
    /// Content held in memory (a conflict's variant).
    Memory(Vec<u8>),
    /// A big remote-only file being fetched (see [`crate::stream`]).
    Streaming(std::sync::Arc<crate::stream::Stream>),
    /// A resolution being written (`.cachesync-variants/resolved/PATH`): settled on close.
    Resolution {
        /// The conflicted path.
        path: Vec<u8>,
        /// What was written so far.
        file: File,
        /// Written since the last settle.
        dirty: bool,
    },
}

/// Everything the view holds.
pub struct State {
    /// The workspace, while the view holds it (its lock with it). Another cachesync command
    /// asks the view to let go of it (see [`crate::control`]); the view takes it back once
    /// that command is done, at the next call that needs the store.
    ws: Option<Workspace>,
    /// The workspace root.
    pub root: PathBuf,
    /// `.cachesync/` in it.
    pub meta: PathBuf,
    /// Where events go besides the log (the user's hook, desktop notifications).
    outlets: cachesync_engine::events::Outlets,
    /// Pins and hoard rules, as the config said at the last load.
    working_set: cachesync_engine::workset::WorkingSet,
    /// Commands the view let go of the workspace for (not done yet), and whether the store
    /// changed since the last load.
    pub shared: std::sync::Arc<crate::control::Shared>,
    /// What the store says.
    pub known: Known,
    /// Inode numbers.
    pub inodes: Inodes,
    /// What changes in the workspace directory (none without inotify).
    pub monitor: Option<std::sync::Arc<crate::monitor::Monitor>>,
    /// Where paths whose cached answers the kernel must forget are sent (see
    /// [`crate::invalidate`]); none: answers live [`crate::invalidate::SHORT`].
    pub changes: Option<crate::invalidate::Changes>,
    /// Open files.
    files: HashMap<u64, Handle>,
    /// The inode number each open file was opened as.
    opened_as: HashMap<u64, u64>,
    /// Per inode number, the workspace file's stat (size, mtime, ctime) when it was last
    /// opened: unchanged at the next open, the kernel may keep what it cached of it.
    stamps: HashMap<u64, (u64, i64, i64)>,
    /// The cache's use as last measured plus what the view fetched since (`None`: not
    /// measured since the workspace last changed hands). Writes are not counted.
    cache_used: Option<u64>,
    /// The files being streamed, by path.
    pub streams: HashMap<Vec<u8>, std::sync::Arc<crate::stream::Stream>>,
    /// The workspace handle is with a stream's fetch.
    lent: bool,
    /// The view's own state, for the threads that give the workspace back.
    pub me: std::sync::Weak<std::sync::Mutex<State>>,
    /// Open directories: their listing, taken at opendir.
    dirs: HashMap<u64, Vec<Listed>>,
    next_fh: u64,
}

/// A workspace name the view never shows: the workspace's own directory at the root (and
/// anything at the name of the variants directory), temporaries.
fn hidden(parent: &[u8], name: &[u8]) -> bool {
    let own = [META_DIR, VARIANTS, crate::MARKER];
    (parent.is_empty() && own.iter().any(|o| o.as_bytes() == name))
        || name.starts_with(TMP_PREFIX.as_bytes())
}

impl State {
    /// The state of a freshly opened workspace.
    ///
    /// # Errors
    /// The store's errors, as errno.
    pub fn new(ws: Workspace) -> Answer<State> {
        let known = Known::load(&ws).map_err(|e| of_error(&e))?;
        Ok(State {
            root: ws.root.clone(),
            meta: ws.meta_dir(),
            outlets: cachesync_engine::events::Outlets::of(&ws.config),
            working_set: ws.working_set(),
            ws: Some(ws),
            shared: std::sync::Arc::default(),
            known,
            inodes: Inodes::default(),
            monitor: None,
            changes: None,
            files: HashMap::new(),
            opened_as: HashMap::new(),
            stamps: HashMap::new(),
            cache_used: None,
            streams: HashMap::new(),
            lent: false,
            me: std::sync::Weak::new(),
            dirs: HashMap::new(),
            next_fh: 1,
        })
    }

    /// Reads the store's view again (after the view or a sync changed it).
    pub fn reload(&mut self) -> Answer<()> {
        let ws = self.ws.as_ref().ok_or(Errno::EAGAIN)?;
        let known = Known::load(ws).map_err(|e| of_error(&e))?;
        if let Some(tx) = &self.changes {
            for p in self.known.changed_remote_only(&known) {
                let _ = tx.send((p, false));
            }
        }
        self.known = known;
        self.working_set = ws.working_set();
        self.outlets = cachesync_engine::events::Outlets::of(&ws.config);
        Ok(())
    }

    /// The workspace, taken back if the view let go of it and the command it let go for is
    /// done. `EAGAIN` while another cachesync command works on the workspace.
    pub fn ws(&mut self) -> Answer<&mut Workspace> {
        if self.ws.is_none() {
            if self.shared.busy() || self.lent {
                return Err(Errno::EAGAIN);
            }
            match Workspace::open(&self.root) {
                Ok(ws) => self.ws = Some(ws),
                Err(cachesync_engine::SyncError::Locked { .. }) => return Err(Errno::EAGAIN),
                Err(e) => return Err(of_error(&e)),
            }
            self.reload()?;
        }
        self.ws.as_mut().ok_or(Errno::EAGAIN)
    }

    /// What the [`crate::MARKER`] file holds: the workspace root.
    fn marker(&self) -> Vec<u8> {
        let mut m = self.root.as_os_str().as_encoded_bytes().to_vec();
        m.push(b'\n');
        m
    }

    /// Hands the workspace to a stream's fetch (`None` when the view does not hold it).
    pub fn take_ws(&mut self) -> Option<Workspace> {
        let ws = self.ws.take()?;
        self.lent = true;
        Some(ws)
    }

    /// A stream's fetch gives the workspace back (or lets it go, when another command asked
    /// for it meanwhile).
    pub fn give_back(&mut self, ws: Workspace) {
        self.lent = false;
        if self.shared.busy() {
            drop(ws);
            self.shared.mark_stale();
        } else {
            self.ws = Some(ws);
            let _ = self.reload();
        }
    }

    /// The stream of a handle, if it is a streamed file's.
    pub fn stream_of(&self, fh: u64) -> Option<std::sync::Arc<crate::stream::Stream>> {
        match self.files.get(&fh) {
            Some(Handle::Streaming(s)) => Some(std::sync::Arc::clone(s)),
            _ => None,
        }
    }

    /// Lets go of the workspace (its lock and store) for another command, handing over
    /// what changed in it since the last time (see [`crate::monitor`]): its session and
    /// number, for the command.
    pub fn let_go(&mut self) -> Option<(u64, u64)> {
        self.ws = None;
        match self.monitor.as_ref()?.hand_over(&self.meta) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("cachesync: {}: {e}", self.meta.display());
                None
            }
        }
    }

    /// Called before every request: after another command worked on the workspace, take it
    /// back and read the store again (what the view shows follows that command).
    pub fn refresh(&mut self) {
        if self.shared.stale() && !self.shared.busy() && self.ws().is_ok() {
            self.shared.fresh();
            self.cache_used = None;
        }
    }

    /// Pins and hoard rules.
    pub fn working_set(&self) -> &cachesync_engine::workset::WorkingSet {
        &self.working_set
    }

    /// How long the kernel may keep an answer about `ino`: long while changes are heard of
    /// (see [`crate::invalidate`]), short for the view's own files.
    pub fn ttl(&self, ino: u64) -> std::time::Duration {
        let own = self.inodes.path(ino).is_none_or(|p| {
            place(&p).is_some() || p == crate::MARKER.as_bytes() || p == VARIANTS.as_bytes()
        });
        if self.changes.is_some() && !own {
            crate::invalidate::LONG
        } else {
            crate::invalidate::SHORT
        }
    }

    /// The path of `ino`.
    pub fn path(&self, ino: u64) -> Answer<Vec<u8>> {
        match self.inodes.names(ino) {
            [] => Err(Errno::ESTALE),
            [one] => Ok(one.clone()),
            // A hard-linked file: a name that is still there (another may have gone behind
            // the view's back).
            names => Ok(names
                .iter()
                .find(|p| self.abs(p).symlink_metadata().is_ok())
                .unwrap_or(&names[0])
                .clone()),
        }
    }

    /// The path of `name` in the directory `parent`.
    pub fn child(&self, parent: u64, name: &[u8]) -> Answer<Vec<u8>> {
        let dir = self.path(parent)?;
        let virtual_ = [VARIANTS, crate::MARKER];
        if hidden(&dir, name) && !(dir.is_empty() && virtual_.iter().any(|v| v.as_bytes() == name))
        {
            return Err(Errno::ENOENT);
        }
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(join(&dir, name))
    }

    /// The workspace file at `path`.
    pub fn abs(&self, path: &[u8]) -> crate::abs::Abs {
        crate::abs::Abs::new(&self.root, path)
    }

    /// True when `path` is a remote-only file (in the base, no workspace file).
    pub fn is_remote_only(&self, path: &[u8]) -> bool {
        self.known.remote_only_entry(path).is_some() && self.abs(path).symlink_metadata().is_err()
    }

    /// The attributes of `path`, giving it an inode number.
    pub fn attr(&mut self, path: &[u8]) -> Answer<FileAttr> {
        if path == crate::MARKER.as_bytes() {
            let mut a = crate::attr::of_base_dir(self.inodes.number(path), None);
            a.kind = FileType::RegularFile;
            a.perm = 0o444;
            a.nlink = 1;
            a.size = self.marker().len() as u64;
            return Ok(a);
        }
        if let Some(p) = place(path) {
            return self.variant_attr(path, &p);
        }
        let abs = self.abs(path);
        match abs.symlink_metadata() {
            Ok(md) => {
                use std::os::unix::fs::MetadataExt;
                let ino = if md.is_dir() {
                    self.inodes.number(path)
                } else {
                    self.inodes
                        .number_of_file(path, (md.dev(), md.ino()), md.nlink())
                };
                return Ok(crate::attr::of_metadata(ino, &md));
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(of_io(&e)),
            Err(_) => {}
        }
        if let Some(e) = self.known.remote_only_entry(path) {
            let e = e.clone();
            return Ok(crate::attr::of_entry(self.inodes.number(path), &e));
        }
        if self.known.holds_remote_only(path) {
            let e = self.known.base.get(path).cloned();
            return Ok(crate::attr::of_base_dir(
                self.inodes.number(path),
                e.as_ref(),
            ));
        }
        Err(Errno::ENOENT)
    }

    /// The entries of the directory `path`: the workspace's and the remote-only files.
    pub fn list(&mut self, path: &[u8]) -> Answer<Vec<Listed>> {
        if let Some(p) = place(path) {
            let mut out = self.variant_list(path, &p)?;
            let up = self
                .inodes
                .number(cachesync_engine::paths::split_parent(path).0);
            out.insert(1, (up, FileType::Directory, b"..".to_vec()));
            return Ok(out);
        }
        let me = self.inodes.number(path);
        let parent = self
            .inodes
            .number(cachesync_engine::paths::split_parent(path).0);
        let mut out: Vec<Listed> = vec![
            (me, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        let mut seen = std::collections::HashSet::new();
        match std::fs::read_dir(self.abs(path)) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(|e| of_io(&e))?;
                    let name = e.file_name().into_encoded_bytes();
                    if hidden(path, &name) {
                        continue;
                    }
                    let child = join(path, &name);
                    out.push((self.inodes.number(&child), kind_of(&e), name.clone()));
                    seen.insert(name);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.known.holds_remote_only(path) {
                    return Err(Errno::ENOENT);
                }
            }
            Err(e) => return Err(of_io(&e)),
        }
        if path.is_empty() {
            let v = self.inodes.number(VARIANTS.as_bytes());
            out.push((v, FileType::Directory, VARIANTS.as_bytes().to_vec()));
        }
        let remote: Vec<Vec<u8>> = self
            .known
            .remote_only_in(path)
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in remote {
            let child = join(path, &name);
            let kind = self
                .known
                .base
                .get(&child)
                .map_or(FileType::RegularFile, |e| crate::attr::entry_kind(e.kind));
            out.push((self.inodes.number(&child), kind, name));
        }
        Ok(out)
    }

    /// Opens the directory `path`: its listing, kept until it is released.
    pub fn opendir(&mut self, path: &[u8]) -> Answer<u64> {
        let listing = self.list(path)?;
        let fh = self.fh();
        self.dirs.insert(fh, listing);
        Ok(fh)
    }

    /// The listing of an open directory.
    pub fn listing(&self, fh: u64) -> Answer<&[Listed]> {
        self.dirs.get(&fh).map(Vec::as_slice).ok_or(Errno::EBADF)
    }

    /// Forgets an open directory.
    pub fn releasedir(&mut self, fh: u64) {
        self.dirs.remove(&fh);
    }

    fn fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }

    /// Keeps `file` open under a new handle.
    pub fn keep(&mut self, file: File) -> u64 {
        self.keep_handle(Handle::File(file))
    }

    /// Keeps an open handle.
    pub fn keep_handle(&mut self, h: Handle) -> u64 {
        let fh = self.fh();
        self.files.insert(fh, h);
        fh
    }

    /// The workspace file of a handle (EBADF for a variant's).
    pub fn file(&self, fh: u64) -> Answer<&File> {
        match self.files.get(&fh) {
            Some(Handle::File(f)) => Ok(f),
            Some(Handle::Resolution { file, .. }) => Ok(file),
            _ => Err(Errno::EBADF),
        }
    }

    /// The attributes of the open workspace file `fh` as inode `ino` (none for other
    /// handles): what fstat(2) sees, also once the file is unlinked.
    pub fn handle_attr(&self, ino: u64, fh: u64) -> Option<FileAttr> {
        match self.files.get(&fh) {
            Some(Handle::File(f)) => f
                .metadata()
                .ok()
                .map(|md| crate::attr::of_metadata(ino, &md)),
            _ => None,
        }
    }

    /// Reads up to `size` bytes at `offset` of an open handle.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Answer<Vec<u8>> {
        let f = match self.files.get(&fh) {
            Some(Handle::Memory(m)) => {
                let start = (offset as usize).min(m.len());
                let end = start.saturating_add(size as usize).min(m.len());
                return Ok(m[start..end].to_vec());
            }
            Some(Handle::File(f) | Handle::Resolution { file: f, .. }) => f,
            Some(Handle::Streaming(s)) => return s.read(offset, size),
            None => return Err(Errno::EBADF),
        };
        read_full_at(f, offset, size)
    }

    /// Writes `data` at `offset` of an open handle.
    pub fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> Answer<()> {
        use std::os::unix::fs::FileExt;
        match self.files.get_mut(&fh) {
            Some(Handle::File(f)) => f.write_all_at(data, offset).map_err(|e| of_io(&e)),
            Some(Handle::Resolution { file, dirty, .. }) => {
                *dirty = true;
                file.write_all_at(data, offset).map_err(|e| of_io(&e))
            }
            Some(Handle::Memory(_) | Handle::Streaming(_)) => Err(Errno::EBADF),
            None => Err(Errno::EBADF),
        }
    }

    /// On close(2): a resolution written to a `resolved` file settles its conflict; the
    /// error, if any, is what close returns.
    pub fn flush(&mut self, fh: u64) -> Answer<()> {
        if !matches!(self.files.get(&fh), Some(Handle::Resolution { .. })) {
            return Ok(());
        }
        let Some(Handle::Resolution { path, file, dirty }) = self.files.remove(&fh) else {
            return Ok(());
        };
        let (mut file, path) = (file, path);
        let settled = if dirty {
            self.settle(&path, &mut file)
        } else {
            Ok(())
        };
        self.files.insert(
            fh,
            Handle::Resolution {
                path,
                file,
                dirty: false,
            },
        );
        settled
    }

    /// Closes a handle.
    pub fn release(&mut self, fh: u64) {
        self.files.remove(&fh);
        self.opened_as.remove(&fh);
    }

    /// Notes that `fh` was opened as the inode `ino`. True when the kernel may keep the
    /// pages it cached of the file (FOPEN_KEEP_CACHE): a workspace file whose size, mtime
    /// and ctime are what they were at its last open (any write, through the view or
    /// behind its back, changes its ctime; writes through the view also go through the
    /// kernel's cache, and behind the view's back a file open meanwhile sees what NFS's
    /// close-to-open consistency would).
    pub fn opened(&mut self, fh: u64, ino: u64) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.opened_as.insert(fh, ino);
        let Some(Handle::File(f)) = self.files.get(&fh) else {
            self.stamps.remove(&ino);
            return false;
        };
        let Ok(md) = f.metadata() else {
            return false;
        };
        let now = (
            md.size(),
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        );
        self.stamps.insert(ino, now) == Some(now)
    }

    /// The attributes of `ino` from a file open as it: what fstat(2) sees once every name of
    /// the file is gone (the kernel asks by inode number, without the handle).
    pub fn open_attr(&self, ino: u64) -> Option<FileAttr> {
        self.opened_as
            .iter()
            .filter(|(_, i)| **i == ino)
            .find_map(|(fh, _)| self.handle_attr(ino, *fh))
    }

    /// Refuses a change inside the variants directory (only `resolved` files are written,
    /// through `open`).
    pub fn writable(&self, path: &[u8]) -> Answer<()> {
        if place(path).is_some() || path == crate::MARKER.as_bytes() {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// Opens `path` with `flags` (O_ACCMODE, O_APPEND, O_TRUNC, O_SYNC...; never O_CREAT).
    /// A remote-only file is first brought in: opened with O_TRUNC for writing it needs no
    /// content (it becomes an empty, modified file, offline too); otherwise its content is
    /// fetched, or the open fails with EDISCONDATA's errno.
    pub fn open(&mut self, path: &[u8], flags: i32) -> Answer<u64> {
        if path == crate::MARKER.as_bytes() {
            if flags & libc::O_ACCMODE != libc::O_RDONLY {
                return Err(Errno::EROFS);
            }
            let h = Handle::Memory(self.marker());
            return Ok(self.keep_handle(h));
        }
        if let Some(p) = place(path) {
            let h = self.variant_open(&p, flags)?;
            return Ok(self.keep_handle(h));
        }
        if self.is_remote_only(path) {
            let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
            let size = self.known.base.get(path).map_or(0, |e| e.size);
            if !writes && size >= crate::stream::STREAM_MIN {
                let me = self.me.clone();
                let stream = self.start_stream(path, &me)?;
                return Ok(self.keep_handle(Handle::Streaming(stream)));
            }
            if writes && flags & libc::O_TRUNC != 0 {
                self.materialize_empty(path)?;
            } else {
                self.fetch(path)?;
            }
        }
        let file = open_options(flags)
            .open(self.abs(path))
            .map_err(|e| of_io(&e))?;
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            if let Ok(md) = file.metadata() {
                self.note_if_linked(&md);
            }
        }
        Ok(self.keep(file))
    }

    /// Tells the monitor of a hard-linked workspace file (stat `md`) about to change: the
    /// change is reported under the name it is made through only (see [`crate::monitor`]).
    pub fn note_if_linked(&self, md: &std::fs::Metadata) {
        use std::os::unix::fs::MetadataExt;
        if let Some(m) = &self.monitor {
            if md.is_file() && md.nlink() > 1 {
                m.note_linked(md.ino());
            }
        }
    }

    /// Makes the remote-only `path` an empty workspace file with its base mode: the next
    /// sync sees a modified file (its content replaced), which is what O_TRUNC asked for.
    pub fn materialize_empty(&mut self, path: &[u8]) -> Answer<()> {
        let mode = self.known.base.get(path).map_or(0o644, |e| e.mode);
        self.ensure_parent(path)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(self.abs(path))
            .map_err(|e| of_io(&e))?;
        std::fs::set_permissions(self.abs(path), std::fs::Permissions::from_mode(mode))
            .map_err(|e| of_io(&e))?;
        self.forget_remote_only(path)
    }

    /// Removes the remote-only mark of `path` (its workspace file, or its absence, is now
    /// the truth the next sync reads).
    pub fn forget_remote_only(&mut self, path: &[u8]) -> Answer<()> {
        let mut batch = Batch::new();
        cachesync_engine::presence::clear(&mut batch, path);
        self.ws()?
            .store
            .commit(batch)
            .map_err(|e| of_error(&e.into()))?;
        self.reload()
    }

    /// Brings the content of the remote-only `path` into the workspace (from the store when
    /// it is there, else from the share within its timeout).
    pub fn fetch(&mut self, path: &[u8]) -> Answer<()> {
        self.room_for(path)?;
        let got = cachesync_engine::presence::get(self.ws()?, &[path.to_vec()]);
        self.reload()?;
        match got {
            Ok(r) if r.done.iter().any(|p| p == path) => Ok(()),
            Ok(r) => {
                let why = r
                    .refused
                    .first()
                    .map_or_else(String::new, |(_, w)| w.clone());
                self.not_cached(path, &why);
                Err(EDISCONDATA)
            }
            Err(e) => {
                self.not_cached(path, &e.to_string());
                Err(of_error(&e))
            }
        }
    }

    /// Makes room in the cache budget for the content of `path` (in the store and in the
    /// workspace: twice its size, at most), culling as a sync would; EDISCONFULL's errno
    /// when it cannot fit.
    pub fn room_for(&mut self, path: &[u8]) -> Answer<()> {
        use cachesync_engine::cull::{self, Room};
        let need = self
            .known
            .base
            .get(path)
            .map_or(0, |e| e.size)
            .saturating_mul(2);
        let Some(budget) = cull::budget(self.ws()?) else {
            return Ok(());
        };
        if let Some(u) = self.cache_used.filter(|u| u.saturating_add(need) <= budget) {
            self.cache_used = Some(u + need);
            return Ok(());
        }
        let room = cull::make_room(self.ws()?, need, path).map_err(|e| of_error(&e))?;
        self.reload()?;
        match room {
            Room::Fits(used) => {
                self.cache_used = Some(used + need);
                Ok(())
            }
            Room::Full(..) => Err(crate::errno::EDISCONFULL),
        }
    }

    /// Emits the `not-cached` event for `path` from `ws`.
    pub fn emit_not_cached(ws: &Workspace, path: &[u8], why: &str) {
        let event = cachesync_engine::events::Event {
            time_ns: cachesync_engine::now_ns(),
            kind: cachesync_engine::events::EventKind::NotCached,
            workspace: ws.root.display().to_string(),
            reason: Some(format!(
                "the content is not in the cache and the share cannot give it: {why}"
            )),
            path: Some(cachesync_engine::paths::display(path)),
            manual: None,
        };
        let _ = cachesync_engine::events::emit(
            &ws.meta_dir(),
            &cachesync_engine::events::Outlets::of(&ws.config),
            &event,
        );
    }

    /// Emits the `not-cached` event for `path`.
    fn not_cached(&self, path: &[u8], why: &str) {
        let event = cachesync_engine::events::Event {
            time_ns: cachesync_engine::now_ns(),
            kind: cachesync_engine::events::EventKind::NotCached,
            workspace: self.root.display().to_string(),
            reason: Some(format!(
                "the content is not in the cache and the share cannot give it: {why}"
            )),
            path: Some(cachesync_engine::paths::display(path)),
            manual: None,
        };
        let _ = cachesync_engine::events::emit(&self.meta, &self.outlets, &event);
    }

    /// Creates the missing directories above `path` in the workspace (they exist in the
    /// view because remote-only files are in them), with their base modes.
    pub fn ensure_parent(&self, path: &[u8]) -> Answer<()> {
        let parent = cachesync_engine::paths::split_parent(path).0;
        if parent.is_empty() || self.abs(parent).is_dir() {
            return Ok(());
        }
        self.ensure_parent(parent)?;
        let mode = self
            .known
            .base
            .get(parent)
            .filter(|e| e.kind == EntryKind::Dir)
            .map_or(0o755, |e| e.mode);
        match std::fs::create_dir(self.abs(parent)) {
            Ok(()) => {
                std::fs::set_permissions(self.abs(parent), std::fs::Permissions::from_mode(mode))
                    .map_err(|e| of_io(&e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(of_io(&e)),
        }
    }
}

/// Up to `size` bytes of `f` at `offset`: fewer only at its end.
pub fn read_full_at(f: &File, offset: u64, size: u32) -> Answer<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; size as usize];
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(of_io(&e)),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The type of a listed workspace entry.
/// An entry's type from the directory itself (no stat where the file system says).
fn kind_of(e: &std::fs::DirEntry) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    match e.file_type() {
        Ok(t) if t.is_dir() => FileType::Directory,
        Ok(t) if t.is_symlink() => FileType::Symlink,
        Ok(t) if t.is_fifo() => FileType::NamedPipe,
        Ok(t) if t.is_socket() => FileType::Socket,
        Ok(t) if t.is_block_device() => FileType::BlockDevice,
        Ok(t) if t.is_char_device() => FileType::CharDevice,
        _ => FileType::RegularFile,
    }
}

/// `OpenOptions` for the open(2) flags the kernel passes (O_CREAT and O_EXCL left out: the
/// kernel sends `create` for those).
pub fn open_options(flags: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_WRONLY => o.write(true),
        libc::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    if flags & libc::O_APPEND != 0 {
        o.append(true);
    }
    if flags & libc::O_TRUNC != 0 {
        o.truncate(true);
    }
    let passed = flags & (libc::O_SYNC | libc::O_DSYNC | libc::O_NOFOLLOW | libc::O_DIRECT);
    o.custom_flags(passed & !libc::O_DIRECT);
    o
}
