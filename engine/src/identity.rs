//! Is the directory at the remote path still the remote this workspace was cloned from?
//!
//! Recorded at clone, checked before every sync: the mount's source and file-system type (what
//! survives a remount) and, where the share is writable, a marker file at the remote root with
//! a random id. An unmounted share (an empty local directory at the path) or another file
//! system is refused; it is never taken as "the server deleted everything".

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};
use crate::ignore_rules::MARKER;
use crate::mount::{mount_of, parse_mountinfo, MountInfo};
use crate::timed::TimedRemote;

/// What identifies a remote.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteIdentity {
    /// The mount holding the remote directory when it was cloned.
    pub mount: Option<MountInfo>,
    /// The id in the marker file, when one could be written.
    pub marker: Option<String>,
    /// The remote folds case (SMB, some NFS exports): `README` and `Readme` are one file
    /// there. Probed at clone by looking the marker up with its name upper-cased.
    #[serde(default)]
    pub case_insensitive: bool,
}

/// A random id (128 bits from the kernel's generator), as hex.
pub fn random_id() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    crate::paths::hex(&buf)
}

fn marker_text(id: &str) -> String {
    format!("cachesync remote marker v1\nid {id}\n# Do not delete: cachesync uses it to recognise this share.\n")
}

fn parse_marker(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("id "))
        .map(|s| s.trim().to_string())
}

/// The mount holding `path`, read in a bounded call (canonicalizing a hung mount could hang).
///
/// # Errors
/// [`SyncError::Disconnected`] when the path does not answer in time.
pub fn current_mount(remote: &TimedRemote, path: &Path) -> Result<Option<MountInfo>> {
    let _ = path;
    let canonical = remote.canonical_root()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    Ok(mount_of(&canonical, &parse_mountinfo(&text)))
}

fn read_marker(remote: &TimedRemote) -> Result<Option<String>> {
    if remote.stat(MARKER.as_bytes())?.is_none() {
        return Ok(None);
    }
    let mut r = remote.open(MARKER.as_bytes())?;
    let mut buf = Vec::new();
    if let Err(e) = r.read_to_end(&mut buf) {
        return Err(r.error.take().unwrap_or(SyncError::Disconnected {
            reason: format!("reading the remote marker: {e}"),
        }));
    }
    Ok(parse_marker(&buf))
}

/// Records the identity of the remote at clone: reads its mount, and reuses or writes the
/// marker (atomically). A read-only share gets no marker; its mount is then the identity.
///
/// # Errors
/// [`SyncError::Disconnected`] when the remote does not answer.
pub fn record(remote: &TimedRemote, path: &Path) -> Result<RemoteIdentity> {
    let mount = current_mount(remote, path)?;
    let marker = match read_marker(remote)? {
        Some(id) => Some(id),
        None => {
            let id = random_id();
            let tmp = format!("{}{}", crate::ignore_rules::TMP_PREFIX, id);
            let written = (|| -> Result<()> {
                let mut w = remote.create(tmp.as_bytes())?;
                w.write_all(marker_text(&id).into_bytes())?;
                w.finish(0o644, crate::now_ns())?;
                remote.rename(tmp.as_bytes(), MARKER.as_bytes())
            })();
            match written {
                Ok(()) => Some(id),
                Err(e @ SyncError::Disconnected { .. }) => return Err(e),
                Err(_) => {
                    let _ = remote.remove_file(tmp.as_bytes());
                    None
                }
            }
        }
    };
    let case_insensitive = marker.is_some()
        && remote
            .stat(MARKER.to_ascii_uppercase().as_bytes())?
            .is_some();
    Ok(RemoteIdentity {
        mount,
        marker,
        case_insensitive,
    })
}

/// Checks that the remote is still the one recorded.
///
/// # Errors
/// [`SyncError::Disconnected`] when it does not answer; [`SyncError::RemoteIdentity`] when it
/// is another file system, looks unmounted, or lost its marker.
pub fn check(remote: &TimedRemote, path: &Path, recorded: &RemoteIdentity) -> Result<()> {
    let root = remote.stat(b"")?;
    if root.is_none() {
        return Err(SyncError::RemoteIdentity {
            reason: format!("the remote directory {} does not exist", path.display()),
        });
    }
    let mount = current_mount(remote, path)?;
    if let (Some(was), Some(now)) = (&recorded.mount, &mount) {
        if was.source != now.source || was.fstype != now.fstype {
            let empty = remote.list(b"")?.is_empty();
            return Err(SyncError::RemoteIdentity {
                reason: format!(
                    "{} is on {} ({}), but this workspace was cloned from {} ({}){}",
                    path.display(),
                    now.source,
                    now.fstype,
                    was.source,
                    was.fstype,
                    if empty {
                        "; the directory is empty: is the share unmounted?"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    if let Some(id) = &recorded.marker {
        match read_marker(remote)? {
            Some(found) if &found == id => {}
            Some(found) => {
                return Err(SyncError::RemoteIdentity {
                    reason: format!(
                        "{} holds marker {found}, but this workspace was cloned from the remote with marker {id}",
                        path.display()
                    ),
                })
            }
            None => {
                let empty = remote.list(b"")?.is_empty();
                return Err(SyncError::RemoteIdentity {
                    reason: format!(
                        "the marker file {MARKER} is missing from {}{}",
                        path.display(),
                        if empty {
                            " and the directory is empty: the share looks unmounted"
                        } else {
                            ": it is not the directory this workspace was cloned from"
                        }
                    ),
                });
            }
        }
    }
    Ok(())
}
