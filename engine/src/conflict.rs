//! Conflict records: a path both sides changed differently, with every version kept.
//!
//! The local file stays as it is in the workspace; the server's version (already in the store:
//! the remote scan stored it) and the base version are kept as store objects, so nothing is
//! lost and every variant can be shown later. Records are keyed by path in their own table.

use cachesync_objects::{keys, Batch, Entry, EntryKind, FileId, Store};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};
use crate::paths::{display, hex};

/// Why a path is (or was) in conflict: the `kind` of a conflict record, stored and printed
/// as its name (`content`, `metadata`, `type`, `target`, `permission`, `name-clash`).
///
/// Reconcile finds the first four; a write the server refused gives `permission`; a local
/// version moved to lost+found gives `type` or `name-clash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// Both sides changed a file's content differently.
    Content,
    /// Both sides changed the permission bits differently.
    Metadata,
    /// The two sides hold different kinds of thing (file, dir, symlink...).
    Type,
    /// Both sides changed a symlink's target (or a device's number) differently.
    Target,
    /// The server refused to take the local change (EACCES, EPERM, EROFS).
    Permission,
    /// The server folds case and already holds the name in another case: the local version
    /// went to lost+found. (Records of an interrupted drop were once written as `name clash`.)
    #[serde(alias = "name clash")]
    NameClash,
}

impl ConflictKind {
    /// The name used in records and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Content => "content",
            ConflictKind::Metadata => "metadata",
            ConflictKind::Type => "type",
            ConflictKind::Target => "target",
            ConflictKind::Permission => "permission",
            ConflictKind::NameClash => "name-clash",
        }
    }
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One version of a conflicted path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Variant {
    /// What it is (stored as `file`, `dir`, `symlink`, ...).
    #[serde(with = "kind_name")]
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner (as the side last showed it).
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// A file's content id (hex).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
    /// A symlink's target (displayable).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
}

impl Variant {
    /// The variant of an entry (`None` = absent on that side).
    pub fn of(e: Option<&Entry>) -> Option<Variant> {
        e.map(|e| Variant {
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            file: e.file.map(|f| f.to_hex()),
            target: (e.kind == EntryKind::Symlink).then(|| display(&e.target)),
        })
    }

    /// The content id, if a file.
    pub fn file_id(&self) -> Option<FileId> {
        self.file.as_deref().and_then(FileId::from_hex)
    }
}

/// [`EntryKind`] in records by its name ([`EntryKind::as_str`]), as it was stored before it
/// was typed; an unknown name is a decode error (the record is damaged), not a guess.
mod kind_name {
    use cachesync_objects::EntryKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &EntryKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EntryKind, D::Error> {
        let name = String::deserialize(d)?;
        EntryKind::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown entry kind `{name}`")))
    }
}

/// Whether a conflict still needs the user.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConflictState {
    /// Needs resolution.
    Open,
    /// Both sides agree again.
    Resolved,
}

/// A conflict record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConflictRecord {
    /// The path, displayable.
    pub path: String,
    /// The path's bytes, hex.
    pub path_hex: String,
    /// Why it is in conflict.
    pub kind: ConflictKind,
    /// When it was first seen, ns.
    pub since_ns: i64,
    /// Open or resolved.
    pub state: ConflictState,
    /// The base version (absent when both sides created the path).
    pub base: Option<Variant>,
    /// The local version.
    pub client: Option<Variant>,
    /// The server's version.
    pub server: Option<Variant>,
    /// The version that settled it, once resolved (or merged automatically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Variant>,
    /// How it was settled: `merged automatically`, `took server`, `took client`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Where the local version was moved, when it had nowhere to go (a lost+found path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_found: Option<String>,
    /// The lost+found path's bytes, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_found_hex: Option<String>,
    /// When it was settled, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ns: Option<i64>,
}

impl ConflictRecord {
    /// The path's bytes.
    pub fn path_bytes(&self) -> Vec<u8> {
        crate::paths::unhex(&self.path_hex).expect("a record's path hex is checked when read")
    }

    /// Notes that the local version is in lost+found at `lf` (relative to the workspace
    /// root), shown and as bytes.
    pub fn set_lost_found(&mut self, lf: &[u8]) {
        self.lost_found = Some(display(lf));
        self.lost_found_hex = Some(crate::paths::hex(lf));
    }

    /// The lost+found copy's path (relative to the workspace root), if any.
    pub fn lost_found_path(&self) -> Option<Vec<u8>> {
        let hex = self.lost_found_hex.as_deref()?;
        Some(crate::paths::unhex(hex).expect("a record's lost+found hex is checked when read"))
    }

    /// The record stored under `key`, decoded and checked: its hex paths decode (the record
    /// is the only place the bytes of a non-UTF-8 path are kept, so a damaged one is an
    /// error, never read as some other path).
    fn decode(key: &[u8], v: &[u8]) -> Result<ConflictRecord> {
        let what = || format!("the conflict record of {}", display(key));
        let r: ConflictRecord =
            serde_json::from_slice(v).map_err(|e| SyncError::damaged(what(), e))?;
        if crate::paths::unhex(&r.path_hex).is_none() {
            return Err(SyncError::damaged(what(), "its path_hex is not hex"));
        }
        if r.lost_found_hex
            .as_deref()
            .is_some_and(|h| crate::paths::unhex(h).is_none())
        {
            return Err(SyncError::damaged(what(), "its lost_found_hex is not hex"));
        }
        Ok(r)
    }

    /// True while the record's lost+found copy is still in the workspace at `root`.
    pub fn lost_found_present(&self, root: &std::path::Path) -> bool {
        self.lost_found_path()
            .is_some_and(|p| crate::paths::under(root, &p).symlink_metadata().is_ok())
    }

    /// File ids this record keeps alive (gc roots).
    pub fn files(&self) -> Vec<FileId> {
        [&self.base, &self.client, &self.server, &self.resolved]
            .into_iter()
            .flatten()
            .filter_map(Variant::file_id)
            .collect()
    }
}

/// A new open record.
pub fn record(
    path: &[u8],
    kind: ConflictKind,
    base: Option<&Entry>,
    client: Option<&Entry>,
    server: Option<&Entry>,
) -> ConflictRecord {
    ConflictRecord {
        path: display(path),
        path_hex: hex(path),
        kind,
        since_ns: crate::now_ns(),
        state: ConflictState::Open,
        base: Variant::of(base),
        client: Variant::of(client),
        server: Variant::of(server),
        resolved: None,
        resolution: None,
        lost_found: None,
        lost_found_hex: None,
        resolved_ns: None,
    }
}

/// Every record.
///
/// # Errors
/// Store errors; [`SyncError::DamagedRecord`] naming the path of a record that does not
/// decode.
pub fn all(store: &Store) -> Result<Vec<ConflictRecord>> {
    let mut out = Vec::new();
    let mut damaged = None;
    store
        .table(keys::CF_CONFLICTS)
        .for_each_prefix(b"", |k, v| match ConflictRecord::decode(k, v) {
            Ok(r) => {
                out.push(r);
                true
            }
            Err(e) => {
                damaged = Some(e);
                false
            }
        })?;
    match damaged {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Open records only.
///
/// # Errors
/// As [`all`].
pub fn open(store: &Store) -> Result<Vec<ConflictRecord>> {
    Ok(all(store)?
        .into_iter()
        .filter(|r| r.state == ConflictState::Open)
        .collect())
}

/// The record of `path`, if there is one.
///
/// # Errors
/// Store errors; [`SyncError::DamagedRecord`] when it does not decode.
pub fn get(store: &Store, path: &[u8]) -> Result<Option<ConflictRecord>> {
    match store.table(keys::CF_CONFLICTS).get(path)? {
        None => Ok(None),
        Some(v) => ConflictRecord::decode(path, &v).map(Some),
    }
}

/// Adds "write `r`" to a batch.
pub fn put(batch: &mut Batch, r: &ConflictRecord) {
    batch.put(
        keys::CF_CONFLICTS,
        &r.path_bytes(),
        &serde_json::to_vec(r).expect("a conflict record always serializes"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::create(&dir.path().join("store")).expect("store");
        (dir, store)
    }

    #[test]
    fn kinds_keep_their_names() {
        for (kind, name) in [
            (ConflictKind::Content, "content"),
            (ConflictKind::Metadata, "metadata"),
            (ConflictKind::Type, "type"),
            (ConflictKind::Target, "target"),
            (ConflictKind::Permission, "permission"),
            (ConflictKind::NameClash, "name-clash"),
        ] {
            assert_eq!(kind.as_str(), name);
            assert_eq!(format!("{kind:<11}|"), format!("{name:<11}|"));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<ConflictKind>(&json).expect("parses"),
                kind
            );
        }
        let old: ConflictKind = serde_json::from_str("\"name clash\"").expect("parses");
        assert_eq!(old, ConflictKind::NameClash);
    }

    #[test]
    fn records_round_trip() {
        let (_dir, store) = store();
        let r = record(b"a/b.txt", ConflictKind::Permission, None, None, None);
        let mut batch = Batch::new();
        put(&mut batch, &r);
        store.commit(batch).expect("commit");
        assert_eq!(all(&store).expect("all"), vec![r.clone()]);
        assert_eq!(open(&store).expect("open"), vec![r]);
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_its_path() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        put(
            &mut batch,
            &record(b"fine", ConflictKind::Content, None, None, None),
        );
        batch.put(keys::CF_CONFLICTS, b"docs/broken.md", b"{\"path\":");
        store.commit(batch).expect("commit");
        for result in [all(&store), open(&store)] {
            match result {
                Err(e @ SyncError::DamagedRecord { .. }) => {
                    assert!(e.to_string().contains("docs/broken.md"), "{e}");
                }
                other => panic!("expected a damaged record, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_kind_is_damage_too() {
        let (_dir, store) = store();
        let r = record(b"x", ConflictKind::Type, None, None, None);
        let json = serde_json::to_string(&r)
            .expect("serializes")
            .replace("\"type\"", "\"no-such-kind\"");
        let mut batch = Batch::new();
        batch.put(keys::CF_CONFLICTS, b"x", json.as_bytes());
        store.commit(batch).expect("commit");
        assert!(matches!(all(&store), Err(SyncError::DamagedRecord { .. })));
    }

    #[test]
    fn a_path_hex_that_is_not_hex_is_damage_not_another_path() {
        let (_dir, store) = store();
        let mut r = record(b"ab", ConflictKind::Content, None, None, None);
        r.path_hex = "61+2".into(); // read digit by digit, once taken for "a" and "\x02"
        let mut batch = Batch::new();
        batch.put(
            keys::CF_CONFLICTS,
            b"ab",
            &serde_json::to_vec(&r).expect("json"),
        );
        store.commit(batch).expect("commit");
        for result in [
            all(&store),
            get(&store, b"ab").map(|r| r.into_iter().collect()),
        ] {
            match result {
                Err(e @ SyncError::DamagedRecord { .. }) => {
                    assert!(e.to_string().contains("path_hex"), "{e}");
                }
                other => panic!("expected a damaged record, got {other:?}"),
            }
        }
    }
}
