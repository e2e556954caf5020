//! The keys of the `state` column family ([`cachesync_objects::keys::CF_STATE`]), in one place.
//!
//! The state table holds the workspace's small records (its mode, what it last saw of the
//! remote root, the cache level...) under fixed keys, and sets of paths under a prefix, one
//! key per path (see `path_set.rs`). docs/formats.md ("The store" and "State records")
//! describes each value. The column families and the objects' own keys are in
//! `cachesync_objects::keys`; the journal's keys are described in `journal.rs`.

/// The remote's identity as `clone` recorded it (mount source, file system type, marker):
/// a [`crate::identity::RemoteIdentity`] as JSON.
pub const IDENTITY: &[u8] = b"identity";

/// The workspace id, which names its temporary files on the remote: 8 ASCII hex digits.
pub const WORKSPACE_ID: &[u8] = b"workspace-id";

/// An `undo` that wrote the workspace and has not yet written the share: the operation it
/// undoes, in ASCII decimal. While it is there, every sync, pull and push refuses (it would
/// send half an undo) and says to run `undo OP` again, which finishes it and removes it.
pub const UNDO_PENDING: &[u8] = b"undo-pending";

/// The workspace's mode, connected or disconnected: a [`crate::mode::ModeState`] as JSON.
pub const MODE: &[u8] = b"mode";

/// The remote root's permission bits, owner and group as the last remote scan saw them: a
/// JSON array `[mode, uid, gid]`.
pub const REMOTE_ROOT: &[u8] = b"remote-root";

/// The last look at the share: when the walk started and the entries it could not read (a
/// `LastSeen` of `sync/trees.rs` as JSON: `{"time_ns": N, "unreadable": [{"path_hex",
/// "kind", "reason", "remedy"}]}`). With the remote snapshot, what `status` answers from.
pub const REMOTE_SEEN: &[u8] = b"remote-seen";

/// The blake3 digest (64 ASCII hex digits) of the last set of local changes journaled as an
/// `offline` operation, so that one set is journaled once.
pub const OFFLINE_SEEN: &[u8] = b"offline-seen";

/// The cache's level against the budget, as the last pull or sync left it: a
/// [`crate::events::CacheLevel`] as ASCII (`ok`, `cache-nearly-full`, `cache-full`).
pub const CACHE_LEVEL: &[u8] = b"cache-level";

/// The local tree the last command found on a workspace a view is mounted on, as of the
/// view's hand-over (see `fsmonitor.rs`): session and hand-over numbers (u64 LE each), the
/// ignore rules' digest (32 bytes), the tree's id (32 bytes), then two lists (count u64 LE,
/// then per path its length u64 LE and bytes): the paths to look at again, and the ignored
/// paths.
pub const FSMONITOR: &[u8] = b"fsmonitor";

/// The last `status`'s answer, kept while nothing it depends on changes (see
/// `status/memo.rs`): a `Memo` as JSON (`{"format", "seq", "context", "walk", ...}`).
pub const STATUS_MEMO: &[u8] = b"status-memo";

/// Prefix of the remote-only paths: `remote-only/` + relative path → empty, or `by-hand`
/// when the file was dropped by hand.
pub const REMOTE_ONLY_PREFIX: &[u8] = b"remote-only/";

/// Prefix of the racy remote paths (files whose mtime was too close to their scan for their
/// size and mtime to stand for their content; see `racy.rs`): `racy/` + relative path →
/// empty.
pub const RACY_PREFIX: &[u8] = b"racy/";

/// Prefix of the patches in place not known to be done (see `sync/patch.rs`):
/// `pending-patch/` + relative path → a `PendingPatch` as JSON (`{"path_hex", "base",
/// "target", "mode", "mtime_ns"}`), written synced before the patch's first write.
pub const PENDING_PATCH_PREFIX: &[u8] = b"pending-patch/";

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed key must never start with a set's prefix, or the set would list it.
    #[test]
    fn fixed_keys_are_outside_the_sets() {
        for key in [
            IDENTITY,
            WORKSPACE_ID,
            MODE,
            REMOTE_ROOT,
            REMOTE_SEEN,
            OFFLINE_SEEN,
            CACHE_LEVEL,
            FSMONITOR,
            STATUS_MEMO,
        ] {
            for prefix in [REMOTE_ONLY_PREFIX, RACY_PREFIX, PENDING_PATCH_PREFIX] {
                assert!(!key.starts_with(prefix));
            }
        }
    }
}
