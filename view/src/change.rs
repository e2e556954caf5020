//! The calls that change the tree: create, mkdir, symlink, link, unlink, rmdir, rename and
//! setattr. Each lands in the workspace directory; a remote-only file changes its mark in the
//! store when the change needs no content (unlink, truncate to zero), and is fetched first
//! when it does (rename, chmod, a partial truncate), failing with EDISCONDATA's errno offline.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, TimeOrNow};
use rustix::fs::{RenameFlags, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};

use crate::errno::of_io;
use crate::state::{Answer, State};

/// What `setattr` asks to change.
#[derive(Debug, Default)]
pub struct SetAttr {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Size (truncate or extend).
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<TimeOrNow>,
    /// Modification time.
    pub mtime: Option<TimeOrNow>,
}

fn timespec(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            }
        }
    }
}

impl State {
    /// Gives a file the view just made to the program that asked for it (the daemon made it;
    /// when it runs as root, the file would otherwise be root's): the caller's uid, and its
    /// gid unless the directory is set-group-ID (then the directory's, as the kernel does).
    pub fn own(&mut self, attr: FileAttr, req: &fuser::Request) -> Answer<FileAttr> {
        if !rustix::process::geteuid().is_root() || (attr.uid == req.uid() && attr.gid == req.gid())
        {
            return Ok(attr);
        }
        let path = self.path(attr.ino.0)?;
        let parent = self.abs(cachesync_engine::paths::split_parent(&path).0);
        let gid = match std::fs::metadata(&parent) {
            Ok(md) if std::os::unix::fs::MetadataExt::mode(&md) & 0o2000 != 0 => {
                std::os::unix::fs::MetadataExt::gid(&md)
            }
            _ => req.gid(),
        };
        std::os::unix::fs::lchown(self.abs(&path), Some(req.uid()), Some(gid))
            .map_err(|e| of_io(&e))?;
        // chown clears the set-user-ID and set-group-ID bits; the program asked for them.
        if attr.kind != fuser::FileType::Symlink && attr.perm & 0o6000 != 0 {
            std::fs::set_permissions(
                self.abs(&path),
                Permissions::from_mode(u32::from(attr.perm)),
            )
            .map_err(|e| of_io(&e))?;
        }
        self.attr(&path)
    }

    /// Creates and opens the file `path` (`flags` as open(2) gives them).
    pub fn create(&mut self, path: &[u8], mode: u32, flags: i32) -> Answer<(FileAttr, u64)> {
        if crate::variants::place(path).is_some() {
            // Only a conflicted path's `resolved` file can be written (it always exists).
            let fh = self.open(path, flags)?;
            return Ok((self.attr(path)?, fh));
        }
        if self.is_remote_only(path) {
            if flags & libc::O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            let fh = self.open(path, flags)?;
            return Ok((self.attr(path)?, fh));
        }
        self.ensure_parent(path)?;
        let abs = self.abs(path);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&abs)
        {
            // The mode as asked (the kernel applied the caller's umask; the daemon's is not
            // theirs).
            Ok(made) => made
                .set_permissions(Permissions::from_mode(mode & 0o7777))
                .map_err(|e| of_io(&e))?,
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists && flags & libc::O_EXCL == 0 => {}
            Err(e) => return Err(of_io(&e)),
        }
        let file = crate::state::open_options(flags)
            .open(&abs)
            .map_err(|e| of_io(&e))?;
        if self.known.remote_only.contains(path) {
            self.forget_remote_only(path)?;
        }
        let attr = self.attr(path)?;
        Ok((attr, self.keep(file)))
    }

    /// Makes the directory `path`.
    pub fn mkdir(&mut self, path: &[u8], mode: u32) -> Answer<FileAttr> {
        self.writable(path)?;
        if self.attr(path).is_ok() {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(path)?;
        let abs = self.abs(path);
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&abs)
            .map_err(|e| of_io(&e))?;
        // The mode as asked (see `create`), with the set-group-ID bit a set-group-ID
        // parent gave it.
        let inherited = std::fs::metadata(&abs).map_err(|e| of_io(&e))?.mode() & 0o2000;
        std::fs::set_permissions(&abs, Permissions::from_mode(mode & 0o7777 | inherited))
            .map_err(|e| of_io(&e))?;
        self.attr(path)
    }

    /// Makes the special file `path` (a FIFO, a socket, a device: `mode` carries the type).
    pub fn mknod(&mut self, path: &[u8], mode: u32, rdev: u32) -> Answer<FileAttr> {
        self.writable(path)?;
        if self.attr(path).is_ok() {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(path)?;
        let kind = rustix::fs::FileType::from_raw_mode(mode);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &*self.abs(path),
            kind,
            rustix::fs::Mode::from_raw_mode(mode & 0o7777),
            u64::from(rdev),
        )
        .map_err(|e| Errno::from_i32(e.raw_os_error()))?;
        // The mode as asked (see `create`).
        std::fs::set_permissions(self.abs(path), Permissions::from_mode(mode & 0o7777))
            .map_err(|e| of_io(&e))?;
        self.attr(path)
    }

    /// Makes the symlink `path` pointing at `target`.
    pub fn symlink(&mut self, path: &[u8], target: &std::path::Path) -> Answer<FileAttr> {
        self.writable(path)?;
        if self.attr(path).is_ok() {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(path)?;
        std::os::unix::fs::symlink(target, self.abs(path)).map_err(|e| of_io(&e))?;
        self.attr(path)
    }

    /// Makes `path` a hard link to `existing` (fetched first when remote-only). The share
    /// gets two files: links are not synced as links.
    pub fn link(&mut self, existing: &[u8], path: &[u8]) -> Answer<FileAttr> {
        self.writable(existing)?;
        self.writable(path)?;
        if self.attr(path).is_ok() {
            return Err(Errno::EEXIST);
        }
        if self.is_remote_only(existing) {
            self.fetch(existing)?;
        }
        self.ensure_parent(path)?;
        std::fs::hard_link(self.abs(existing), self.abs(path)).map_err(|e| of_io(&e))?;
        let md = std::fs::symlink_metadata(self.abs(path)).map_err(|e| of_io(&e))?;
        self.inodes.link(existing, path, (md.dev(), md.ino()));
        self.attr(path)
    }

    /// Removes the file `path`; a remote-only one only loses its mark, so the next sync sees
    /// it deleted here.
    pub fn unlink(&mut self, path: &[u8]) -> Answer<()> {
        self.writable(path)?;
        if self.is_remote_only(path) {
            self.forget_remote_only(path)?;
        } else {
            std::fs::remove_file(self.abs(path)).map_err(|e| of_io(&e))?;
            if self.known.remote_only.contains(path) {
                self.forget_remote_only(path)?;
            }
        }
        self.inodes.remove(path);
        Ok(())
    }

    /// Removes the empty directory `path` (one that holds remote-only files is not empty).
    pub fn rmdir(&mut self, path: &[u8]) -> Answer<()> {
        self.writable(path)?;
        if self.known.holds_remote_only(path) {
            return Err(Errno::ENOTEMPTY);
        }
        std::fs::remove_dir(self.abs(path)).map_err(|e| of_io(&e))?;
        self.inodes.remove(path);
        Ok(())
    }

    /// Renames `from` to `to` (`flags`: RENAME_NOREPLACE, RENAME_EXCHANGE). A remote-only
    /// file is fetched first; a directory holding remote-only files cannot move in one step
    /// (EXDEV: `mv` then copies, fetching what it reads).
    pub fn rename(&mut self, from: &[u8], to: &[u8], flags: u32) -> Answer<()> {
        self.writable(from)?;
        self.writable(to)?;
        for p in [from, to] {
            if p != to || flags & libc::RENAME_EXCHANGE != 0 {
                if self.is_remote_only(p) {
                    self.fetch(p)?;
                }
                if self.known.holds_remote_only(p) {
                    return Err(Errno::EXDEV);
                }
            }
        }
        if self.is_remote_only(to) && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(to)?;
        let how = RenameFlags::from_bits_truncate(flags);
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &*self.abs(from),
            rustix::fs::CWD,
            &*self.abs(to),
            how,
        )
        .map_err(|e| Errno::from_i32(e.raw_os_error()))?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            self.inodes.exchange(from, to);
        } else {
            self.inodes.rename(from, to);
            if self.known.remote_only.contains(to) {
                self.forget_remote_only(to)?;
            }
        }
        Ok(())
    }

    /// Changes the attributes of `path` (through the open file `fh` when given).
    pub fn setattr(&mut self, path: &[u8], fh: Option<u64>, set: &SetAttr) -> Answer<FileAttr> {
        if crate::variants::place(path).is_some() {
            // A `resolved` file being written may be truncated; times are ignored there.
            if set.mode.is_some() || set.uid.is_some() || set.gid.is_some() {
                return Err(Errno::EROFS);
            }
            if let (Some(size), Some(h)) = (set.size, fh) {
                self.file(h)?.set_len(size).map_err(|e| of_io(&e))?;
            }
            return self.attr(path);
        }
        if self.is_remote_only(path) {
            let only_truncates = set.size == Some(0) && set.mode.is_none() && set.uid.is_none();
            if only_truncates {
                self.materialize_empty(path)?;
            } else {
                self.fetch(path)?;
            }
        }
        let abs = self.abs(path);
        if let Ok(md) = abs.symlink_metadata() {
            self.note_if_linked(&md);
        }
        if let Some(size) = set.size {
            match fh.map(|h| self.file(h)).transpose()? {
                Some(f) => f.set_len(size),
                None => OpenOptions::new()
                    .write(true)
                    .open(&abs)
                    .and_then(|f: File| f.set_len(size)),
            }
            .map_err(|e| of_io(&e))?;
        }
        if let Some(mode) = set.mode {
            std::fs::set_permissions(&abs, Permissions::from_mode(mode & 0o7777))
                .map_err(|e| of_io(&e))?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            std::os::unix::fs::lchown(&abs, set.uid, set.gid).map_err(|e| of_io(&e))?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = Timestamps {
                last_access: timespec(set.atime),
                last_modification: timespec(set.mtime),
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &*abs,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Errno::from_i32(e.raw_os_error()))?;
        }
        self.attr(path)
    }
}
