//! The last status's answer, kept for the next one while nothing it depends on changed.
//!
//! A status without `--refresh` answers from things on this machine only: the store (base,
//! last remote snapshot, index, remote-only flags, conflicts, mode, patches in flight), the
//! workspace's settings and ignore rules, who asks (permissions, offline), and the
//! workspace's entries. When none of them changed since a status saved its answer, that
//! answer stands, and the next status gives it after a walk that only stats (no index
//! loaded, no entry made, no snapshot read or compared). How each is known unchanged:
//! - **the store**: RocksDB's sequence number, which every write moves. The answer is the
//!   last thing its status writes, and holds the number that write got: a later write (by
//!   any command, the view, or a status that refreshed the index) makes it stale. After a
//!   crash the log is replayed in order, so the answer is never kept while a write made
//!   before it is lost.
//! - **settings, ignore rules, who asks, where the workspace is**: a digest in the answer.
//! - **the workspace**: the digest of a print of every entry's path and stat fields (type
//!   and mode, owner, size, mtime, ctime, inode, links, device), as both walks see them;
//!   the prints themselves are kept beside the store ([`PRINTS_FILE`]). A write leaves mtime
//!   and ctime unchanged only within the timestamp granularity: the entries a status's walk
//!   saw changed within [`RACY_WINDOW_NS`] of its start are kept with their prints blanked
//!   and their paths listed (as the index re-hashes such files), and looked at again by the
//!   next status; when there are more than the walk notes, nothing is kept. The answer also
//!   holds the newest mtime or ctime it printed: the next walk notes the entries changed
//!   later (their prints cannot be the same), and stops past [`recheck::MAX_PATHS`] of them.
//!   A few, each still of the kind the base has at its path, and the answer is brought up
//!   to date at them alone ([`recheck`]); else the whole way.
//!
//! Never kept: answers under a cache budget (its thresholds follow the disk's free space,
//! what culling takes next follows access times), with scan warnings, temporaries or
//! unreadable remote entries, while a conflict record names a lost+found copy (under
//! `.cachesync/`, which no walk prints: whether it is there is not known), or when the
//! ignore rules or settings changed while the status ran; and a view's hand-over or
//! `--ignored` always take the whole way.

use serde::{Deserialize, Serialize};

use super::Readiness;
use super::{CacheState, Creds, LocalScanFacts, Outcome, PathChange, Pending, PermissionWarning};
use crate::conflict::ConflictRecord;
use crate::error::Result;
use crate::index::RACY_WINDOW_NS;
use crate::paths::hex;
use crate::scan::{Listings, LocalScan};
use crate::state_keys;
use crate::workspace::Workspace;
pub(super) use recheck::Recheck;

pub(super) mod recheck;

/// The version of the record: an answer of another shape is not read.
const FORMAT: u32 = 2;

/// Answers bigger than this are not kept (a status listing many thousands of changes is
/// not the everyday one, and reading the answer back would cost what it saves).
const MAX_BYTES: usize = 4 << 20;

/// A status's answer, as kept in the state table under [`state_keys::STATUS_MEMO`].
#[derive(Clone, Serialize, Deserialize)]
struct Memo {
    format: u32,
    /// The store's sequence number once this record was written.
    seq: u64,
    /// Settings, ignore rules, user, workspace root ([`context`]), hex.
    context: String,
    /// The workspace's entries ([`crate::scan::StatPrints::digest`]), hex.
    walk: String,
    /// The latest mtime or ctime among them (ns): an entry changed later cannot have been
    /// printed so, and the next status's walk stops at the first it meets.
    #[serde(default)]
    newest_ns: Option<i64>,
    remote_seen_ns: Option<i64>,
    provisional: Vec<Change>,
    permission: Vec<PermissionWarning>,
    local_changes: Vec<Change>,
    remote_changes: Vec<Change>,
    conflicts: Vec<ConflictRecord>,
    pending: Pending,
    readiness: Readiness,
    /// Bytes of the files in the workspace (the cache's use less `.cachesync/`).
    files_bytes: u64,
    /// Entries changed within [`RACY_WINDOW_NS`] of the status's start (paths in hex):
    /// their prints are not trusted (see [`recheck`]), and they are looked at again.
    #[serde(default)]
    racy: Vec<String>,
    /// Directories added here whose owner may not write them (paths in hex): a sync makes
    /// each writable, then gives it its mode, one step more than another new directory (see
    /// [`recheck`]).
    #[serde(default)]
    unwritable_dirs: Vec<String>,
    /// A remote-only path was written here while its base content is not in the store
    /// (reconciled without a base): whether the store holds that content, which another
    /// file read may add, is part of the answer (see [`recheck`]).
    #[serde(default)]
    reappeared: bool,
}

/// A [`PathChange`] as kept.
#[derive(Clone, Serialize, Deserialize)]
struct Change {
    path: String,
    path_hex: Option<String>,
    change: String,
    kind: String,
}

impl Change {
    fn kept(c: &PathChange) -> Change {
        Change {
            path: c.path.clone(),
            path_hex: c.path_hex.clone(),
            change: c.change.to_owned(),
            kind: c.kind.to_owned(),
        }
    }

    /// The change again; `None` for words no status uses (a damaged record).
    fn given(self) -> Option<PathChange> {
        const CHANGES: [&str; 5] = ["added", "deleted", "modified", "mode", "type"];
        Some(PathChange {
            path: self.path,
            path_hex: self.path_hex,
            change: CHANGES.into_iter().find(|w| *w == self.change)?,
            kind: cachesync_objects::EntryKind::from_name(&self.kind)?.as_str(),
        })
    }
}

/// The changes kept, given again (`None` if one of them is not a change).
fn given(kept: Vec<Change>) -> Option<Vec<PathChange>> {
    kept.into_iter().map(Change::given).collect()
}

fn kept(changes: &[PathChange]) -> Vec<Change> {
    changes.iter().map(Change::kept).collect()
}

/// The digest of what, besides the store and the entries, a status's answer depends on.
fn context(ws: &Workspace, rules: &crate::ignore_rules::IgnoreRules) -> String {
    let creds = Creds::current();
    let mut h = blake3::Hasher::new();
    h.update(&FORMAT.to_le_bytes());
    // Another build may answer otherwise: its version, and the executable itself (a build
    // of the same version, a patched one, an upgrade in place).
    h.update(env!("CARGO_PKG_VERSION").as_bytes()).update(b"\0");
    if let Ok(md) = std::env::current_exe().and_then(std::fs::metadata) {
        use std::os::unix::fs::MetadataExt;
        for field in [
            md.dev(),
            md.ino(),
            md.size(),
            md.mtime() as u64,
            md.mtime_nsec() as u64,
        ] {
            h.update(&field.to_le_bytes());
        }
    }
    let root = std::os::unix::ffi::OsStrExt::as_bytes(ws.root.as_os_str());
    h.update(&(root.len() as u64).to_le_bytes()).update(root);
    let config = serde_json::to_vec(&ws.config).expect("the config serializes");
    h.update(&(config.len() as u64).to_le_bytes())
        .update(&config);
    h.update(&rules.fingerprint());
    h.update(&creds.uid.to_le_bytes());
    for g in &creds.gids {
        h.update(&g.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Whether answers may be kept at all for this workspace now (see the module doc).
fn keepable(ws: &Workspace) -> bool {
    crate::cull::budget(ws).is_none()
}

/// The context as of now (see [`context`]), to give [`answer`] and [`save`]: taken
/// before the status's own reads, so that an answer computed under other ignore rules is
/// never kept under these.
///
/// # Errors
/// The ignore rules cannot be read.
pub(super) fn context_now(ws: &Workspace) -> Result<String> {
    Ok(context(ws, &ws.rules()?))
}

/// What a status finds of the last answer.
pub(super) enum Found {
    /// It still stands.
    Kept(Box<Outcome>),
    /// It does not; with what it takes to bring it up to date at a few paths, when that
    /// may do (see [`recheck`]).
    Stale(Option<Box<Recheck>>),
}

/// The kept answer, when nothing it depends on changed since; else, when only a few
/// entries changed, what it takes to recheck them; else nothing (then the caller takes the
/// whole way). The walk uses the ignore rules the context was made of.
///
/// # Errors
/// Store errors; I/O errors walking the workspace; the ignore rules cannot be read.
pub(super) fn answer(ws: &Workspace) -> Result<Found> {
    let Some(memo) = read(ws)? else {
        return Ok(Found::Stale(None));
    };
    let rules = ws.rules()?;
    if memo.context != context(ws, &rules) {
        return Ok(Found::Stale(None));
    }
    let begun_ns = crate::now_ns();
    // Directory listings only where a directory's ctime is known to move at every change
    // of its entries (see `scan/listings.rs`): network and FUSE file systems cache
    // attributes, FAT keeps coarse times.
    let listings = crate::fs_remote::fs_magic(&ws.root)
        .is_ok_and(crate::fs_remote::is_local_disk)
        .then(|| Listings::read(&ws.meta_dir()));
    let mut walked = crate::scan::scan_stats(
        &ws.root,
        &rules,
        &ws.store,
        memo.newest_ns,
        recheck::MAX_PATHS,
        listings.as_ref(),
    )?;
    if let Some(kept) = &listings {
        keep_listings(ws, kept, &mut walked, begun_ns);
    }
    if walked.changed_after || !walked.temporaries.is_empty() || !walked.unstable.is_empty() {
        return Ok(Found::Stale(None));
    }
    if memo.racy.is_empty() && hex(&walked.prints.digest()) == memo.walk {
        let facts = LocalScanFacts {
            reused: true,
            listed: walked.dirs_reused,
            ..LocalScanFacts::default()
        };
        return Ok(match outcome(ws, memo, facts)? {
            Some(outcome) => Found::Kept(Box::new(outcome)),
            None => Found::Stale(None),
        });
    }
    Ok(Found::Stale(Some(Box::new(Recheck {
        memo,
        walked,
        begun_ns,
    }))))
}

/// Keeps the listings of the directories `walked` went through, when a walk that went
/// the whole way read one that may be kept (its stat settled before `begun_ns`), or no
/// longer went through one of those `kept`.
fn keep_listings(ws: &Workspace, kept: &Listings, walked: &mut LocalScan, begun_ns: i64) {
    if walked.changed_after {
        return;
    }
    let mut listed = std::mem::take(&mut walked.listed);
    // Only the root's file system (whose type was checked): not another mounted below it.
    let Some(dev) = listed
        .iter()
        .find(|(dir, _)| dir.is_empty())
        .map(|(_, l)| l.key.dev)
    else {
        return;
    };
    listed.retain(|(_, l)| l.key.settled(begun_ns) && l.key.dev == dev);
    // Those reused were settled when kept, and their keys are unchanged.
    if listed.len() != walked.dirs_reused || walked.dirs_reused != kept.len() {
        listed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Listings::write(&ws.meta_dir(), &listed);
    }
}

/// The answer kept, if any, while the store is as it left it.
///
/// # Errors
/// Store errors.
fn read(ws: &Workspace) -> Result<Option<Memo>> {
    if !keepable(ws) {
        return Ok(None);
    }
    let state = ws.store.table(cachesync_objects::keys::CF_STATE);
    let Some(memo) = state
        .get(state_keys::STATUS_MEMO)?
        .and_then(|v| serde_json::from_slice::<Memo>(&v).ok())
    else {
        return Ok(None);
    };
    if memo.format != FORMAT || memo.seq != ws.store.db().sequence() {
        return Ok(None);
    }
    Ok(Some(memo))
}

/// The answer `memo` holds, as of now (the mode and the cache's use are read again);
/// `None` when a change in it is not one a status gives (a damaged record).
///
/// # Errors
/// Store errors.
fn outcome(ws: &Workspace, memo: Memo, local_scan: LocalScanFacts) -> Result<Option<Outcome>> {
    let (Some(provisional), Some(local_changes), Some(remote_changes)) = (
        given(memo.provisional),
        given(memo.local_changes),
        given(memo.remote_changes),
    ) else {
        return Ok(None);
    };
    let mode = ws.mode()?;
    let remote_error = super::offline_reason(&mode);
    let cache_bytes = ws.cache_bytes();
    Ok(Some(Outcome {
        workspace: ws.root.display().to_string(),
        remote: ws.config.remote.display().to_string(),
        server: ws.server(),
        mode: super::mode_word(remote_error.is_some()),
        since_ns: mode.since_ns,
        reason: mode
            .reason
            .filter(|_| mode.mode == crate::mode::Mode::Disconnected),
        manual: mode.manual,
        remote_error,
        refreshed: false,
        remote_seen_ns: memo.remote_seen_ns,
        provisional,
        permission: memo.permission,
        local_changes,
        remote_changes,
        conflicts: memo.conflicts,
        pending: memo.pending,
        ignored: None,
        cache_bytes,
        cache: CacheState {
            used: cache_bytes + memo.files_bytes,
            culling: ws.config.culling,
            ..CacheState::default()
        },
        readiness: memo.readiness,
        unreadable: Vec::new(),
        local_scan,
        warnings: Vec::new(),
    }))
}

/// Keeps `outcome`, the answer of a status that walked the workspace into `local` from
/// `begun_ns` on and took the other side from the last look at the share, when it may be
/// kept (see the module doc). Must be the status's last write. An answer not kept needs
/// no removal: a write after it made it stale, and without one it still stands.
///
/// # Errors
/// Store errors.
pub(super) fn save(
    ws: &Workspace,
    outcome: &Outcome,
    local: &mut LocalScan,
    (begun_ns, context_before): (i64, String),
) -> Result<()> {
    // Entries changed within the timestamps' grain of the start are kept blanked (see
    // `recheck.rs`), when the walk noted them all.
    let racy_from = begun_ns.saturating_sub(RACY_WINDOW_NS);
    let keep = local.monitored.is_none()
        && local.warnings.is_empty()
        && local.temporaries.is_empty()
        && local.unstable.is_empty()
        && outcome.warnings.is_empty()
        && outcome.unreadable.is_empty()
        && (local.prints.newest_ns < racy_from || !local.changed_after);
    if !keep || !may_write(ws, &context_before)? {
        return Ok(());
    }
    let prints = &mut local.prints.prints;
    prints.sort_unstable();
    let mut racy = Vec::new();
    for (p, md) in &local.changed {
        if crate::scan::changed_ns(md) >= racy_from {
            recheck::blank(prints, p);
            racy.push(hex(p));
        }
    }
    let memo = Memo {
        format: FORMAT,
        seq: 0,
        context: context_before,
        walk: String::new(),
        newest_ns: Some(local.prints.newest_ns),
        remote_seen_ns: outcome.remote_seen_ns,
        provisional: kept(&outcome.provisional),
        permission: outcome.permission.clone(),
        local_changes: kept(&outcome.local_changes),
        remote_changes: kept(&outcome.remote_changes),
        conflicts: outcome.conflicts.clone(),
        pending: outcome.pending.clone(),
        readiness: outcome.readiness.clone(),
        files_bytes: crate::cull::files_bytes(&local.tree, &local.remote_only),
        racy,
        unwritable_dirs: unwritable_dirs(&outcome.provisional, &local.tree),
        reappeared: !local.reappeared.is_empty(),
    };
    write(ws, memo, &local.prints.prints)
}

/// The directories among the `added` paths that `tree` has without their owner's write
/// permission, in hex.
fn unwritable_dirs(added: &[PathChange], tree: &crate::scan::Flat) -> Vec<String> {
    added
        .iter()
        .filter(|c| c.kind == cachesync_objects::EntryKind::Dir.as_str())
        .filter_map(|c| {
            let p = crate::paths::path_bytes(&c.path, c.path_hex.as_deref())?;
            let e = tree.get(&p)?;
            (e.mode & 0o700 != 0o700).then(|| hex(&p))
        })
        .collect()
}

/// Whether an answer may be kept now: by the command holding the lock, with no view
/// handing changes over, no budget, no lost+found copy recorded (it lies under
/// `.cachesync/`, which no walk prints: whether it is there, which the answer depends on,
/// is not known from the prints), and the ignore rules and settings as when the status
/// began (else the answer may be of either).
///
/// # Errors
/// Store errors; the ignore rules cannot be read.
fn may_write(ws: &Workspace, context_before: &str) -> Result<bool> {
    if !ws.holds_lock() || ws.handoff.is_some() || !keepable(ws) {
        return Ok(false);
    }
    let lost_found = crate::conflict::open(&ws.store)?
        .iter()
        .any(|r| r.lost_found.is_some());
    Ok(!lost_found && context_now(ws)? == context_before)
}

/// The file beside the store that holds the kept answer's prints, sorted (laid out by
/// [`crate::scan::encode_prints`]; the answer's `walk` is its blake3).
const PRINTS_FILE: &str = "status-prints";

/// Keeps `memo` with the `prints` (sorted) it was made from. Must be the status's last
/// write. An answer not kept needs no removal: a write after it made it stale, and without
/// one it still stands.
///
/// # Errors
/// None: a status that cannot keep its answer (a full disk, say) still gives it. The record
/// left, if any, is stale or still true (see [`answer`]).
fn write(ws: &Workspace, mut memo: Memo, prints: &[u128]) -> Result<()> {
    let bytes = crate::scan::encode_prints(prints);
    memo.walk = hex(blake3::hash(&bytes).as_bytes());
    // Written aside and renamed: a whole file or the last one, which the answer's `walk`
    // tells apart.
    let dir = ws.meta_dir();
    let aside = dir.join(format!("{PRINTS_FILE}.new"));
    if std::fs::write(&aside, &bytes)
        .and_then(|()| std::fs::rename(&aside, dir.join(PRINTS_FILE)))
        .is_err()
    {
        return Ok(());
    }
    // A batch of one put moves the sequence number by one.
    memo.seq = ws.store.db().sequence() + 1;
    let value = serde_json::to_vec(&memo).expect("an answer serializes");
    if value.len() <= MAX_BYTES {
        let _ = ws
            .store
            .table(cachesync_objects::keys::CF_STATE)
            .put(state_keys::STATUS_MEMO, &value);
    }
    Ok(())
}

/// The prints the kept answer `memo` was made from (`None`: not those).
fn read_prints(ws: &Workspace, memo: &Memo) -> Option<Vec<u128>> {
    let bytes = std::fs::read(ws.meta_dir().join(PRINTS_FILE)).ok()?;
    if hex(blake3::hash(&bytes).as_bytes()) != memo.walk {
        return None;
    }
    crate::scan::decode_prints(&bytes)
}
