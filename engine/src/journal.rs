//! The journal: an append-only log of operations, one per command that changes anything.
//!
//! Each pull/push/sync writes its plan (every step with its precondition) *before* touching
//! anything, marks steps done as they complete, and is marked finished at the end in the same
//! atomic write that moves the refs. A run killed at any point leaves an operation still
//! "running"; the next run abandons it safely: it removes the temporary files that operation
//! may have left, then reconciles from scratch. Steps it had completed show up as changes both
//! sides already agree on (they converge), so nothing is done twice and nothing is lost.
//!
//! Keys: `op/` + u64 big-endian sequence → the operation as JSON, without its plan; `pl/` +
//! sequence → its plan and temporaries as JSON (written once, with the operation's first
//! record; a first copy of 100,000 files plans 100,000 steps, and the next run must not read
//! them to learn the next sequence number or whether anything was left running; the
//! temporaries are named by their prefix, one per write or symlink step, and listed from
//! the steps when read: see [`OpRecord::temporaries_named`]); `st/` +
//! sequence + u32 big-endian step index → empty (step done). Records written before plans had
//! their own key carry them inline, and are read as they are.

use cachesync_objects::{keys, Batch, Store};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};
use crate::plan::Side;

/// Key prefix of the operations: `op/` + u64 big-endian sequence number.
const OP_PREFIX: &[u8] = b"op/";
/// Key prefix of the plans: `pl/` + sequence number.
const PLAN_PREFIX: &[u8] = b"pl/";
/// Key prefix of the steps marked done: `st/` + sequence number + u32 big-endian step index.
const STEP_PREFIX: &[u8] = b"st/";

/// What kind of operation a journal record is (stored as its name, as before it was typed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// The first copy of a remote.
    Clone,
    /// Remote changes brought into the workspace only.
    Pull,
    /// Workspace changes sent to the remote only.
    Push,
    /// Both ways.
    Sync,
    /// `prefetch`'s pull.
    Prefetch,
    /// A conflict settled by hand.
    Resolve,
    /// Local changes seen while disconnected (recorded, not applied).
    Offline,
    /// The switch to connected.
    Connect,
    /// The switch to disconnected.
    Disconnect,
    /// An operation taken back on both sides (`undo`).
    Undo,
    /// Remote-only files brought here (`get`).
    Get,
    /// Files made remote-only by hand (`drop`).
    Drop,
    /// Files made remote-only to keep the cache under its budget (`cull`, or a sync's).
    Cull,
}

impl OpKind {
    /// The name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Clone => "clone",
            OpKind::Pull => "pull",
            OpKind::Push => "push",
            OpKind::Sync => "sync",
            OpKind::Prefetch => "prefetch",
            OpKind::Resolve => "resolve",
            OpKind::Offline => "offline",
            OpKind::Connect => "connect",
            OpKind::Disconnect => "disconnect",
            OpKind::Undo => "undo",
            OpKind::Get => "get",
            OpKind::Drop => "drop",
            OpKind::Cull => "cull",
        }
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An operation's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpState {
    /// Started, not finished (or killed).
    Running,
    /// Finished.
    Done,
    /// Failed cleanly (e.g. the remote went away).
    Failed,
    /// Interrupted, then abandoned by a later run.
    Abandoned,
}

/// One journal record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpRecord {
    /// Sequence number.
    pub id: u64,
    /// The command.
    pub command: OpKind,
    /// When it started, ns since the epoch.
    pub started_ns: i64,
    /// When it ended.
    #[serde(default)]
    pub finished_ns: Option<i64>,
    /// Its state.
    pub state: OpState,
    /// A one-line summary.
    #[serde(default)]
    pub summary: String,
    /// The planned steps (as printed by `--dry-run`).
    #[serde(default)]
    pub plan: Vec<serde_json::Value>,
    /// Temporary names the plan may create (cleaned up if it is abandoned).
    #[serde(default)]
    pub temporaries: Vec<TempRecord>,
    /// When set, the plan's record names its temporaries by this prefix instead of listing
    /// them: each write or symlink step has one, [`temporary_name`] in its directory (read
    /// back, [`with_plan`] lists them in `temporaries`). A list took two thirds of the
    /// record: 12 MB for a first copy of 100,000 files.
    #[serde(skip)]
    pub temporaries_named: Option<String>,
    /// Steps completed.
    #[serde(default)]
    pub steps_done: u64,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The base snapshot before it (hex), when it moved the base: what both sides agreed on
    /// before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_before: Option<String>,
    /// The base snapshot it left (hex), when it moved the base: what both sides agreed on
    /// after it (`restore --at`, `log PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_after: Option<String>,
    /// How many paths it changed in this workspace alone (which files are here, a conflict
    /// settled or reopened), each a `get`, `drop` or `settle` step of its plan: what `undo`
    /// takes back (see [`crate::undo::local`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_paths: Option<u64>,
}

impl OpRecord {
    /// A new operation `command` that starts and ends now (nothing planned, nothing
    /// moved): its number is the journal's next.
    ///
    /// # Errors
    /// Store errors.
    pub fn instant(store: &Store, command: OpKind, summary: String) -> Result<OpRecord> {
        let now = crate::now_ns();
        Ok(OpRecord {
            id: next_id(store)?,
            command,
            started_ns: now,
            finished_ns: Some(now),
            state: OpState::Done,
            summary,
            plan: Vec::new(),
            temporaries: Vec::new(),
            temporaries_named: None,
            steps_done: 0,
            error: None,
            base_before: None,
            base_after: None,
            local_paths: None,
        })
    }

    /// Whether `undo` has something to take back: it moved the agreed state, or it changed
    /// this workspace's files or conflicts on its own.
    pub fn changed_anything(&self) -> bool {
        self.base_after.is_some() || self.local_paths.is_some()
    }
}

/// A temporary file a step may create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TempRecord {
    /// The side it is written on (`local` or `remote`).
    #[serde(deserialize_with = "side_named")]
    pub side: Side,
    /// Its relative path, hex-encoded bytes (checked when read: a damaged one is never
    /// taken for another path, which could be the user's file).
    #[serde(deserialize_with = "hex_named")]
    pub path_hex: String,
}

/// A path's hex, refused unless [`crate::paths::unhex`] reads it.
fn hex_named<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let hex = String::deserialize(d)?;
    match crate::paths::unhex(&hex) {
        Some(_) => Ok(hex),
        None => Err(serde::de::Error::custom(format!(
            "path_hex {hex:?} is not hex"
        ))),
    }
}

/// A [`Side`] from its name, as [`Side`] serializes it.
fn side_named<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Side, D::Error> {
    let name = String::deserialize(d)?;
    [Side::Local, Side::Remote]
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| serde::de::Error::unknown_variant(&name, &["local", "remote"]))
}

fn op_key(id: u64) -> Vec<u8> {
    let mut k = OP_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The sequence number in an operation's key, for messages.
fn op_id_of(key: &[u8]) -> Option<u64> {
    let id = key.strip_prefix(OP_PREFIX)?;
    <[u8; 8]>::try_from(id).ok().map(u64::from_be_bytes)
}

fn plan_key(id: u64) -> Vec<u8> {
    let mut k = PLAN_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn step_key(id: u64, step: u32) -> Vec<u8> {
    let mut k = STEP_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&step.to_be_bytes());
    k
}

/// What `op/` holds: an [`OpRecord`] without its plan and temporaries.
#[derive(Serialize)]
struct Header<'a> {
    id: u64,
    command: OpKind,
    started_ns: i64,
    finished_ns: Option<i64>,
    state: OpState,
    summary: &'a str,
    steps_done: u64,
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_before: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_after: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_paths: Option<u64>,
}

/// What `pl/` holds.
#[derive(Serialize)]
struct Body<'a, P: Serialize> {
    plan: P,
    temporaries: &'a [TempRecord],
    #[serde(skip_serializing_if = "Option::is_none")]
    temporaries_named: Option<&'a str>,
}

/// What `pl/` holds, read back.
#[derive(Deserialize)]
struct BodyOwned {
    #[serde(default)]
    plan: Vec<serde_json::Value>,
    #[serde(default)]
    temporaries: Vec<TempRecord>,
    #[serde(default)]
    temporaries_named: Option<String>,
}

/// The temporary name step `i` of operation `op` writes before renaming into `path`, for
/// temporaries named by `prefix` (see [`OpRecord::temporaries_named`]).
pub fn temporary_name(prefix: &str, op: u64, i: usize, path: &[u8]) -> Vec<u8> {
    let (parent, _) = crate::paths::split_parent(path);
    crate::paths::join(parent, format!("{prefix}.{op}.{i}").as_bytes())
}

/// The temporaries of the write and symlink steps of `plan` (as `pl/` holds it), named by
/// `prefix`. A step that does not say its side or path is an error: it could be guessed
/// wrong, and a temporary's name is what recovery removes.
fn temporaries_of(
    op: u64,
    plan: &[serde_json::Value],
    prefix: &str,
) -> std::result::Result<Vec<TempRecord>, String> {
    let mut out = Vec::new();
    for (i, step) in plan.iter().enumerate() {
        if !matches!(step["op"].as_str(), Some("write" | "symlink")) {
            continue;
        }
        let side = [Side::Local, Side::Remote]
            .into_iter()
            .find(|s| step["side"].as_str() == Some(s.as_str()))
            .ok_or_else(|| format!("step {i} does not say its side"))?;
        let path = match (step["path_hex"].as_str(), step["path"].as_str()) {
            (Some(h), _) => crate::paths::unhex(h),
            (None, Some(p)) => Some(p.as_bytes().to_vec()),
            (None, None) => None,
        }
        .ok_or_else(|| format!("step {i} does not say its path"))?;
        out.push(TempRecord {
            side,
            path_hex: crate::paths::hex(&temporary_name(prefix, op, i, &path)),
        });
    }
    Ok(out)
}

/// Every operation, oldest first, without plans (see [`with_plan`]).
///
/// # Errors
/// Store errors; [`SyncError::DamagedRecord`] naming the operation whose record does not
/// decode.
pub fn all(store: &Store) -> Result<Vec<OpRecord>> {
    let mut out = Vec::new();
    let mut damaged = None;
    store.table(keys::CF_JOURNAL).for_each_prefix(
        OP_PREFIX,
        |k, v| match serde_json::from_slice::<OpRecord>(v) {
            Ok(op) => {
                out.push(op);
                true
            }
            Err(e) => {
                let which = op_id_of(k).map_or_else(
                    || format!("the journal record {}", crate::paths::display(k)),
                    |id| format!("journal operation {id}"),
                );
                damaged = Some(SyncError::damaged(which, e));
                false
            }
        },
    )?;
    match damaged {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// `op` with its plan and temporaries, read from their own key (kept as they are for a
/// record that carried them inline).
///
/// # Errors
/// Store errors; [`SyncError::DamagedRecord`] when the plan's record does not decode.
pub fn with_plan(store: &Store, mut op: OpRecord) -> Result<OpRecord> {
    if let Some(v) = store.table(keys::CF_JOURNAL).get(&plan_key(op.id))? {
        let body = serde_json::from_slice::<BodyOwned>(&v).map_err(|e| {
            SyncError::damaged(format!("the plan of journal operation {}", op.id), e)
        })?;
        op.temporaries = match &body.temporaries_named {
            Some(prefix) => temporaries_of(op.id, &body.plan, prefix).map_err(|e| {
                SyncError::damaged(format!("the plan of journal operation {}", op.id), e)
            })?,
            None => body.temporaries,
        };
        op.plan = body.plan;
        op.temporaries_named = body.temporaries_named;
    }
    Ok(op)
}

/// The next sequence number.
///
/// # Errors
/// Store errors.
pub fn next_id(store: &Store) -> Result<u64> {
    let last = store
        .table(keys::CF_JOURNAL)
        .last_key_with_prefix(OP_PREFIX)?
        .and_then(|k| op_id_of(&k))
        .unwrap_or(0);
    Ok(last + 1)
}

/// Writes `op` durably (on its own).
///
/// # Errors
/// Store errors.
pub fn write(store: &Store, op: &OpRecord) -> Result<()> {
    let mut b = Batch::new();
    put(&mut b, op);
    store.commit(b)?;
    Ok(())
}

/// Writes a new operation durably with its plan (`plan` serializes to the list of steps that
/// `log --json` shows), which is written this once: later records of the operation
/// ([`put`], [`write`]) leave it in place.
///
/// # Errors
/// Store errors.
pub fn write_planned(store: &Store, op: &OpRecord, plan: impl Serialize) -> Result<()> {
    let mut b = Batch::new();
    put_planned(&mut b, op, plan);
    store.commit(b)?;
    Ok(())
}

/// Adds "write `op`" to a batch: the record without its plan and temporaries.
pub fn put(batch: &mut Batch, op: &OpRecord) {
    let header = Header {
        id: op.id,
        command: op.command,
        started_ns: op.started_ns,
        finished_ns: op.finished_ns,
        state: op.state,
        summary: &op.summary,
        steps_done: op.steps_done,
        error: op.error.as_deref(),
        base_before: op.base_before.as_deref(),
        base_after: op.base_after.as_deref(),
        local_paths: op.local_paths,
    };
    batch.put(
        keys::CF_JOURNAL,
        &op_key(op.id),
        &serde_json::to_vec(&header).expect("an op record always serializes"),
    );
}

/// Adds "write the new operation `op` with its plan" to a batch (see [`write_planned`]).
pub fn put_planned(batch: &mut Batch, op: &OpRecord, plan: impl Serialize) {
    put(batch, op);
    let body = Body {
        plan,
        // Named by a prefix, the list read back is made from the steps.
        temporaries: if op.temporaries_named.is_some() {
            &[]
        } else {
            &op.temporaries
        },
        temporaries_named: op.temporaries_named.as_deref(),
    };
    batch.put_owned(
        keys::CF_JOURNAL,
        &plan_key(op.id),
        serde_json::to_vec(&body).expect("a plan always serializes"),
    );
}

/// Marks steps done, in one write (not synced: a lost mark only means the step is
/// re-checked; marks only count the steps an interrupted run had done).
///
/// # Errors
/// Store errors.
pub fn mark_steps(store: &Store, op: u64, steps: &[u32]) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let mut batch = cachesync_objects::Batch::new();
    for &step in steps {
        batch.put(keys::CF_JOURNAL, &step_key(op, step), b"");
    }
    store.write_unsynced(batch)?;
    Ok(())
}

/// Operations left running by a killed process.
///
/// # Errors
/// Store errors.
pub fn unfinished(store: &Store) -> Result<Vec<OpRecord>> {
    all(store)?
        .into_iter()
        .filter(|o| o.state == OpState::Running)
        .map(|o| with_plan(store, o))
        .collect()
}

/// How many steps of `op` were marked done.
///
/// # Errors
/// Store errors.
pub fn steps_marked(store: &Store, op: u64) -> Result<u64> {
    let mut prefix = STEP_PREFIX.to_vec();
    prefix.extend_from_slice(&op.to_be_bytes());
    let mut n = 0;
    store
        .table(keys::CF_JOURNAL)
        .for_each_prefix(&prefix, |_, _| {
            n += 1;
            true
        })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::create(&dir.path().join("store")).expect("store");
        (dir, store)
    }

    fn op(id: u64, command: OpKind) -> OpRecord {
        OpRecord {
            id,
            command,
            started_ns: 10,
            finished_ns: None,
            state: OpState::Running,
            summary: String::new(),
            plan: Vec::new(),
            temporaries: vec![
                TempRecord {
                    side: Side::Local,
                    path_hex: "61".into(),
                },
                TempRecord {
                    side: Side::Remote,
                    path_hex: "62".into(),
                },
            ],
            temporaries_named: None,
            steps_done: 0,
            error: None,
            base_before: None,
            base_after: None,
            local_paths: None,
        }
    }

    #[test]
    fn temporaries_named_by_a_prefix_are_listed_from_the_steps() {
        let (_dir, store) = store();
        let mut o = op(1, OpKind::Sync);
        o.temporaries = Vec::new();
        o.temporaries_named = Some(".tmp-w".into());
        let plan = serde_json::json!([
            {"side": "local", "op": "mkdir", "path": "d"},
            {"side": "local", "op": "write", "path": "d/a.txt"},
            {"side": "remote", "op": "symlink", "path": "top"},
            {"side": "remote", "op": "write", "path": "x", "path_hex": "652f6ff6"},
            {"side": "remote", "op": "remove", "path": "gone"},
        ]);
        write_planned(&store, &o, &plan).expect("write");
        let raw = store
            .table(keys::CF_JOURNAL)
            .get(&plan_key(1))
            .expect("get")
            .expect("the plan");
        let raw = String::from_utf8(raw).expect("json");
        assert!(raw.contains(r#""temporaries":[]"#), "listed: {raw}");
        let back = unfinished(&store).expect("unfinished");
        let temps: Vec<(Side, Vec<u8>)> = back[0]
            .temporaries
            .iter()
            .map(|t| (t.side, crate::paths::unhex(&t.path_hex).expect("hex")))
            .collect();
        assert_eq!(
            temps,
            vec![
                (Side::Local, b"d/.tmp-w.1.1".to_vec()),
                (Side::Remote, b".tmp-w.1.2".to_vec()),
                (Side::Remote, b"e/.tmp-w.1.3".to_vec()),
            ]
        );
        // Written again (recovery rewrites what it abandons): still named, not listed.
        write_planned(&store, &back[0], &back[0].plan).expect("write again");
        assert_eq!(unfinished(&store).expect("again")[0].temporaries.len(), 3);

        // A write step without its side or path: never guessed.
        let damaged = serde_json::json!([{"op": "write", "path": "a"}]);
        write_planned(&store, &o, &damaged).expect("write");
        match unfinished(&store) {
            Err(e @ SyncError::DamagedRecord { .. }) => {
                assert!(
                    e.to_string().contains("step 0 does not say its side"),
                    "{e}"
                );
            }
            other => panic!("expected a damaged record, got {other:?}"),
        }
    }

    #[test]
    fn operations_and_plans_round_trip() {
        let (_dir, store) = store();
        assert_eq!(next_id(&store).expect("next"), 1);
        write_planned(&store, &op(1, OpKind::Sync), ["step"]).expect("write");
        mark_steps(&store, 1, &[0]).expect("mark");
        assert_eq!(next_id(&store).expect("next"), 2);
        let running = unfinished(&store).expect("unfinished");
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].command, OpKind::Sync);
        assert_eq!(running[0].plan, vec![serde_json::json!("step")]);
        let sides: Vec<Side> = running[0].temporaries.iter().map(|t| t.side).collect();
        assert_eq!(sides, vec![Side::Local, Side::Remote]);
        assert_eq!(steps_marked(&store, 1).expect("steps"), 1);
        let json = serde_json::to_string(&running[0].temporaries).expect("serializes");
        assert_eq!(
            json,
            r#"[{"side":"local","path_hex":"61"},{"side":"remote","path_hex":"62"}]"#
        );
    }

    #[test]
    fn a_damaged_operation_is_an_error_naming_it() {
        let (_dir, store) = store();
        write(&store, &op(1, OpKind::Pull)).expect("write");
        store
            .table(keys::CF_JOURNAL)
            .put(&op_key(2), b"{\"id\":2,")
            .expect("put");
        for result in [all(&store), unfinished(&store)] {
            match result {
                Err(e @ SyncError::DamagedRecord { .. }) => {
                    assert!(e.to_string().contains("journal operation 2"), "{e}");
                }
                other => panic!("expected a damaged record, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_damaged_plan_is_an_error_naming_its_operation() {
        let (_dir, store) = store();
        write(&store, &op(3, OpKind::Push)).expect("write");
        store
            .table(keys::CF_JOURNAL)
            .put(
                &plan_key(3),
                br#"{"plan":[],"temporaries":[{"side":"sideways","path_hex":"61"}]}"#,
            )
            .expect("put");
        let header = all(&store).expect("all").remove(0);
        match with_plan(&store, header) {
            Err(e @ SyncError::DamagedRecord { .. }) => {
                assert!(e.to_string().contains("plan of journal operation 3"), "{e}");
            }
            other => panic!("expected a damaged record, got {other:?}"),
        }
    }

    #[test]
    fn a_temporary_whose_path_is_not_hex_is_damage() {
        // Read digit by digit, "2f+61" was once taken for "/" and "a": recovery would
        // have removed a file of that name.
        let (_dir, store) = store();
        write(&store, &op(4, OpKind::Push)).expect("write");
        store
            .table(keys::CF_JOURNAL)
            .put(
                &plan_key(4),
                br#"{"plan":[],"temporaries":[{"side":"local","path_hex":"2f+61"}]}"#,
            )
            .expect("put");
        let header = all(&store).expect("all").remove(0);
        match with_plan(&store, header) {
            Err(e @ SyncError::DamagedRecord { .. }) => {
                assert!(e.to_string().contains("not hex"), "{e}");
            }
            other => panic!("expected a damaged record, got {other:?}"),
        }
    }
}
