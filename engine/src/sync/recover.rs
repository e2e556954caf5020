//! Step 3 of a run: an operation a killed run left behind is abandoned, its temporaries
//! removed, and what it had moved to lost+found recorded; the reconcile that follows finishes
//! its work.

use std::fs;

use cachesync_objects::Batch;

use crate::conflict::{self, ConflictKind};
use crate::error::{Result, SyncError};
use crate::journal::{self, OpState};
use crate::paths::{display, under, unhex};
use crate::plan::Side;
use crate::timed::TimedRemote;
use crate::workspace::Workspace;

/// Abandons operations a killed run left behind: removes their temporary files and marks
/// them abandoned. The reconcile that follows finishes their work.
///
/// # Errors
/// Store errors.
pub fn recover(ws: &Workspace, remote: &TimedRemote) -> Result<Vec<u64>> {
    let mut done = Vec::new();
    for mut op in journal::unfinished(&ws.store)? {
        let damaged = |what: &str| {
            SyncError::damaged(
                format!("journal operation {}", op.id),
                format!("{what} is not hex"),
            )
        };
        for t in &op.temporaries {
            // A damaged name is never taken for another: that file could be the user's.
            let rel = unhex(&t.path_hex).ok_or_else(|| damaged("a temporary's path_hex"))?;
            if t.side == Side::Local {
                let _ = fs::remove_file(under(&ws.root, &rel));
            } else if !remote.pool().is_tripped() {
                let _ = remote.remove_file(&rel);
            }
        }
        // A copy moved to lost+found before the run died has no record yet: make one,
        // so it is listed and reported like any other.
        let mut batch = Batch::new();
        for step in &op.plan {
            if step["op"] != "to-lost+found" {
                continue;
            }
            let path: Vec<u8> = match step["path_hex"].as_str() {
                Some(h) => unhex(h).ok_or_else(|| damaged("a lost+found step's path_hex"))?,
                None => step["path"]
                    .as_str()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
            };
            let lf = crate::paths::join(
                format!("{}/{}", crate::ignore_rules::LOST_FOUND, op.id).as_bytes(),
                &path,
            );
            if under(&ws.root, &lf).symlink_metadata().is_ok() {
                let mut r = conflict::record(&path, ConflictKind::Type, None, None, None);
                r.set_lost_found(&lf);
                r.resolution = Some(format!(
                    "an interrupted run moved your version to {}",
                    display(&lf)
                ));
                conflict::put(&mut batch, &r);
            }
        }
        ws.store.commit(batch)?;
        op.steps_done = journal::steps_marked(&ws.store, op.id)?;
        op.state = OpState::Abandoned;
        op.finished_ns = Some(crate::now_ns());
        op.summary = format!(
            "interrupted after {} of {} steps; abandoned, the next run reconciled again",
            op.steps_done,
            op.plan.len()
        );
        // With its plan: a record from before plans had their own key carries it inline,
        // and the header alone would lose it.
        journal::write_planned(&ws.store, &op, &op.plan)?;
        done.push(op.id);
    }
    Ok(done)
}
