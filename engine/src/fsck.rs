//! `fsck`: the whole store verified, with what may be missing by design (the content of
//! remote-only files) told apart from damage.

use crate::error::Result;
use crate::workspace::Workspace;

/// What `fsck` found: every object checked, and the problems.
pub type Outcome = cachesync_objects::FsckReport;

/// Verifies the store (see [`cachesync_objects::Store::fsck`]): remote-only content may
/// be missing, everything else must be there and intact.
///
/// # Errors
/// Store errors while listing conflict records.
pub fn run(ws: &Workspace) -> Result<Outcome> {
    let mut extra = Vec::new();
    for r in crate::conflict::all(&ws.store)? {
        for f in r.files() {
            extra.push((f, format!("conflict {}", r.path)));
        }
    }
    Ok(ws.store.fsck_except(&extra, &crate::cull::collectable(ws)?))
}
