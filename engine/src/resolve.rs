//! Resolving conflicts by hand, and reading any variant of a path.
//!
//! A conflict keeps four variants: base (the last agreed state), client (the workspace's),
//! server (the remote's, as last seen) and, once settled, resolved. `resolve` writes the
//! chosen content into the workspace and moves the path's base to the server's variant: the
//! next sync then sends the resolution to the server with the usual precondition (the server
//! must still hold that variant), or finds both sides already equal. It works offline.

use cachesync_objects::{keys, Batch, Entry, EntryKind, Snapshot, Store};

use crate::conflict::{self, ConflictRecord, ConflictState, Variant};
use crate::error::{Result, SyncError};
use crate::merge::{merge3, Merged};
use crate::paths::{display, under};
use crate::undo::local::LocalStep;
use crate::variants::{content_of, open_record, workspace_content, VariantContent, Which};
use crate::workspace::Workspace;

/// How to settle a conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Take one of the recorded variants (`Resolved` is not allowed here).
    Take(Which),
    /// Take the three-way merge of base, client and server (only when the edits do not
    /// overlap).
    Merged,
    /// Take this content (`--with FILE`).
    With(Vec<u8>),
    /// Write the merge with conflict markers into the workspace file, to edit by hand.
    Edit,
    /// Take the workspace file as it is now (after `Edit`).
    Mark,
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The conflicted path, relative to the root.
    pub path: Vec<u8>,
    /// How to settle it.
    pub how: Resolution,
}

/// What `resolve` did.
#[derive(Debug)]
pub struct Outcome {
    /// One line for people.
    pub message: String,
    /// True when a sync must still send the result to the server.
    pub needs_sync: bool,
}

/// The mode a resolution written as a new file gets: the client's, else the server's.
fn client_mode(record: &ConflictRecord) -> u32 {
    record
        .client
        .as_ref()
        .or(record.server.as_ref())
        .map_or(0o644, |v| v.mode)
}

/// True when a line of `bytes` is a conflict marker `--edit` writes.
fn has_conflict_markers(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == b'\n').any(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        l.starts_with(b"<<<<<<< ") || l.starts_with(b">>>>>>> ") || l == b"======="
    })
}

/// Settles the open conflict at `path` (see the module doc).
///
/// # Errors
/// [`SyncError::Usage`] when there is no open conflict there, the server's variant moved
/// on since it was recorded, a merge is asked for edits that overlap, or `--mark` finds
/// conflict markers still in the file; store and I/O errors.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Outcome> {
    let (path, how) = (opts.path.as_slice(), opts.how.clone());
    let shown = display(path);
    let record = open_conflict(ws, path, &shown)?;
    if let Some(lf) = record.lost_found.clone() {
        return close_lost_found(ws, record, &how, &lf);
    }
    let server_entry = server_entry_as_recorded(ws, path, &record, &shown)?;
    let (result, label): (Option<VariantContent>, String) = match how {
        Resolution::Take(which) => taken_variant(ws, path, &record, which)?,
        Resolution::Merged => (
            Some(clean_merge(ws, &record, &shown)?),
            "took the merge".into(),
        ),
        Resolution::With(bytes) => (
            Some(VariantContent {
                kind: EntryKind::File,
                mode: client_mode(&record),
                bytes,
            }),
            "took the given file".into(),
        ),
        Resolution::Edit => return write_with_markers(ws, path, record, &shown),
        Resolution::Mark => (
            edited_content(ws, path, &shown)?,
            "took your edited file".into(),
        ),
    };
    if let Some(v) = &result {
        if !matches!(v.kind, EntryKind::File | EntryKind::Symlink) {
            return Err(SyncError::Usage(format!(
                "{shown}: resolve settles files and symlinks; a {} must be settled by hand",
                v.kind.as_str()
            )));
        }
    }
    // A directory made here since, with something in it, is the user's to move.
    let abs = under(&ws.root, path);
    let is_dir = std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir());
    if is_dir && std::fs::read_dir(&abs).is_ok_and(|mut d| d.next().is_some()) {
        return Err(SyncError::Usage(format!(
            "{shown}: a directory with something in it is here now; move what is in it \
             elsewhere, then settle the path"
        )));
    }
    // What the workspace held is kept (in the store, named by the journal) for undo.
    let here_before = here_now(ws, path)?;
    // The workspace gets the resolution.
    crate::failpoint::hit("resolve-before-write");
    put_resolution_in_workspace(ws, path, result.as_ref())?;
    settle(
        ws,
        path,
        record,
        server_entry.as_ref(),
        (here_before, result.as_ref()),
        label,
    )
}

/// The open conflict record of `path`.
///
/// # Errors
/// [`SyncError::Usage`] when there is none (or it is settled already).
fn open_conflict(ws: &Workspace, path: &[u8], shown: &str) -> Result<ConflictRecord> {
    open_record(ws, path)?
        .filter(|r| r.state == ConflictState::Open)
        .ok_or_else(|| {
            SyncError::Usage(format!(
                "{shown} has no open conflict (`cachesync conflicts` lists them)"
            ))
        })
}

/// The server's entry for `path` in the last remote snapshot, which must be the variant
/// the conflict recorded: a resolution made against an older one would let the next
/// sync overwrite a newer server edit.
///
/// # Errors
/// [`SyncError::Usage`] when the server's version changed since; store errors.
fn server_entry_as_recorded(
    ws: &Workspace,
    path: &[u8],
    record: &ConflictRecord,
    shown: &str,
) -> Result<Option<Entry>> {
    let remote_flat = ws.store.read_ref_flat(keys::REF_REMOTE)?;
    let server_entry = remote_flat.get(path).cloned();
    if Variant::of(server_entry.as_ref()) != record.server {
        return Err(SyncError::Usage(format!(
            "the server's version of {shown} changed since the conflict was recorded; run `cachesync sync` to see the conflict as it is now"
        )));
    }
    Ok(server_entry)
}

/// The content of a recorded variant (`None`: absent in that variant).
fn recorded_content(ws: &Workspace, v: Option<&Variant>) -> Result<Option<VariantContent>> {
    v.map(|v| content_of(ws, v)).transpose()
}

/// The bytes of the base, client and server variants, for a three-way merge (empty for
/// an absent one).
fn three_way_bytes(ws: &Workspace, record: &ConflictRecord) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let get = |v: &Option<Variant>| -> Result<Vec<u8>> {
        Ok(recorded_content(ws, v.as_ref())?
            .map(|c| c.bytes)
            .unwrap_or_default())
    };
    Ok((
        get(&record.base)?,
        get(&record.client)?,
        get(&record.server)?,
    ))
}

/// `--take WHICH`: the server's or base variant as recorded, or the workspace's file as
/// it is now; with its label for the record and the message.
///
/// # Errors
/// [`SyncError::Usage`] for `--take resolved`; store and I/O errors.
fn taken_variant(
    ws: &Workspace,
    path: &[u8],
    record: &ConflictRecord,
    which: Which,
) -> Result<(Option<VariantContent>, String)> {
    Ok(match which {
        Which::Server => (
            recorded_content(ws, record.server.as_ref())?,
            "took the server's version".into(),
        ),
        Which::Client => (workspace_content(ws, path)?, "kept your version".into()),
        Which::Base => (
            recorded_content(ws, record.base.as_ref())?,
            "took the base version".into(),
        ),
        Which::Resolved => {
            return Err(SyncError::Usage(
                "--take resolved is not a choice: take server, client, base or merged".into(),
            ))
        }
    })
}

/// `--merged`: the three-way merge of the recorded variants, when the edits do not
/// overlap.
///
/// # Errors
/// [`SyncError::Usage`] when they overlap or are not text; store errors.
fn clean_merge(ws: &Workspace, record: &ConflictRecord, shown: &str) -> Result<VariantContent> {
    let (b, c, s) = three_way_bytes(ws, record)?;
    match merge3(&b, &c, &s) {
        Merged::Clean(m) => Ok(VariantContent {
            kind: EntryKind::File,
            mode: client_mode(record),
            bytes: m,
        }),
        Merged::Conflicted(_) => Err(SyncError::Usage(format!(
            "the edits to {shown} overlap, so there is no clean merge; use `cachesync resolve {shown} --edit`"
        ))),
        Merged::NotText => Err(SyncError::Usage(format!(
            "{shown} is not text, so it cannot be merged; take a version or use --with FILE"
        ))),
    }
}

/// `--edit`: writes the merge with conflict markers into the workspace file and marks the
/// record as being edited; the conflict stays open until `--mark`.
///
/// # Errors
/// [`SyncError::Usage`] when the variants are not text; store and I/O errors.
fn write_with_markers(
    ws: &Workspace,
    path: &[u8],
    record: ConflictRecord,
    shown: &str,
) -> Result<Outcome> {
    let (b, c, s) = three_way_bytes(ws, &record)?;
    let marked = match merge3(&b, &c, &s) {
        Merged::Clean(m) | Merged::Conflicted(m) => m,
        Merged::NotText => {
            return Err(SyncError::Usage(format!(
                "{shown} is not text, so it cannot be edited with conflict markers"
            )))
        }
    };
    write_local(
        ws,
        path,
        &VariantContent {
            kind: EntryKind::File,
            mode: client_mode(&record),
            bytes: marked,
        },
    )?;
    let mut r = record;
    r.resolution = Some("editing".into());
    let mut batch = Batch::new();
    conflict::put(&mut batch, &r);
    ws.store.commit(batch)?;
    Ok(Outcome {
        message: format!(
            "wrote {shown} with conflict markers (<<<<<<< client (yours), ======= , >>>>>>> server); edit it, then run `cachesync resolve {shown} --mark`"
        ),
        needs_sync: false,
    })
}

/// `--mark`: the workspace file as it is now, once no conflict marker is left in it.
///
/// # Errors
/// [`SyncError::Usage`] when a marker line is still there; I/O errors.
fn edited_content(ws: &Workspace, path: &[u8], shown: &str) -> Result<Option<VariantContent>> {
    let now = workspace_content(ws, path)?;
    if let Some(v) = &now {
        if v.kind == EntryKind::File && has_conflict_markers(&v.bytes) {
            return Err(SyncError::Usage(format!(
                "{shown} still holds conflict markers; edit them out, then mark it again"
            )));
        }
    }
    Ok(now)
}

/// Writes the resolution into the workspace, or removes what is there when the
/// resolution is "absent".
fn put_resolution_in_workspace(
    ws: &Workspace,
    path: &[u8],
    result: Option<&VariantContent>,
) -> Result<()> {
    match result {
        Some(v) => write_local(ws, path, v),
        None => {
            let abs = under(&ws.root, path);
            match std::fs::symlink_metadata(&abs) {
                Ok(md) if md.is_dir() => std::fs::remove_dir(&abs),
                Ok(_) => std::fs::remove_file(&abs),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
            .map_err(|e| SyncError::io(&abs, e))
        }
    }
}

/// Records the resolution in one commit: the base moved to the server's variant (what
/// the next sync sends the resolution against), the record settled, the path's index
/// and presence entries dropped (the next scan reads the file afresh), and the op, with
/// what the workspace held before the resolution (`here.0`) and the record as it was,
/// for undo.
fn settle(
    ws: &Workspace,
    path: &[u8],
    record: ConflictRecord,
    server_entry: Option<&Entry>,
    here: (Option<Variant>, Option<&VariantContent>),
    label: String,
) -> Result<Outcome> {
    let shown = display(path);
    let sid = base_with(
        ws,
        path,
        server_entry,
        format!("base after resolving {shown}"),
    )?;
    let resolved_entry = resolved_entry(ws, path, here.1)?;
    let needs_sync = Variant::of(resolved_entry.as_ref()) != record.server
        && !(resolved_entry.is_none() && record.server.is_none());
    let mut r = record.clone();
    r.state = ConflictState::Resolved;
    r.resolved = Variant::of(resolved_entry.as_ref());
    r.resolution = Some(label.clone());
    r.resolved_ns = Some(crate::now_ns());
    let mut op = resolve_op(ws, format!("{shown}: {label}"))?;
    op.base_before = ws.store.get_ref(keys::REF_BASE)?.map(|b| b.to_hex());
    op.base_after = Some(sid.to_hex());
    let step = LocalStep::settled(record, r.clone(), Some((here.0, r.resolved.clone())));
    let mut batch = Batch::new();
    Store::set_ref_in(&mut batch, keys::REF_BASE, sid);
    conflict::put(&mut batch, &r);
    crate::index::remove(&mut batch, path);
    crate::presence::clear(&mut batch, path);
    crate::undo::local::put(&mut batch, &mut op, vec![step]);
    crate::failpoint::hit("resolve-before-commit");
    ws.store.commit(batch)?;
    Ok(Outcome {
        message: if needs_sync {
            format!("resolved {shown}: {label}; `cachesync sync` sends it to the server")
        } else {
            format!("resolved {shown}: {label}; it matches the server")
        },
        needs_sync,
    })
}

/// Stores a base snapshot where `path` is `entry` (absent: `None`), described as
/// `description`, and returns its id; the caller moves the ref in its own commit.
pub(crate) fn base_with(
    ws: &Workspace,
    path: &[u8],
    entry: Option<&Entry>,
    description: String,
) -> Result<cachesync_objects::SnapshotId> {
    let mut base = ws.store.read_ref_flat(keys::REF_BASE)?;
    match entry {
        Some(e) => {
            base.insert(path.to_vec(), e.clone());
        }
        None => {
            base.remove(path);
        }
    }
    let root = ws.store.write_flat(&base)?;
    let snap = Snapshot {
        root,
        parent: ws.store.get_ref(keys::REF_BASE)?,
        time_ns: crate::now_ns(),
        description,
    };
    Ok(ws.store.put_snapshot(&snap)?)
}

/// The tree entry of the resolution (a file's content goes into the store), for the
/// record's `resolved` variant.
fn resolved_entry(
    ws: &Workspace,
    path: &[u8],
    result: Option<&VariantContent>,
) -> Result<Option<Entry>> {
    Ok(match result {
        Some(v) if v.kind == EntryKind::File => {
            let id = ws.store.ingest_bytes(&v.bytes)?;
            let mut e = Entry::new(path, EntryKind::File);
            e.file = Some(id);
            e.size = v.bytes.len() as u64;
            e.mode = v.mode;
            Some(e)
        }
        Some(v) => {
            let mut e = Entry::new(path, EntryKind::Symlink);
            e.target = v.bytes.clone();
            e.size = v.bytes.len() as u64;
            e.mode = 0o777;
            Some(e)
        }
        None => None,
    })
}

/// What the workspace holds at `path` now, as a variant (a file's content put in the
/// store, read as a stream: a conflicted file may be bigger than memory).
fn here_now(ws: &Workspace, path: &[u8]) -> Result<Option<Variant>> {
    let abs = under(&ws.root, path);
    let md = match std::fs::symlink_metadata(&abs) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SyncError::io(&abs, e)),
    };
    let mut e = crate::scan::local_entry(path, &md);
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(&abs).map_err(|err| SyncError::io(&abs, err))?;
        e.target = crate::paths::bytes(&t).to_vec();
    } else if md.is_file() {
        let (found, _) = crate::scan::ingest_local(&ws.store, &abs)?;
        e.file = Some(found.file);
        e.size = found.size;
    }
    Ok(Variant::of(Some(&e)))
}

/// The journal's record of one `resolve`.
fn resolve_op(ws: &Workspace, summary: String) -> Result<crate::journal::OpRecord> {
    crate::journal::OpRecord::instant(&ws.store, crate::journal::OpKind::Resolve, summary)
}

/// A type clash or name clash whose local version went to lost+found: the server's version
/// is already in the workspace, so `--take server` only closes the record (when that
/// version is a file or a symlink) and leaves the copy where it is; anything else is
/// refused, since the copy is the user's to take from.
fn close_lost_found(
    ws: &Workspace,
    record: ConflictRecord,
    how: &Resolution,
    lf: &str,
) -> Result<Outcome> {
    let shown = display(&record.path_bytes());
    let server_kind = record.server.as_ref().map(|v| v.kind.as_str());
    let takes_server = *how == Resolution::Take(Which::Server);
    if !takes_server || !matches!(server_kind, Some("file" | "symlink")) {
        return Err(SyncError::Usage(format!(
            "{shown}: the server's version is already in the workspace and yours is in {lf}; take from it what you need, then remove it{}",
            if takes_server {
                ""
            } else {
                " (or close the record with `--take server`)"
            }
        )));
    }
    let label = format!("took the server's version; yours stays in {lf}");
    let mut r = record.clone();
    r.state = ConflictState::Resolved;
    r.resolved = r.server.clone();
    r.resolution = Some(label.clone());
    r.resolved_ns = Some(crate::now_ns());
    let mut op = resolve_op(ws, format!("{shown}: {label}"))?;
    let mut batch = Batch::new();
    conflict::put(&mut batch, &r);
    let step = LocalStep::settled(record, r, None);
    crate::undo::local::put(&mut batch, &mut op, vec![step]);
    ws.store.commit(batch)?;
    Ok(Outcome {
        message: format!("resolved {shown}: {label}"),
        needs_sync: false,
    })
}

/// Writes a file or symlink into the workspace atomically (temporary name, rename).
fn write_local(ws: &Workspace, path: &[u8], v: &VariantContent) -> Result<()> {
    let abs = under(&ws.root, path);
    let tmp = ws.temp_beside(path, "resolve");
    match v.kind {
        EntryKind::Symlink => {
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&v.bytes),
                &tmp,
            )
            .map_err(|e| SyncError::io(&tmp, e))?
        }
        _ => crate::localfs::write_temp(
            &tmp,
            |f| {
                use std::io::Write;
                f.write_all(&v.bytes).map_err(|e| SyncError::io(&tmp, e))
            },
            v.mode,
            None,
            false,
        )?,
    }
    if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir(&abs).map_err(|e| SyncError::io(&abs, e))?;
    }
    crate::failpoint::hit("resolve-before-rename");
    crate::localfs::rename_into_place(&tmp, &abs, false)
}
