//! The FUSE side: each request unpacked, handed to [`State`], and answered.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use crate::change::SetAttr;
use crate::errno::of_io;
use crate::state::{Answer, State};

/// The file system served at the mount point.
pub struct View {
    state: Arc<Mutex<State>>,
}

impl View {
    /// A view of the workspace `state` holds.
    pub fn new(state: Arc<Mutex<State>>) -> View {
        View { state }
    }

    /// The state, for one request (taken back from another command first, if it is done).
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.refresh();
        s
    }
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_encoded_bytes()
}

/// Replies with an entry or the errno.
fn entry(reply: ReplyEntry, a: Answer<fuser::FileAttr>, s: &State) {
    match a {
        Ok(attr) => reply.entry(&s.ttl(attr.ino.0), &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

/// Replies with success or the errno.
fn empty(reply: ReplyEmpty, a: Answer<()>) {
    match a {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Replies to a getxattr/listxattr: the size when asked for it, else the value.
fn xattr(reply: ReplyXattr, size: u32, a: Answer<Vec<u8>>) {
    match a {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for View {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC reaches `open` (instead of a truncate after it): opening a remote-only file
        // with O_TRUNC then needs no content, offline too.
        config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC)
            .map_err(|_| std::io::Error::other("the kernel lacks FUSE_ATOMIC_O_TRUNC"))
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        let a = s.child(parent.0, bytes(name)).and_then(|p| s.attr(&p));
        entry(reply, a, &s);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut s = self.lock();
        if let Some(attr) = fh.and_then(|fh| s.handle_attr(ino.0, fh.0)) {
            reply.attr(&s.ttl(ino.0), &attr);
            return;
        }
        match s.path(ino.0).and_then(|p| s.attr(&p)) {
            Ok(attr) => reply.attr(&s.ttl(attr.ino.0), &attr),
            Err(Errno::ESTALE) => match s.open_attr(ino.0) {
                Some(attr) => reply.attr(&s.ttl(attr.ino.0), &attr),
                None => reply.error(Errno::ESTALE),
            },
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        let mut s = self.lock();
        match s
            .path(ino.0)
            .and_then(|p| s.setattr(&p, fh.map(|h| h.0), &set))
        {
            Ok(attr) => reply.attr(&s.ttl(attr.ino.0), &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let s = self.lock();
        match s
            .path(ino.0)
            .and_then(|p| std::fs::read_link(s.abs(&p)).map_err(|e| of_io(&e)))
        {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let a = s
            .child(parent.0, bytes(name))
            .and_then(|p| s.mkdir(&p, mode & !umask & 0o7777))
            .and_then(|a| s.own(a, req));
        entry(reply, a, &s);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let a = s
            .child(parent.0, bytes(name))
            .and_then(|p| s.mknod(&p, mode & !(umask & 0o7777), rdev))
            .and_then(|a| s.own(a, req));
        entry(reply, a, &s);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let a = s.child(parent.0, bytes(name)).and_then(|p| s.unlink(&p));
        empty(reply, a);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let a = s.child(parent.0, bytes(name)).and_then(|p| s.rmdir(&p));
        empty(reply, a);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let a = s
            .child(parent.0, bytes(link_name))
            .and_then(|p| s.symlink(&p, target))
            .and_then(|a| s.own(a, req));
        entry(reply, a, &s);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let a = s.child(parent.0, bytes(name)).and_then(|from| {
            let to = s.child(newparent.0, bytes(newname))?;
            s.rename(&from, &to, flags.bits())
        });
        empty(reply, a);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let a = s.path(ino.0).and_then(|existing| {
            let to = s.child(newparent.0, bytes(newname))?;
            s.link(&existing, &to)
        });
        entry(reply, a, &s);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        match s.path(ino.0).and_then(|p| s.open(&p, flags.0)) {
            Ok(fh) => {
                let keep = if s.opened(fh, ino.0) {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), keep);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // A streamed file's read waits for its bytes without holding the view.
        let stream = self.lock().stream_of(fh.0);
        let read = match stream {
            Some(s) => s.read(offset, size),
            None => self.lock().read(fh.0, offset, size),
        };
        match read {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.lock().write(fh.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let a = self.lock().flush(fh.0);
        empty(reply, a);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let s = self.lock();
        // Only workspace files have anything to sync.
        let a = s.file(fh.0).map_or(Ok(()), |f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(|e| of_io(&e))
        });
        empty(reply, a);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        match s.path(ino.0).and_then(|p| s.opendir(&p)) {
            Ok(fh) => {
                // The kernel may keep the listing while changes are heard of (see
                // `invalidate`): a warm walk of a big tree then reads no directory here.
                let keep = if s.ttl(ino.0) == crate::invalidate::LONG {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), keep);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.lock();
        match s.listing(fh.0) {
            Ok(list) => {
                for (i, (ino, kind, name)) in list.iter().enumerate().skip(offset as usize) {
                    let name = OsStr::from_bytes(name);
                    if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.lock();
        match rustix::fs::statvfs(&s.root) {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                st.f_bsize as u32,
                255,
                st.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let a = s
            .path(ino.0)
            .and_then(|p| s.setxattr(&p, bytes(name), value));
        empty(reply, a);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut s = self.lock();
        let a = s.path(ino.0).and_then(|p| s.getxattr(&p, bytes(name)));
        xattr(reply, size, a);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut s = self.lock();
        let a = s.path(ino.0).and_then(|p| s.listxattr(&p));
        xattr(reply, size, a);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let known = [crate::xattr::STATE, crate::xattr::PINNED];
        let e = if known.iter().any(|k| k.as_bytes() == bytes(name)) {
            Errno::EPERM
        } else {
            Errno::ENODATA
        };
        reply.error(e);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (`default_permissions`); this only says
        // whether the path exists.
        let mut s = self.lock();
        let a = s.path(ino.0).and_then(|p| s.attr(&p)).map(|_| ());
        empty(reply, a);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        let a = s
            .child(parent.0, bytes(name))
            .and_then(|p| s.create(&p, mode & !umask & 0o7777, flags))
            .and_then(|(a, fh)| s.own(a, req).map(|a| (a, fh)));
        match a {
            Ok((attr, fh)) => {
                // A new file: nothing cached to keep.
                let _ = s.opened(fh, attr.ino.0);
                reply.created(
                    &s.ttl(attr.ino.0),
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(e),
        }
    }
}

use std::os::unix::ffi::OsStrExt;
