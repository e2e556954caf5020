//! `ls`: the entries of a directory as the cache knows them (base and workspace), with each
//! one's state (synced, modified, provisional, deleted, remote-only); it works offline.

use crate::error::Result;
use crate::paths::{display, hex, split_parent};
use crate::reconcile::same;
use crate::workspace::Workspace;
use cachesync_objects::EntryKind;
use serde::Serialize;
use std::collections::BTreeSet;

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The directory (or file) to list, relative to the root; empty: the root.
    pub dir: Vec<u8>,
}

/// What `ls` lists: the entries, in path order.
pub type Outcome = Vec<LsEntry>;

/// One entry of `ls`.
#[derive(Debug, Serialize)]
pub struct LsEntry {
    /// The path, displayable.
    pub path: String,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `file`, `dir`, `symlink`, ...
    pub kind: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// Owner and group.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `synced` (as in the base), `modified`, `provisional` (created here, never pushed),
    /// `deleted` (deleted here, not yet pushed), `remote-only` (metadata here, content not).
    pub state: &'static str,
}

/// The entries directly inside [`Options::dir`] (the root when empty), from the cache: what the base
/// snapshot records and what the workspace holds.
///
/// # Errors
/// Local scan and store errors.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Outcome> {
    let dir = opts.dir.as_slice();
    let (base, scan) = crate::diff::local_and_base(ws)?;
    let local = &scan.tree;
    let keys: BTreeSet<&Vec<u8>> = base
        .keys()
        .chain(local.keys())
        .filter(|k| split_parent(k).0 == dir || (k.as_slice() == dir && !dir.is_empty()))
        .collect();
    let mut out = Vec::new();
    for k in keys {
        let (b, l) = (base.get(k), local.get(k));
        // `ls DIR` lists what is in it, `ls FILE` the file.
        if k.as_slice() == dir && b.or(l).is_some_and(|e| e.kind == EntryKind::Dir) {
            continue;
        }
        let (e, state) = match (b, l) {
            (Some(_), Some(l)) if scan.remote_only.contains(k) => (l, "remote-only"),
            (Some(b), Some(l)) if same(Some(b), Some(l)) => (l, "synced"),
            (Some(_), Some(l)) => (l, "modified"),
            (None, Some(l)) => (l, "provisional"),
            (Some(b), None) => (b, "deleted"),
            (None, None) => continue,
        };
        out.push(LsEntry {
            path: display(k),
            path_hex: std::str::from_utf8(k).is_err().then(|| hex(k)),
            kind: e.kind.as_str(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            mtime_ns: e.mtime_ns,
            target: (e.kind == EntryKind::Symlink).then(|| display(&e.target)),
            state,
        });
    }
    Ok(out)
}
