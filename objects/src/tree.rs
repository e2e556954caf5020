//! Trees: one directory's entries, sorted by name (as bytes).
//!
//! A tree records what cachesync needs to rebuild and compare a directory without asking the
//! remote: each entry's kind, permission bits, owner, mtime, size, and its content (a file
//! object, a subtree, a symlink target or a device number), plus the remote's own number for the
//! file (informational only: sshfs renumbers inodes at every mount, so nothing relies on it).

use crate::encoding::{Decoder, Encoder};
use crate::error::Result;
use crate::id::{FileId, TreeId};

const MAGIC: &[u8; 4] = b"CSTR";
const VERSION: u8 = 1;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
}

impl EntryKind {
    /// The kind's code in encodings (trees, the remote helper's protocol).
    pub fn code(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Dir => 2,
            EntryKind::Symlink => 3,
            EntryKind::Fifo => 4,
            EntryKind::Socket => 5,
            EntryKind::BlockDevice => 6,
            EntryKind::CharDevice => 7,
        }
    }

    /// The kind a code stands for.
    pub fn from_code(code: u8) -> Option<EntryKind> {
        Some(match code {
            1 => EntryKind::File,
            2 => EntryKind::Dir,
            3 => EntryKind::Symlink,
            4 => EntryKind::Fifo,
            5 => EntryKind::Socket,
            6 => EntryKind::BlockDevice,
            7 => EntryKind::CharDevice,
            _ => return None,
        })
    }

    /// A short lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
            EntryKind::BlockDevice => "block-device",
            EntryKind::CharDevice => "char-device",
        }
    }

    /// The kind [`EntryKind::as_str`] names (`None` for any other name).
    pub fn from_name(name: &str) -> Option<EntryKind> {
        [
            EntryKind::File,
            EntryKind::Dir,
            EntryKind::Symlink,
            EntryKind::Fifo,
            EntryKind::Socket,
            EntryKind::BlockDevice,
            EntryKind::CharDevice,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// An entry's name (see [`Entry::name`]).
pub type Name = smallvec::SmallVec<[u8; 16]>;

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name, as bytes (any byte but `/` and NUL). Up to 16 bytes are held in place:
    /// most names are that short, and a name of its own on the heap was 32 bytes more for
    /// each entry of each tree in memory.
    pub name: Name,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files), target length (symlinks), 0 otherwise.
    pub size: u64,
    /// A file's content.
    pub file: Option<FileId>,
    /// A directory's subtree (filled in when the tree is written; never in a [`Flat`]).
    /// Boxed: only a directory read from a tree object has one, and an id held in place
    /// made every entry of every tree in memory 24 bytes bigger.
    ///
    /// [`Flat`]: crate::Flat
    pub tree: Option<Box<TreeId>>,
    /// A symlink's target.
    pub target: Vec<u8>,
    /// A device's number.
    pub rdev: u64,
    /// The remote's inode number when it was seen (informational, never an identity).
    pub remote_ino: u64,
}

impl Entry {
    /// An entry with only a name and kind set.
    pub fn new(name: &[u8], kind: EntryKind) -> Entry {
        Entry {
            name: Name::from_slice(name),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            file: None,
            tree: None,
            target: Vec::new(),
            rdev: 0,
            remote_ino: 0,
        }
    }
}

/// A directory: entries sorted by name, names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The entries, sorted by name.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Canonical encoding: magic `CSTR`, version 1, entry count u32, then per entry: name
    /// (u32 length + bytes), kind u8, mode u32, uid u32, gid u32, mtime i64, size u64,
    /// remote_ino u64, then by kind: file → 32-byte file id; dir → 32-byte tree id; symlink →
    /// target (u32 length + bytes); devices → rdev u64; fifo and socket → nothing.
    /// Integers are little-endian. Entries are sorted by name first, so the same directory
    /// always encodes to the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut e = Encoder::with_header(MAGIC, VERSION);
        e.u32(u32::try_from(entries.len()).expect("a directory has fewer than 2^32 entries"));
        for entry in entries {
            e.bytes(&entry.name);
            e.u8(entry.kind.code());
            e.u32(entry.mode);
            e.u32(entry.uid);
            e.u32(entry.gid);
            e.i64(entry.mtime_ns);
            e.u64(entry.size);
            e.u64(entry.remote_ino);
            match entry.kind {
                EntryKind::File => e.raw(
                    entry
                        .file
                        .expect("a file entry is written with its content id")
                        .as_bytes(),
                ),
                EntryKind::Dir => e.raw(
                    entry
                        .tree
                        .as_deref()
                        .expect("a dir entry is written after its subtree")
                        .as_bytes(),
                ),
                EntryKind::Symlink => e.bytes(&entry.target),
                EntryKind::BlockDevice | EntryKind::CharDevice => e.u64(entry.rdev),
                EntryKind::Fifo | EntryKind::Socket => {}
            }
        }
        e.finish()
    }

    /// Decodes a tree, checking that names are sorted, unique and valid.
    ///
    /// # Errors
    /// [`crate::ObjectError::Decode`] on malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        let (mut d, version) = Decoder::with_header(bytes, MAGIC, "tree")?;
        if version != VERSION {
            return Err(d.error("unknown version"));
        }
        let n = d.u32()? as usize;
        let mut entries: Vec<Entry> = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let name = d.bytes()?.to_vec();
            if name.is_empty()
                || name.contains(&b'/')
                || name.contains(&0)
                || name == b"."
                || name == b".."
            {
                return Err(d.error("invalid entry name"));
            }
            if let Some(prev) = entries.last() {
                if prev.name[..] >= name[..] {
                    return Err(d.error("entries not sorted or not unique"));
                }
            }
            let kind = EntryKind::from_code(d.u8()?).ok_or_else(|| d.error("unknown kind"))?;
            let mut entry = Entry::new(&name, kind);
            entry.mode = d.u32()?;
            entry.uid = d.u32()?;
            entry.gid = d.u32()?;
            entry.mtime_ns = d.i64()?;
            entry.size = d.u64()?;
            entry.remote_ino = d.u64()?;
            match kind {
                EntryKind::File => entry.file = Some(FileId(d.id()?)),
                EntryKind::Dir => entry.tree = Some(Box::new(TreeId(d.id()?))),
                EntryKind::Symlink => entry.target = d.bytes()?.to_vec(),
                EntryKind::BlockDevice | EntryKind::CharDevice => entry.rdev = d.u64()?,
                EntryKind::Fifo | EntryKind::Socket => {}
            }
            entries.push(entry);
        }
        d.finish()?;
        Ok(Tree { entries })
    }

    /// This tree's id.
    pub fn id(&self) -> TreeId {
        TreeId::of(&self.encode())
    }
}

// Round trips, order-independent encoding and damaged input: objects/tests/hostile_input.rs.
