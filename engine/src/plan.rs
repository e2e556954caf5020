//! Plans: the steps that carry out a reconcile, each with its precondition.
//!
//! A plan is a value: it can be printed (`--dry-run`), tested and stored in the journal before
//! anything is touched. Each step names the side it changes, the state the target must still
//! be in (`expect`, checked immediately before the write), and the state to give it.
//! Steps are ordered so that directories exist before what goes into them and are removed
//! after what was in them; renames (same content deleted at one path and created at another
//! on the same side) are carried out as renames instead of a copy and a delete.

use std::collections::HashMap;

use cachesync_objects::{Entry, EntryKind, FileId};
use serde::Serialize;

use crate::paths::{display, hex};
use crate::reconcile::{same, Change, Outcome, Shared};

/// Which side a step changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The workspace.
    Local,
    /// The remote.
    Remote,
}

impl Side {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Create a directory.
    Mkdir,
    /// Write a file (new or replacing one), atomically.
    Write,
    /// Create a symlink (replacing one), atomically.
    Symlink,
    /// Create a fifo, socket or device node.
    Mknod,
    /// Change permission bits only.
    #[serde(rename = "chmod")]
    SetMode,
    /// Rename `from` to the path.
    Rename,
    /// Remove what is there.
    Remove,
    /// Move what is there (with everything under it) to lost+found.
    #[serde(rename = "to-lost+found")]
    Stash,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The side it changes.
    pub side: Side,
    /// What it does.
    pub op: Op,
    /// The path it changes.
    pub path: Vec<u8>,
    /// For renames: the source.
    pub from: Option<Vec<u8>>,
    /// The state the target (for renames: the source) must be in just before the step.
    pub expect: Option<Shared>,
    /// The state to give it.
    pub target: Option<Shared>,
    /// The change (index into [`Plan::changes`]) this step carries out.
    pub change: usize,
    /// For a create: the kind an earlier step of the same change removed.
    pub replaces: Option<EntryKind>,
    /// For a remove: the kind a later step of the same change creates.
    pub replaced_by: Option<EntryKind>,
}

/// A computed plan.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every path whose state differs somewhere.
    pub changes: Vec<Change>,
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
}

/// Which direction a command syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Remote → workspace only.
    Pull,
    /// Workspace → remote only.
    Push,
    /// Both ways.
    Both,
}

impl Direction {
    /// True when steps on `side` run in this direction.
    pub fn allows(self, side: Side) -> bool {
        matches!(
            (self, side),
            (Direction::Both, _) | (Direction::Pull, Side::Local) | (Direction::Push, Side::Remote)
        )
    }
}

fn depth(p: &[u8]) -> usize {
    p.iter().filter(|&&b| b == b'/').count()
}

/// The order steps run in: a non-directory that a new directory replaces is removed first,
/// then directories are made shallow-first, then content is written, then non-directories
/// are removed, then directories deepest-first, then what replaces a removed directory is
/// created, and last directory modes are set (deepest first, so a read-only directory is
/// made read-only after everything inside it is written).
fn phase(step: &Step) -> (u8, i64, u8) {
    let d = depth(&step.path) as i64;
    let removes_dir = step
        .expect
        .as_ref()
        .is_some_and(|e| e.kind == EntryKind::Dir);
    match step.op {
        Op::Stash => (0, d, 0),
        Op::Remove if step.replaced_by == Some(EntryKind::Dir) => (0, d, 0),
        Op::Mkdir => (0, d, 1),
        Op::Remove if !removes_dir => (2, -d, 0),
        Op::Remove => (3, -d, 0),
        _ if step.replaces == Some(EntryKind::Dir) => (4, d, 0),
        _ if step.replaces.is_some() => (2, -d, 1),
        Op::SetMode
            if step
                .target
                .as_ref()
                .is_some_and(|t| t.kind == EntryKind::Dir) =>
        {
            (5, -d, 0)
        }
        _ => (1, d, 0),
    }
}

fn create_op(kind: EntryKind) -> Op {
    match kind {
        EntryKind::Dir => Op::Mkdir,
        EntryKind::File => Op::Write,
        EntryKind::Symlink => Op::Symlink,
        _ => Op::Mknod,
    }
}

/// The steps that bring `current` on `side` to `target`.
fn steps_for(
    side: Side,
    change: usize,
    path: &[u8],
    current: Option<&Shared>,
    target: Option<&Shared>,
) -> Vec<Step> {
    let step = |op, expect: Option<&Shared>, target: Option<&Shared>| Step {
        side,
        op,
        path: path.to_vec(),
        from: None,
        expect: expect.cloned(),
        target: target.cloned(),
        change,
        replaces: None,
        replaced_by: None,
    };
    // Remove what is there, then create the new thing.
    let replace = |c: &Shared, t: &Shared| {
        if c.kind != EntryKind::Dir && matches!(t.kind, EntryKind::File | EntryKind::Symlink) {
            // Written under a temporary name and renamed over what is there: atomic.
            return vec![step(create_op(t.kind), Some(c), Some(t))];
        }
        let mut removed = step(Op::Remove, Some(c), None);
        removed.replaced_by = Some(t.kind);
        let mut created = step(create_op(t.kind), None, Some(t));
        created.replaces = Some(c.kind);
        vec![removed, created]
    };
    let mut steps = match (current, target) {
        (None, None) => vec![],
        (Some(c), None) => vec![step(Op::Remove, Some(c), None)],
        (None, Some(t)) => vec![step(create_op(t.kind), None, Some(t))],
        (Some(c), Some(t)) if c.kind == t.kind => {
            let content_same = match t.kind {
                EntryKind::File => c.file == t.file,
                EntryKind::Symlink => c.target == t.target,
                EntryKind::BlockDevice | EntryKind::CharDevice => c.rdev == t.rdev,
                _ => true,
            };
            if content_same {
                if t.kind == EntryKind::Symlink {
                    vec![]
                } else {
                    vec![step(Op::SetMode, Some(c), Some(t))]
                }
            } else if matches!(t.kind, EntryKind::File | EntryKind::Symlink) {
                // Written under a temporary name and renamed over: atomic.
                vec![step(create_op(t.kind), Some(c), Some(t))]
            } else {
                replace(c, t)
            }
        }
        (Some(c), Some(t)) => replace(c, t),
    };
    // A new directory is made writable for its owner so its contents can be written; its
    // real mode is set last.
    if let Some(t) = target.filter(|t| t.kind == EntryKind::Dir && t.mode & 0o700 != 0o700) {
        if steps.iter().any(|s| s.op == Op::Mkdir) {
            let mut writable = Entry::clone(t);
            writable.mode |= 0o700;
            steps.push(step(Op::SetMode, Some(&Shared::new(writable)), Some(t)));
        }
    }
    steps
}

impl Plan {
    /// Builds the steps for `changes`, in `direction`.
    pub fn build(changes: Vec<Change>, direction: Direction) -> Plan {
        let mut steps = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let Outcome::Resolved(target) = &c.outcome else {
                continue;
            };
            for (side, current) in [(Side::Local, &c.local), (Side::Remote, &c.remote)] {
                if !direction.allows(side) || same(current.as_deref(), target.as_deref()) {
                    continue;
                }
                if c.stash_local && side == Side::Local {
                    // Moved away whole, then the server's version is created in its place.
                    steps.push(Step {
                        side,
                        op: Op::Stash,
                        path: c.path.clone(),
                        from: None,
                        expect: current.clone(),
                        target: None,
                        change: i,
                        replaces: None,
                        replaced_by: target.as_ref().map(|t| t.kind),
                    });
                    steps.extend(steps_for(side, i, &c.path, None, target.as_ref()));
                    continue;
                }
                steps.extend(steps_for(
                    side,
                    i,
                    &c.path,
                    current.as_ref(),
                    target.as_ref(),
                ));
            }
        }
        find_renames(&mut steps);
        // Compared in place: a key with the path in it would copy a path per comparison.
        steps.sort_by(|a, b| {
            let ((pa, da, sa), (pb, db, sb)) = (phase(a), phase(b));
            (pa, da, &a.path, sa).cmp(&(pb, db, &b.path, sb))
        });
        Plan { changes, steps }
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Pairs "remove file with content F at P" with "create file with content F at Q" on the same
/// side (each content used once) and turns them into one rename.
fn find_renames(steps: &mut Vec<Step>) {
    // A removal whose path the plan makes something at again, or under (the file became a
    // directory, maybe holding its own content), stays a removal: a rename from it would run
    // after the mkdir that needs its path free, and never succeed.
    let mut created: HashMap<Side, std::collections::BTreeSet<&[u8]>> = HashMap::new();
    for s in steps.iter() {
        if matches!(s.op, Op::Mkdir | Op::Write | Op::Symlink | Op::Mknod) {
            created.entry(s.side).or_default().insert(&s.path);
        }
    }
    let recreated = |side: Side, p: &[u8]| {
        created.get(&side).is_some_and(|set| {
            set.range(p..)
                .take_while(|q| q.starts_with(p))
                .any(|q| crate::paths::is_within(q, p))
        })
    };
    let mut removals: HashMap<(Side, FileId), Vec<usize>> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        if s.op == Op::Remove && !recreated(s.side, &s.path) {
            if let Some(e) = &s.expect {
                if let (EntryKind::File, Some(f)) = (e.kind, e.file) {
                    removals.entry((s.side, f)).or_default().push(i);
                }
            }
        }
    }
    let mut drop = vec![false; steps.len()];
    for i in 0..steps.len() {
        let s = &steps[i];
        if s.op != Op::Write || s.expect.is_some() {
            continue;
        }
        let Some(f) = s.target.as_ref().and_then(|t| t.file) else {
            continue;
        };
        if let Some(list) = removals.get_mut(&(s.side, f)) {
            // Never from inside the path itself (a file moved to its own directory's name):
            // the directory must go first, and it holds the source.
            let from_outside = list
                .iter()
                .rposition(|&j| !crate::paths::is_within(&steps[j].path, &s.path));
            if let Some(j) = from_outside.map(|k| list.remove(k)) {
                let source = steps[j].path.clone();
                let expect = steps[j].expect.clone();
                let s = &mut steps[i];
                s.op = Op::Rename;
                s.from = Some(source);
                s.expect = expect;
                drop[j] = true;
            }
        }
    }
    let mut k = 0;
    steps.retain(|_| {
        k += 1;
        !drop[k - 1]
    });
}

/// Steps serialized as their [`StepRecord`]s one at a time (the journal's copy of a plan of
/// 100,000 steps is written without building them all first).
pub struct Records<'a>(pub &'a [Step]);

impl Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Step::record))
    }
}

/// A step as stored in the journal and printed by `--dry-run --json`.
#[derive(Serialize)]
pub struct StepRecord {
    /// `local` or `remote`.
    pub side: Side,
    /// What it does.
    pub op: Op,
    /// The path, displayable.
    pub path: String,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// For renames, the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The precondition, in words.
    pub expect: String,
}

/// Describes an expected state, e.g. `file 12 bytes mtime 1700000000.123456789`.
pub fn describe_state(e: Option<&Entry>) -> String {
    match e {
        None => "absent".into(),
        Some(e) => match e.kind {
            EntryKind::File => format!(
                "file of {} bytes, mtime {}.{:09}",
                e.size,
                e.mtime_ns.div_euclid(1_000_000_000),
                e.mtime_ns.rem_euclid(1_000_000_000)
            ),
            EntryKind::Symlink => format!("symlink to {}", display(&e.target)),
            k => k.as_str().to_string(),
        },
    }
}

impl Step {
    /// The journal/JSON form.
    pub fn record(&self) -> StepRecord {
        StepRecord {
            side: self.side,
            op: self.op,
            path: display(&self.path),
            path_hex: std::str::from_utf8(&self.path)
                .is_err()
                .then(|| hex(&self.path)),
            from: self.from.as_deref().map(display),
            expect: describe_state(self.expect.as_deref()),
        }
    }

    /// One line for people, e.g. `remote  write   src/main.rs`.
    pub fn line(&self) -> String {
        let op = match self.op {
            Op::Mkdir => "mkdir",
            Op::Write => "write",
            Op::Symlink => "symlink",
            Op::Mknod => "mknod",
            Op::SetMode => "chmod",
            Op::Rename => "rename",
            Op::Remove => "remove",
            Op::Stash => "to-lost+found",
        };
        match &self.from {
            Some(from) => format!(
                "{:<6} {:<7} {} -> {}",
                self.side.as_str(),
                op,
                display(from),
                display(&self.path)
            ),
            None => format!(
                "{:<6} {:<7} {}",
                self.side.as_str(),
                op,
                display(&self.path)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::three_way::{dir, dir_mode, file, symlink, ThreeWay};

    /// A tree with enough other files that no test trips over anything else.
    fn agreed(extra: &[(&str, Entry)]) -> ThreeWay {
        let mut items = vec![("keep1", file("k1")), ("keep2", file("k2"))];
        items.extend(extra.iter().cloned());
        ThreeWay::agreed(&items)
    }

    fn position(steps: &[String], wanted: &str) -> usize {
        steps
            .iter()
            .position(|s| s.split_whitespace().collect::<Vec<_>>().join(" ") == wanted)
            .unwrap_or_else(|| panic!("no step {wanted:?} in {steps:#?}"))
    }

    /// A change's result and the steps that carry it out hold the side's entry itself, not
    /// copies of it (a first copy of many files held each entry five times).
    #[test]
    fn a_change_and_its_steps_share_the_entry_they_carry() {
        let t = agreed(&[]).remote("new.txt", Some(file("N")));
        let plan = t.plan(Direction::Both);
        let c = plan
            .changes
            .iter()
            .position(|c| c.path == b"new.txt")
            .expect("a change for the new file");
        let remote = plan.changes[c].remote.as_ref().expect("on the server");
        let result = plan.changes[c].result().and_then(Option::as_ref);
        assert!(result.is_some_and(|r| Shared::ptr_eq(r, remote)), "result");
        let step = plan.steps.iter().find(|s| s.change == c).expect("a step");
        assert_eq!(step.side, Side::Local);
        assert!(
            step.target
                .as_ref()
                .is_some_and(|t| Shared::ptr_eq(t, remote)),
            "step target"
        );
    }

    #[test]
    fn a_move_on_one_side_is_one_rename_on_the_other() {
        let t = agreed(&[("a.txt", file("A")), ("d", dir())])
            .local("a.txt", None)
            .local("d/b.txt", Some(file("A")));
        assert_eq!(
            t.steps(Direction::Both),
            ["remote rename  a.txt -> d/b.txt"]
        );
        let plan = t.plan(Direction::Both);
        assert_eq!(
            plan.steps[0].expect.as_deref(),
            Some(&file("A")),
            "expects the source"
        );
    }

    #[test]
    fn each_removed_content_pairs_with_one_new_path() {
        // Two files with the same bytes moved: two renames, no write; a third copy is a
        // write (its content is in the store, nothing to move).
        let t = agreed(&[("a", file("same")), ("b", file("same"))])
            .remote("a", None)
            .remote("b", None)
            .remote("x", Some(file("same")))
            .remote("y", Some(file("same")))
            .remote("z", Some(file("same")));
        let steps = t.steps(Direction::Both);
        let renames = steps.iter().filter(|s| s.contains("rename")).count();
        let writes = steps.iter().filter(|s| s.contains("write")).count();
        assert_eq!((renames, writes, steps.len()), (2, 1, 3), "{steps:#?}");
        assert!(steps.iter().all(|s| s.starts_with("local")), "{steps:#?}");
    }

    #[test]
    fn directories_are_made_first_and_made_read_only_last() {
        let t = agreed(&[])
            .remote("d", Some(dir_mode(0o555)))
            .remote("d/e", Some(dir()))
            .remote("d/x", Some(file("x")))
            .remote("d/e/y", Some(file("y")));
        let steps = t.steps(Direction::Both);
        assert_eq!(steps.len(), 5, "{steps:#?}");
        let (mk_d, mk_e) = (
            position(&steps, "local mkdir d"),
            position(&steps, "local mkdir d/e"),
        );
        let (x, y) = (
            position(&steps, "local write d/x"),
            position(&steps, "local write d/e/y"),
        );
        let chmod = position(&steps, "local chmod d");
        assert!(mk_d < mk_e && mk_e < y && mk_d < x, "{steps:#?}");
        assert_eq!(chmod, steps.len() - 1, "read-only last: {steps:#?}");
        let plan = t.plan(Direction::Both);
        let mkdir = &plan.steps[mk_d];
        assert_eq!(
            mkdir.target.as_ref().map(|t| t.mode),
            Some(0o555),
            "the target keeps its real mode; the apply makes it writable first"
        );
    }

    #[test]
    fn a_removed_directory_goes_after_what_was_in_it_deepest_first() {
        let t = agreed(&[
            ("d", dir()),
            ("d/x", file("x")),
            ("d/e", dir()),
            ("d/e/y", file("y")),
        ])
        .local("d", None);
        let steps = t.steps(Direction::Both);
        let files = [
            position(&steps, "remote remove d/x"),
            position(&steps, "remote remove d/e/y"),
        ];
        let (e, d) = (
            position(&steps, "remote remove d/e"),
            position(&steps, "remote remove d"),
        );
        assert!(files.iter().all(|&f| f < e) && e < d, "{steps:#?}");
    }

    #[test]
    fn a_file_replaced_by_a_directory_is_removed_before_the_mkdir() {
        let t = agreed(&[("f", file("was a file"))])
            .remote("f", Some(dir()))
            .remote("f/inside", Some(file("in")));
        let steps = t.steps(Direction::Both);
        let (rm, mk, w) = (
            position(&steps, "local remove f"),
            position(&steps, "local mkdir f"),
            position(&steps, "local write f/inside"),
        );
        assert!(rm < mk && mk < w, "{steps:#?}");
        let plan = t.plan(Direction::Both);
        assert_eq!(plan.steps[rm].replaced_by, Some(EntryKind::Dir));
    }

    #[test]
    fn a_directory_replaced_by_a_file_is_emptied_then_replaced() {
        let t = agreed(&[("d", dir()), ("d/x", file("x"))]).remote("d", Some(file("now a file")));
        let steps = t.steps(Direction::Both);
        let (rm_x, rm_d, w) = (
            position(&steps, "local remove d/x"),
            position(&steps, "local remove d"),
            position(&steps, "local write d"),
        );
        assert!(rm_x < rm_d && rm_d < w, "{steps:#?}");
    }

    #[test]
    fn a_file_or_symlink_is_replaced_in_one_atomic_step() {
        let t = agreed(&[("f", file("old")), ("l", symlink("a"))])
            .remote("f", Some(symlink("b")))
            .remote("l", Some(file("new")));
        let plan = t.plan(Direction::Both);
        let steps: Vec<String> = plan.steps.iter().map(Step::line).collect();
        assert_eq!(steps.len(), 2, "{steps:#?}");
        for s in &plan.steps {
            assert!(s.expect.is_some(), "replaces what the plan saw: {s:?}");
        }
    }

    #[test]
    fn a_mode_change_alone_is_a_chmod_and_a_direction_keeps_to_its_side() {
        let mut exe = file("k1");
        exe.mode = 0o755;
        let t = agreed(&[])
            .local("keep1", Some(exe))
            .remote("new", Some(file("n")));
        assert_eq!(
            t.steps(Direction::Both),
            ["remote chmod   keep1", "local  write   new"]
        );
        assert_eq!(t.steps(Direction::Pull), ["local  write   new"]);
        assert_eq!(t.steps(Direction::Push), ["remote chmod   keep1"]);
    }

    /// Found by the randomized tester: a push that replaced a directory by a file was
    /// killed after it removed the files inside on the server. The next run must finish it,
    /// not take the server's removals for changes the workspace's file clashes with.
    #[test]
    fn a_directory_replaced_here_while_the_server_only_removed_inside_is_no_clash() {
        let t = agreed(&[("d", dir()), ("d/x", file("x")), ("d/y", file("y"))])
            .local("d", Some(file("a file now")))
            .remote("d/x", None)
            .remote("d/y", None);
        let plan = t.plan(Direction::Both);
        assert!(
            plan.changes.iter().all(|c| c.conflict_kind().is_none()),
            "{:#?}",
            plan.changes
        );
        let steps = t.steps(Direction::Both);
        assert_eq!(
            steps,
            ["remote remove  d", "remote write   d"],
            "{steps:#?}"
        );
        // A file the server changed inside is still a clash (the workspace's file goes to
        // lost+found).
        let t = t.remote("d/y", Some(file("y, edited on the server")));
        let plan = t.plan(Direction::Both);
        assert!(
            plan.changes.iter().any(|c| c.stash_local),
            "{:#?}",
            plan.changes
        );
    }

    /// Found by the randomized tester: a file that becomes a directory holding its own
    /// content was planned as `mkdir a` then `rename a -> a/in`, which never succeeds.
    #[test]
    fn a_file_that_becomes_a_directory_holding_it_is_removed_then_written() {
        let t = agreed(&[("a", file("x"))])
            .local("a", Some(dir()))
            .local("a/in", Some(file("x")));
        let steps = t.steps(Direction::Both);
        assert!(!steps.iter().any(|s| s.contains("rename")), "{steps:#?}");
        let (rm, mk, w) = (
            position(&steps, "remote remove a"),
            position(&steps, "remote mkdir a"),
            position(&steps, "remote write a/in"),
        );
        assert!(rm < mk && mk < w, "{steps:#?}");
    }

    /// Found by the randomized tester: a file moved away and a directory made at its old
    /// path. A rename from that path would run after the mkdir that needs it free.
    #[test]
    fn a_path_freed_by_a_move_and_made_again_is_not_a_rename_source() {
        let t = agreed(&[("a", file("moved"))])
            .local("a", Some(dir()))
            .local("a/x", Some(file("in")))
            .local("b", Some(file("moved")));
        let steps = t.steps(Direction::Both);
        assert!(!steps.iter().any(|s| s.contains("rename")), "{steps:#?}");
        assert!(
            position(&steps, "remote remove a") < position(&steps, "remote mkdir a"),
            "{steps:#?}"
        );
        // A plain move still is a rename.
        let t = agreed(&[("a", file("moved"))])
            .local("a", None)
            .local("b", Some(file("moved")));
        assert_eq!(t.steps(Direction::Both), ["remote rename  a -> b"]);
    }

    #[test]
    fn a_conflict_has_no_steps() {
        let t = agreed(&[("c", file("base"))])
            .local("c", Some(file("mine")))
            .remote("c", Some(file("theirs")));
        let plan = t.plan(Direction::Both);
        assert!(plan.steps.is_empty(), "{:?}", plan.steps);
        assert_eq!(
            plan.changes[0].conflict_kind(),
            Some(crate::reconcile::ConflictKind::Content)
        );
    }
}
