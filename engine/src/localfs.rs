//! Writing into the workspace: one way, used by sync, get and resolve.
//!
//! A file is written under a temporary name in its own directory (so the rename that puts it
//! in place is atomic), with its mode and mtime set, then renamed over its real name. A
//! caller that must never replace what appeared at the path meanwhile asks for no-replace.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, SyncError};
use crate::workspace::Workspace;

impl Workspace {
    /// The temporary name beside `path` that a `tag` operation uses (ignored by every scan,
    /// and this workspace's own).
    pub(crate) fn temp_beside(&self, path: &[u8], tag: &str) -> PathBuf {
        let (parent, name) = crate::paths::split_parent(path);
        let tmp_name = format!(
            "{}{}.{tag}.{}",
            crate::ignore_rules::TMP_PREFIX,
            self.workspace_id,
            crate::paths::hex(&blake3::hash(name).as_bytes()[..4])
        );
        crate::paths::under(&self.root, &crate::paths::join(parent, tmp_name.as_bytes()))
    }

    /// Tidies what a killed command of this workspace left under temporary names (`found`,
    /// from a scan; call only while holding the lock, so that no running command owns
    /// them). A file being written is removed: its content is in the store or on the remote.
    /// A file moved aside to be dropped was never removed, so it goes back to its name (found
    /// among the names `base` knows in that directory); if the name was taken again meanwhile,
    /// it stays where it is, and a warning (pushed to `warnings`) says so. Returns whether a
    /// file went back.
    ///
    /// # Errors
    /// I/O errors other than the file having gone.
    pub(crate) fn tidy_leftovers(
        &self,
        found: &[Vec<u8>],
        base: &crate::scan::Flat,
        warnings: &mut Vec<String>,
    ) -> Result<bool> {
        let mine = format!("{}{}.", crate::ignore_rules::TMP_PREFIX, self.workspace_id);
        let mut restored = false;
        for rel in found {
            let (parent, name) = crate::paths::split_parent(rel);
            let Some(rest) = name.strip_prefix(mine.as_bytes()) else {
                continue; // another workspace's, or not a cachesync temporary at all
            };
            let abs = crate::paths::under(&self.root, rel);
            if !rest.starts_with(b"drop.") {
                match fs::remove_file(&abs) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(SyncError::io(&abs, e))
                    }
                    _ => continue,
                }
            }
            let owner = base.keys().find(|p| {
                crate::paths::split_parent(p).0 == parent
                    && self
                        .temp_beside(p, "drop")
                        .file_name()
                        .map(OsStrExt::as_bytes)
                        == Some(name)
            });
            let back = owner.map(|p| crate::paths::under(&self.root, p));
            let moved = back.as_ref().is_some_and(|to| {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &abs,
                    rustix::fs::CWD,
                    to,
                    rustix::fs::RenameFlags::NOREPLACE,
                )
                .is_ok()
            });
            if moved {
                restored = true;
            } else {
                warnings.push(format!(
                    "{} was being dropped when a run was killed; its name is taken again, so it is kept at {}",
                    back.map_or_else(|| display(rel), |b| b.display().to_string()),
                    abs.display()
                ));
            }
        }
        Ok(restored)
    }
}

fn display(p: &[u8]) -> String {
    crate::paths::display(p)
}

/// Writes a new file at `tmp` with `fill`, then sets `mode` and (when given) the mtime, and
/// fsyncs it when asked. On failure `tmp` is removed.
///
/// # Errors
/// [`SyncError::Io`] at `tmp`, or `fill`'s error.
pub fn write_temp(
    tmp: &Path,
    fill: impl FnOnce(&mut File) -> Result<()>,
    mode: u32,
    mtime_ns: Option<i64>,
    fsync: bool,
) -> Result<()> {
    let io = |e: std::io::Error| SyncError::io(tmp, e);
    if let Some(dir) = tmp.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = fs::remove_file(tmp);
    let written = (|| -> Result<()> {
        let mut f = File::create(tmp).map_err(io)?;
        fill(&mut f)?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io)?;
        if let Some(ns) = mtime_ns {
            f.set_times(fs::FileTimes::new().set_modified(crate::fs_remote::system_time(ns)))
                .map_err(io)?;
        }
        if fsync {
            f.sync_all().map_err(io)?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

/// Renames `tmp` over `dest`; with `no_replace`, never over anything that is there
/// (`AlreadyExists`). On failure `tmp` is removed.
///
/// # Errors
/// [`SyncError::Io`] at `dest`.
pub fn rename_into_place(tmp: &Path, dest: &Path, no_replace: bool) -> Result<()> {
    let renamed = if no_replace {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            tmp,
            rustix::fs::CWD,
            dest,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(std::io::Error::from)
    } else {
        fs::rename(tmp, dest)
    };
    renamed.map_err(|e| {
        let _ = fs::remove_file(tmp);
        SyncError::io(dest, e)
    })
}
