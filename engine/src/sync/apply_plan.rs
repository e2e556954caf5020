//! Step 10 of a run as a whole: the apply loop over the plan (each step in `apply.rs`).

use std::collections::{HashMap, HashSet};

use crate::error::{Result, SyncError};
use crate::journal;
use crate::paths::{display, is_within};
use crate::plan::{Op, Plan, Side, Step};
use crate::progress::Progress;
use crate::timed::TimedRemote;
use crate::workspace::Workspace;

use super::apply::{refused_by_server, Applier, LocalResult, StepError};
use super::{Outcome, Trees};

/// What applying a plan left: per side, the new state of each path written, the local
/// paths moved to lost+found, the changes whose steps did not all run, those the server
/// refused, and the error that stopped the run (the remote went away).
pub(super) struct Applied {
    /// In the order the steps ran: a path's last result is its outcome.
    pub local_results: Vec<LocalResult>,
    pub remote_results: HashMap<Vec<u8>, Option<cachesync_objects::Entry>>,
    pub stashed: HashMap<Vec<u8>, Vec<u8>>,
    pub failed: HashSet<usize>,
    pub denied: HashSet<usize>,
    pub fatal: Option<SyncError>,
}

/// Step 10: the plan's steps in order, each marked done in the journal. A step whose
/// precondition fails is skipped with its change, and so is what goes under a directory
/// the run did not make; a refused remote write becomes a permission conflict; another
/// failure skips its change and is the run's error; a lost remote ends the run.
///
/// # Errors
/// Store errors (marking a step done).
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_plan(
    ws: &Workspace,
    remote: &TimedRemote,
    trees: &Trees,
    plan: &Plan,
    op_id: u64,
    over_budget: &HashSet<usize>,
    report: &mut Outcome,
    progress: &dyn Progress,
) -> Result<Applied> {
    let mut applier = Applier {
        ws,
        remote,
        racy: &trees.racy,
        op: op_id,
        local_results: Vec::new(),
        remote_results: HashMap::new(),
        bytes_up: 0,
        stashed: HashMap::new(),
        copies_on_server: None,
        patched: Vec::new(),
        ready: None,
        stage: trees.stage.as_ref(),
    };
    let total = plan.steps.len() as u64;
    progress.start("applying", total);
    // Files written ahead of the loop by other threads (see `super::ahead`).
    let ahead = super::ahead::Ahead::plan(ws, plan, op_id, trees.stage.as_ref(), over_budget);
    let ahead = ahead.as_ref();
    let looped = std::thread::scope(|s| {
        let _stop = ahead.map(|a| {
            for _ in 0..a.writers() {
                s.spawn(|| a.write());
            }
            StopWriters(a)
        });
        steps_in_order(&mut applier, plan, over_budget, ahead, report, progress)
    });
    let reached = report.applied + report.skipped.len();
    let stopped = looped.as_ref().ok().filter(|l| l.stopped.is_some());
    let done_ahead = done_unreached(
        ahead,
        trees,
        (plan, over_budget),
        stopped,
        &mut applier,
        report,
    );
    let Looped {
        mut failed,
        denied,
        fatal,
        ..
    } = looped?;
    progress.finish();
    report.bytes_up = applier.bytes_up;
    report.patched = std::mem::take(&mut applier.patched);
    let (local_results, remote_results, stashed) = (
        applier.local_results,
        applier.remote_results,
        applier.stashed,
    );
    // Steps not reached because the remote went away count as failed.
    if fatal.is_some() {
        for (i, s) in plan.steps.iter().enumerate().skip(reached) {
            if !done_ahead.contains(&i) {
                failed.insert(s.change);
            }
        }
    }

    Ok(Applied {
        local_results,
        remote_results,
        stashed,
        failed,
        denied,
        fatal,
    })
}

/// What the loop over the steps left: the changes whose steps did not all run, those the
/// server refused, and the error that stopped it (the remote went away) at which step.
struct Looped {
    failed: HashSet<usize>,
    denied: HashSet<usize>,
    fatal: Option<SyncError>,
    stopped: Option<usize>,
    /// The directories it did not make.
    unmade: Vec<Vec<u8>>,
}

/// Steps done before the loop reached them, when it never did (it stopped at `stopped`: the
/// remote went away): done all the same, and recorded so; a file put in place and not
/// recorded would be taken by the next run for one added here (and pushed back to a share
/// that deleted it meanwhile). Those the writers did ahead, and those done as the files were
/// read (see `super::land`). What they did for steps the loop skipped is removed.
fn done_unreached(
    ahead: Option<&super::ahead::Ahead<'_>>,
    trees: &Trees,
    (plan, over_budget): (&Plan, &HashSet<usize>),
    stopped: Option<&Looped>,
    applier: &mut Applier<'_>,
    report: &mut Outcome,
) -> HashSet<usize> {
    let mut done = Vec::new();
    if let Some(a) = ahead {
        done = a.finished_unreached();
        a.clean_up();
    }
    if let Some(stage) = &trees.stage {
        if let Some(looped) = stopped {
            done.extend(landed_unreached(stage, (plan, over_budget), looped));
        }
        stage.clear();
    }
    let mut done_ahead = HashSet::new();
    for (i, stat) in done {
        if !done_ahead.insert(i) {
            continue;
        }
        if let Some(stat) = stat {
            applier.placed(i, stat);
        }
        report.applied += 1;
        report.applied_local += 1;
    }
    done_ahead
}

/// The steps the loop did not reach (it stopped) that were done as the files were read (a
/// file put in place, with its stat; a directory made for them), taken from `stage`; not
/// those the loop would have skipped (their change failed, their directory was not made,
/// the budget refused their content).
fn landed_unreached(
    stage: &super::stage::Stage,
    (plan, over_budget): (&Plan, &HashSet<usize>),
    looped: &Looped,
) -> Vec<(usize, Option<crate::index::Stat>)> {
    let mut done = Vec::new();
    let mut unmade = looped.unmade.clone();
    let stop = looped.stopped.unwrap_or(plan.steps.len());
    for (i, s) in plan.steps.iter().enumerate().skip(stop) {
        if s.side != Side::Local {
            continue;
        }
        if looped.failed.contains(&s.change) || not_run(s, &unmade, over_budget).is_some() {
            if s.op == Op::Mkdir {
                unmade.push(s.path.clone());
            }
            continue;
        }
        match (s.op, s.target.as_ref()) {
            (Op::Write, Some(t)) if s.expect.is_none() => {
                if let Some(stat) = stage.take_landed(&s.path, t) {
                    done.push((i, Some(stat)));
                }
            }
            (Op::Mkdir, _) if stage.take_made(&s.path) => done.push((i, None)),
            _ => {}
        }
    }
    done
}

/// The loop of [`apply_plan`]: each step in order (its file taken from `ahead` when written
/// there), marked done in the journal.
///
/// # Errors
/// Store errors (marking a step done).
fn steps_in_order(
    applier: &mut Applier<'_>,
    plan: &Plan,
    over_budget: &HashSet<usize>,
    ahead: Option<&super::ahead::Ahead<'_>>,
    report: &mut Outcome,
    progress: &dyn Progress,
) -> Result<Looped> {
    let mut failed: HashSet<usize> = HashSet::new();
    let mut denied: HashSet<usize> = HashSet::new();
    let mut fatal: Option<SyncError> = None;
    let mut stopped = None;
    // Directories this run did not make (their step was skipped or failed): nothing is
    // written under them (it would land in whatever is there now, or fail on a
    // temporary name), and the next run takes them up with what is there.
    let mut unmade: Vec<Vec<u8>> = Vec::new();
    // Steps done, marked in the journal a batch at a time (a write per step was a tenth of
    // a first copy's loop).
    let mut done: Vec<u32> = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if done.len() >= MARKS {
            journal::mark_steps(&applier.ws.store, applier.op, &done)?;
            done.clear();
        }
        if let Some(a) = ahead {
            a.at(i);
        }
        let skip = if failed.contains(&step.change) {
            true
        } else if let Some(why) = not_run(step, &unmade, over_budget) {
            failed.insert(step.change);
            report.skipped.push((step.path.clone(), why));
            true
        } else {
            false
        };
        if skip {
            if let Some(a) = ahead {
                a.give_up(i);
            }
            if step.op == Op::Mkdir {
                unmade.push(step.path.clone());
                if let Some(a) = ahead {
                    a.not_made(i);
                }
            }
            continue;
        }
        crate::failpoint::hit_n("before-step", i);
        applier.ready = ahead.and_then(|a| a.take(i));
        match applier.apply(i, step) {
            Ok(()) => {
                report.applied += 1;
                match step.side {
                    Side::Local => report.applied_local += 1,
                    Side::Remote => report.applied_remote += 1,
                }
                done.push(i as u32);
                if let (Op::Mkdir, Side::Local, Some(a)) = (step.op, step.side, ahead) {
                    a.made(i);
                }
                crate::failpoint::hit_n("after-step", i);
            }
            Err(StepError::Fatal(e @ SyncError::Disconnected { .. })) => {
                fatal = Some(e);
                stopped = Some(i);
                break;
            }
            Err(e) => {
                failed.insert(step.change);
                if let Some(refused) = skipped(e, step, report) {
                    denied.insert(refused);
                }
            }
        }
        if step.op == Op::Mkdir && failed.contains(&step.change) {
            unmade.push(step.path.clone());
            if let Some(a) = ahead {
                a.not_made(i);
            }
        }
        progress.set(i as u64 + 1);
    }
    journal::mark_steps(&applier.ws.store, applier.op, &done)?;
    Ok(Looped {
        failed,
        denied,
        fatal,
        stopped,
        unmade,
    })
}

/// At most this many steps done wait to be marked in the journal.
const MARKS: usize = 256;

/// Stops the writers of an [`super::ahead::Ahead`] when the loop ends, however it ends (a
/// store error, a panic), so that the scope joining them is never left waiting.
struct StopWriters<'a, 'b>(&'a super::ahead::Ahead<'b>);

impl Drop for StopWriters<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Why `step` is not run at all: it goes under a directory this run did not make (its step
/// was skipped or failed: what is there now is not that directory), or the cache budget
/// refused its content.
fn not_run(step: &Step, unmade: &[Vec<u8>], over_budget: &HashSet<usize>) -> Option<String> {
    if let Some(dir) = unmade.iter().find(|d| is_within(&step.path, d)) {
        return Some(format!(
            "not written: the directory {} was not made; the next run takes it up",
            display(dir)
        ));
    }
    over_budget
        .contains(&step.change)
        .then(|| "not brought in: the cache budget is exhausted".into())
}

/// Reports a step that did not succeed (its change is skipped): a failed precondition, a
/// write the server refused (the local change is kept and becomes a permission conflict,
/// never a lost change: its change is returned), or another error, the run's first of which
/// is its error.
fn skipped(e: StepError, step: &Step, report: &mut Outcome) -> Option<usize> {
    match e {
        StepError::Precondition(why) => {
            report.skipped.push((step.path.clone(), why));
            None
        }
        StepError::Fatal(SyncError::RemoteIo { source, .. })
            if step.side == Side::Remote && refused_by_server(&source) =>
        {
            report.skipped.push((
                step.path.clone(),
                format!("the server refused it ({source}); kept as a permission conflict"),
            ));
            Some(step.change)
        }
        StepError::Fatal(e) => {
            let e = e.classified();
            report.skipped.push((step.path.clone(), e.to_string()));
            report.failed.get_or_insert(e);
            None
        }
    }
}
