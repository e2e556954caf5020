//! Workspace files written ahead of the apply loop: while the loop runs step `i` (checks,
//! renames, journal marks), threads read later steps' files out of the store and write them
//! under their temporary names, so that a first copy of many files uses every core. The
//! loop still puts each of those in place in plan order, checking its precondition right
//! before (see docs/architecture.md, "10. Apply").
//!
//! A new file staged as it was read (see [`super::stage`]) has nothing left to write: its
//! step is the rename into place, whose precondition (nothing at the path) is the rename
//! itself (`RENAME_NOREPLACE`), so a writer puts it in place and notes its stat, and the loop
//! records that; and a new directory's step is made by a writer too, so that the files for
//! it need not wait for the loop to get there. Only for a step that is its change's only
//! step (and, for a file, whose content the cache budget took), so that the loop could not
//! have skipped it for another reason. A first copy's renames were one thread's work.
//!
//! Only where nothing can move a directory under a file written ahead: plans with no local
//! rename or stash. A file is written (or put) ahead only once the step that makes its
//! directory (if the plan makes it) is done, by the loop or a writer, never under one that
//! step did not make, never more than [`WINDOW`] steps ahead of the loop, and with no other
//! directory made for it. What the loop does not take (a step skipped, a run stopped) is
//! removed; what a kill leaves is a temporary of this workspace, tidied by the next run. A
//! file put in place (or a directory made) for a step the loop never reached (the remote
//! went away) is done: the run records it as done ([`Ahead::finished_unreached`]).

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use cachesync_objects::EntryKind;

use super::apply::StepError;
use super::stage::Stage;
use crate::error::SyncError;
use crate::index::Stat;
use crate::paths::{split_parent, under};
use crate::plan::{Op, Plan, Side};
use crate::workspace::Workspace;

/// How far ahead of the loop (in steps) a file may be written.
const WINDOW: usize = 512;

/// The most files a writer claims at once (in one directory: [`Ahead::run_end`]).
const RUN: usize = 128;

/// Fewer local file writes than this are not worth the threads.
const AT_LEAST: usize = 64;

/// A step's file as a writer left it for the loop.
pub(super) enum Ready {
    /// Written under a name for the loop to put in place (its temporary; or the staged
    /// file, when the file system would not rename it without replacing), or why it could
    /// not be written (the loop then returns that error at the step, as it would have met
    /// it itself).
    Written(std::result::Result<PathBuf, SyncError>),
    /// A staged file put in place: the step is done, and this is the file's stat for the
    /// index; or the step failed as the loop's would have.
    Placed(std::result::Result<Stat, StepError>),
    /// A directory made: the step is done, or failed as the loop's would have.
    Made(std::result::Result<(), StepError>),
}

/// What a writer does for a step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Job {
    /// Writes its file from the store under its temporary name.
    Write,
    /// Puts its staged file in place.
    Place,
    /// Makes its directory.
    Mkdir,
}

enum Slot {
    /// Not yet taken by a writer or the loop.
    Open,
    /// A writer is writing it.
    Writing,
    /// Written by a writer, not yet taken by the loop.
    Done(Ready),
    /// The loop took it (or gave it up): nothing more to do.
    Taken,
}

struct State {
    /// The next file (index into [`Ahead::files`]) for a writer to take.
    next: usize,
    /// The step the loop is at.
    at: usize,
    /// The step at which the loop wakes the writers waiting for it.
    wake_at: usize,
    /// The run is over: writers stop.
    stop: bool,
    /// The directory steps done (by the loop or a writer): what goes in them may be
    /// written or put there.
    made: std::collections::HashSet<usize>,
    /// The directory steps not done (skipped or failed): nothing is written or put under
    /// them ahead (it would land in whatever is there now).
    unmade: std::collections::HashSet<usize>,
    slots: Vec<Slot>,
}

/// The files of one plan written ahead, shared by the loop and the writers.
pub(super) struct Ahead<'a> {
    ws: &'a Workspace,
    plan: &'a Plan,
    op: u64,
    /// The steps written ahead: local writes of files, in plan order.
    files: Vec<usize>,
    /// For each of them, the step that makes its directory, if the plan makes it.
    after: Vec<Option<usize>>,
    /// For each of them, what a writer does.
    jobs: Vec<Job>,
    stage: Option<&'a Stage>,
    state: Mutex<State>,
    changed: Condvar,
}

impl<'a> Ahead<'a> {
    /// The files of `plan` that may be written (or put in place) ahead, or `None` when the
    /// plan is not one where that is safe or worth it. `over_budget`: the changes whose
    /// content the cache budget refused.
    pub(super) fn plan(
        ws: &'a Workspace,
        plan: &'a Plan,
        op: u64,
        stage: Option<&'a Stage>,
        over_budget: &std::collections::HashSet<usize>,
    ) -> Option<Ahead<'a>> {
        let moves = plan
            .steps
            .iter()
            .any(|s| s.side == Side::Local && matches!(s.op, Op::Rename | Op::Stash));
        if moves {
            return None;
        }
        let changes = plan.steps.iter().map(|s| s.change + 1).max().unwrap_or(0);
        let mut steps_of = vec![0u32; changes];
        for s in &plan.steps {
            steps_of[s.change] += 1;
        }
        let mut files = Vec::new();
        let mut after = Vec::new();
        let mut jobs = Vec::new();
        // The last step that made each directory so far.
        let mut made: std::collections::HashMap<&[u8], usize> = Default::default();
        for (i, s) in plan.steps.iter().enumerate() {
            if s.side != Side::Local {
                continue;
            }
            let file = s.target.as_ref().filter(|t| t.kind == EntryKind::File);
            let alone = s.expect.is_none() && steps_of[s.change] == 1;
            match (s.op, file) {
                (Op::Mkdir, _) => {
                    // A new directory, its change's only step, is made by a writer, so that
                    // the files staged for it are put in place without waiting for the
                    // loop to reach it (unless it was made for files put in place as they
                    // were read: the loop then has nothing to do).
                    if alone && !stage.is_some_and(|st| st.made(&s.path)) {
                        files.push(i);
                        after.push(made.get(split_parent(&s.path).0).copied());
                        jobs.push(Job::Mkdir);
                    }
                    made.insert(&s.path, i);
                }
                (Op::Write, Some(t)) => {
                    if s.expect.is_none() && stage.is_some_and(|st| st.landed(&s.path, t)) {
                        continue;
                    }
                    let staged = stage.is_some_and(|st| st.holds(&s.path, t));
                    // A staged file that could not be put in place ahead is the loop's to
                    // take: there is nothing to write.
                    let placed = staged && alone && !over_budget.contains(&s.change);
                    if staged && !placed {
                        continue;
                    }
                    files.push(i);
                    after.push(made.get(split_parent(&s.path).0).copied());
                    jobs.push(if placed { Job::Place } else { Job::Write });
                }
                _ => {}
            }
        }
        if files.len() < AT_LEAST {
            return None;
        }
        let slots = files.iter().map(|_| Slot::Open).collect();
        Some(Ahead {
            ws,
            plan,
            op,
            files,
            after,
            jobs,
            stage,
            state: Mutex::new(State {
                next: 0,
                at: 0,
                wake_at: usize::MAX,
                stop: false,
                made: Default::default(),
                unmade: Default::default(),
                slots,
            }),
            changed: Condvar::new(),
        })
    }

    /// How many writer threads to start.
    pub(super) fn writers(&self) -> usize {
        writers()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One writer: claims the next run of files in one directory ([`Ahead::run_end`]) and
    /// writes each as the window allows, until the run is over or no file is left.
    pub(super) fn write(&self) {
        let mut state = self.lock();
        // The files this writer claimed and has not yet written or passed.
        let mut mine = 0..0;
        loop {
            if state.stop {
                return;
            }
            if mine.is_empty() {
                if state.next == self.files.len() {
                    return;
                }
                mine = state.next..self.run_end(state.next);
                state.next = mine.end;
            }
            let k = mine.start;
            if matches!(state.slots[k], Slot::Taken) {
                mine.start += 1;
                continue;
            }
            let i = self.files[k];
            // The first step the loop must be at for this file to be written.
            let from = (i + 1).saturating_sub(WINDOW);
            if from > state.at {
                state.wake_at = state.wake_at.min(from);
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if let Some(m) = self.after[k] {
                if state.unmade.contains(&m) {
                    // Its directory was not made: the loop skips its step.
                    mine.start += 1;
                    state.slots[k] = Slot::Taken;
                    continue;
                }
                if !state.made.contains(&m) {
                    // Not yet made (by the loop, or a writer).
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
            }
            mine.start += 1;
            state.slots[k] = Slot::Writing;
            drop(state);
            // A writer that panics must not leave the loop waiting for its file: the slot
            // is given back to the loop (which writes it itself), then the panic goes on.
            let written = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.do_job(k, i)
            })) {
                Ok(written) => written,
                Err(panic) => {
                    self.lock().slots[k] = Slot::Taken;
                    self.changed.notify_all();
                    std::panic::resume_unwind(panic);
                }
            };
            state = self.lock();
            match written {
                // Not staged after all (never so: `holds` said it was): the loop's.
                None => state.slots[k] = Slot::Taken,
                Some(Ready::Made(made)) => {
                    let known = if made.is_ok() {
                        &mut state.made
                    } else {
                        &mut state.unmade
                    };
                    known.insert(i);
                    state.slots[k] = Slot::Done(Ready::Made(made));
                }
                // Given up by the loop meanwhile.
                Some(Ready::Written(Ok(tmp))) if matches!(state.slots[k], Slot::Taken) => {
                    let _ = std::fs::remove_file(tmp);
                }
                Some(ready) => state.slots[k] = Slot::Done(ready),
            }
            self.changed.notify_all();
        }
    }

    /// The end of the run of files that starts at `k` (indexes into [`Ahead::files`]): the
    /// files after it in the same directory, at most [`RUN`]. Each writer creates its files
    /// in a directory of its own where it can: creating a file holds the directory's lock
    /// while the file system finds an inode, and two writers in one directory spent a tenth
    /// of a first copy's CPU spinning on each other's hold.
    fn run_end(&self, k: usize) -> usize {
        let dir = |k: usize| split_parent(&self.plan.steps[self.files[k]].path).0;
        let limit = self.files.len().min(k + RUN);
        (k + 1..limit).find(|&j| dir(j) != dir(k)).unwrap_or(limit)
    }

    /// What a writer does for step `i`, file `k` (`None`: nothing, the loop's to do).
    fn do_job(&self, k: usize, i: usize) -> Option<Ready> {
        match self.jobs[k] {
            Job::Write => Some(Ready::Written(self.write_one(i))),
            Job::Place => self.place_one(i),
            Job::Mkdir => {
                let step = &self.plan.steps[i];
                let mode = step.target.as_ref().expect("mkdir has a target").mode;
                let made = super::apply::make_dir(&self.ws.root, &step.path, mode);
                Some(Ready::Made(made))
            }
        }
    }

    fn write_one(&self, i: usize) -> std::result::Result<PathBuf, SyncError> {
        let step = &self.plan.steps[i];
        let t = step.target.as_ref().expect("writes have a target");
        let tmp = under(
            &self.ws.root,
            &crate::sync::temp_name(self.ws, self.op, i, &step.path),
        );
        crate::localfs::write_stored(self.ws, &tmp, t, false)?;
        Ok(tmp)
    }

    /// Puts the staged file of step `i` (a new file where the plan saw nothing) in place,
    /// as the loop's [`super::apply::Applier`] would: the rename is the precondition. Where
    /// the file system cannot rename it so (no `RENAME_NOREPLACE`, or another file system
    /// mounted at the path's directory), it is handed to the loop, which can. `None` if it
    /// is not staged.
    fn place_one(&self, i: usize) -> Option<Ready> {
        let step = &self.plan.steps[i];
        let t = step.target.as_ref().expect("writes have a target");
        let staged = self.stage?.take(&step.path, t)?;
        let abs = under(&self.ws.root, &step.path);
        crate::failpoint::hit_n("before-rename", i);
        let placed = match crate::localfs::rename_no_replace(&staged, &abs) {
            Err(e)
                if crate::localfs::flags_unsupported(&e)
                    || e.raw_os_error() == Some(libc::EXDEV) =>
            {
                return Some(Ready::Written(Ok(staged)));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                Err(super::apply::not_placed(e, &step.path, &abs))
            }
            Ok(()) => std::fs::symlink_metadata(&abs)
                .map(|md| Stat::of(&md))
                .map_err(|e| StepError::Fatal(SyncError::io(&abs, e))),
        };
        Some(Ready::Placed(placed))
    }

    /// The loop did not make the directory of step `i` (skipped or failed).
    pub(super) fn not_made(&self, i: usize) {
        self.lock().unmade.insert(i);
        self.changed.notify_all();
    }

    /// The loop made the directory of step `i`.
    pub(super) fn made(&self, i: usize) {
        self.lock().made.insert(i);
        self.changed.notify_all();
    }

    /// The loop is at step `i`. Writers waiting for the loop are woken once it reached the
    /// step the first of them waits for, not at every step (files staged as they were read
    /// leave the loop little to do per step: waking every writer at each was most of it).
    pub(super) fn at(&self, i: usize) {
        let mut state = self.lock();
        state.at = i;
        let wake = i >= state.wake_at;
        if wake {
            state.wake_at = usize::MAX;
        }
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }

    /// The file of step `i` as written ahead, waiting for a writer that is writing it;
    /// `None` when it was not (the loop writes it itself). Either way, no writer takes it
    /// after this.
    pub(super) fn take(&self, i: usize) -> Option<Ready> {
        let k = self.files.binary_search(&i).ok()?;
        let mut state = self.lock();
        loop {
            match std::mem::replace(&mut state.slots[k], Slot::Taken) {
                Slot::Writing => {
                    state.slots[k] = Slot::Writing;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                Slot::Done(written) => return Some(written),
                Slot::Open | Slot::Taken => return None,
            }
        }
    }

    /// Step `i` will not run: a file written ahead for it is removed. (One put in place
    /// ahead is never given up: only steps the loop runs whatever happens are.)
    pub(super) fn give_up(&self, i: usize) {
        if let Some(Ready::Written(Ok(tmp))) = self.take(i) {
            let _ = std::fs::remove_file(tmp);
        }
    }

    /// The run is over: writers stop after the file they are writing.
    pub(super) fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }

    /// After the writers ended: the steps they did whole that the loop never took (it
    /// stopped before them): each with the stat of the file put in place, or `None` for a
    /// directory made. No one takes them after this.
    pub(super) fn finished_unreached(&self) -> Vec<(usize, Option<Stat>)> {
        let mut state = self.lock();
        let mut done = Vec::new();
        for (k, slot) in state.slots.iter_mut().enumerate() {
            let stat = match slot {
                Slot::Done(Ready::Placed(Ok(stat))) => Some(*stat),
                Slot::Done(Ready::Made(Ok(()))) => None,
                _ => continue,
            };
            done.push((self.files[k], stat));
            *slot = Slot::Taken;
        }
        done
    }

    /// After the writers ended: removes every file written ahead that the loop did not take.
    pub(super) fn clean_up(&self) {
        let mut state = self.lock();
        for slot in &mut state.slots {
            if let Slot::Done(Ready::Written(Ok(tmp))) = std::mem::replace(slot, Slot::Taken) {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

/// Writer threads: one per core besides the loop's, at least one, at most three.
fn writers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;
    use cachesync_objects::Entry;

    fn step(op: Op, path: &str, target: Entry) -> Step {
        Step {
            side: Side::Local,
            op,
            path: path.as_bytes().to_vec(),
            from: None,
            expect: None,
            target: Some(crate::reconcile::Shared::new(target)),
            change: 0,
            replaces: None,
            replaced_by: None,
        }
    }

    /// A workspace and a plan making `d/` and writing 200 files in it.
    fn setup() -> (tempfile::TempDir, Workspace, Plan) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(&remote).expect("mkdir");
        let ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
        let mut plan = Plan::default();
        let mut dir = Entry::new(b"d", EntryKind::Dir);
        dir.mode = 0o755;
        plan.steps.push(step(Op::Mkdir, "d", dir));
        for i in 0..200 {
            let body = format!("file {i}\n");
            let mut e = Entry::new(format!("f{i}").as_bytes(), EntryKind::File);
            e.mode = 0o644;
            e.size = body.len() as u64;
            e.mtime_ns = 1_700_000_000_000_000_000;
            e.file = Some(ws.store.ingest_bytes(body.as_bytes()).expect("ingest"));
            plan.steps.push(step(Op::Write, &format!("d/f{i}"), e));
        }
        (tmp, ws, plan)
    }

    fn temporaries(ws: &Workspace) -> usize {
        std::fs::read_dir(ws.root.join("d")).map_or(0, |rd| {
            rd.filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(crate::ignore_rules::TMP_PREFIX)
                })
            })
            .count()
        })
    }

    #[test]
    fn nothing_is_written_ahead_of_the_directory_and_nothing_is_left_when_the_loop_stops() {
        let (_tmp, ws, plan) = setup();
        let ahead =
            Ahead::plan(&ws, &plan, 7, None, &Default::default()).expect("worth writing ahead");
        std::thread::scope(|s| {
            for _ in 0..ahead.writers() {
                s.spawn(|| ahead.write());
            }
            // The loop at step 0 (the mkdir): no writer may write into `d`, not there yet.
            ahead.at(0);
            assert!(!ws.root.join("d").exists());
            std::fs::create_dir(ws.root.join("d")).expect("mkdir");
            ahead.made(0);
            ahead.at(1);
            // Step 1 taken: written ahead (or left to the loop), never both.
            match ahead.take(1) {
                Some(Ready::Written(Ok(tmp))) => {
                    assert_eq!(std::fs::read(&tmp).expect("read"), b"file 0\n");
                    let mode = std::os::unix::fs::PermissionsExt::mode(
                        &std::fs::metadata(&tmp).expect("stat").permissions(),
                    );
                    assert_eq!(mode & 0o7777, 0o644);
                    std::fs::remove_file(tmp).expect("the loop renames it; here removed");
                }
                Some(Ready::Written(Err(e))) => panic!("not written: {e}"),
                Some(Ready::Placed(_) | Ready::Made(_)) => panic!("only files are written"),
                None => {}
            }
            // Steps 2 and 3 skipped by the loop: their files go.
            ahead.at(2);
            ahead.give_up(2);
            ahead.give_up(3);
            // The writers go ahead of step 4, at most the window.
            let ahead_of_loop =
                cachesync_testutils::poll_until(std::time::Duration::from_secs(30), || {
                    temporaries(&ws) >= 50
                });
            assert!(ahead_of_loop, "{} written ahead", temporaries(&ws));
            // The loop stops here (an outage, say).
            ahead.stop();
        });
        ahead.clean_up();
        assert_eq!(temporaries(&ws), 0, "written ahead and left");
    }

    #[test]
    fn a_writer_claims_the_files_of_one_directory_at_most_a_run_at_a_time() {
        let (_tmp, ws, mut plan) = setup();
        let ahead =
            Ahead::plan(&ws, &plan, 7, None, &Default::default()).expect("worth writing ahead");
        assert_eq!(ahead.files.len(), 200);
        assert_eq!((ahead.run_end(0), ahead.run_end(128)), (RUN, 200));
        assert_eq!(ahead.run_end(199), 200);
        // Files 0..3 in `d`, 3..5 in `e`, the rest in `d/x`: runs end where the directory
        // changes, whatever the names' lengths.
        let file = Entry::clone(plan.steps[1].target.as_ref().expect("a target"));
        plan.steps.truncate(1);
        for path in ["d/a", "d/b", "d/c", "e/a", "e/bb", "d/x/a", "d/x/b"] {
            plan.steps.push(step(Op::Write, path, file.clone()));
        }
        for _ in 0..AT_LEAST {
            plan.steps.push(step(Op::Write, "d/x/z", file.clone()));
        }
        let ahead =
            Ahead::plan(&ws, &plan, 7, None, &Default::default()).expect("worth writing ahead");
        let runs: Vec<usize> = [0, 1, 3, 5].iter().map(|&k| ahead.run_end(k)).collect();
        assert_eq!(runs, vec![3, 3, 5, 5 + 2 + AT_LEAST]);
    }

    #[test]
    fn a_writer_that_panics_leaves_its_file_to_the_loop_instead_of_hanging_it() {
        let (_tmp, ws, mut plan) = setup();
        std::fs::create_dir(ws.root.join("d")).expect("mkdir");
        // A bug in the writer's path: a file entry without content (it panics).
        std::sync::Arc::make_mut(plan.steps[10].target.as_mut().expect("a target")).file = None;
        let ahead =
            Ahead::plan(&ws, &plan, 7, None, &Default::default()).expect("worth writing ahead");
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                for _ in 0..ahead.writers() {
                    s.spawn(|| ahead.write());
                }
                ahead.made(0);
                ahead.at(1);
                // A writer took step 10 (file 9) and is done with it, one way or another.
                let past =
                    cachesync_testutils::poll_until(std::time::Duration::from_secs(30), || {
                        matches!(ahead.lock().slots[9], Slot::Taken | Slot::Done(_))
                    });
                assert!(past, "the writer never let step 10 go");
                let took = ahead.take(10).map(|w| matches!(w, Ready::Written(Ok(_))));
                tx.send(took).expect("send");
                ahead.stop();
            });
        }));
        let took = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the loop got an answer for the step, not a hang");
        assert_eq!(took, None, "the loop writes it itself");
        assert!(outcome.is_err(), "the writer's panic goes on");
        ahead.clean_up();
    }

    /// The loop of `apply_plan` as far as `ahead` sees it: each step in order, a directory
    /// made or not as its writer (or the loop itself) found; what each step got.
    fn run_loop(ahead: &Ahead<'_>, plan: &Plan, root: &std::path::Path) -> Vec<Option<Ready>> {
        let mut got = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            ahead.at(i);
            let ready = ahead.take(i);
            if step.op == Op::Mkdir {
                let made = match &ready {
                    Some(Ready::Made(r)) => r.is_ok(),
                    _ => {
                        let mode = step.target.as_ref().expect("a target").mode;
                        super::super::apply::make_dir(root, &step.path, mode).is_ok()
                    }
                };
                if made {
                    ahead.made(i);
                } else {
                    ahead.not_made(i);
                }
            }
            got.push(ready);
        }
        ahead.stop();
        got
    }

    /// A workspace, its stage and a plan making `d/` and `e/` with 100 new staged files in
    /// each, each its own change; a file sits where `e` is to be made.
    fn staged_plan() -> (tempfile::TempDir, Workspace, Stage, Plan) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(&remote).expect("mkdir");
        let ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
        let stage = Stage::open(&ws, false).expect("a stage");
        let mut plan = Plan::default();
        for (k, dir) in ["d", "e"].iter().enumerate() {
            let mut d = Entry::new(dir.as_bytes(), EntryKind::Dir);
            d.mode = 0o750;
            plan.steps.push(Step {
                change: plan.steps.len(),
                ..step(Op::Mkdir, dir, d)
            });
            for i in 0..100 {
                let body = format!("{dir} {i}\n");
                let mut e = Entry::new(format!("f{i}").as_bytes(), EntryKind::File);
                e.mode = [0o644, 0o755][i % 2];
                e.size = body.len() as u64;
                e.mtime_ns = 1_700_000_000_000_000_000 + k as i64;
                let id = ws.store.ingest_bytes(body.as_bytes()).expect("ingest");
                e.file = Some(id);
                let path = format!("{dir}/f{i}");
                stage.put(path.as_bytes(), &e, id, body.as_bytes());
                plan.steps.push(Step {
                    change: plan.steps.len(),
                    ..step(Op::Write, &path, e)
                });
            }
        }
        std::fs::write(ws.root.join("e"), "not a directory\n").expect("write");
        (tmp, ws, stage, plan)
    }

    /// The writers left alone until every step is done or passed.
    fn writers_through(ahead: &Ahead<'_>) {
        let through = cachesync_testutils::poll_until(std::time::Duration::from_secs(30), || {
            let state = ahead.lock();
            state
                .slots
                .iter()
                .all(|s| matches!(s, Slot::Done(_) | Slot::Taken))
        });
        assert!(through, "the writers did not get through the plan");
    }

    #[test]
    fn staged_files_are_put_in_place_ahead_only_in_directories_that_were_made() {
        let (_tmp, ws, stage, plan) = staged_plan();
        let ahead = Ahead::plan(&ws, &plan, 7, Some(&stage), &Default::default())
            .expect("worth doing ahead");
        assert_eq!(ahead.jobs.iter().filter(|j| **j == Job::Place).count(), 200);
        assert_eq!(ahead.jobs.iter().filter(|j| **j == Job::Mkdir).count(), 2);
        let got = std::thread::scope(|s| {
            for _ in 0..ahead.writers() {
                s.spawn(|| ahead.write());
            }
            // The writers get through every step on their own (all within the window, the
            // directories theirs to make): the loop then finds each one done.
            writers_through(&ahead);
            run_loop(&ahead, &plan, &ws.root)
        });
        ahead.clean_up();
        let mode = |p: &std::path::Path| {
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::symlink_metadata(p).expect("stat").permissions(),
            ) & 0o7777
        };
        assert_eq!(mode(&ws.root.join("d")), 0o750);
        let mut placed = 0;
        for (i, step) in plan.steps.iter().enumerate() {
            let abs = ws.root.join(String::from_utf8_lossy(&step.path).as_ref());
            let t = step.target.as_ref().expect("a target");
            match (&got[i], step.path.starts_with(b"e")) {
                // Put in place by a writer: its stat is the file's, which holds the content.
                (Some(Ready::Placed(Ok(stat))), false) => {
                    let md = std::fs::symlink_metadata(&abs).expect("placed");
                    assert_eq!(
                        (stat.ino, stat.size),
                        (std::os::unix::fs::MetadataExt::ino(&md), t.size),
                        "{abs:?}"
                    );
                    assert_eq!(mode(&abs), t.mode, "{abs:?}");
                    let id = ws.store.ingest_bytes(&std::fs::read(&abs).expect("read"));
                    assert_eq!(id.expect("ingest"), t.file.expect("content"));
                    placed += 1;
                }
                // A directory the loop got to first: made there.
                (None, _) if step.op == Op::Mkdir => {}
                // Left to the loop (a writer had not got there): still staged.
                (None, false) => assert!(stage.holds(&step.path, t), "{abs:?}"),
                (Some(Ready::Made(Ok(()))), false) => assert_eq!(step.op, Op::Mkdir),
                // `e` could not be made: nothing went under it, all is still staged.
                (Some(Ready::Made(Err(StepError::Precondition(_)))), true) => {
                    assert_eq!(step.op, Op::Mkdir)
                }
                (None, true) => assert!(stage.holds(&step.path, t), "{abs:?}"),
                (other, _) => panic!("{abs:?}: {}", describe(other.as_ref())),
            }
        }
        assert_eq!(placed, 100, "put in place ahead");
        assert!(ws.root.join("e").is_file());
    }

    #[test]
    fn what_the_writers_did_whole_for_steps_the_loop_never_reached_is_reported_done() {
        let (_tmp, ws, stage, plan) = staged_plan();
        let ahead = Ahead::plan(&ws, &plan, 7, Some(&stage), &Default::default())
            .expect("worth doing ahead");
        std::thread::scope(|s| {
            for _ in 0..ahead.writers() {
                s.spawn(|| ahead.write());
            }
            writers_through(&ahead);
            // The loop stopped before its first step (the remote went away).
            ahead.stop();
        });
        let done = ahead.finished_unreached();
        // `d` made, its 100 files put in place (each with its stat); `e` not made, nothing
        // put under it.
        let made: Vec<usize> = done
            .iter()
            .filter(|(_, st)| st.is_none())
            .map(|d| d.0)
            .collect();
        assert_eq!(made, vec![0]);
        let placed: Vec<usize> = done
            .iter()
            .filter(|(_, st)| st.is_some())
            .map(|d| d.0)
            .collect();
        assert_eq!(placed, (1..=100).collect::<Vec<usize>>());
        for (i, stat) in &done {
            let abs = ws
                .root
                .join(String::from_utf8_lossy(&plan.steps[*i].path).as_ref());
            let md = std::fs::symlink_metadata(&abs).expect("done");
            if let Some(stat) = stat {
                assert_eq!(
                    stat.ino,
                    std::os::unix::fs::MetadataExt::ino(&md),
                    "{abs:?}"
                );
            }
        }
        assert!(ahead.finished_unreached().is_empty(), "reported once");
    }

    fn describe(r: Option<&Ready>) -> &'static str {
        match r {
            None => "left to the loop",
            Some(Ready::Written(_)) => "written",
            Some(Ready::Placed(Ok(_))) => "placed",
            Some(Ready::Placed(Err(_))) => "not placed",
            Some(Ready::Made(Ok(()))) => "made",
            Some(Ready::Made(Err(_))) => "not made",
        }
    }
}
