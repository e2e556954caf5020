//! Step 10 of a run, one step at a time: each step checks its precondition right before it
//! acts, writes go through a temporary name and are put in place without a window where the
//! file system allows it (see docs/architecture.md, "10. Apply").

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cachesync_objects::{Entry, EntryKind};

use super::ahead::Ready;
use super::patch::{How, Patch};
use crate::error::{Result, SyncError};
use crate::fs_remote::entry_from_metadata;
use crate::index::Stat;
use crate::paths::{display, split_parent, under};
use crate::plan::{Op, Side, Step};
use crate::scan::tree_entry;
use crate::timed::TimedRemote;
use crate::workspace::Workspace;

/// True for the errors by which a server refuses a write (not a network failure).
pub(super) fn refused_by_server(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(
            e.raw_os_error(),
            Some(libc::EROFS | libc::EPERM | libc::EACCES)
        )
}

pub(super) enum StepError {
    /// The target is no longer in the state the plan expects: skip, sync next time.
    Precondition(String),
    /// The step failed.
    Fatal(SyncError),
}

impl From<SyncError> for StepError {
    fn from(e: SyncError) -> StepError {
        StepError::Fatal(e)
    }
}

/// What a local step left for the index: its path (or a rename's source, `from`) now holds
/// the content of the step's target with this `stat`, or (`None`) nothing the index keeps.
/// The path and the content id are the plan step's: a path and a whole index entry for each
/// of a million files were about 160 MB held through a first copy's writes.
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalResult {
    /// The step.
    pub step: usize,
    /// The step's source rather than its path.
    pub from: bool,
    /// The stat of the file written.
    pub stat: Option<Stat>,
}

pub(super) struct Applier<'a> {
    pub(super) ws: &'a Workspace,
    pub(super) remote: &'a TimedRemote,
    /// Remote paths whose stat cannot vouch for their content (see [`crate::racy`]).
    pub(super) racy: &'a HashSet<Vec<u8>>,
    pub(super) op: u64,
    /// What each local step left for the index, in the order the steps ran: a list, as the
    /// commit writes them in order (the last of a path wins). A map of them grew by
    /// rehashing: at a million files, 355 MB at the moment it doubled, the peak of a first
    /// copy.
    pub(super) local_results: Vec<LocalResult>,
    pub(super) remote_results: HashMap<Vec<u8>, Option<Entry>>,
    pub(super) bytes_up: u64,
    /// Local paths moved to lost+found, and where to.
    pub(super) stashed: HashMap<Vec<u8>, Vec<u8>>,
    /// Whether the share copies on the server, once asked (for big files' patches).
    pub(super) copies_on_server: Option<bool>,
    /// Big files patched so far.
    pub(super) patched: Vec<crate::sync::Patched>,
    /// The next step's file, written ahead under its temporary name (see
    /// [`super::ahead`]).
    pub(super) ready: Option<super::ahead::Ready>,
    /// New remote files staged as they were read (see [`super::stage`]).
    pub(super) stage: Option<&'a super::stage::Stage>,
}

/// True when what is there now is what the plan saw (kind, and for files size and mtime, for
/// symlinks the target).
fn matches(now: Option<&Entry>, expect: Option<&Entry>) -> bool {
    match (now, expect) {
        (None, None) => true,
        (Some(n), Some(e)) => {
            n.kind == e.kind
                && match e.kind {
                    EntryKind::File => n.size == e.size && n.mtime_ns == e.mtime_ns,
                    EntryKind::Symlink => n.target == e.target,
                    _ => true,
                }
        }
        _ => false,
    }
}

fn local_entry(path: &Path, name: &[u8]) -> std::io::Result<Option<Entry>> {
    match fs::symlink_metadata(path) {
        Ok(md) => {
            let mut e = tree_entry(&entry_from_metadata(name, &md));
            if e.kind == EntryKind::Symlink {
                use std::os::unix::ffi::OsStrExt;
                e.target = fs::read_link(path)?.as_os_str().as_bytes().to_vec();
            }
            Ok(Some(e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The skip for a workspace path that is no longer as the plan saw it.
fn changed_here(path: &[u8]) -> StepError {
    StepError::Precondition(format!(
        "{} changed in the workspace during the sync; the next run takes it up",
        display(path)
    ))
}

/// A create that found something at its path (made there since the check) is a change the
/// next run takes up; other errors are errors.
fn exists_is_change(e: std::io::Error, path: &[u8], abs: &Path) -> StepError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        changed_here(path)
    } else {
        StepError::Fatal(SyncError::io(abs, e))
    }
}

/// A remote step that found its path taken (or its target gone) since the check: a change
/// the next run takes up. Other errors are errors.
fn taken_is_change(e: SyncError, path: &[u8]) -> StepError {
    match &e {
        SyncError::RemoteIo { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::AlreadyExists
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::NotADirectory
            ) =>
        {
            changed_there(path)
        }
        _ => StepError::Fatal(e),
    }
}

/// Makes the directory `path` in the workspace at `root`, where the plan saw nothing, with
/// `mode` (and the owner's bits: cachesync must write in it).
pub(super) fn make_dir(root: &Path, path: &[u8], mode: u32) -> Result<(), StepError> {
    let abs = under(root, path);
    if local_entry(&abs, split_parent(path).1)
        .map_err(|e| SyncError::io(&abs, e))?
        .is_some()
    {
        return Err(changed_here(path));
    }
    fs::create_dir(&abs).map_err(|e| exists_is_change(e, path, &abs))?;
    fs::set_permissions(&abs, fs::Permissions::from_mode(mode | 0o700))
        .map_err(|e| StepError::Fatal(SyncError::io(&abs, e)))
}

/// Why a file was not put in place at `path` (`abs`): taken meanwhile (no-replace), or gone
/// meanwhile (exchange), is a change here; anything else, the error.
pub(super) fn not_placed(e: std::io::Error, path: &[u8], abs: &Path) -> StepError {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound => changed_here(path),
        _ => StepError::Fatal(SyncError::io(abs, e)),
    }
}

/// The skip for a remote path that is no longer as the plan saw it.
fn changed_there(path: &[u8]) -> StepError {
    StepError::Precondition(format!(
        "{} changed on the remote during the sync; the next run takes it up",
        display(path)
    ))
}

impl Applier<'_> {
    pub(super) fn apply(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        match step.side {
            Side::Local => self.apply_local(i, step),
            Side::Remote => self.apply_remote(i, step),
        }
    }

    fn check_local(&self, path: &[u8], expect: Option<&Entry>) -> Result<(), StepError> {
        let abs = under(&self.ws.root, path);
        let now = local_entry(&abs, split_parent(path).1).map_err(|e| SyncError::io(&abs, e))?;
        if matches(now.as_ref(), expect) {
            Ok(())
        } else {
            Err(changed_here(path))
        }
    }

    /// Step `i` left its target at its path: a file's stat for the index.
    fn record_local(&mut self, i: usize, step: &Step, target: &Entry) -> Result<(), StepError> {
        let stat = if target.kind == EntryKind::File {
            let abs = under(&self.ws.root, &step.path);
            let md = fs::symlink_metadata(&abs).map_err(|e| SyncError::io(&abs, e))?;
            Some(Stat::of(&md))
        } else {
            None
        };
        self.local_results.push(LocalResult {
            step: i,
            from: false,
            stat,
        });
        Ok(())
    }

    /// Step `i` left a file at its path with this stat (taken when it was put there).
    pub(super) fn placed(&mut self, i: usize, stat: Stat) {
        self.local_results.push(LocalResult {
            step: i,
            from: false,
            stat: Some(stat),
        });
    }

    /// Step `i` left nothing for the index at its path (or its source, `from`).
    fn forget_local(&mut self, i: usize, from: bool) {
        self.local_results.push(LocalResult {
            step: i,
            from,
            stat: None,
        });
    }

    /// A file or symlink written into the workspace: under a temporary name, then put in
    /// place if the path still holds what the plan saw (see [`Applier::place_local`]).
    fn write_local(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let root = &self.ws.root;
        let io = |e: std::io::Error| StepError::Fatal(SyncError::io(under(root, &step.path), e));
        let t = step.target.as_ref().expect("writes have a target");
        let own = under(
            root,
            &crate::sync::temp_name(self.ws, self.op, i, &step.path),
        );
        let mut tmp = own.clone();
        if t.kind == EntryKind::File && step.expect.is_none() {
            // Put in place as it was read: done (see `super::land`).
            if let Some(stat) = self.stage.and_then(|st| st.take_landed(&step.path, t)) {
                self.placed(i, stat);
                return Ok(());
            }
        }
        if t.kind == EntryKind::File {
            // Written ahead, staged, or else written here (a write ahead that failed is
            // made again here: it made no directory, this does).
            let ready = match self.ready.take() {
                Some(Ready::Placed(placed)) => {
                    // Put in place ahead: done (see `super::ahead`).
                    self.placed(i, placed?);
                    return Ok(());
                }
                Some(Ready::Written(Ok(p))) => Some(p),
                _ => self.stage.and_then(|st| st.take(&step.path, t)),
            };
            match ready {
                Some(p) => tmp = p,
                None => crate::localfs::write_stored(self.ws, &tmp, t, true)?,
            }
        } else {
            let _ = fs::remove_file(&tmp);
            use std::os::unix::ffi::OsStrExt;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&t.target), &tmp).map_err(io)?;
        }
        // Where nothing may be there, the rename (`RENAME_NOREPLACE`) is the check; where
        // the file system does not take that flag, `place_local` checks first.
        if step.expect.is_some() {
            if let Err(e) = self.check_local(&step.path, step.expect.as_deref()) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        crate::failpoint::hit_n("before-rename", i);
        match self.place_local(&tmp, &step.path, step.expect.as_deref(), t) {
            // Staged on another file system than the path's (a mount inside the
            // workspace): written from the store after all.
            Err(StepError::Fatal(SyncError::Io { source, .. }))
                if tmp != own && source.raw_os_error() == Some(libc::EXDEV) =>
            {
                crate::localfs::write_stored(self.ws, &own, t, true)?;
                self.place_local(&own, &step.path, step.expect.as_deref(), t)?;
            }
            placed => placed?,
        }
        self.record_local(i, step, t)
    }

    /// Permission bits set in the workspace. A regular file with other hard-link names
    /// gets a copy of its own instead (see below).
    fn chmod_local(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let root = &self.ws.root;
        let abs = under(root, &step.path);
        let io = |e: std::io::Error| StepError::Fatal(SyncError::io(&abs, e));
        self.check_local(&step.path, step.expect.as_deref())?;
        let t = step.target.as_ref().expect("chmod has a target");
        let md = fs::symlink_metadata(&abs).map_err(io)?;
        if md.is_file() && md.nlink() > 1 {
            // Another name shares this inode, and a chmod would change it too (the
            // next run would push a mode change nobody made): this name gets a copy
            // of its own, with the new mode.
            let tmp = under(
                root,
                &crate::sync::temp_name(self.ws, self.op, i, &step.path),
            );
            crate::localfs::write_temp(
                &tmp,
                |f| {
                    let mut src = fs::File::open(&abs).map_err(|e| SyncError::io(&abs, e))?;
                    std::io::copy(&mut src, f).map_err(|e| SyncError::io(&abs, e))?;
                    Ok(())
                },
                t.mode,
                Some(md.mtime() * 1_000_000_000 + md.mtime_nsec()),
                false,
            )?;
            self.place_local(&tmp, &step.path, step.expect.as_deref(), t)?;
        } else {
            fs::set_permissions(&abs, fs::Permissions::from_mode(t.mode)).map_err(io)?;
        }
        self.record_local(i, step, t)
    }

    fn apply_local(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let root = &self.ws.root;
        let abs = under(root, &step.path);
        let io = |e: std::io::Error| StepError::Fatal(SyncError::io(&abs, e));
        let target = step.target.as_ref();
        match step.op {
            Op::Stash => {
                self.check_local(&step.path, step.expect.as_deref())?;
                let dest_rel = crate::paths::join(
                    format!("{}/{}", crate::ignore_rules::LOST_FOUND, self.op).as_bytes(),
                    &step.path,
                );
                let dest = under(root, &dest_rel);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                fs::rename(&abs, &dest).map_err(io)?;
                self.stashed.insert(step.path.clone(), dest_rel);
                Ok(())
            }
            Op::Write | Op::Symlink => self.write_local(i, step),
            Op::Mkdir => match self.ready.take() {
                // Made ahead (see `super::ahead`).
                Some(Ready::Made(made)) => made,
                // Made for the files put in place as they were read.
                _ if self.stage.is_some_and(|st| st.take_made(&step.path)) => Ok(()),
                _ => make_dir(root, &step.path, target.expect("mkdir has a target").mode),
            },
            Op::Mknod => {
                self.check_local(&step.path, None)?;
                let t = target.expect("mknod has a target");
                crate::fs_remote::mknod(&abs, t.kind, t.mode, t.rdev)
                    .map_err(|e| exists_is_change(e, &step.path, &abs))?;
                Ok(())
            }
            Op::SetMode => self.chmod_local(i, step),
            Op::Rename => {
                let from = step.from.as_deref().expect("renames have a source");
                self.check_local(from, step.expect.as_deref())?;
                let t = target.expect("renames have a target");
                let source = under(root, from);
                // The file at the new name was put in place as it was read (see
                // `super::land`): only the old name is left to remove (taken once it is:
                // otherwise it is removed with what no step took).
                let stage = self.stage.filter(|_| t.kind == EntryKind::File);
                if let Some(st) = stage.filter(|st| st.landed(&step.path, t)) {
                    fs::remove_file(&source).map_err(io)?;
                    self.forget_local(i, true);
                    return match st.take_landed(&step.path, t) {
                        Some(stat) => {
                            self.placed(i, stat);
                            Ok(())
                        }
                        None => self.record_local(i, step, t),
                    };
                }
                self.check_local(&step.path, None)?;
                match crate::localfs::rename_no_replace(&source, &abs) {
                    Err(e) if crate::localfs::flags_unsupported(&e) => {
                        fs::rename(&source, &abs).map_err(io)?
                    }
                    r => r.map_err(|e| exists_is_change(e, &step.path, &abs))?,
                }
                if t.kind != EntryKind::Symlink {
                    fs::set_permissions(&abs, fs::Permissions::from_mode(t.mode)).map_err(io)?;
                }
                self.forget_local(i, true);
                self.record_local(i, step, t)
            }
            Op::Remove => {
                self.check_local(&step.path, step.expect.as_deref())?;
                let is_dir = step
                    .expect
                    .as_ref()
                    .is_some_and(|e| e.kind == EntryKind::Dir);
                let r = if is_dir {
                    fs::remove_dir(&abs)
                } else {
                    fs::remove_file(&abs)
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                        return Err(StepError::Precondition(format!(
                            "{} was not removed: it still holds files (ignored ones, or new ones)",
                            display(&step.path)
                        )))
                    }
                    Err(e) => return Err(io(e)),
                }
                self.forget_local(i, false);
                Ok(())
            }
        }
    }

    /// Puts the temporary file `tmp` at `path` in the workspace only if what is there is
    /// still `expect`, with no window between the check and the rename where the file
    /// system allows it: no-replace where the path must be free, and where something is
    /// replaced an exchange, then a look at what came out (put back if it is not what the
    /// plan saw). On a file system without either, a plain rename after the check.
    /// `target` is what `tmp` holds.
    fn place_local(
        &mut self,
        tmp: &Path,
        path: &[u8],
        expect: Option<&Entry>,
        target: &Entry,
    ) -> Result<(), StepError> {
        let abs = under(&self.ws.root, path);
        let io = |e: std::io::Error| StepError::Fatal(SyncError::io(&abs, e));
        let placed = match expect {
            None => crate::localfs::rename_no_replace(tmp, &abs),
            Some(_) => crate::localfs::exchange(tmp, &abs),
        };
        match placed {
            Ok(()) => {}
            Err(e) if crate::localfs::flags_unsupported(&e) => {
                if expect.is_none() {
                    if let Err(e) = self.check_local(path, None) {
                        let _ = fs::remove_file(tmp);
                        return Err(e);
                    }
                }
                return fs::rename(tmp, &abs).map_err(io);
            }
            Err(e) => {
                let _ = fs::remove_file(tmp);
                return Err(not_placed(e, path, &abs));
            }
        }
        let Some(expect) = expect else { return Ok(()) };
        crate::failpoint::hit("exchanged");
        // What came out of the exchange is at `tmp` now.
        let out = local_entry(tmp, split_parent(path).1).map_err(io)?;
        if matches(out.as_ref(), Some(expect)) {
            return fs::remove_file(tmp).map_err(io);
        }
        // Something new was there: it goes back to its name, and ours is dropped (the next
        // run reconciles what is there). Should that fail, it is never left under a
        // temporary name (those are removed as ours): it goes to lost+found.
        if crate::localfs::exchange(tmp, &abs).is_ok() {
            let _ = fs::remove_file(tmp);
            return Err(changed_here(path));
        }
        let dest_rel = crate::paths::join(
            format!("{}/{}", crate::ignore_rules::LOST_FOUND, self.op).as_bytes(),
            path,
        );
        let dest = under(&self.ws.root, &dest_rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        fs::rename(tmp, &dest).map_err(io)?;
        self.record_stash(path, out.as_ref(), target, &dest_rel)?;
        self.stashed.insert(path.to_vec(), dest_rel);
        Ok(())
    }

    /// A local version [`Applier::place_local`] moved to lost+found, which no step of the
    /// plan says: recorded at once, so that a run killed before its commit still lists
    /// where it went (the commit records it again, with the change it belongs to).
    fn record_stash(
        &self,
        path: &[u8],
        local: Option<&Entry>,
        server: &Entry,
        dest_rel: &[u8],
    ) -> Result<(), StepError> {
        use crate::conflict::{self, ConflictKind};
        let kind = if local.is_some_and(|l| l.kind != server.kind) {
            ConflictKind::Type
        } else {
            ConflictKind::Content
        };
        let mut r = conflict::record(path, kind, None, local, Some(server));
        r.set_lost_found(dest_rel);
        r.resolution = Some(format!(
            "the server's version is in the workspace; a change made here while it was \
             written was moved to {}",
            display(dest_rel)
        ));
        let mut batch = cachesync_objects::Batch::new();
        conflict::put(&mut batch, &r);
        self.ws.store.commit(batch).map_err(SyncError::from)?;
        Ok(())
    }

    /// [`Applier::place_local`] on the remote: the temporary file `tmp` goes to `path` only if
    /// what is there is still `expect`, atomically where the file system can rename with
    /// flags; elsewhere (sshfs) the check just made stands, and a plain rename follows it.
    fn place_remote(
        &self,
        tmp: &[u8],
        path: &[u8],
        expect: Option<&Entry>,
    ) -> Result<(), StepError> {
        let remote = self.remote;
        let placed = remote.rename_atomic(tmp, path, expect.is_some());
        let atomic = match placed {
            Ok(done) => done,
            Err(e) => {
                let _ = remote.remove_file(tmp);
                return Err(taken_is_change(e, path));
            }
        };
        if !atomic {
            remote.rename(tmp, path)?;
            return Ok(());
        }
        let Some(expect) = expect else { return Ok(()) };
        // What came out of the exchange is at `tmp` now: it must be what the plan saw.
        if let Err(check) = self.check_remote(tmp, Some(expect)) {
            // Put back what the server holds now; ours goes. It is never left under a
            // temporary name (those are removed as ours): if the exchange back fails, a
            // plain rename puts it back over ours.
            if matches!(remote.rename_atomic(tmp, path, true), Ok(true)) {
                remote.remove_file(tmp)?;
            } else {
                remote.rename(tmp, path)?;
            }
            return Err(match check {
                StepError::Precondition(_) => changed_there(path),
                fatal => fatal,
            });
        }
        remote.remove_file(tmp)?;
        Ok(())
    }

    fn check_remote(&self, path: &[u8], expect: Option<&Entry>) -> Result<(), StepError> {
        let now = self.remote.stat(path)?.map(|r| tree_entry(&r));
        // A racy file's stat cannot tell an edit made in the same second: its content must
        // still be the one expected (remote-only content was never read: nothing to compare).
        let racy_content = expect
            .filter(|e| e.kind == EntryKind::File && self.racy.contains(path))
            .and_then(|e| e.file)
            .filter(|f| crate::presence::is_known(*f));
        if matches(now.as_ref(), expect)
            && racy_content.map_or(Ok(true), |id| self.remote_holds(path, id))?
        {
            Ok(())
        } else {
            Err(changed_there(path))
        }
    }

    fn record_remote(&mut self, path: &[u8], target: &Entry) -> Result<(), StepError> {
        let stat = self.remote.stat(path)?;
        let entry = stat.map(|r| {
            let mut e = tree_entry(&r);
            e.file = target.file;
            // A symlink just made whose target the share will not read back (sshfs refuses
            // `..` and absolute targets): it holds the target written.
            if r.target_errno.is_some() && e.kind == EntryKind::Symlink {
                e.target = target.target.clone();
            }
            e
        });
        self.remote_results.insert(path.to_vec(), entry);
        Ok(())
    }

    /// Whether the remote file at `path` holds the content `id` (read whole and hashed).
    fn remote_holds(&self, path: &[u8], id: cachesync_objects::FileId) -> Result<bool, StepError> {
        let mut reader = self.remote.open(path)?;
        let held = crate::racy::holds(&mut reader, id);
        // The reader keeps the engine error behind a failed read (timeout, outage).
        if let Some(e) = reader.error.take() {
            return Err(StepError::Fatal(e));
        }
        held.map_err(|source| {
            StepError::Fatal(SyncError::RemoteIo {
                path: display(path).into(),
                source,
            })
        })
    }

    /// Writes the content of `t` to the remote file `tmp` (step `i`), checking that what was
    /// sent hashes to the file's id.
    fn write_remote_file(&mut self, i: usize, tmp: &[u8], t: &Entry) -> Result<(), StepError> {
        let mut w = self.remote.create(tmp)?;
        let id = t.file.expect("file entries have content");
        let object = self
            .ws
            .store
            .file_object(id)
            .map_err(SyncError::from)?
            .ok_or(SyncError::Store(
                cachesync_objects::ObjectError::MissingFile(id),
            ))?;
        let mut whole = blake3::Hasher::new();
        for (n, (cid, _)) in object.chunks.iter().enumerate() {
            let data = self.ws.store.chunk(*cid).map_err(SyncError::from)?;
            whole.update(&data);
            self.bytes_up += data.len() as u64;
            w.write_all(data)?;
            if n == 0 {
                crate::failpoint::hit_n("mid-write", i);
            }
        }
        if whole.finalize().as_bytes() != id.as_bytes() {
            return Err(StepError::Fatal(SyncError::Store(
                cachesync_objects::ObjectError::CorruptFile {
                    id,
                    detail: "content does not hash to the file's id".into(),
                },
            )));
        }
        w.finish(t.mode, t.mtime_ns)?;
        Ok(())
    }

    /// A big file's new content in the temporary `tmp`: what it shares with the file at
    /// `src` copied on the server, the rest sent (see [`super::patch`]).
    fn write_remote_copied(
        &mut self,
        i: usize,
        tmp: &[u8],
        src: &[u8],
        t: &Entry,
        p: &Patch,
    ) -> Result<(), StepError> {
        let mut w = self.remote.create(tmp)?;
        let sent = super::patch::write_copied(&self.ws.store, &mut w, src, &p.pieces, || {
            crate::failpoint::hit_n("mid-write", i);
        })?;
        self.bytes_up += sent;
        w.finish(t.mode, t.mtime_ns)?;
        self.note_patch(src, "copy", t.size, sent);
        Ok(())
    }

    fn note_patch(&mut self, path: &[u8], how: &'static str, size: u64, bytes_sent: u64) {
        self.patched.push(crate::sync::Patched {
            path: display(path),
            how,
            size,
            bytes_sent,
        });
    }

    /// A big file patched where it is, on a share that cannot copy on the server (see
    /// [`super::patch`]): checked as any write is, then journalled and patched. `None` when
    /// the file could not be opened to be written into: it goes whole.
    fn patch_remote_in_place(
        &mut self,
        i: usize,
        step: &Step,
        t: &Entry,
        p: &Patch,
    ) -> Result<Option<()>, StepError> {
        self.check_remote(&step.path, step.expect.as_deref())?;
        crate::failpoint::hit_n("before-rename", i);
        let before = step.expect.as_deref().expect("a patch has a base");
        debug_assert_eq!(before.file, Some(p.base));
        let Some(sent) = super::patch::patch_in_place(
            self.ws,
            self.remote,
            &step.path,
            before,
            t,
            &p.pieces,
            i,
        )?
        else {
            return Ok(None);
        };
        self.bytes_up += sent;
        self.note_patch(&step.path, "in-place", t.size, sent);
        self.record_remote(&step.path, t).map(Some)
    }

    /// A file or symlink written to the remote: under a temporary name (its content hashed
    /// on the way), then put in place if the target still holds what the plan saw.
    fn write_remote(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let remote = self.remote;
        let t = step.target.as_ref().expect("writes have a target");
        let patch = super::patch::plan_for(
            self.ws,
            remote,
            &mut self.copies_on_server,
            step.expect.as_deref(),
            t,
        )?;
        if let Some(p) = patch.as_ref().filter(|p| p.how == How::InPlace) {
            if let Some(done) = self.patch_remote_in_place(i, step, t, p)? {
                return Ok(done);
            }
        }
        let patch = patch.filter(|p| p.how == How::Copy);
        let tmp = crate::sync::temp_name(self.ws, self.op, i, &step.path);
        let _ = remote.remove_file(&tmp);
        // A failed write (a full disk, a dropped link) takes its temporary with it,
        // unless the remote is unreachable (the next run removes it then).
        let written = if let Some(p) = &patch {
            match self.write_remote_copied(i, &tmp, &step.path, t, p) {
                // A share that would not copy after all: the file goes whole.
                Err(StepError::Fatal(e))
                    if !matches!(e, SyncError::Disconnected { .. })
                        && !remote.pool().is_tripped() =>
                {
                    let _ = remote.remove_file(&tmp);
                    self.write_remote_file(i, &tmp, t)
                }
                r => r,
            }
        } else if t.kind == EntryKind::File {
            self.write_remote_file(i, &tmp, t)
        } else {
            remote.symlink(&t.target, &tmp).map_err(StepError::from)
        };
        if let Err(e) = written {
            if !remote.pool().is_tripped() {
                let _ = remote.remove_file(&tmp);
            }
            // The directory it goes in was removed (or replaced) on the server
            // since the scan: a change the next run takes up, not a failure.
            return Err(match e {
                StepError::Fatal(e) => taken_is_change(e, &step.path),
                e => e,
            });
        }
        if let Err(e) = self.check_remote(&step.path, step.expect.as_deref()) {
            let _ = remote.remove_file(&tmp);
            return Err(e);
        }
        crate::failpoint::hit_n("before-rename", i);
        self.place_remote(&tmp, &step.path, step.expect.as_deref())?;
        self.record_remote(&step.path, t)
    }

    fn apply_remote(&mut self, i: usize, step: &Step) -> Result<(), StepError> {
        let remote = self.remote;
        let target = step.target.as_ref();
        match step.op {
            Op::Stash => Err(StepError::Fatal(SyncError::Usage(
                "internal: nothing is moved to lost+found on the remote".into(),
            ))),
            Op::Write | Op::Symlink => self.write_remote(i, step),
            Op::Mkdir => {
                self.check_remote(&step.path, None)?;
                let t = target.expect("mkdir has a target");
                remote
                    .mkdir(&step.path, t.mode | 0o700)
                    .map_err(|e| taken_is_change(e, &step.path))?;
                self.record_remote(&step.path, t)
            }
            Op::Mknod => {
                self.check_remote(&step.path, None)?;
                let t = target.expect("mknod has a target");
                remote.mknod(&step.path, t.kind, t.mode, t.rdev)?;
                self.record_remote(&step.path, t)
            }
            Op::SetMode => {
                self.check_remote(&step.path, step.expect.as_deref())?;
                let t = target.expect("chmod has a target");
                remote.set_mode(&step.path, t.mode)?;
                self.record_remote(&step.path, t)
            }
            Op::Rename => {
                let from = step.from.as_deref().expect("renames have a source");
                self.check_remote(from, step.expect.as_deref())?;
                // A case-only rename on a remote that folds case finds its own source there.
                let case_only =
                    self.ws.identity.case_insensitive && from.eq_ignore_ascii_case(&step.path);
                if !case_only {
                    self.check_remote(&step.path, None)?;
                }
                let t = target.expect("renames have a target");
                let atomic = !case_only
                    && remote
                        .rename_atomic(from, &step.path, false)
                        .map_err(|e| taken_is_change(e, &step.path))?;
                if !atomic {
                    remote.rename(from, &step.path)?;
                }
                if t.kind != EntryKind::Symlink
                    && step.expect.as_deref().is_some_and(|e| e.mode != t.mode)
                {
                    remote.set_mode(&step.path, t.mode)?;
                }
                self.remote_results.insert(from.to_vec(), None);
                self.record_remote(&step.path, t)
            }
            Op::Remove => {
                self.check_remote(&step.path, step.expect.as_deref())?;
                let is_dir = step
                    .expect
                    .as_ref()
                    .is_some_and(|e| e.kind == EntryKind::Dir);
                let r = if is_dir {
                    remote.remove_dir(&step.path)
                } else {
                    remote.remove_file(&step.path)
                };
                match r {
                    Ok(()) => {}
                    Err(SyncError::RemoteIo { source, .. })
                        if source.kind() == std::io::ErrorKind::DirectoryNotEmpty =>
                    {
                        return Err(StepError::Precondition(format!(
                            "{} was not removed on the remote: it still holds files",
                            display(&step.path)
                        )))
                    }
                    Err(e) => return Err(e.into()),
                }
                self.remote_results.insert(step.path.clone(), None);
                Ok(())
            }
        }
    }
}
