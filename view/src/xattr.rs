//! The cache's state as extended attributes, readable by any program (`getfattr`, `xattr`):
//! the kernel proposal's "statx flag" and "cachectl()".
//!
//! - `user.cachesync.state`: `materialized` (here, as synced), `remote-only` (listed, content
//!   on the share only), `modified` (changed here since the last sync), `provisional` (created
//!   here, never synced), `conflicted` (an open conflict).
//! - `user.cachesync.pinned`: `0` or `1`; writing `1` pins the path (its remote-only files
//!   are fetched when the share is there), `0` unpins it.
//!
//! Other attribute names are not kept (`ENOTSUP` on set, `ENODATA` on get): they would not
//! reach the share.

use cachesync_objects::EntryKind;
use fuser::Errno;

use crate::errno::of_error;
use crate::state::{Answer, State};

/// The attribute that tells a path's state.
pub const STATE: &str = "user.cachesync.state";
/// The attribute that tells (and sets) whether a path is pinned.
pub const PINNED: &str = "user.cachesync.pinned";

impl State {
    /// The value of attribute `name` of `path`.
    pub fn getxattr(&mut self, path: &[u8], name: &[u8]) -> Answer<Vec<u8>> {
        self.attr(path)?;
        if name == STATE.as_bytes() {
            return Ok(self.state_of(path)?.as_bytes().to_vec());
        }
        if name == PINNED.as_bytes() {
            let pinned = self.working_set().is_pinned(path);
            return Ok(if pinned { b"1" } else { b"0" }.to_vec());
        }
        Err(Errno::ENODATA)
    }

    /// The names of the attributes, NUL-terminated, as listxattr(2) gives them.
    pub fn listxattr(&mut self, path: &[u8]) -> Answer<Vec<u8>> {
        self.attr(path)?;
        let mut out = Vec::new();
        for n in [STATE, PINNED] {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Sets `user.cachesync.pinned` (`1` pins, `0` unpins); the state cannot be set.
    pub fn setxattr(&mut self, path: &[u8], name: &[u8], value: &[u8]) -> Answer<()> {
        self.attr(path)?;
        if name == STATE.as_bytes() {
            return Err(Errno::EPERM);
        }
        if name != PINNED.as_bytes() {
            return Err(Errno::ENOTSUP);
        }
        let paths = [path.to_vec()];
        match value.trim_ascii() {
            b"1" => {
                let (_, fetched) = cachesync_engine::presence::pin(self.ws()?, &paths)
                    .map_err(|e| of_error(&e))?;
                // The pin stands; content the share cannot give now comes with a later sync.
                drop(fetched);
            }
            b"0" => {
                cachesync_engine::presence::unpin(self.ws()?, &paths).map_err(|e| of_error(&e))?;
            }
            _ => return Err(Errno::EINVAL),
        }
        self.reload()
    }

    /// The state word of `path` (see the module doc).
    fn state_of(&self, path: &[u8]) -> Answer<&'static str> {
        if self.known.conflicts.contains_key(path) {
            return Ok("conflicted");
        }
        let Some(base) = self.known.base.get(path) else {
            return Ok("provisional");
        };
        let md = match self.abs(path).symlink_metadata() {
            Ok(md) => md,
            Err(_) if self.known.remote_only.contains(path) => return Ok("remote-only"),
            Err(_) => return Ok("materialized"),
        };
        use std::os::unix::fs::MetadataExt;
        let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let same = match base.kind {
            EntryKind::File => {
                md.is_file()
                    && md.size() == base.size
                    && mtime == base.mtime_ns
                    && md.mode() & 0o7777 == base.mode
            }
            EntryKind::Dir => md.is_dir(),
            EntryKind::Symlink => std::fs::read_link(self.abs(path))
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes() == base.target.as_slice()),
            _ => true,
        };
        Ok(if same { "materialized" } else { "modified" })
    }
}
