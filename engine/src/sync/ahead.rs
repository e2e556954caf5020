//! Workspace files written ahead of the apply loop: while the loop runs step `i` (checks,
//! renames, journal marks), threads read later steps' files out of the store and write them
//! under their temporary names, so that a first copy of many files uses every core. The
//! loop still puts each file in place in plan order, checking its precondition right
//! before (see docs/architecture.md, "10. Apply").
//!
//! Only where nothing can move a directory under a file written ahead: plans with no local
//! rename or stash. A file is written ahead only once the loop is past the step that makes
//! its directory (if the plan makes it), never more than [`WINDOW`] steps ahead, and with no
//! directory made for it. What the loop does not take (a step skipped, a run stopped) is
//! removed; what a kill leaves is a temporary of this workspace, tidied by the next run.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use cachesync_objects::EntryKind;

use crate::error::SyncError;
use crate::paths::{split_parent, under};
use crate::plan::{Op, Plan, Side};
use crate::workspace::Workspace;

/// How far ahead of the loop (in steps) a file may be written.
const WINDOW: usize = 512;

/// The most files a writer claims at once (in one directory: [`Ahead::run_end`]).
const RUN: usize = 128;

/// Fewer local file writes than this are not worth the threads.
const AT_LEAST: usize = 64;

/// A step's file written ahead: its temporary, or why it could not be written (the loop
/// then returns that error at the step, as it would have met it itself).
pub(super) type Written = std::result::Result<PathBuf, SyncError>;

enum Slot {
    /// Not yet taken by a writer or the loop.
    Open,
    /// A writer is writing it.
    Writing,
    /// Written by a writer, not yet taken by the loop.
    Done(Written),
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
    state: Mutex<State>,
    changed: Condvar,
}

impl<'a> Ahead<'a> {
    /// The files of `plan` that may be written ahead, or `None` when the plan is not one
    /// where that is safe or worth it.
    pub(super) fn plan(
        ws: &'a Workspace,
        plan: &'a Plan,
        op: u64,
        stage: Option<&'a super::stage::Stage>,
    ) -> Option<Ahead<'a>> {
        let moves = plan
            .steps
            .iter()
            .any(|s| s.side == Side::Local && matches!(s.op, Op::Rename | Op::Stash));
        if moves {
            return None;
        }
        let mut files = Vec::new();
        let mut after = Vec::new();
        // The last step that made each directory so far.
        let mut made: std::collections::HashMap<&[u8], usize> = Default::default();
        for (i, s) in plan.steps.iter().enumerate() {
            if s.side != Side::Local {
                continue;
            }
            match s.op {
                Op::Mkdir => {
                    made.insert(&s.path, i);
                }
                // (A file staged as it was read is the loop's to take: nothing to write.)
                Op::Write
                    if s.target.as_ref().is_some_and(|t| {
                        t.kind == EntryKind::File && !stage.is_some_and(|st| st.holds(&s.path, t))
                    }) =>
                {
                    files.push(i);
                    after.push(made.get(split_parent(&s.path).0).copied());
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
            state: Mutex::new(State {
                next: 0,
                at: 0,
                wake_at: usize::MAX,
                stop: false,
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
            let from = (i + 1)
                .saturating_sub(WINDOW)
                .max(self.after[k].map_or(0, |m| m + 1));
            if from > state.at {
                state.wake_at = state.wake_at.min(from);
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            mine.start += 1;
            state.slots[k] = Slot::Writing;
            drop(state);
            // A writer that panics must not leave the loop waiting for its file: the slot
            // is given back to the loop (which writes it itself), then the panic goes on.
            let written = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.write_one(i)
            })) {
                Ok(written) => written,
                Err(panic) => {
                    self.lock().slots[k] = Slot::Taken;
                    self.changed.notify_all();
                    std::panic::resume_unwind(panic);
                }
            };
            state = self.lock();
            if matches!(state.slots[k], Slot::Taken) {
                // Given up by the loop meanwhile.
                if let Ok(tmp) = written {
                    let _ = std::fs::remove_file(tmp);
                }
            } else {
                state.slots[k] = Slot::Done(written);
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

    fn write_one(&self, i: usize) -> Written {
        let step = &self.plan.steps[i];
        let t = step.target.as_ref().expect("writes have a target");
        let tmp = under(
            &self.ws.root,
            &crate::sync::temp_name(self.ws, self.op, i, &step.path),
        );
        crate::localfs::write_stored(self.ws, &tmp, t, false)?;
        Ok(tmp)
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
    pub(super) fn take(&self, i: usize) -> Option<Written> {
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

    /// Step `i` will not run: a file written ahead for it is removed.
    pub(super) fn give_up(&self, i: usize) {
        if let Some(Ok(tmp)) = self.take(i) {
            let _ = std::fs::remove_file(tmp);
        }
    }

    /// The run is over: writers stop after the file they are writing.
    pub(super) fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }

    /// After the writers ended: removes every file written ahead that the loop did not take.
    pub(super) fn clean_up(&self) {
        let mut state = self.lock();
        for slot in &mut state.slots {
            if let Slot::Done(Ok(tmp)) = std::mem::replace(slot, Slot::Taken) {
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
        let ahead = Ahead::plan(&ws, &plan, 7, None).expect("worth writing ahead");
        std::thread::scope(|s| {
            for _ in 0..ahead.writers() {
                s.spawn(|| ahead.write());
            }
            // The loop at step 0 (the mkdir): no writer may write into `d`, not there yet.
            ahead.at(0);
            assert!(!ws.root.join("d").exists());
            std::fs::create_dir(ws.root.join("d")).expect("mkdir");
            ahead.at(1);
            // Step 1 taken: written ahead (or left to the loop), never both.
            match ahead.take(1) {
                Some(Ok(tmp)) => {
                    assert_eq!(std::fs::read(&tmp).expect("read"), b"file 0\n");
                    let mode = std::os::unix::fs::PermissionsExt::mode(
                        &std::fs::metadata(&tmp).expect("stat").permissions(),
                    );
                    assert_eq!(mode & 0o7777, 0o644);
                    std::fs::remove_file(tmp).expect("the loop renames it; here removed");
                }
                other => assert!(other.is_none(), "{other:?}"),
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
        let ahead = Ahead::plan(&ws, &plan, 7, None).expect("worth writing ahead");
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
        let ahead = Ahead::plan(&ws, &plan, 7, None).expect("worth writing ahead");
        let runs: Vec<usize> = [0, 1, 3, 5].iter().map(|&k| ahead.run_end(k)).collect();
        assert_eq!(runs, vec![3, 3, 5, 5 + 2 + AT_LEAST]);
    }

    #[test]
    fn a_writer_that_panics_leaves_its_file_to_the_loop_instead_of_hanging_it() {
        let (_tmp, ws, mut plan) = setup();
        std::fs::create_dir(ws.root.join("d")).expect("mkdir");
        // A bug in the writer's path: a file entry without content (it panics).
        std::sync::Arc::make_mut(plan.steps[10].target.as_mut().expect("a target")).file = None;
        let ahead = Ahead::plan(&ws, &plan, 7, None).expect("worth writing ahead");
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                for _ in 0..ahead.writers() {
                    s.spawn(|| ahead.write());
                }
                ahead.at(1);
                // A writer took step 10 (file 9) and is done with it, one way or another.
                let past =
                    cachesync_testutils::poll_until(std::time::Duration::from_secs(30), || {
                        matches!(ahead.lock().slots[9], Slot::Taken | Slot::Done(_))
                    });
                assert!(past, "the writer never let step 10 go");
                let took = ahead.take(10).map(|w| w.is_ok());
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
}
