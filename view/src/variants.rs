//! The variants of every conflicted path as files (the kernel proposal's O_SERVER_VARIANT,
//! O_CLIENT_VARIANT and O_RESOLVED_VARIANT), under [`DIR`] at the root of the view:
//!
//! - `.cachesync-variants/server/PATH`, `base/PATH`, `client/PATH`: read-only, the versions
//!   the conflict record keeps (absent where that side has no file), for `vimdiff`, `meld`
//!   or `cp`;
//! - `.cachesync-variants/resolved/PATH`: write the resolution there and close it: the
//!   conflict is settled with that content (as `cachesync resolve PATH --with FILE`), and
//!   `close` fails when the resolution is refused (`EINVAL`: the server moved on, say).
//!
//! The directory lives only in the view; it is never in the workspace, so never synced.

use std::io::{Read, Seek};

use cachesync_engine::conflict::ConflictRecord;
use cachesync_engine::resolve::{self, Resolution};
use cachesync_engine::variants::Which;
use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::errno::of_error;
use crate::state::{Answer, Handle, Listed, State};

/// The name of the variants directory at the root of the view.
pub const DIR: &str = ".cachesync-variants";

/// The sides, by directory name.
const SIDES: [(&str, Which); 4] = [
    ("server", Which::Server),
    ("base", Which::Base),
    ("client", Which::Client),
    ("resolved", Which::Resolved),
];

/// Where a path of the view falls in the variants directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    /// The variants directory itself.
    Top,
    /// One side's directory (`server`, ...).
    Side(Which),
    /// A path under one side: the conflicted path (or a directory above one).
    Under(Which, Vec<u8>),
}

/// The place of `path`, or `None` when it is not in the variants directory.
pub fn place(path: &[u8]) -> Option<Place> {
    let rest = path.strip_prefix(DIR.as_bytes())?;
    if rest.is_empty() {
        return Some(Place::Top);
    }
    let rest = rest.strip_prefix(b"/")?;
    let (side, under) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let which = SIDES.iter().find(|(n, _)| n.as_bytes() == side)?.1;
    Some(match under {
        None => Place::Side(which),
        Some(u) => Place::Under(which, u.to_vec()),
    })
}

fn dir_attr(ino: u64, since: std::time::SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: since,
        mtime: since,
        ctime: since,
        crtime: since,
        kind: FileType::Directory,
        perm: 0o555,
        nlink: 2,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The size and mode a side's file shows for `r` (`None`: no file on that side).
fn shown(r: &ConflictRecord, which: Which) -> Option<(u64, u16)> {
    match which {
        Which::Server => r.server.as_ref().map(|v| (v.size, 0o444)),
        Which::Base => r.base.as_ref().map(|v| (v.size, 0o444)),
        Which::Client => r.client.as_ref().map(|v| (v.size, 0o444)),
        Which::Resolved => Some((0, 0o644)),
    }
}

impl State {
    /// The attributes of a path in the variants directory.
    pub fn variant_attr(&mut self, path: &[u8], place: &Place) -> Answer<FileAttr> {
        let since = std::time::SystemTime::now();
        let ino = self.inodes.number(path);
        let Place::Under(which, rel) = place else {
            return Ok(dir_attr(ino, since));
        };
        if let Some(r) = self.known.conflicts.get(rel) {
            let (size, perm) = shown(r, *which).ok_or(Errno::ENOENT)?;
            let mut a = dir_attr(ino, crate::attr::time(r.since_ns));
            a.kind = FileType::RegularFile;
            a.size = size;
            a.perm = perm;
            a.nlink = 1;
            return Ok(a);
        }
        if self.known.conflicts.keys().any(|p| is_under(p, rel)) {
            return Ok(dir_attr(ino, since));
        }
        Err(Errno::ENOENT)
    }

    /// The entries of a directory in the variants directory.
    pub fn variant_list(&mut self, path: &[u8], place: &Place) -> Answer<Vec<Listed>> {
        let me = self.inodes.number(path);
        let mut out: Vec<Listed> = vec![(me, FileType::Directory, b".".to_vec())];
        let (which, dir) = match place {
            Place::Top => {
                for (name, _) in SIDES {
                    let p = cachesync_engine::paths::join(path, name.as_bytes());
                    out.push((
                        self.inodes.number(&p),
                        FileType::Directory,
                        name.as_bytes().to_vec(),
                    ));
                }
                return Ok(out);
            }
            Place::Side(w) => (*w, Vec::new()),
            Place::Under(w, d) => (*w, d.clone()),
        };
        let mut names = std::collections::BTreeMap::new();
        for (p, r) in &self.known.conflicts {
            if !is_under(p, &dir) || shown(r, which).is_none() {
                continue;
            }
            let rest = if dir.is_empty() {
                &p[..]
            } else {
                &p[dir.len() + 1..]
            };
            match rest.iter().position(|&b| b == b'/') {
                Some(i) => names.insert(rest[..i].to_vec(), FileType::Directory),
                None => names.insert(rest.to_vec(), FileType::RegularFile),
            };
        }
        for (name, kind) in names {
            let p = cachesync_engine::paths::join(path, &name);
            out.push((self.inodes.number(&p), kind, name));
        }
        Ok(out)
    }

    /// Opens a variant: a side's content to read, or a resolution to write.
    pub fn variant_open(&mut self, place: &Place, flags: i32) -> Answer<Handle> {
        let Place::Under(which, rel) = place else {
            return Err(Errno::EISDIR);
        };
        if !self.known.conflicts.contains_key(rel) {
            return Err(Errno::ENOENT);
        }
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if *which != Which::Resolved {
            if writes {
                return Err(Errno::EROFS);
            }
            let v = cachesync_engine::variants::read(self.ws()?, rel, *which)
                .map_err(|e| of_error(&e))?
                .ok_or(Errno::ENOENT)?;
            return Ok(Handle::Memory(v.bytes));
        }
        if !writes {
            return Ok(Handle::Memory(Vec::new()));
        }
        let tmp = tempfile::tempfile_in(&self.meta).map_err(|e| crate::errno::of_io(&e))?;
        Ok(Handle::Resolution {
            path: rel.clone(),
            file: tmp,
            dirty: false,
        })
    }

    /// Settles the conflict with what was written to a `resolved` file (on close).
    pub fn settle(&mut self, path: &[u8], file: &mut std::fs::File) -> Answer<()> {
        let mut bytes = Vec::new();
        file.rewind()
            .and_then(|()| file.read_to_end(&mut bytes))
            .map_err(|e| crate::errno::of_io(&e))?;
        let opts = resolve::Options {
            path: path.to_vec(),
            how: Resolution::With(bytes),
        };
        let done = resolve::run(self.ws()?, &opts);
        self.reload()?;
        done.map(|_| ()).map_err(|e| match e {
            cachesync_engine::SyncError::Usage(_) => Errno::EINVAL,
            other => of_error(&other),
        })
    }
}

/// True when `p` is `dir` or under it (every path is under the empty root).
fn is_under(p: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (p.len() > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_in_the_variants_directory() {
        assert_eq!(place(b".cachesync-variants"), Some(Place::Top));
        assert_eq!(
            place(b".cachesync-variants/server"),
            Some(Place::Side(Which::Server))
        );
        assert_eq!(
            place(b".cachesync-variants/resolved/a/b.txt"),
            Some(Place::Under(Which::Resolved, b"a/b.txt".to_vec()))
        );
        assert_eq!(place(b".cachesync-variants/other/a"), None);
        assert_eq!(place(b".cachesync-variantsx"), None);
        assert_eq!(place(b"a/.cachesync-variants/server"), None);
    }
}
