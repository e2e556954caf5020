//! The variants of a path: base (the last agreed state), client (the workspace's), server
//! (the remote's, as last seen) and, once a conflict is settled, resolved. Read from the
//! path's conflict record when it has one, else from the snapshots and the workspace; it
//! works offline.

use std::os::unix::fs::PermissionsExt;

use cachesync_objects::{keys, Entry, EntryKind};

use crate::conflict::{self, ConflictRecord, Variant};
use crate::error::{Result, SyncError};
use crate::paths::under;
use crate::workspace::Workspace;

/// Which variant of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The remote's, as last seen.
    Server,
    /// The workspace's.
    Client,
    /// The last state both sides agreed on.
    Base,
    /// The resolution of a settled conflict.
    Resolved,
}

impl Which {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Which::Server => "server",
            Which::Client => "client",
            Which::Base => "base",
            Which::Resolved => "resolved",
        }
    }
}

/// The content of one variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantContent {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// A file's bytes, or a symlink's target.
    pub bytes: Vec<u8>,
}

pub(crate) fn variant_entry(
    name: &[u8],
    v: &Variant,
    file: Option<cachesync_objects::FileId>,
) -> Entry {
    let kind = v.kind;
    let mut e = Entry::new(name, kind);
    e.mode = v.mode;
    e.size = v.size;
    e.file = file;
    e
}

pub(crate) fn open_record(ws: &Workspace, path: &[u8]) -> Result<Option<ConflictRecord>> {
    Ok(conflict::all(&ws.store)?
        .into_iter()
        .find(|r| r.path_bytes() == path))
}

pub(crate) fn content_of(ws: &Workspace, v: &Variant) -> Result<VariantContent> {
    let e = variant_entry(b"x", v, v.file_id());
    let bytes = match (e.kind, e.file) {
        (EntryKind::File, Some(id)) => ws.store.read_file_bytes(id)?,
        (EntryKind::Symlink, _) => v.target.clone().unwrap_or_default().into_bytes(),
        _ => Vec::new(),
    };
    Ok(VariantContent {
        kind: e.kind,
        mode: v.mode,
        bytes,
    })
}

/// One variant of `path`: from its conflict record when it has one, else the base
/// snapshot (`base`), the last remote snapshot (`server`) or the workspace (`client`).
/// `None` when the path is absent in that variant.
///
/// # Errors
/// Store errors ([`cachesync_objects::ObjectError::MissingFile`] and friends when the
/// content is not in the cache: EDISCONDATA), local I/O errors.
pub fn read(ws: &Workspace, path: &[u8], which: Which) -> Result<Option<VariantContent>> {
    if let Some(r) = open_record(ws, path)? {
        let v = match which {
            Which::Server => &r.server,
            Which::Client => &r.client,
            Which::Base => &r.base,
            Which::Resolved => &r.resolved,
        };
        // A record keeps its variants after it is resolved (until gc drops it).
        return v.as_ref().map(|v| content_of(ws, v)).transpose();
    }
    let from_ref = |name: &str| -> Result<Option<VariantContent>> {
        let flat = ws.store.read_ref_flat(name)?;
        flat.get(path)
            .map(|e| {
                let v = Variant::of(Some(e)).expect("an entry has a variant");
                let mut c = content_of(ws, &v)?;
                if e.kind == EntryKind::Symlink {
                    c.bytes = e.target.clone();
                }
                Ok(c)
            })
            .transpose()
    };
    match which {
        Which::Base => from_ref(keys::REF_BASE),
        Which::Server => from_ref(keys::REF_REMOTE),
        Which::Resolved => Ok(None),
        Which::Client => workspace_content(ws, path),
    }
}

/// What the workspace holds at `path` now.
pub(crate) fn workspace_content(ws: &Workspace, path: &[u8]) -> Result<Option<VariantContent>> {
    let abs = under(&ws.root, path);
    let md = match std::fs::symlink_metadata(&abs) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SyncError::io(&abs, e)),
    };
    let mode = md.permissions().mode() & 0o7777;
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(&abs).map_err(|e| SyncError::io(&abs, e))?;
        return Ok(Some(VariantContent {
            kind: EntryKind::Symlink,
            mode: 0o777,
            bytes: crate::paths::bytes(&t).to_vec(),
        }));
    }
    if md.is_dir() {
        return Ok(Some(VariantContent {
            kind: EntryKind::Dir,
            mode,
            bytes: Vec::new(),
        }));
    }
    let bytes = std::fs::read(&abs).map_err(|e| SyncError::io(&abs, e))?;
    Ok(Some(VariantContent {
        kind: EntryKind::File,
        mode,
        bytes,
    }))
}

/// A unified diff between two variants of `path`.
///
/// # Errors
/// As [`read`].
pub fn diff(ws: &Workspace, path: &[u8], a: Which, b: Which) -> Result<String> {
    let va = read(ws, path, a)?;
    let vb = read(ws, path, b)?;
    let entry = |v: &VariantContent| {
        let mut e = Entry::new(path, v.kind);
        e.mode = v.mode;
        e
    };
    let (ea, eb) = (va.as_ref().map(entry), vb.as_ref().map(entry));
    Ok(crate::diff::unified(
        path,
        ea.as_ref()
            .zip(va.as_ref())
            .map(|(e, v)| (e, v.bytes.as_slice())),
        eb.as_ref()
            .zip(vb.as_ref())
            .map(|(e, v)| (e, v.bytes.as_slice())),
    ))
}
