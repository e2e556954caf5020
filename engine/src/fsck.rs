//! `fsck`: the whole store verified, with what may be missing by design (the content of
//! remote-only files) told apart from damage.

use crate::error::Result;
use crate::workspace::Workspace;

impl Workspace {
    /// Verifies the store (see [`cachesync_objects::Store::fsck`]): remote-only content may
    /// be missing, everything else must be there and intact.
    ///
    /// # Errors
    /// Store errors while listing conflict records.
    pub fn fsck(&self) -> Result<cachesync_objects::FsckReport> {
        let mut extra = Vec::new();
        for r in crate::conflict::all(&self.store)? {
            for f in r.files() {
                extra.push((f, format!("conflict {}", r.path)));
            }
        }
        Ok(self.store.fsck_except(&extra, &self.collectable()?))
    }
}
