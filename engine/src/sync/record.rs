//! Step 9 of a run: the plan recorded in the journal before anything changes.

use crate::error::Result;
use crate::ignore_rules::TMP_PREFIX;
use crate::journal::{self, OpRecord, OpState};
use crate::paths::split_parent;
use crate::plan::Plan;
use crate::timed::TimedRemote;
use crate::workspace::Workspace;

use super::{Options, Outcome, Trees};

/// Step 9: the operation and its plan (each step with its precondition, and the
/// temporary names its writes may use) go to the journal before anything changes; then
/// this workspace's leftovers on the remote from earlier runs are removed.
///
/// # Errors
/// Store errors.
pub(super) fn journal_plan(
    ws: &Workspace,
    opts: &Options,
    plan: &Plan,
    trees: &Trees,
    remote: &TimedRemote,
    report: &mut Outcome,
) -> Result<OpRecord> {
    let op_id = journal::next_id(&ws.store)?;
    report.op = op_id;
    let op = OpRecord {
        id: op_id,
        command: opts.command,
        started_ns: crate::now_ns(),
        finished_ns: None,
        state: OpState::Running,
        summary: String::new(),
        // Written to the journal from `plan` itself (see `write_planned`).
        plan: Vec::new(),
        // Named, not listed: one per write and symlink step, as `temp_name` makes them.
        temporaries: Vec::new(),
        temporaries_named: Some(crate::sync::temp_prefix(ws)),
        steps_done: 0,
        error: None,
        base_before: None,
        base_after: None,
        local_paths: None,
    };
    // An automatic merge is recorded before any step runs: a run killed once one side
    // holds the merge still keeps the versions it was made from (the commit writes the
    // record again when the run finishes).
    let mut merges = cachesync_objects::Batch::new();
    for c in plan.changes.iter().filter(|c| c.merged) {
        if let Some(r) = super::commit::merge_to_record(&ws.store, c)? {
            crate::conflict::put(&mut merges, &r);
        }
    }
    if !merges.is_empty() {
        ws.store.commit(merges)?;
    }
    journal::write_planned(&ws.store, &op, crate::plan::Records(&plan.steps))?;
    crate::failpoint::hit("planned");
    // Our own leftovers on the remote from earlier runs.
    let mine = format!("{TMP_PREFIX}{}.", ws.workspace_id);
    for t in &trees.remote.temporaries {
        if split_parent(t).1.starts_with(mine.as_bytes()) && remote.remove_file(t).is_err() {
            // A directory (see `racy::remote_clock`).
            let _ = remote.remove_dir(t);
        }
    }

    Ok(op)
}
