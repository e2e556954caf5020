//! File attributes as the kernel wants them: from the workspace file when it is there, from
//! the base snapshot for a remote-only file.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachesync_objects::{Entry, EntryKind};
use fuser::{FileAttr, FileType, INodeNo};

/// Block size reported for remote-only files (they have no blocks of their own).
const BLOCK: u32 = 4096;

/// A time in ns since the epoch.
pub fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// The FUSE type of a local file type.
fn kind_of(t: std::fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_char_device() {
        FileType::CharDevice
    } else {
        FileType::RegularFile
    }
}

/// The FUSE type of a snapshot entry.
pub fn entry_kind(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::CharDevice => FileType::CharDevice,
    }
}

/// The attributes of a workspace file.
pub fn of_metadata(ino: u64, md: &std::fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: md.size(),
        blocks: md.blocks(),
        atime: time(md.atime() * 1_000_000_000 + md.atime_nsec()),
        mtime: time(md.mtime() * 1_000_000_000 + md.mtime_nsec()),
        ctime: time(md.ctime() * 1_000_000_000 + md.ctime_nsec()),
        crtime: time(md.ctime() * 1_000_000_000 + md.ctime_nsec()),
        kind: kind_of(md.file_type()),
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

/// The attributes of a remote-only file, from its base entry: listed size, mode, owner and
/// times, no blocks (nothing of it is on this disk).
pub fn of_entry(ino: u64, e: &Entry) -> FileAttr {
    let t = time(e.mtime_ns);
    FileAttr {
        ino: INodeNo(ino),
        size: e.size,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: entry_kind(e.kind),
        perm: (e.mode & 0o7777) as u16,
        nlink: 1,
        uid: e.uid,
        gid: e.gid,
        rdev: 0,
        blksize: BLOCK,
        flags: 0,
    }
}

/// A directory that only the base knows (every file in it is remote-only).
pub fn of_base_dir(ino: u64, e: Option<&Entry>) -> FileAttr {
    let mut a = e.map_or_else(
        || {
            let mut d = Entry::new(b"", EntryKind::Dir);
            d.mode = 0o755;
            of_entry(ino, &d)
        },
        |e| of_entry(ino, e),
    );
    a.kind = FileType::Directory;
    a.nlink = 2;
    a
}
