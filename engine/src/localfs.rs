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
    /// and this workspace's own). It holds 16 bytes of the name's hash, so that a leftover
    /// names its file: no two names of a directory share them in practice.
    pub(crate) fn temp_beside(&self, path: &[u8], tag: &str) -> PathBuf {
        let (parent, name) = crate::paths::split_parent(path);
        let tmp_name = format!(
            "{}{}.{tag}.{}",
            crate::ignore_rules::TMP_PREFIX,
            self.workspace_id,
            crate::paths::hex(&blake3::hash(name).as_bytes()[..16])
        );
        crate::paths::under(&self.root, &crate::paths::join(parent, tmp_name.as_bytes()))
    }

    /// Tidies what a killed command of this workspace left under temporary names (`found`,
    /// from a scan; call only while holding the lock, so that no running command owns
    /// them). A file being written is removed: its content is in the store or on the remote.
    /// A file moved aside to be dropped was never removed: it goes back to its name (the
    /// name `base` knows in that directory whose temporary name it is), or, if that name was
    /// taken again meanwhile, into lost+found with a record, listed by `conflicts` and
    /// `check` like any other. A file `restore` or `undo` swapped out or moved aside is
    /// removed when the store holds its content (a version cachesync wrote or agreed on);
    /// one it does not hold is an edit made in that very instant, and goes to lost+found
    /// too. What cannot be tidied is left where it is, with a warning (pushed to
    /// `warnings`). Returns whether a file went back to its name.
    ///
    /// # Errors
    /// Store errors.
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
            let tag = ["drop", "restore", "undo"]
                .into_iter()
                .find(|t| rest.starts_with(format!("{t}.").as_bytes()));
            let swapped = matches!(tag, Some("restore" | "undo"));
            if tag.is_none() || (swapped && self.holds_content_of(&abs)) {
                if let Err(e) = fs::remove_file(&abs) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warnings.push(format!(
                            "{} was left by an interrupted run and could not be removed: {e}",
                            abs.display()
                        ));
                    }
                }
                continue;
            }
            let tag = tag.unwrap_or("drop");
            let owners: Vec<&Vec<u8>> = base
                .keys()
                .filter(|p| {
                    crate::paths::split_parent(p).0 == parent
                        && self.temp_beside(p, tag).file_name().map(OsStrExt::as_bytes)
                            == Some(name)
                })
                .collect();
            if swapped {
                // Named by its path when the base knows it, else by its temporary name.
                let owner = owners.first().map_or(rel, |o| *o);
                self.to_lost_found(&abs, owner, "interrupted-restore", warnings)?;
                continue;
            }
            let [owner] = owners[..] else {
                warnings.push(format!(
                    "{} was being dropped when a run was killed and its name is not known; it is kept there",
                    abs.display()
                ));
                continue;
            };
            if rename_no_replace(&abs, &crate::paths::under(&self.root, owner)).is_ok() {
                restored = true;
                continue;
            }
            // Its name was taken again meanwhile: the copy goes to lost+found, recorded under
            // its lost+found path (the name itself may get a conflict of its own).
            self.to_lost_found(&abs, owner, "interrupted-drop", warnings)?;
        }
        Ok(restored)
    }

    /// Whether `abs` is a regular file whose content the store holds (a symlink, a
    /// directory or an unreadable file is not).
    fn holds_content_of(&self, abs: &Path) -> bool {
        let regular = fs::symlink_metadata(abs).is_ok_and(|m| m.is_file());
        let mut hasher = blake3::Hasher::new();
        regular
            && File::open(abs)
                .and_then(|f| hasher.update_reader(f).map(drop))
                .is_ok()
            && cachesync_objects::FileId::from_slice(hasher.finalize().as_bytes())
                .is_some_and(|id| self.store.has_file(id).unwrap_or(false))
    }

    /// Moves `abs`, the copy of `owner` an interrupted run left, to
    /// `lost+found/<why>/<owner>` with a record listed by `conflicts` and `check`.
    fn to_lost_found(
        &self,
        abs: &Path,
        owner: &[u8],
        why: &str,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        use crate::paths::display;
        let lf = crate::paths::join(
            format!("{}/{why}", crate::ignore_rules::LOST_FOUND).as_bytes(),
            owner,
        );
        let lf_abs = crate::paths::under(&self.root, &lf);
        let mut r = crate::conflict::record(
            &lf,
            crate::conflict::ConflictKind::NameClash,
            None,
            None,
            None,
        );
        r.set_lost_found(&lf);
        r.resolution = Some(format!(
            "a run writing {} was interrupted; the copy it set aside is in {}",
            display(owner),
            display(&lf)
        ));
        let mut batch = cachesync_objects::Batch::new();
        crate::conflict::put(&mut batch, &r);
        self.store.commit(batch)?;
        let moved = lf_abs
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| rename_no_replace(abs, &lf_abs));
        if let Err(e) = moved {
            warnings.push(format!(
                "{} was set aside when a run was killed; it could not go to {}: {e}; it is kept at {}",
                display(owner),
                lf_abs.display(),
                abs.display()
            ));
        }
        Ok(())
    }
}

/// Renames `from` to `to` unless something is at `to`.
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(std::io::Error::from)
}

/// Swaps what is at `a` and at `b`, atomically (both must exist).
pub(crate) fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(std::io::Error::from)
}

/// True for the errors by which a file system says it cannot rename with flags
/// (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`): the caller falls back to a plain rename after
/// its own check.
pub fn flags_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
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
    if let Some(dir) = tmp.parent() {
        fs::create_dir_all(dir).map_err(|e| SyncError::io(tmp, e))?;
    }
    write_temp_in(tmp, fill, mode, mtime_ns, fsync)
}

/// [`write_temp`] in a directory that must exist (none is made).
///
/// # Errors
/// As [`write_temp`].
pub fn write_temp_in(
    tmp: &Path,
    fill: impl FnOnce(&mut File) -> Result<()>,
    mode: u32,
    mtime_ns: Option<i64>,
    fsync: bool,
) -> Result<()> {
    let io = |e: std::io::Error| SyncError::io(tmp, e);
    let written = (|| -> Result<()> {
        let mut f = create_new(tmp).map_err(io)?;
        fill(&mut f)?;
        set_mode_and_mtime(&f, mode, mtime_ns).map_err(io)?;
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

/// Sets an open file's permission bits and, when given, its mtime.
pub(crate) fn set_mode_and_mtime(
    f: &File,
    mode: u32,
    mtime_ns: Option<i64>,
) -> std::io::Result<()> {
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    if let Some(ns) = mtime_ns {
        f.set_times(fs::FileTimes::new().set_modified(crate::fs_remote::system_time(ns)))?;
    }
    Ok(())
}

/// A new, empty file at `path`. Whatever a killed run left there (a file, a symlink) is
/// removed first, and only then: asking the file system to remove a name that is not
/// there costs a directory lookup as dear as the create (a tenth of a first copy's
/// writes went to it).
fn create_new(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()
        }
        r => r,
    }
}

/// The content of the file entry `t` written out of the store under `tmp` (verified as it
/// is read), with `t`'s mode and mtime; with `make_parent`, `tmp`'s directory is made if
/// it is missing (see [`write_temp`] and [`write_temp_in`]).
///
/// # Errors
/// As [`write_temp`]; store errors.
pub(crate) fn write_stored(
    ws: &Workspace,
    tmp: &Path,
    t: &cachesync_objects::Entry,
    make_parent: bool,
) -> Result<()> {
    let id = t.file.expect("file entries have content");
    let fill = |f: &mut File| Ok(ws.store.read_file(id, f).map(drop)?);
    if make_parent {
        write_temp(tmp, fill, t.mode, Some(t.mtime_ns), false)
    } else {
        write_temp_in(tmp, fill, t.mode, Some(t.mtime_ns), false)
    }
}

/// Renames `tmp` over `dest`; with `no_replace`, never over anything that is there
/// (`AlreadyExists`). On failure `tmp` is removed.
///
/// # Errors
/// [`SyncError::Io`] at `dest`.
pub fn rename_into_place(tmp: &Path, dest: &Path, no_replace: bool) -> Result<()> {
    let renamed = if no_replace {
        rename_no_replace(tmp, dest)
    } else {
        fs::rename(tmp, dest)
    };
    renamed.map_err(|e| {
        let _ = fs::remove_file(tmp);
        SyncError::io(dest, e)
    })
}

/// `syncfs` of the file system at `root` on a thread of its own: what is already written
/// there goes to disk while the caller goes on, so that the `syncfs` a run makes before its
/// commit (which it still makes: the files written since, and the renames) finds little
/// left to do.
///
/// Its outcome must be asked for ([`Writeback::finish`]): `syncfs` reports a failed write
/// back to the first caller that looks, and a later `syncfs` (the commit's) would find
/// nothing wrong. Dropped unasked (a run that failed first), the thread is left to end by
/// itself.
pub(crate) struct Writeback(Option<std::thread::JoinHandle<std::io::Result<()>>>);

impl Writeback {
    /// Starts it (nothing, if no thread can be made: the later `syncfs` does it all).
    pub(crate) fn start(root: &Path) -> Writeback {
        let root = root.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || rustix::fs::syncfs(&File::open(&root)?).map_err(Into::into));
        Writeback(thread.ok())
    }

    /// Waits for it: whether what it wrote back reached the disk.
    ///
    /// # Errors
    /// The `syncfs`'s.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        match self.0.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the writeback thread panicked"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(body: &'static [u8]) -> impl FnOnce(&mut File) -> Result<()> {
        move |f| {
            use std::io::Write;
            f.write_all(body)
                .map_err(|e| SyncError::io(Path::new("x"), e))
        }
    }

    #[test]
    fn a_temporary_replaces_what_a_killed_run_left_and_never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tmp = dir.path().join("tmp");
        // Nothing there: made.
        write_temp_in(&tmp, fill(b"one"), 0o640, None, false).expect("write");
        assert_eq!(fs::read(&tmp).expect("read"), b"one");
        assert_eq!(
            fs::metadata(&tmp).expect("stat").permissions().mode() & 0o777,
            0o640
        );
        // A longer file left there (and read-only): replaced, not written into.
        fs::write(&tmp, b"a longer leftover").expect("write");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400)).expect("chmod");
        write_temp_in(&tmp, fill(b"two"), 0o644, None, false).expect("write");
        assert_eq!(fs::read(&tmp).expect("read"), b"two");
        // A symlink left there: the symlink goes, what it points at is untouched.
        let outside = dir.path().join("outside");
        fs::write(&outside, b"keep").expect("write");
        fs::remove_file(&tmp).expect("rm");
        std::os::unix::fs::symlink(&outside, &tmp).expect("symlink");
        write_temp_in(&tmp, fill(b"three"), 0o644, None, false).expect("write");
        assert_eq!(fs::read(&outside).expect("read"), b"keep");
        assert!(fs::symlink_metadata(&tmp).expect("lstat").is_file());
        assert_eq!(fs::read(&tmp).expect("read"), b"three");
    }
}
