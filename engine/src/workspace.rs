//! A workspace: the local directory, its `.cachesync/` metadata, its store and its lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cachesync_objects::{keys, Store};

use crate::config::Config;
use crate::error::{Result, SyncError};
use crate::fs_remote::FsRemote;
use crate::identity::{self, RemoteIdentity};
use crate::ignore_rules::{IgnoreRules, META_DIR};
use crate::lock::WorkspaceLock;
use crate::remote::Remote;
use crate::timed::TimedRemote;

/// Makes the [`Remote`] for a remote directory: how a workspace reaches its remote.
///
/// A workspace has none by default, and then reaches its remote through the helper process
/// (see [`crate::remote_process`]), or through plain calls ([`FsRemote`]) when no helper is
/// set. Given one ([`Workspace::with_remote_factory`], [`Workspace::init_with_remote_factory`]),
/// it reaches the remote through what it makes instead: another kind of remote, or a test
/// double (a remote that folds case, or fails on cue). Every call is still bounded by the
/// configured timeout.
pub type RemoteFactory = Arc<dyn Fn(&Path) -> Arc<dyn Remote> + Send + Sync>;

/// The remote at `root`, bounded by `timeout`: made by `factory` when there is one, else
/// through the helper process when one is set.
fn connect_remote(
    factory: Option<&RemoteFactory>,
    root: &Path,
    timeout: std::time::Duration,
) -> Result<TimedRemote> {
    if let Some(make) = factory {
        return Ok(TimedRemote::new(make(root), timeout));
    }
    let remote: Arc<dyn Remote> = match crate::remote_process::helper_exe() {
        Some(exe) => Arc::new(
            crate::remote_process::ProcessRemote::spawn(exe, root)
                .map_err(|e| SyncError::io(exe, e))?,
        ),
        None => Arc::new(FsRemote::new(root)),
    };
    Ok(TimedRemote::new(remote, timeout))
}

/// The name (then a random id) under which `clone` builds `.cachesync/` in the workspace.
/// Scans ignore it, as every name starting with [`crate::ignore_rules::TMP_PREFIX`].
pub const CLONE_TMP_PREFIX: &str = ".cachesync-tmp.clone.";

/// Checks that `root` may be cloned into: empty but for what killed clones left, which is
/// removed (each under its lock, so a clone still running there is never disturbed).
fn clear_for_clone(root: &Path) -> Result<()> {
    let mut leftovers = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| SyncError::io(root, e))? {
        let entry = entry.map_err(|e| SyncError::io(root, e))?;
        let name = entry.file_name();
        let ours = crate::paths::bytes(Path::new(&name)).starts_with(CLONE_TMP_PREFIX.as_bytes());
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            leftovers.push(entry.path());
        } else {
            others.push(name);
        }
    }
    if !others.is_empty() {
        let meta = root.join(META_DIR);
        return Err(SyncError::Usage(if meta.join("config.json").is_file() {
            format!(
                "{} is already a cachesync workspace; if its clone stopped part way, run \
                 `cachesync pull` in it to finish",
                root.display()
            )
        } else if meta.is_dir() {
            format!(
                "{} holds an incomplete {META_DIR}/ (no config), left by a clone that an \
                 earlier version did not finish; remove {} and clone again",
                root.display(),
                meta.display()
            )
        } else {
            format!(
                "{} exists and is not empty; clone into a new or empty directory",
                root.display()
            )
        }));
    }
    for dir in leftovers {
        // Held by a live clone: refused. Else ours to remove: the lock dies with the dir.
        let lock = WorkspaceLock::acquire(&dir.join("lock"))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SyncError::io(&dir, e)),
        }
        drop(lock);
    }
    Ok(())
}

/// Writes a new workspace's metadata into `dir`: the store with the remote's identity and
/// the workspace id, then the config; all of it synced to disk, the store closed (RocksDB
/// keeps the paths it opened, so it must be reopened once `dir` has its final name).
fn build_meta(
    dir: &Path,
    remote: &TimedRemote,
    remote_dir: &Path,
    config: &Config,
) -> Result<(RemoteIdentity, String)> {
    let store = Store::create(&dir.join("store"))?;
    crate::failpoint::hit("clone-store");
    let identity = identity::record(remote, remote_dir)?;
    let workspace_id = identity::random_id()[..8].to_string();
    let mut b = cachesync_objects::Batch::new();
    b.put(
        keys::CF_STATE,
        crate::state_keys::IDENTITY,
        &serde_json::to_vec(&identity).expect("identity serializes"),
    );
    b.put(
        keys::CF_STATE,
        crate::state_keys::WORKSPACE_ID,
        workspace_id.as_bytes(),
    );
    store.commit(b)?;
    crate::failpoint::hit("clone-identity");
    config.save(&dir.join("config.json"))?;
    crate::failpoint::hit("clone-config");
    drop(store);
    sync_tree(dir)?;
    Ok((identity, workspace_id))
}

/// Removes what a failed clone made (best effort: a leftover is removed by the next clone).
fn discard_clone(root: &Path, tmp: &Path, made_root: bool) {
    let _ = std::fs::remove_dir_all(tmp);
    if made_root {
        let _ = std::fs::remove_dir(root);
    }
}

/// fsyncs every file and directory under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| SyncError::io(dir, e))? {
        let entry = entry.map_err(|e| SyncError::io(dir, e))?;
        let path = entry.path();
        if entry
            .file_type()
            .map_err(|e| SyncError::io(&path, e))?
            .is_dir()
        {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| SyncError::io(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// fsyncs a directory, making the names in it durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| SyncError::io(dir, e))
}

/// An open workspace (holding its lock).
pub struct Workspace {
    /// The workspace root.
    pub root: PathBuf,
    /// Its settings.
    pub config: Config,
    /// Its store.
    pub store: Store,
    /// The remote's recorded identity.
    pub identity: RemoteIdentity,
    /// A random id naming this workspace's temporary files on the remote.
    pub workspace_id: String,
    /// The workspace lock (none when opened for reading beside a running command).
    _lock: Option<WorkspaceLock>,
    /// How the remote is reached (see [`RemoteFactory`]); none: the helper process.
    remote_factory: Option<RemoteFactory>,
    /// The hand-over a running view gave this process (session and number, see
    /// [`crate::fsmonitor`]): the only one its scans may start from.
    pub handoff: Option<(u64, u64)>,
}

impl Workspace {
    /// The workspace containing `start` (it or a parent holds `.cachesync/`).
    ///
    /// # Errors
    /// [`SyncError::NotAWorkspace`].
    pub fn find(start: &Path) -> Result<PathBuf> {
        let start = std::fs::canonicalize(start).map_err(|e| SyncError::io(start, e))?;
        let mut cur = Some(start.as_path());
        while let Some(dir) = cur {
            if dir.join(META_DIR).join("config.json").is_file() {
                return Ok(dir.to_path_buf());
            }
            cur = dir.parent();
        }
        Err(SyncError::NotAWorkspace(start))
    }

    fn meta(root: &Path) -> PathBuf {
        root.join(META_DIR)
    }

    /// The workspace's `.cachesync/` directory.
    pub fn meta_dir(&self) -> PathBuf {
        Self::meta(&self.root)
    }

    /// Whether this process holds the workspace lock (no other command is running).
    pub(crate) fn holds_lock(&self) -> bool {
        self._lock.is_some()
    }

    /// Opens the workspace at `root`, taking its lock.
    ///
    /// # Errors
    /// [`SyncError::Locked`], config and store errors.
    pub fn open(root: &Path) -> Result<Workspace> {
        let lock = WorkspaceLock::acquire(&Self::meta(root).join("lock"))?;
        Self::open_with(root, Some(lock), true)
    }

    /// Opens the workspace at `root` taking its lock, with the store opened for reading
    /// only: no other command runs meanwhile, and the store is not written (opening it to
    /// write costs a write of its options and manifest, most of a quick command's time).
    /// [`Workspace::into_writable`] opens it to write when the command turns out to need it.
    ///
    /// # Errors
    /// As [`Workspace::open`].
    pub fn open_to_look(root: &Path) -> Result<Workspace> {
        let lock = WorkspaceLock::acquire(&Self::meta(root).join("lock"))?;
        Self::open_with(root, Some(lock), false)
    }

    /// This workspace with its store open to write, the lock kept throughout (as it is when
    /// [`Workspace::open`] opened it).
    ///
    /// # Errors
    /// [`SyncError::Locked`] when opened beside a running command; store errors.
    pub fn into_writable(self) -> Result<Workspace> {
        if self.store.db().is_writable() {
            return Ok(self);
        }
        let Workspace {
            root,
            store,
            _lock,
            remote_factory,
            handoff,
            ..
        } = self;
        let lock = _lock.ok_or_else(|| SyncError::Locked {
            holder: "another command (this one opened the workspace beside it, to read)".into(),
        })?;
        // The read-only store is closed before the store is opened to write.
        drop(store);
        let mut ws = Self::open_with(&root, Some(lock), true)?;
        ws.remote_factory = remote_factory;
        ws.handoff = handoff;
        Ok(ws)
    }

    /// Opens the workspace to read it: with its lock when it is free, else (another command
    /// is running) read-only beside that command, seeing the state as of now. For commands
    /// that only read the store (log, conflicts, show).
    ///
    /// # Errors
    /// As [`Workspace::open`], but never [`SyncError::Locked`].
    pub fn open_for_reading(root: &Path) -> Result<Workspace> {
        match Self::open(root) {
            Err(SyncError::Locked { .. }) => Self::open_with(root, None, false),
            other => other,
        }
    }

    fn open_with(root: &Path, lock: Option<WorkspaceLock>, write: bool) -> Result<Workspace> {
        let meta = Self::meta(root);
        let config = Config::load(&meta.join("config.json"))?;
        let dir = meta.join("store");
        let store = match (&lock, write) {
            (Some(_), true) => Store::open(&dir)?,
            // With the lock, a store that cannot be opened to read only is opened to write,
            // as `open` would: a store made by an older version may lack a column family,
            // which only an open to write adds.
            (Some(_), false) => match Store::open_read_only(&dir) {
                Ok(store) => store,
                Err(_) => Store::open(&dir)?,
            },
            (None, _) => Store::open_read_only(&dir)?,
        };
        let state = store.table(keys::CF_STATE);
        let damaged = |what: &str| SyncError::Config {
            path: meta.join("store"),
            detail: format!(
                "the workspace's {what} record is missing or unreadable; without it the remote \
                 cannot be recognised, so nothing will be synced (clone the remote again)"
            ),
        };
        let identity: RemoteIdentity = state
            .get(crate::state_keys::IDENTITY)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or_else(|| damaged("remote identity"))?;
        let workspace_id = state
            .get(crate::state_keys::WORKSPACE_ID)?
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| damaged("workspace id"))?;
        Ok(Workspace {
            root: root.to_path_buf(),
            config,
            store,
            identity,
            workspace_id,
            _lock: lock,
            remote_factory: None,
            handoff: None,
        })
    }

    /// Creates a workspace at `root` for the remote directory `remote_dir` and records the
    /// remote's identity. Does not copy anything yet (see [`crate::sync::run`]).
    ///
    /// The creation is atomic: `.cachesync/` is built under a temporary name in `root`
    /// (store, identity, config), synced to disk, and renamed into place last, so a process
    /// killed at any moment leaves either a complete workspace or none. What such a killed
    /// clone left (its temporary directory, see [`CLONE_TMP_PREFIX`]) does not make `root`
    /// "not empty": this removes it, unless another clone still holds it.
    ///
    /// # Errors
    /// [`SyncError::Usage`] for a bad remote or a non-empty workspace directory;
    /// [`SyncError::Locked`] when another clone is creating a workspace at `root`;
    /// [`SyncError::Disconnected`] when the remote does not answer.
    pub fn init(
        remote_dir: &Path,
        root: &Path,
        config_overrides: impl FnOnce(&mut Config),
    ) -> Result<Workspace> {
        Self::init_with(remote_dir, root, config_overrides, None)
    }

    /// As [`Workspace::init`], reaching the remote through `factory` (see [`RemoteFactory`]):
    /// while the workspace is created, and afterwards (the workspace returned keeps it).
    ///
    /// # Errors
    /// As [`Workspace::init`].
    pub fn init_with_remote_factory(
        remote_dir: &Path,
        root: &Path,
        config_overrides: impl FnOnce(&mut Config),
        factory: RemoteFactory,
    ) -> Result<Workspace> {
        Self::init_with(remote_dir, root, config_overrides, Some(factory))
    }

    fn init_with(
        remote_dir: &Path,
        root: &Path,
        config_overrides: impl FnOnce(&mut Config),
        remote_factory: Option<RemoteFactory>,
    ) -> Result<Workspace> {
        let remote_dir =
            std::path::absolute(remote_dir).map_err(|e| SyncError::io(remote_dir, e))?;
        let mut config = Config::new(remote_dir.clone());
        config_overrides(&mut config);
        let remote = connect_remote(remote_factory.as_ref(), &remote_dir, config.timeout())?;
        match remote.stat(b"")? {
            Some(e) if e.kind == cachesync_objects::EntryKind::Dir => {}
            Some(_) => {
                return Err(SyncError::Usage(format!(
                    "the remote {} is not a directory",
                    remote_dir.display()
                )))
            }
            None => {
                return Err(SyncError::Usage(format!(
                    "the remote directory {} does not exist",
                    remote_dir.display()
                )))
            }
        }
        let root = std::path::absolute(root).map_err(|e| SyncError::io(root, e))?;
        if root.starts_with(&remote_dir) || remote_dir.starts_with(&root) {
            return Err(SyncError::Usage(
                "the workspace and the remote directory must not contain each other".into(),
            ));
        }
        let made_root = if root.exists() {
            clear_for_clone(&root)?;
            false
        } else {
            std::fs::create_dir_all(&root).map_err(|e| SyncError::io(&root, e))?;
            true
        };
        let tmp = root.join(format!("{CLONE_TMP_PREFIX}{}", &identity::random_id()[..8]));
        let built = std::fs::create_dir(&tmp)
            .map_err(|e| SyncError::io(&tmp, e))
            .and_then(|()| {
                // The lock file's inode moves with the rename below: this process holds the
                // workspace's lock from before `.cachesync/` exists until it is done.
                let lock = WorkspaceLock::acquire(&tmp.join("lock"))?;
                crate::failpoint::hit("clone-meta-dir");
                let (identity, workspace_id) = build_meta(&tmp, &remote, &remote_dir, &config)?;
                Ok((lock, identity, workspace_id))
            });
        let (lock, identity, workspace_id) = match built {
            Ok(b) => b,
            Err(e) => {
                discard_clone(&root, &tmp, made_root);
                return Err(e);
            }
        };
        // Before the rename, so that a workspace never exists unregistered. A kill before the
        // rename leaves an entry for a directory that is no workspace: `registry::list` drops
        // those. Best effort: the registry only serves `--all` and `--server`.
        let _ = crate::registry::add(&root);
        crate::failpoint::hit("clone-before-rename");
        let meta = Self::meta(&root);
        if let Err(e) = crate::localfs::rename_no_replace(&tmp, &meta).or_else(|e| {
            // A file system without RENAME_NOREPLACE: a plain rename still never replaces a
            // non-empty directory, and a complete `.cachesync/` is never empty.
            if e.raw_os_error() == Some(libc::EINVAL) {
                std::fs::rename(&tmp, &meta)
            } else {
                Err(e)
            }
        }) {
            discard_clone(&root, &tmp, false);
            if meta.exists() {
                return Err(SyncError::Usage(format!(
                    "another clone made a workspace at {} meanwhile; nothing of this one was kept",
                    root.display()
                )));
            }
            return Err(SyncError::io(&meta, e));
        }
        sync_dir(&root)?;
        if made_root {
            if let Some(parent) = root.parent() {
                sync_dir(parent)?;
            }
        }
        crate::failpoint::hit("clone-renamed");
        let store = Store::open(&meta.join("store"))?;
        Ok(Workspace {
            root,
            config,
            store,
            identity,
            workspace_id,
            _lock: Some(lock),
            remote_factory,
            handoff: None,
        })
    }

    /// From now on, reaches the remote through `factory` instead of the helper process (see
    /// [`RemoteFactory`]).
    #[must_use]
    pub fn with_remote_factory(mut self, factory: RemoteFactory) -> Workspace {
        self.remote_factory = Some(factory);
        self
    }

    /// The remote, with every call bounded by the configured timeout, reached through the
    /// workspace's [`RemoteFactory`] when it has one, else through a helper process when one
    /// is set (see [`crate::remote_process`]).
    ///
    /// # Errors
    /// [`SyncError::Io`] when the helper cannot be started.
    pub fn remote(&self) -> Result<TimedRemote> {
        connect_remote(
            self.remote_factory.as_ref(),
            &self.config.remote,
            self.config.timeout(),
        )
    }

    /// The working set (pins, hoard profile, never-cache directories).
    pub fn working_set(&self) -> crate::workset::WorkingSet {
        crate::workset::WorkingSet::new(&self.config)
            .expect("the config's working set was checked when it was loaded")
    }

    /// Writes the config back (after pin/unpin).
    ///
    /// # Errors
    /// [`SyncError::Io`].
    pub fn save_config(&self) -> Result<()> {
        self.config
            .save(&Self::meta(&self.root).join("config.json"))
    }

    /// The base snapshot as a flat tree, without the paths the ignore rules leave out now (a
    /// path the rules ignore leaves the synced set; neither side is touched).
    ///
    /// # Errors
    /// Store and ignore-file errors.
    pub fn synced_base(&self) -> Result<crate::scan::Flat> {
        let rules = self.rules()?;
        let mut base = self.store.read_ref_flat(keys::REF_BASE)?;
        rules.retain_unignored(&mut base);
        Ok(base)
    }

    /// The ignore rules.
    ///
    /// # Errors
    /// [`SyncError::Config`] for a bad `.cachesyncignore`.
    pub fn rules(&self) -> Result<IgnoreRules> {
        IgnoreRules::load(&self.root)
    }

    /// Bytes used by `.cachesync/` on disk, less the files a running sync staged there
    /// for the workspace (see [`Workspace::staged_bytes`]).
    pub fn cache_bytes(&self) -> u64 {
        let meta = Self::meta(&self.root);
        du(&meta, Some(&meta.join(crate::sync::stage::INCOMING)))
    }

    /// Bytes of the files a running sync staged in `.cachesync/incoming/`: workspace files
    /// about to be put in place, which the cache counts once they are there.
    pub fn staged_bytes(&self) -> u64 {
        du(
            &Self::meta(&self.root).join(crate::sync::stage::INCOMING),
            None,
        )
    }
}

/// The bytes of the files under `p` (their lengths), the directory `skip` left out.
fn du(p: &Path, skip: Option<&Path>) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && Some(e.path().as_path()) != skip => du(&e.path(), skip),
            Ok(m) if m.is_dir() => 0,
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Workspace {
    /// Resolves a path given on the command line (relative to `cwd`, or absolute) to a
    /// workspace-relative path, lexically (it may name something that no longer exists).
    ///
    /// # Errors
    /// [`SyncError::Usage`] when it is outside the workspace.
    pub fn rel_path(&self, cwd: &Path, arg: &Path) -> Result<Vec<u8>> {
        use std::path::Component;
        let joined = if arg.is_absolute() {
            arg.to_path_buf()
        } else {
            cwd.join(arg)
        };
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for c in joined.components() {
            match c {
                Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
                Component::ParentDir => {
                    parts.pop();
                }
                Component::Normal(p) => parts.push(p),
            }
        }
        let mut norm = PathBuf::from("/");
        norm.extend(parts);
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let rel = norm
            .strip_prefix(&root)
            .or_else(|_| norm.strip_prefix(&self.root))
            .map_err(|_| {
                SyncError::Usage(format!(
                    "{} is outside the workspace {}",
                    arg.display(),
                    self.root.display()
                ))
            })?;
        Ok(crate::paths::bytes(rel).to_vec())
    }
}

impl Workspace {}
