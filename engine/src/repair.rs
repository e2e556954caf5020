//! `fsck --repair`: content the store holds damaged (or lost) is written again from a copy
//! found elsewhere, the workspace's file or the remote's, once that copy hashes to the id the
//! store names. Nothing unverified ever enters the store, so a wrong copy (an edited file,
//! another share at the remote path) is simply not used.

use std::collections::BTreeMap;

use cachesync_objects::{keys, FileId};

use crate::error::Result;
use crate::paths::{display, under};
use crate::presence::is_known;
use crate::workspace::Workspace;

/// What a repair did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files (their paths, displayable) written again, and where the copy came from
    /// (`workspace` or `remote`).
    pub repaired: Vec<(String, &'static str)>,
    /// Damaged files no intact copy was found for, and why.
    pub unrepaired: Vec<(String, String)>,
    /// Why the remote was not used, when it was not reachable.
    pub remote_error: Option<String>,
}

/// Finds every file the store should hold whole (the base's and the remote snapshot's
/// content that is cached, conflict variants, local changes the index names) and writes
/// each damaged or missing one again from an intact copy in the workspace or on the
/// remote. Trees and snapshots are not repaired here (`fsck` still names them).
///
/// # Errors
/// Store errors other than the damage being repaired.
pub fn run(ws: &Workspace) -> Result<Outcome> {
    let mut report = Outcome::default();
    // Each file id, with the paths that name it (any of them may hold a copy).
    let mut wanted: BTreeMap<FileId, Vec<Vec<u8>>> = BTreeMap::new();
    let collectable = crate::cull::collectable(ws)?;
    for r in [keys::REF_BASE, keys::REF_REMOTE] {
        for (p, e) in ws.store.read_ref_flat(r)? {
            if let Some(f) = e.file.filter(|f| is_known(*f) && !collectable.contains(f)) {
                wanted.entry(f).or_default().push(p);
            }
        }
    }
    for r in crate::conflict::all(&ws.store)? {
        for f in r.files() {
            wanted.entry(f).or_default().push(r.path_bytes());
        }
    }
    for (p, e) in crate::index::load(&ws.store)? {
        if is_known(e.file) {
            wanted.entry(e.file).or_default().push(p);
        }
    }
    let damaged: Vec<(FileId, Vec<Vec<u8>>)> = wanted
        .into_iter()
        .filter(|(f, _)| ws.store.verify_file(*f).is_err())
        .collect();
    if damaged.is_empty() {
        return Ok(report);
    }
    let remote = match ws.remote() {
        Ok(r) => Some(r),
        Err(e) => {
            report.remote_error = Some(e.to_string());
            None
        }
    };
    for (id, mut paths) in damaged {
        paths.sort();
        paths.dedup();
        let mut done = None;
        for p in &paths {
            let Some(f) = open_regular(&under(&ws.root, p)) else {
                continue;
            };
            match ws.store.repair_file(id, std::io::BufReader::new(f)) {
                Ok(true) => {
                    done = Some((display(p), "workspace"));
                    break;
                }
                // Not this copy (another file now, or unreadable): try the next.
                Ok(false) | Err(cachesync_objects::ObjectError::Read(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if done.is_none() {
            if let Some(remote) = &remote {
                for p in &paths {
                    let Ok(reader) = remote.open(p) else { continue };
                    match ws.store.repair_file(id, reader) {
                        Ok(true) => {
                            done = Some((display(p), "remote"));
                            break;
                        }
                        Ok(false) => {}
                        Err(cachesync_objects::ObjectError::Read(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        match done {
            Some(d) => report.repaired.push(d),
            None => report.unrepaired.push((
                paths.first().map(|p| display(p)).unwrap_or_default(),
                if remote.is_some() {
                    "no intact copy in the workspace or on the remote".into()
                } else {
                    "no intact copy in the workspace, and the remote is not reachable".into()
                },
            )),
        }
    }
    Ok(report)
}

/// `path` opened for reading if it is a regular file, without following a symlink or
/// blocking on a fifo.
fn open_regular(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}
