//! The journal: an append-only log of operations, one per command that changes anything.
//!
//! Each pull/push/sync writes its plan (every step with its precondition) *before* touching
//! anything, marks steps done as they complete, and is marked finished at the end in the same
//! atomic write that moves the refs. A run killed at any point leaves an operation still
//! "running"; the next run abandons it safely: it removes the temporary files that operation
//! may have left, then reconciles from scratch. Steps it had completed show up as changes both
//! sides already agree on (they converge), so nothing is done twice and nothing is lost.
//!
//! Keys: `op/` + u64 big-endian sequence → the operation as JSON; `st/` + sequence + u32
//! big-endian step index → empty (step done).

use cachesync_objects::{keys, Batch, Store};
use serde::{Deserialize, Serialize};

use crate::error::Result;

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
    /// The command (`clone`, `pull`, `push`, `sync`).
    pub command: String,
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
    /// Steps completed.
    #[serde(default)]
    pub steps_done: u64,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// A temporary file a step may create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TempRecord {
    /// `local` or `remote`.
    pub side: String,
    /// Its relative path, hex-encoded bytes.
    pub path_hex: String,
}

fn op_key(id: u64) -> Vec<u8> {
    let mut k = b"op/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn step_key(id: u64, step: u32) -> Vec<u8> {
    let mut k = b"st/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&step.to_be_bytes());
    k
}

/// Every operation, oldest first.
///
/// # Errors
/// Store errors.
pub fn all(store: &Store) -> Result<Vec<OpRecord>> {
    let mut out = Vec::new();
    store
        .table(keys::CF_JOURNAL)
        .for_each_prefix(b"op/", |_, v| {
            if let Ok(op) = serde_json::from_slice::<OpRecord>(v) {
                out.push(op);
            }
            true
        })?;
    Ok(out)
}

/// The next sequence number.
///
/// # Errors
/// Store errors.
pub fn next_id(store: &Store) -> Result<u64> {
    let mut last = 0;
    store
        .table(keys::CF_JOURNAL)
        .for_each_prefix(b"op/", |k, _| {
            if let Ok(b) = <[u8; 8]>::try_from(&k[3..]) {
                last = u64::from_be_bytes(b);
            }
            true
        })?;
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

/// Adds "write `op`" to a batch.
pub fn put(batch: &mut Batch, op: &OpRecord) {
    batch.put(
        keys::CF_JOURNAL,
        &op_key(op.id),
        &serde_json::to_vec(op).expect("an op record always serializes"),
    );
}

/// Marks one step done (not synced: a lost mark only means the step is re-checked).
///
/// # Errors
/// Store errors.
pub fn mark_step(store: &Store, op: u64, step: u32) -> Result<()> {
    store
        .table(keys::CF_JOURNAL)
        .put(&step_key(op, step), b"")?;
    Ok(())
}

/// Operations left running by a killed process.
///
/// # Errors
/// Store errors.
pub fn unfinished(store: &Store) -> Result<Vec<OpRecord>> {
    Ok(all(store)?
        .into_iter()
        .filter(|o| o.state == OpState::Running)
        .collect())
}

/// How many steps of `op` were marked done.
///
/// # Errors
/// Store errors.
pub fn steps_marked(store: &Store, op: u64) -> Result<u64> {
    let mut prefix = b"st/".to_vec();
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
