//! Step 8a of a run: the deletion guard and the notices of automatic settlements.

use crate::error::Result;
use crate::paths::display;
use crate::plan::Plan;
use crate::workspace::Workspace;

use super::prepare::guard;
use super::{Options, Outcome, Trees};

/// Step 8a: the deletion guard (a dry run only warns), and the notices for changes
/// settled automatically that the user should know about.
///
/// # Errors
/// [`SyncError::DeletionGuard`] when the plan deletes too much and this is not a dry run
/// or `--force`.
pub(super) fn guard_and_notices(
    ws: &Workspace,
    opts: &Options,
    trees: &Trees,
    plan: &Plan,
    report: &mut Outcome,
) -> Result<()> {
    let guarded = if opts.force {
        Ok(())
    } else {
        guard(plan, &trees.base, ws.config.max_delete_percent)
    };
    if let Err(e) = guarded {
        if !opts.dry_run {
            return Err(e);
        }
        report
            .warnings
            .push(format!("{e}: without --force, this run would stop here"));
    }
    for c in &plan.changes {
        if c.modify_delete {
            report.notices.push(format!(
                "{}: modified on one side and deleted on the other; the modified version was kept",
                display(&c.path)
            ));
        }
        if c.merged {
            report.notices.push(format!(
                "{}: edited on both sides in different places; the edits were merged",
                display(&c.path)
            ));
        }
        if c.dir_kept {
            report.notices.push(format!(
                "{}: deleted on one side, but the other side changed files inside it; the directory was kept",
                display(&c.path)
            ));
        }
    }
    Ok(())
}
