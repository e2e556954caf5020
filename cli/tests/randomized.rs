//! A randomized two-sided tester. From a seed it draws a starting tree on the remote (dated an
//! hour back, as a share's files are), clones it, then rounds of random edits on both sides:
//! files written, appended to, rewritten in place with the same size, emptied, made big
//! (several chunks), removed; directories made and removed; renames of files and directories;
//! type changes (file, directory, symlink, fifo, in every direction); symlinks made and
//! retargeted; modes; edits of single lines of one text file on both sides (next to each other,
//! or apart, which merges); hard links in the workspace; a server rewrite that keeps size and
//! mtime (`cp -p`); files dated back; lost+found emptied; `resolve --take server|client` of an
//! open conflict. Operations are drawn against the trees as they are (so most of them hit
//! something), often at the path the other side just changed. Each round ends with a
//! `cachesync sync`: plain, killed at a crash point (`CACHESYNC_FAILPOINT`) then run again, or
//! paused at a point (`CACHESYNC_PAUSE`) while one more edit is made, then run again.
//!
//! A quarter of the syncs are followed by `cachesync undo` of the last operation (sometimes
//! killed at one of its crash points, then run again with the operation's number). After it:
//! exit 0, 7 or (nothing to take back, nothing changed) 2; `fsck` clean; no temporary left;
//! and nothing lost, the versions the undo replaced included: every file content and symlink
//! target either side held before it is afterwards in a tree, in a conflict variant, or
//! written back byte for byte by `restore PATH --at OP --to DIR`. The round's next sync is
//! checked as any other.
//!
//! Before the sync, `check` runs. After the kill, `fsck` must be clean. After the sync:
//! - its exit code is 0 or 7, and 7 exactly when conflicts are open (a paused sync too);
//! - nothing is lost: every file content and symlink target either side held before the sync
//!   (or made while it was paused), other than the base version of its path, is afterwards in
//!   the workspace, on the remote, in lost+found, or in a variant of a conflict record
//!   (`conflicts --all --json`; an open record's variant must also print with `show`);
//! - both sides are equal (contents, kinds, targets, modes; `.cachesync/` and lost+found left
//!   out), except at the paths of open conflicts;
//! - `check` before the sync listed every conflict the sync left open (and, but after a kill,
//!   nothing that was not open before or after);
//! - `check` after it exits 7 when conflicts are open and 0 when none are, listing the same
//!   paths;
//! - a second `sync` plans no step and exits as the first;
//! - no temporary file is left on either side.
//!
//! The tester keeps its own base (per path, the state both sides last agreed on): a version
//! that is the base of its path may be replaced by the other side's change; every other
//! version must survive. One allowance: an edit made while a sync is paused may replace what
//! the sync had copied already (the user replaced it). A version found only inside a merge
//! (every line of it in the file at its path, but no variant holds it) fails apart, as
//! `nothing-lost (a version kept only inside a merge)`.
//!
//! CI runs a bounded slice of fixed seeds. `CACHESYNC_FAULTS=all` (`make faults`) runs many
//! more cases (`CACHESYNC_FAULTS_SEED=N` draws other seeds). A failing case is shrunk (steps
//! and starting entries removed, kills and pauses dropped) and printed with its seed, its
//! operations and a bash script that replays it with the binary.
//!
//! Knobs: `CACHESYNC_RANDOMIZED_SEED=S` runs the one case of seed S (decimal or 0x hex);
//! `CACHESYNC_RANDOMIZED_CASES=N` sets the number of cases; `CACHESYNC_RANDOMIZED_KEEP_GOING=1`
//! goes on after a failure and reports every failing seed at the end;
//! `CACHESYNC_RANDOMIZED_EXCLUDE=keep-stat,kill,pause,...` leaves kinds of operations out (to
//! look past a known bug; the names are those of `KINDS`, plus `kill`, `pause` and `undo`);
//! `CACHESYNC_RANDOMIZED_SHRINK=0` does not shrink, `CACHESYNC_RANDOMIZED_SHRINK_SECS=N`
//! bounds shrinking (120 s, 600 s in the long run); `CACHESYNC_RANDOMIZED_VERBOSE=1` prints
//! every case's script.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use cachesync_objects::FileId;
use cachesync_testutils::Rng;
use common::{leftovers, tree, Env, Node, Run, Tree};

/// The workspace's lost+found directory (never synced).
const LOST_FOUND: &str = ".cachesync-lost+found";

/// The paths operations name. Few, so that both sides often touch the same ones.
const POOL: &[&str] = &[
    "a", "b", "c", "t.txt", "a/x", "a/y", "b/x", "b/y", "c/x", "a/x/z", "b/y/z", "c/x/z",
];

/// The multi-line text file both sides edit line by line (merged when the edits are apart).
const TEXT: &str = "t.txt";
const TEXT_LINES: usize = 12;
/// The lines edits pick: some next to each other (those edits overlap), some apart.
const EDITED_LINES: &[usize] = &[1, 2, 3, 6, 9, 10];

/// Symlink targets: relative, dangling, absolute, pointing up.
const TARGETS: &[&str] = &[
    "a",
    "../b",
    "x/z",
    "t.txt",
    "nowhere",
    "/nonexistent/abs",
    "..",
];

/// Permission bits a chmod sets (a directory always keeps its owner's rwx).
const MODES: &[u32] = &[0o644, 0o600, 0o755, 0o700, 0o640, 0o444, 0o4755, 0o2750];

/// Crash points without a number, and the numbered families (numbered from 0).
const NAMED_POINTS: &[&str] = &[
    "scanned",
    "fetching",
    "before-landing",
    "landed",
    "fetched",
    "remote-snapshot",
    "planned",
    "before-commit",
    "after-commit",
];
const NUMBERED_POINTS: &[&str] = &["before-step", "after-step", "mid-write", "before-rename"];
/// Crash points of `undo` besides those of the push it runs.
const UNDO_POINTS: &[&str] = &[
    "undo-before-local",
    "restore-exchanged",
    "undo-restored",
    "undo-before-push",
    "undo-reopen-written",
];

// ---------------------------------------------------------------------------------------------
// Operations

/// Which tree an operation changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Remote,
    Ws,
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Remote => "R",
            Side::Ws => "W",
        })
    }
}

impl Side {
    fn var(self) -> &'static str {
        match self {
            Side::Remote => "$R",
            Side::Ws => "$W",
        }
    }
}

/// One step of a case. `R` is the remote, `W` the workspace; numbers name contents. An
/// operation that does not fit the tree as it is (its path is gone, say) does nothing.
#[derive(Clone, PartialEq, Eq)]
enum Op {
    /// Create or overwrite a regular file (not through a symlink, not over a directory).
    Write(Side, String, u32),
    /// Append a line to a file (its size changes).
    Append(Side, String, u32),
    /// Rewrite the start of a file: same size, new content (the mtime moves on, as it does).
    SameSize(Side, String, u32),
    /// On the server: rewrite a file with the same size and put its old mtime back (`cp -p`,
    /// `rsync -t`, `tar x`).
    KeepStat(String, u32),
    /// Create or overwrite a file of 200 kB or so (several chunks): `yes "big N" | head -c`.
    Big(Side, String, u32),
    /// Create or truncate a file to size 0.
    Empty(Side, String),
    /// `mkfifo` where nothing is.
    Fifo(Side, String),
    /// `rm -rf` whatever is there.
    Remove(Side, String),
    /// `mkdir -p`.
    Mkdir(Side, String),
    /// Replace what is there (a file or a symlink) by a directory holding one file.
    ToDir(Side, String, u32),
    /// Replace what is there (a directory or a symlink) by a file.
    ToFile(Side, String, u32),
    /// Replace what is there (a file or a directory) by a symlink.
    ToSymlink(Side, String, &'static str),
    /// Create a symlink where nothing is, or change a symlink's target.
    Symlink(Side, String, &'static str),
    /// `mv -T FROM TO` (files and directories; over a file as rename(2) does).
    Rename(Side, String, String),
    /// `chmod` (never through a symlink; a directory keeps its owner's rwx).
    Chmod(Side, String, u32),
    /// Replace one line of the text file.
    TextEdit(Side, usize, u32),
    /// In the workspace: `ln FROM TO` (a second name for a file).
    HardLink(String, String),
    /// Every file of one side dated an hour back (time passes; `touch -d`).
    Age(Side),
    /// In the workspace: `rm -rf .cachesync-lost+found` (the user took what they needed).
    ClearLostFound,
    /// `cachesync resolve PATH --take server|client` of a conflict the last sync left open.
    Resolve(String, &'static str),
    /// `cachesync sync`, killed at the crash point if one is given, then run again.
    Sync(Option<String>),
    /// `cachesync sync` paused at the point (`CACHESYNC_PAUSE`) while the operation is
    /// applied (a change made while the sync runs), then a second sync.
    SyncDuring(String, Box<Op>),
    /// `cachesync undo` of the last operation, killed at the crash point if one is given,
    /// then run again with the operation's number.
    Undo(Option<String>),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write(s, p, n) => write!(f, "Write({s:?}, {p:?}, {n})"),
            Op::Append(s, p, n) => write!(f, "Append({s:?}, {p:?}, {n})"),
            Op::SameSize(s, p, n) => write!(f, "SameSize({s:?}, {p:?}, {n})"),
            Op::KeepStat(p, n) => write!(f, "KeepStat(R, {p:?}, {n})"),
            Op::Big(s, p, n) => write!(f, "Big({s:?}, {p:?}, {n})"),
            Op::Empty(s, p) => write!(f, "Empty({s:?}, {p:?})"),
            Op::Fifo(s, p) => write!(f, "Fifo({s:?}, {p:?})"),
            Op::Remove(s, p) => write!(f, "Remove({s:?}, {p:?})"),
            Op::Mkdir(s, p) => write!(f, "Mkdir({s:?}, {p:?})"),
            Op::ToDir(s, p, n) => write!(f, "ToDir({s:?}, {p:?}, {n})"),
            Op::ToFile(s, p, n) => write!(f, "ToFile({s:?}, {p:?}, {n})"),
            Op::ToSymlink(s, p, t) => write!(f, "ToSymlink({s:?}, {p:?} -> {t:?})"),
            Op::Symlink(s, p, t) => write!(f, "Symlink({s:?}, {p:?} -> {t:?})"),
            Op::Rename(s, a, b) => write!(f, "Rename({s:?}, {a:?} -> {b:?})"),
            Op::Chmod(s, p, m) => write!(f, "Chmod({s:?}, {p:?}, 0o{m:o})"),
            Op::TextEdit(s, l, n) => write!(f, "TextEdit({s:?}, line {l}, {n})"),
            Op::HardLink(a, b) => write!(f, "HardLink(W, {a:?} -> {b:?})"),
            Op::Age(s) => write!(f, "Age({s:?})"),
            Op::ClearLostFound => write!(f, "ClearLostFound(W)"),
            Op::Resolve(p, take) => write!(f, "Resolve({p:?}, take {take})"),
            Op::Sync(None) => write!(f, "Sync"),
            Op::Sync(Some(p)) => write!(f, "Sync(kill at {p:?})"),
            Op::SyncDuring(p, op) => write!(f, "Sync(pause at {p:?}: {op:?})"),
            Op::Undo(None) => write!(f, "Undo"),
            Op::Undo(Some(p)) => write!(f, "Undo(kill at {p:?})"),
        }
    }
}

/// Kinds of operations, their weights, and the names `CACHESYNC_RANDOMIZED_EXCLUDE` uses.
const KINDS: &[(&str, usize)] = &[
    ("write", 10),
    ("create", 6),
    ("append", 7),
    ("same-size", 5),
    ("keep-stat", 2),
    ("remove", 6),
    ("remove-dir", 3),
    ("mkdir", 4),
    ("to-dir", 3),
    ("to-file", 3),
    ("to-symlink", 3),
    ("symlink", 4),
    ("rename", 6),
    ("rename-dir", 4),
    ("chmod", 6),
    ("text-edit", 10),
    ("hard-link", 2),
    ("big", 2),
    ("empty", 1),
    ("fifo", 1),
    ("age", 1),
    ("clear-lost-found", 1),
    ("resolve", 4),
];

/// The path an operation is about, if one.
fn op_path(op: &Op) -> Option<&str> {
    match op {
        Op::Write(_, p, _)
        | Op::Append(_, p, _)
        | Op::SameSize(_, p, _)
        | Op::KeepStat(p, _)
        | Op::Big(_, p, _)
        | Op::Empty(_, p)
        | Op::Fifo(_, p)
        | Op::Remove(_, p)
        | Op::Mkdir(_, p)
        | Op::ToDir(_, p, _)
        | Op::ToFile(_, p, _)
        | Op::ToSymlink(_, p, _)
        | Op::Symlink(_, p, _)
        | Op::Chmod(_, p, _)
        | Op::HardLink(p, _) => Some(p),
        Op::Rename(_, from, _) => Some(from),
        Op::TextEdit(..) => Some(TEXT),
        _ => None,
    }
}

/// The name of an operation's kind, for the statistics.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Write(..) => "write",
        Op::Append(..) => "append",
        Op::SameSize(..) => "same-size",
        Op::KeepStat(..) => "keep-stat",
        Op::Big(..) => "big",
        Op::Empty(..) => "empty",
        Op::Fifo(..) => "fifo",
        Op::Remove(..) => "remove",
        Op::Mkdir(..) => "mkdir",
        Op::ToDir(..) => "to-dir",
        Op::ToFile(..) => "to-file",
        Op::ToSymlink(..) => "to-symlink",
        Op::Symlink(..) => "symlink",
        Op::Rename(..) => "rename",
        Op::Chmod(..) => "chmod",
        Op::TextEdit(..) => "text-edit",
        Op::HardLink(..) => "hard-link",
        Op::Age(..) => "age",
        Op::ClearLostFound => "clear-lost-found",
        Op::Resolve(..) => "resolve",
        Op::Sync(..) | Op::SyncDuring(..) => "sync",
        Op::Undo(..) => "undo",
    }
}

/// A case: the remote's starting entries (besides the text file), then the steps. A final
/// sync is always run after the steps.
#[derive(Clone)]
struct Case {
    seed: u64,
    init: Vec<Op>,
    steps: Vec<Op>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {:#x}", self.seed)?;
        writeln!(f, "start (on the remote, before the clone):")?;
        for op in &self.init {
            writeln!(f, "    {op:?},")?;
        }
        writeln!(f, "steps:")?;
        for op in &self.steps {
            writeln!(f, "    {op:?},")?;
        }
        write!(f, "    Sync (final)")
    }
}

// ---------------------------------------------------------------------------------------------
// Generation: each operation is drawn against the trees as they are at that moment (so most
// operations hit something), and recorded as a plain operation for replay and shrinking.

fn excluded() -> BTreeSet<String> {
    std::env::var("CACHESYNC_RANDOMIZED_EXCLUDE")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Draws operations for one case.
struct Generator {
    rng: Rng,
    body: u32,
    skip: BTreeSet<String>,
    /// The side and path of the last operation drawn.
    last: Option<(Side, String)>,
    /// The content number of the last operation drawn.
    last_n: u32,
    /// A path the next pick returns (the other side's path, to make both sides meet).
    forced: Option<String>,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng(seed),
            body: 0,
            skip: excluded(),
            last: None,
            last_n: 0,
            forced: None,
        }
    }

    fn body(&mut self) -> u32 {
        self.body += 1;
        self.body
    }

    fn side(&mut self) -> Side {
        if self.rng.chance(50) {
            Side::Remote
        } else {
            Side::Ws
        }
    }

    fn point(&mut self) -> String {
        if self.rng.chance(40) {
            self.rng.pick(NAMED_POINTS).to_string()
        } else {
            format!("{}:{}", self.rng.pick(NUMBERED_POINTS), self.rng.below(4))
        }
    }

    /// A sync: plain, killed at a crash point, or paused there while one side changes
    /// (most often at the path the round changed last, on the other side).
    fn sync(&mut self, w: &World) -> Op {
        let roll = self.rng.below(100);
        if roll < 35 && !self.skip.contains("kill") {
            return Op::Sync(Some(self.point()));
        }
        if roll >= 85 && !self.skip.contains("pause") {
            let point = self.point();
            // Not a `resolve`: the running sync holds the workspace lock.
            if let Some(op) = self.edit(w, 80).filter(|op| !matches!(op, Op::Resolve(..))) {
                return Op::SyncDuring(point, Box::new(op));
            }
        }
        Op::Sync(None)
    }

    /// Now and then, right after a sync: an undo of the last operation, sometimes killed.
    fn undo(&mut self) -> Option<Op> {
        if self.skip.contains("undo") || !self.rng.chance(25) {
            return None;
        }
        if self.skip.contains("kill") || !self.rng.chance(40) {
            return Some(Op::Undo(None));
        }
        let point = if self.rng.chance(50) {
            self.rng.pick(UNDO_POINTS).to_string()
        } else {
            self.point()
        };
        Some(Op::Undo(Some(point)))
    }

    /// A path from the pool, or a new name in an existing directory.
    fn fresh(&mut self, entries: &[(String, Kind)]) -> String {
        if let Some(p) = self.forced.take() {
            return p;
        }
        let dirs: Vec<&String> = entries
            .iter()
            .filter(|(_, k)| *k == Kind::Dir)
            .map(|(p, _)| p)
            .collect();
        if dirs.is_empty() || self.rng.chance(60) {
            self.rng.pick(POOL).to_string()
        } else {
            let d = self.rng.pick(&dirs);
            let n = self.body();
            format!("{d}/n{n}")
        }
    }

    /// An existing entry of one of `kinds`, or (none there) a path from the pool.
    fn existing(&mut self, entries: &[(String, Kind)], kinds: &[Kind]) -> String {
        if let Some(p) = self.forced.take() {
            return p;
        }
        let fit: Vec<&String> = entries
            .iter()
            .filter(|(_, k)| kinds.contains(k))
            .map(|(p, _)| p)
            .collect();
        if fit.is_empty() {
            self.rng.pick(POOL).to_string()
        } else {
            self.rng.pick(&fit).clone()
        }
    }

    /// A kind of operation, by the weights of `KINDS`.
    fn kind(&mut self) -> &'static str {
        let total: usize = KINDS.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.rng.below(total);
        for (name, weight) in KINDS {
            if roll < *weight {
                return name;
            }
            roll -= weight;
        }
        KINDS[0].0
    }

    /// An operation drawn against the trees in `w` (None when its kind is left out, or
    /// there is nothing for it to do).
    fn edit(&mut self, w: &World, pair_percent: usize) -> Option<Op> {
        let which = self.kind();
        // Often the other side's path of the last operation: both sides change one path.
        let paired = self.last.clone().filter(|_| self.rng.chance(pair_percent));
        let s = match (which, &paired) {
            ("keep-stat", _) => Side::Remote,
            ("hard-link" | "clear-lost-found", _) => Side::Ws,
            (_, Some((Side::Remote, _))) => Side::Ws,
            (_, Some((Side::Ws, _))) => Side::Remote,
            _ => self.side(),
        };
        // Sometimes the same content as the last operation's: the sides converge.
        let n = if paired.is_some() && self.rng.chance(25) {
            self.last_n
        } else {
            self.body()
        };
        self.last_n = n;
        self.forced = paired.map(|(_, p)| p);
        let op = self.make(which, s, n, w);
        self.forced = None;
        let op = op?;
        self.last = op_path(&op).map(|p| (s, p.to_string()));
        (!self.skip.contains(which)).then_some(op)
    }

    /// An operation of kind `which` on side `s`, with content number `n`.
    fn make(&mut self, which: &str, s: Side, n: u32, w: &World) -> Option<Op> {
        use Kind::{Dir, File, Link, Other};
        let entries = w.entries(s);
        let e = &entries;
        Some(match which {
            "write" => Op::Write(s, self.existing(e, &[File]), n),
            "create" => Op::Write(s, self.fresh(e), n),
            "append" => Op::Append(s, self.existing(e, &[File]), n),
            "same-size" => Op::SameSize(s, self.existing(e, &[File]), n),
            "keep-stat" => Op::KeepStat(self.existing(e, &[File]), n),
            "remove" => Op::Remove(s, self.existing(e, &[File, Link, Other])),
            "big" => Op::Big(s, self.existing_or_fresh(e, &[File]), n),
            "empty" => Op::Empty(s, self.existing(e, &[File])),
            "fifo" => Op::Fifo(s, self.fresh(e)),
            "remove-dir" => Op::Remove(s, self.existing(e, &[Dir])),
            "mkdir" => Op::Mkdir(s, self.fresh(e)),
            "to-dir" => Op::ToDir(s, self.existing(e, &[File, Link, Other]), n),
            "to-file" => Op::ToFile(s, self.existing(e, &[Dir, Link, Other]), n),
            "to-symlink" => {
                let p = self.existing(e, &[File, Dir]);
                Op::ToSymlink(s, p, self.rng.pick(TARGETS))
            }
            "symlink" => {
                let p = self.existing_or_fresh(e, &[Link]);
                Op::Symlink(s, p, self.rng.pick(TARGETS))
            }
            "rename" | "rename-dir" => {
                let kinds: &[Kind] = if which == "rename" {
                    &[File, Link]
                } else {
                    &[Dir]
                };
                let from = self.existing(e, kinds);
                let to = if self.rng.chance(50) {
                    self.fresh(e)
                } else {
                    format!("{from}{n}")
                };
                Op::Rename(s, from, to)
            }
            "chmod" => {
                let p = self.existing(e, &[File, Dir]);
                Op::Chmod(s, p, self.rng.pick(MODES))
            }
            "text-edit" => Op::TextEdit(s, self.rng.pick(EDITED_LINES), n),
            "hard-link" => {
                let from = self.existing(e, &[File]);
                Op::HardLink(from, self.fresh(e))
            }
            "age" => Op::Age(s),
            "resolve" => {
                let open: Vec<&String> = w
                    .open_kinds
                    .iter()
                    .filter(|(_, k)| *k == "content" || *k == "target")
                    .map(|(p, _)| p)
                    .collect();
                if open.is_empty() {
                    return None;
                }
                let p = self.rng.pick(&open).clone();
                let take = if self.rng.chance(50) {
                    "server"
                } else {
                    "client"
                };
                Op::Resolve(p, take)
            }
            _ => Op::ClearLostFound,
        })
    }

    /// Half the time an existing entry of one of `kinds`, else a new path.
    fn existing_or_fresh(&mut self, entries: &[(String, Kind)], kinds: &[Kind]) -> String {
        if self.rng.chance(50) {
            self.existing(entries, kinds)
        } else {
            self.fresh(entries)
        }
    }

    /// A starting entry on the remote.
    fn start(&mut self, w: &World) -> Op {
        let entries = w.entries(Side::Remote);
        let n = self.body();
        match self.rng.below(10) {
            0..=5 => Op::Write(Side::Remote, self.fresh(&entries), n),
            6 | 7 => Op::Mkdir(Side::Remote, self.fresh(&entries)),
            8 => Op::Symlink(Side::Remote, self.fresh(&entries), self.rng.pick(TARGETS)),
            _ => {
                let p = self.existing(&entries, &[Kind::File, Kind::Dir]);
                Op::Chmod(Side::Remote, p, self.rng.pick(MODES))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Applying operations to the trees (and writing down the shell commands that do the same)

/// What is at a path, not following symlinks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Dir,
    Link,
    Other,
}

fn kind(p: &Path) -> Option<Kind> {
    let md = fs::symlink_metadata(p).ok()?;
    let t = md.file_type();
    Some(if t.is_symlink() {
        Kind::Link
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    })
}

/// Quotes for sh.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `printf` of bytes that are plain text.
fn printf(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body)
        .replace('\\', "\\\\")
        .replace('%', "%%")
        .replace('\n', "\\n");
    format!("printf {}", q(&s))
}

fn big_size(n: u32) -> usize {
    200_000 + 997 * n as usize
}

/// What `yes 'big N' | head -c SIZE` writes.
fn big_text(n: u32) -> Vec<u8> {
    let line = format!("big {n}\n");
    line.bytes().cycle().take(big_size(n)).collect()
}

fn body_text(n: u32) -> Vec<u8> {
    let lines = 1 + (n as usize % 3);
    (0..lines)
        .map(|i| format!("content {n} line {i}\n"))
        .collect::<String>()
        .into_bytes()
}

fn text_file() -> Vec<u8> {
    (0..TEXT_LINES)
        .map(|i| format!("line {i} of the shared text\n"))
        .collect::<String>()
        .into_bytes()
}

/// Applies operations to the two trees and keeps the shell commands that did it.
struct World {
    env: Env,
    script: Vec<String>,
    /// What the case did: operations applied, kills, pauses, conflicts, merges.
    stats: BTreeMap<String, usize>,
    /// Paths a server edit that kept size and mtime was made at.
    stat_kept: BTreeSet<String>,
    /// The conflicts the last sync left open.
    open: BTreeSet<String>,
    /// Their kinds.
    open_kinds: BTreeMap<String, String>,
    /// A broken invariant found while applying an operation (reported by the next sync).
    broken: Option<Failure>,
}

impl World {
    fn root(&self, s: Side) -> &Path {
        match s {
            Side::Remote => &self.env.remote,
            Side::Ws => &self.env.ws,
        }
    }

    fn at(&self, s: Side, rel: &str) -> PathBuf {
        self.root(s).join(rel)
    }

    fn sh(&self, s: Side, rel: &str) -> String {
        format!("\"{}/{}\"", s.var(), rel)
    }

    /// Every ancestor of `rel` is a directory or absent (never a symlink); creates the
    /// missing ones. False (nothing done) when one is not a directory.
    fn parents(&mut self, s: Side, rel: &str) -> bool {
        let mut missing = None;
        let mut prefix = PathBuf::new();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            prefix.push(c);
            match kind(&self.root(s).join(&prefix)) {
                Some(Kind::Dir) => {}
                None => {
                    if missing.is_none() {
                        missing = Some(prefix.clone());
                    }
                }
                Some(_) => return false,
            }
        }
        if missing.is_some() {
            let parent = Path::new(rel).parent().expect("a parent");
            fs::create_dir_all(self.root(s).join(parent)).expect("mkdir -p");
            let line = format!("mkdir -p {}", self.sh(s, &parent.to_string_lossy()));
            self.script.push(line);
        }
        true
    }

    fn write(&mut self, s: Side, rel: &str, body: &[u8]) {
        fs::write(self.at(s, rel), body).expect("write");
        let line = format!("{} > {}", printf(body), self.sh(s, rel));
        self.script.push(line);
    }

    fn remove(&mut self, s: Side, rel: &str) {
        let p = self.at(s, rel);
        match kind(&p) {
            Some(Kind::Dir) => fs::remove_dir_all(&p).expect("rm -r"),
            Some(_) => fs::remove_file(&p).expect("rm"),
            None => return,
        }
        let line = format!("rm -rf {}", self.sh(s, rel));
        self.script.push(line);
    }

    fn symlink(&mut self, s: Side, rel: &str, target: &str) {
        symlink(target, self.at(s, rel)).expect("symlink");
        let line = format!("ln -s {} {}", q(target), self.sh(s, rel));
        self.script.push(line);
    }

    /// Applies `op` (not `Sync`); does nothing when it does not fit the tree as it is.
    fn apply(&mut self, op: &Op) {
        let lines = self.script.len();
        self.apply_op(op);
        if self.script.len() > lines {
            self.count(op_name(op));
            if let Op::KeepStat(p, _) = op {
                self.stat_kept.insert(p.clone());
            }
        }
    }

    fn count(&mut self, what: impl Into<String>) {
        *self.stats.entry(what.into()).or_default() += 1;
    }

    fn apply_op(&mut self, op: &Op) {
        use Kind::{Dir, File, Link, Other};
        match op {
            Op::Write(s, p, n) => {
                if matches!(self.kind_at(*s, p), None | Some(File)) && self.parents(*s, p) {
                    self.write(*s, p, &body_text(*n));
                }
            }
            Op::ToFile(s, p, n) => {
                if matches!(self.kind_at(*s, p), Some(Dir | Link | Other)) {
                    self.remove(*s, p);
                    self.write(*s, p, &body_text(*n));
                }
            }
            Op::Append(s, p, n) => self.append(*s, p, *n),
            Op::Big(s, p, n) => self.big(*s, p, *n),
            Op::Empty(s, p) => {
                if self.kind_at(*s, p) == Some(File) {
                    fs::write(self.at(*s, p), b"").expect("truncate");
                    let line = format!(": > {}", self.sh(*s, p));
                    self.script.push(line);
                }
            }
            Op::Fifo(s, p) => {
                if self.kind_at(*s, p).is_none() && self.parents(*s, p) {
                    common::mkfifo(self.at(*s, p));
                    let line = format!("mkfifo {}", self.sh(*s, p));
                    self.script.push(line);
                }
            }
            Op::SameSize(s, p, n) => self.rewrite(*s, p, *n, false),
            Op::KeepStat(p, n) => self.rewrite(Side::Remote, p, *n, true),
            Op::Remove(s, p) => self.remove(*s, p),
            Op::Mkdir(s, p) => {
                if self.kind_at(*s, p).is_none() && self.parents(*s, p) {
                    self.mkdir(*s, p);
                }
            }
            Op::ToDir(s, p, n) => {
                if matches!(self.kind_at(*s, p), Some(File | Link | Other)) {
                    self.remove(*s, p);
                    self.mkdir(*s, p);
                    self.write(*s, &format!("{p}/in"), &body_text(*n));
                }
            }
            Op::ToSymlink(s, p, t) => {
                if matches!(self.kind_at(*s, p), Some(File | Dir)) {
                    self.remove(*s, p);
                    self.symlink(*s, p, t);
                }
            }
            Op::Symlink(s, p, t) => self.symlink_or_retarget(*s, p, t),
            Op::Rename(s, from, to) => self.rename(*s, from, to),
            Op::Chmod(s, p, m) => self.chmod(*s, p, *m),
            Op::TextEdit(s, l, n) => self.text_edit(*s, *l, *n),
            Op::HardLink(from, to) => self.hard_link(from, to),
            Op::Age(s) => self.age(*s),
            Op::ClearLostFound => self.remove(Side::Ws, LOST_FOUND),
            Op::Resolve(p, take) => self.resolve(p, take),
            Op::Sync(_) | Op::SyncDuring(..) | Op::Undo(_) => {
                unreachable!("syncs and undos are run by the case")
            }
        }
    }

    fn kind_at(&self, s: Side, rel: &str) -> Option<Kind> {
        kind(&self.at(s, rel))
    }

    fn mkdir(&mut self, s: Side, rel: &str) {
        fs::create_dir(self.at(s, rel)).expect("mkdir");
        let line = format!("mkdir {}", self.sh(s, rel));
        self.script.push(line);
    }

    fn append(&mut self, s: Side, p: &str, n: u32) {
        if self.kind_at(s, p) != Some(Kind::File) {
            return;
        }
        let mut body = fs::read(self.at(s, p)).expect("read");
        let more = format!("appended {n}\n");
        body.extend_from_slice(more.as_bytes());
        fs::write(self.at(s, p), &body).expect("append");
        let line = format!("{} >> {}", printf(more.as_bytes()), self.sh(s, p));
        self.script.push(line);
    }

    fn big(&mut self, s: Side, p: &str, n: u32) {
        if matches!(self.kind_at(s, p), None | Some(Kind::File)) && self.parents(s, p) {
            fs::write(self.at(s, p), big_text(n)).expect("write");
            let line = format!(
                "yes 'big {n}' | head -c {} > {}",
                big_size(n),
                self.sh(s, p)
            );
            self.script.push(line);
        }
    }

    fn symlink_or_retarget(&mut self, s: Side, p: &str, t: &str) {
        match self.kind_at(s, p) {
            None if self.parents(s, p) => self.symlink(s, p, t),
            Some(Kind::Link) => {
                let old = fs::read_link(self.at(s, p)).expect("readlink");
                if old != Path::new(t) {
                    self.remove(s, p);
                    self.symlink(s, p, t);
                }
            }
            _ => {}
        }
    }

    fn chmod(&mut self, s: Side, p: &str, m: u32) {
        let m = match self.kind_at(s, p) {
            Some(Kind::Dir) => m | 0o700,
            Some(Kind::File | Kind::Other) => m,
            _ => return,
        };
        fs::set_permissions(self.at(s, p), fs::Permissions::from_mode(m)).expect("chmod");
        let line = format!("chmod {m:o} {}", self.sh(s, p));
        self.script.push(line);
    }

    fn text_edit(&mut self, s: Side, l: usize, n: u32) {
        let path = self.at(s, TEXT);
        if kind(&path) != Some(Kind::File) {
            return;
        }
        let old = fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&old);
        let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        if l >= lines.len() {
            return;
        }
        let side = if s == Side::Ws { "here" } else { "there" };
        lines[l] = format!("line {l} edited {side} ({n})\n");
        let body = lines.concat().into_bytes();
        fs::write(&path, &body).expect("edit");
        let line = format!(
            "sed '{}s/.*/{}/' {f} > \"$T/edit\" && cat \"$T/edit\" > {f}",
            l + 1,
            lines[l].trim_end(),
            f = self.sh(s, TEXT)
        );
        self.script.push(line);
    }

    fn hard_link(&mut self, from: &str, to: &str) {
        let s = Side::Ws;
        if self.kind_at(s, from) == Some(Kind::File)
            && self.kind_at(s, to).is_none()
            && self.parents(s, to)
        {
            fs::hard_link(self.at(s, from), self.at(s, to)).expect("ln");
            let line = format!("ln {} {}", self.sh(s, from), self.sh(s, to));
            self.script.push(line);
        }
    }

    fn age(&mut self, s: Side) {
        let then = SystemTime::now() - Duration::from_secs(3600);
        let root = self.root(s).to_path_buf();
        for (path, node) in tree(&root) {
            if let (false, Node::File(..)) = (path.starts_with(LOST_FOUND.as_bytes()), node) {
                fs::File::options()
                    .write(true)
                    .open(root.join(OsStr::from_bytes(&path)))
                    .and_then(|f| f.set_modified(then))
                    .expect("age");
            }
        }
        let v = s.var();
        self.script.push(format!(
            "find \"{v}\" -path \"{v}/.cachesync*\" -prune -o -type f -exec touch -d @$(( $(date +%s) - 3600 )) {{}} +"
        ));
    }

    fn resolve(&mut self, p: &str, take: &str) {
        self.script.push(format!(
            "(cd \"$W\" && cachesync resolve {} --take {take}); echo \"resolve exit $?\"",
            q(p)
        ));
        let r = self.run(&["resolve", p, "--take", take], &[]);
        // 2: refused (no open conflict there, the server changed since).
        if r.code != 0 && r.code != 2 && self.broken.is_none() {
            self.broken = Some(Failure {
                invariant: "resolve",
                detail: format!("resolve {p} --take {take}: {r}"),
            });
        }
    }

    /// The entries of one side (lost+found left out), with their kinds.
    fn entries(&self, s: Side) -> Vec<(String, Kind)> {
        tree(self.root(s))
            .into_iter()
            .filter(|(p, _)| !p.starts_with(LOST_FOUND.as_bytes()))
            .map(|(p, n)| {
                let k = match n {
                    Node::File(..) => Kind::File,
                    Node::Dir(_) => Kind::Dir,
                    Node::Symlink(_) => Kind::Link,
                    _ => Kind::Other,
                };
                (lp(&p), k)
            })
            .collect()
    }

    /// Rewrites the start of a file (same size, new content); with `keep`, puts the old
    /// mtime back.
    fn rewrite(&mut self, s: Side, p: &str, n: u32, keep: bool) {
        let path = self.at(s, p);
        if kind(&path) != Some(Kind::File) {
            return;
        }
        let old = fs::read(&path).expect("read");
        let mut body = old.clone();
        for (i, b) in format!("E{n}:").bytes().enumerate().take(body.len()) {
            body[i] = b;
        }
        if body == old {
            return;
        }
        let mtime = fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        fs::write(&path, &body).expect("rewrite");
        let line = if keep {
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(mtime))
                .expect("put the mtime back");
            format!(
                "touch -r {p} \"$T/ref\" && {} > {p} && touch -r \"$T/ref\" {p}",
                printf(&body),
                p = self.sh(s, p)
            )
        } else {
            format!("{} > {}", printf(&body), self.sh(s, p))
        };
        self.script.push(line);
    }

    fn rename(&mut self, s: Side, from: &str, to: &str) {
        let (a, b) = (self.at(s, from), self.at(s, to));
        let Some(ka) = kind(&a) else { return };
        if from == to || to.starts_with(&format!("{from}/")) {
            return;
        }
        match kind(&b) {
            None => {}
            // rename(2) replaces a file by a file, and an empty directory by a directory.
            Some(Kind::Dir) => {
                let empty = fs::read_dir(&b)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if ka != Kind::Dir || !empty {
                    return;
                }
            }
            Some(_) if ka == Kind::Dir => return,
            Some(_) => {}
        }
        if !self.parents(s, to) {
            return;
        }
        fs::rename(&a, &b).expect("rename");
        let line = format!("mv -T {} {}", self.sh(s, from), self.sh(s, to));
        self.script.push(line);
    }
}

// ---------------------------------------------------------------------------------------------
// The invariants

/// Something a side holds: a file's bytes or a symlink's target.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Content {
    File(Vec<u8>),
    Link(Vec<u8>),
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::File(b) if b.len() > 200 => write!(
                f,
                "file of {} bytes {:?}...",
                b.len(),
                String::from_utf8_lossy(&b[..40])
            ),
            Content::File(b) => write!(f, "file {:?}", String::from_utf8_lossy(b)),
            Content::Link(t) => write!(f, "symlink -> {:?}", String::from_utf8_lossy(t)),
        }
    }
}

fn content(n: &Node) -> Option<Content> {
    match n {
        Node::File(_, b) => Some(Content::File(b.clone())),
        Node::Symlink(t) => Some(Content::Link(t.clone())),
        _ => None,
    }
}

/// A broken invariant: which one (kept the same while shrinking) and the details.
#[derive(Debug)]
struct Failure {
    invariant: &'static str,
    detail: String,
}

fn fail<T>(invariant: &'static str, detail: String) -> Result<T, Failure> {
    Err(Failure { invariant, detail })
}

fn parse(r: &Run, what: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_slice(&r.stdout)
        .or_else(|e| fail("json", format!("{what}: stdout is not JSON ({e}): {r}")))
}

fn lp(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Lines naming the paths where two trees differ (long contents cut short).
fn tree_diff(a: &Tree, b: &Tree) -> String {
    let show = |n: Option<&Node>| match n {
        None => "absent".to_string(),
        Some(Node::File(m, c)) => format!("file 0o{m:o} {:?}", Content::File(c.clone())),
        Some(Node::Dir(m)) => format!("dir 0o{m:o}"),
        Some(Node::Symlink(t)) => format!("{:?}", Content::Link(t.clone())),
        Some(Node::Fifo(m)) => format!("fifo 0o{m:o}"),
        Some(Node::Other) => "other".to_string(),
    };
    let keys: BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    let mut out = String::new();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            out.push_str(&format!("  {:?}: {} | {}\n", lp(k), show(x), show(y)));
        }
    }
    out
}

/// The paths `check --json` reports as conflicts or lost+found entries.
fn problem_paths(check: &serde_json::Value) -> BTreeSet<String> {
    check["problems"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|p| p["kind"] == "conflict" || p["kind"] == "lost-found")
        .filter_map(|p| p["path"].as_str().map(String::from))
        .collect()
}

/// The workspace without lost+found (what is compared with the remote).
fn synced_part(t: &Tree) -> Tree {
    t.iter()
        .filter(|(p, _)| !p.starts_with(LOST_FOUND.as_bytes()))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect()
}

/// What happens to a sync besides running.
#[derive(Clone, Copy)]
enum Disturb<'a> {
    Nothing,
    /// Killed at this crash point, then run again.
    Kill(&'a str),
    /// Paused at this point while the operation is made, then run again.
    Pause(&'a str, &'a Op),
}

/// The versions that must survive a sync, each with the side and path that held it.
type Keep = BTreeMap<Content, (&'static str, Vec<u8>)>;

/// What a sync left: its exit code and report, the conflict records, both trees.
struct Synced {
    code: i32,
    report: serde_json::Value,
    /// `conflicts --json --all`, and its records.
    all: serde_json::Value,
    records: Vec<serde_json::Value>,
    /// The paths of the open records.
    open: BTreeSet<String>,
    local: Tree,
    remote: Tree,
}

/// Both trees at one moment (before a sync, at its pause, after the change made then).
struct Before {
    local: Tree,
    remote: Tree,
}

impl World {
    fn run(&self, args: &[&str], extra: &[(&str, &OsStr)]) -> Run {
        self.env.run_with(&self.env.ws, args, extra)
    }

    /// Contents that must survive the sync: those either side holds now that are not the
    /// base version of their path (the other side may replace those).
    fn must_keep(before: &Before, base: &Tree) -> Keep {
        let mut out = BTreeMap::new();
        for (side, t) in [("workspace", &before.local), ("remote", &before.remote)] {
            for (p, n) in t {
                let Some(c) = content(n) else { continue };
                if base.get(p).and_then(content).as_ref() == Some(&c) {
                    continue;
                }
                out.entry(c).or_insert_with(|| (side, p.clone()));
            }
        }
        out
    }

    /// Runs a sync (killed, or paused while one side changes, then run again) and checks
    /// every invariant.
    fn sync(&mut self, how: Disturb<'_>, base: &mut Tree) -> Result<(), Failure> {
        if let Some(f) = self.broken.take() {
            return Err(f);
        }
        let before = self.both();
        let mut keep = Self::must_keep(&before, base);
        // What `check` expects the sync to leave open (it lists the conflicts the next sync
        // records).
        self.script
            .push("(cd \"$W\" && cachesync check); echo \"check exit $?\"".to_string());
        let pre = self.run(&["check", "--json"], &[]);
        let predicted = problem_paths(&parse(&pre, "check --json (before the sync)")?);
        let killed = match how {
            Disturb::Nothing => false,
            Disturb::Kill(point) => self.killed_sync(point)?,
            Disturb::Pause(point, op) => {
                self.paused_sync(point, op, base, &mut keep)?;
                false
            }
        };
        let done = self.plain_sync()?;
        self.tally(&done);
        self.nothing_lost(&keep, base, &before, &done)?;
        self.converged(&done)?;
        if !matches!(how, Disturb::Pause(..)) {
            self.foreseen(&pre, &predicted, &done, killed)?;
        }
        self.check_and_again(&done)?;
        for root in [&self.env.ws, &self.env.remote] {
            let left = leftovers(root);
            if !left.is_empty() {
                return fail("leftovers", format!("temporary files left: {left:?}"));
            }
        }
        self.settle(&done, base);
        Ok(())
    }

    fn both(&self) -> Before {
        Before {
            local: tree(&self.env.ws),
            remote: tree(&self.env.remote),
        }
    }

    /// A sync killed at `point`, then `fsck`. True if the point was reached.
    fn killed_sync(&mut self, point: &str) -> Result<bool, Failure> {
        self.script.push(format!(
            "(cd \"$W\" && CACHESYNC_FAILPOINT={point} cachesync sync); echo \"exit $? (137: killed)\""
        ));
        let r = self.run(&["sync"], &[("CACHESYNC_FAILPOINT", OsStr::new(point))]);
        if r.signal != Some(9) {
            if r.code != 0 && r.code != 7 {
                return fail(
                    "exit-code",
                    format!("sync (the point {point} was not reached): {r}"),
                );
            }
            return Ok(false);
        }
        self.count("kill reached");
        self.script
            .push("(cd \"$W\" && cachesync fsck); echo \"fsck exit $?\"".to_string());
        self.fsck_clean(&format!("a kill at {point}"))?;
        Ok(true)
    }

    /// The sync whose result is checked, and what it left.
    fn plain_sync(&mut self) -> Result<Synced, Failure> {
        self.script
            .push("(cd \"$W\" && cachesync sync); echo \"exit $?\"".to_string());
        let r = self.run(&["sync", "--json"], &[]);
        if r.code != 0 && r.code != 7 {
            return fail("exit-code", format!("sync exited {}: {r}", r.code));
        }
        let report = parse(&r, "sync --json")?;
        let (all, records, open) = self.records()?;
        if (r.code == 7) == open.is_empty() {
            return fail(
                "exit-vs-conflicts",
                format!(
                    "sync exited {} with open conflicts {open:?}\nreport: {report}\nrecords: {all}",
                    r.code
                ),
            );
        }
        let now = self.both();
        Ok(Synced {
            code: r.code,
            report,
            all,
            records,
            open,
            local: now.local,
            remote: now.remote,
        })
    }

    /// Every conflict record (`conflicts --json --all`): the list, its entries, and the
    /// paths of the open ones.
    fn records(
        &self,
    ) -> Result<(serde_json::Value, Vec<serde_json::Value>, BTreeSet<String>), Failure> {
        let listed = self.run(&["conflicts", "--json", "--all"], &[]);
        if listed.code != 0 {
            return fail("conflicts", format!("conflicts --json --all: {listed}"));
        }
        let all = parse(&listed, "conflicts --json --all")?;
        let records = all.as_array().cloned().unwrap_or_default();
        let open: BTreeSet<String> = records
            .iter()
            .filter(|c| c["state"] == "open")
            .filter_map(|c| c["path"].as_str().map(String::from))
            .collect();
        Ok((all, records, open))
    }

    /// `fsck` is clean.
    fn fsck_clean(&self, after: &str) -> Result<(), Failure> {
        let fsck = self.run(&["fsck", "--json"], &[]);
        if fsck.code != 0 {
            return fail("fsck", format!("fsck after {after}: {fsck}"));
        }
        Ok(())
    }

    /// `cachesync undo` of the last operation that changed anything (killed at `point` if
    /// given, then run again with its number), and what it promises: exit 0, or 7 when a
    /// path was left or became a conflict, or 2 when there is nothing to take back and
    /// nothing changed; `fsck` clean; no temporary left; nothing lost: every version either
    /// side held before (the base versions too: those are what an undo replaces) is
    /// afterwards in a tree, a conflict variant, or given back, byte for byte, by
    /// `restore PATH --at OP --to DIR`.
    fn undo(&mut self, point: Option<&str>, base: &mut Tree) -> Result<(), Failure> {
        if let Some(f) = self.broken.take() {
            return Err(f);
        }
        let before = self.both();
        let keep = Self::must_keep(&before, &Tree::new());
        self.script
            .push("(cd \"$W\" && cachesync undo -n); echo \"exit $?\"".to_string());
        let dry = self.run(&["undo", "-n", "--json"], &[]);
        if dry.code == 2 {
            let now = self.both();
            if now.local != before.local || now.remote != before.remote {
                return fail(
                    "undo-refused",
                    format!("a refused undo changed a tree: {dry}"),
                );
            }
            self.count("undo refused");
            return Ok(());
        }
        let op = parse(&dry, "undo -n --json")?["undone"].to_string();
        if let Some(point) = point {
            self.script.push(format!(
                "(cd \"$W\" && CACHESYNC_FAILPOINT={point} cachesync undo {op}); echo \"exit $? (137: killed)\""
            ));
            let r = self.run(
                &["undo", &op],
                &[("CACHESYNC_FAILPOINT", OsStr::new(point))],
            );
            if r.signal == Some(9) {
                self.count("undo kill reached");
                self.fsck_clean(&format!("an undo killed at {point}"))?;
            } else if r.code != 0 && r.code != 7 {
                return fail(
                    "undo-exit",
                    format!("undo {op} (not killed at {point}): {r}"),
                );
            }
        }
        self.script.push(format!(
            "(cd \"$W\" && cachesync undo {op}); echo \"exit $?\""
        ));
        let r = self.run(&["undo", &op, "--json"], &[]);
        if r.code != 0 && r.code != 7 {
            return fail("undo-exit", format!("undo {op} exited {}: {r}", r.code));
        }
        let report = parse(&r, "undo --json")?;
        self.count("undo");
        self.fsck_clean(&format!("undo {op}"))?;
        for root in [&self.env.ws, &self.env.remote] {
            let left = leftovers(root);
            if !left.is_empty() {
                return fail(
                    "leftovers",
                    format!("temporary files left by undo: {left:?}"),
                );
            }
        }
        let (all, records, open) = self.records()?;
        let after = self.both();
        let here: BTreeSet<Content> = [&after.local, &after.remote]
            .into_iter()
            .flat_map(|t| t.values().filter_map(content))
            .collect();
        let mut lost = Vec::new();
        for (c, (side, path)) in &keep {
            if here.contains(c) || self.in_a_variant(c, &records)? || self.restores(c, path, &op) {
                continue;
            }
            lost.push(format!("  {c:?} (held by the {side} at {})", lp(path)));
        }
        if !lost.is_empty() {
            return fail(
                "undo-nothing-lost",
                format!(
                    "after undo {op}, these are nowhere (not in either tree, a conflict variant, or `restore --at {op}`):\n{}\nundo: {report}\nrecords: {all}\nworkspace before vs remote before:\n{}",
                    lost.join("\n"),
                    tree_diff(&before.local, &before.remote)
                ),
            );
        }
        self.open = open;
        self.agree(base);
        Ok(())
    }

    /// Whether `restore PATH --at OP --to DIR` writes `c` at `path` under DIR.
    fn restores(&self, c: &Content, path: &[u8], op: &str) -> bool {
        let dir = tempfile::tempdir_in(self.env.root()).expect("a directory to restore into");
        let shown = lp(path);
        let to = dir.path().to_str().expect("a UTF-8 temporary path");
        let r = self.run(&["restore", &shown, "--at", op, "--to", to], &[]);
        let at = dir.path().join(OsStr::from_bytes(path));
        r.code == 0
            && match c {
                Content::File(b) => fs::read(&at).is_ok_and(|got| &got == b),
                Content::Link(t) => {
                    fs::read_link(&at).is_ok_and(|got| got.as_os_str().as_bytes() == t.as_slice())
                }
            }
    }

    /// Counts what the sync did, for the summary.
    fn tally(&mut self, done: &Synced) {
        self.count("sync");
        for rec in &done.records {
            if rec["state"] == "open" {
                self.count(format!("conflict {}", rec["kind"].as_str().unwrap_or("?")));
            }
        }
        for n in done.report["notices"].as_array().into_iter().flatten() {
            let n = n.as_str().unwrap_or_default();
            if n.contains("merged") {
                self.count("merge");
            }
            if n.contains("lost+found") {
                self.count("to lost+found");
            }
        }
    }

    /// Every version in `keep` is in a tree or a variant.
    fn nothing_lost(
        &self,
        keep: &Keep,
        base: &Tree,
        before: &Before,
        done: &Synced,
    ) -> Result<(), Failure> {
        let here: BTreeSet<Content> = [&done.local, &done.remote]
            .into_iter()
            .flat_map(|t| t.values().filter_map(content))
            .collect();
        let mut lost = Vec::new();
        let mut merged_only = Vec::new();
        for (c, (side, path)) in keep {
            if here.contains(c) || self.in_a_variant(c, &done.records)? {
                continue;
            }
            // A version whose every line is in the file now at its path was merged: its
            // edits are kept, the version as a whole is not. Still a failure (no variant
            // holds it), told apart from a version gone altogether.
            if Self::inside_a_merge(c, path, base, &done.local) {
                merged_only.push(format!(
                    "  {c:?} (held by the {side} at {}; every line of it is in the workspace's file there)",
                    lp(path)
                ));
            } else {
                lost.push(format!("  {c:?} (held by the {side} at {})", lp(path)));
            }
        }
        let gone = !lost.is_empty();
        lost.append(&mut merged_only);
        if lost.is_empty() {
            return Ok(());
        }
        fail(
            if gone {
                "nothing-lost"
            } else {
                "nothing-lost (a version kept only inside a merge)"
            },
            format!(
                "after the sync, these are nowhere (not in either tree, lost+found, or a conflict variant):\n{}\nsync: {}\nrecords: {}\nworkspace before vs remote before:\n{}workspace after vs remote after:\n{}",
                lost.join("\n"),
                done.report,
                done.all,
                tree_diff(&before.local, &before.remote),
                tree_diff(&done.local, &done.remote)
            ),
        )
    }

    /// Both sides are equal, but at open conflicts.
    fn converged(&self, done: &Synced) -> Result<(), Failure> {
        let synced = synced_part(&done.local);
        let keys: BTreeSet<&Vec<u8>> = synced.keys().chain(done.remote.keys()).collect();
        let differ: Vec<String> = keys
            .into_iter()
            .filter(|k| synced.get(*k) != done.remote.get(*k))
            .map(|k| lp(k))
            .filter(|k| !done.open.contains(k))
            .collect();
        // A server edit that kept size and mtime, at a file the workspace did not change, is
        // not seen (cachesync trusts the stat of a file it has no reason to read, as git
        // does; see the guide's "What a step checks before it writes"). Such a file is never
        // written over or removed (the workspace's next change to it reads it first: the
        // nothing-lost check holds that), so the divergence is accepted here.
        if differ.iter().all(|k| self.stat_kept.contains(k)) {
            return Ok(());
        }
        fail(
            "converged",
            format!(
                "sync exited {}; the sides differ at {differ:?}, which no open conflict names (open: {:?})\n{}sync: {}\nrecords: {}",
                done.code,
                done.open,
                tree_diff(&synced, &done.remote),
                done.report,
                done.all
            ),
        )
    }

    /// `check`, before the sync, listed what it left open (and, but after a kill, nothing
    /// but that and what was open already).
    fn foreseen(
        &self,
        pre: &Run,
        predicted: &BTreeSet<String>,
        done: &Synced,
        killed: bool,
    ) -> Result<(), Failure> {
        let open = &done.open;
        let unforeseen = open.difference(predicted).next().is_some();
        let unexplained = predicted
            .iter()
            .any(|p| !killed && !open.contains(p) && !self.open.contains(p));
        if !unforeseen && !unexplained && (open.is_empty() || pre.code == 7) {
            return Ok(());
        }
        fail(
            if killed {
                // An uninterrupted run would have left open what check foresaw.
                "recovery-differs"
            } else {
                "check-before-sync"
            },
            format!(
                "before the sync, check exited {} listing {predicted:?}; the sync left open {open:?} (open before: {:?}){}\ncheck before: {}\nsync: {}\nrecords: {}",
                pre.code,
                self.open,
                if killed { " (after a kill)" } else { "" },
                pre.out(),
                done.report,
                done.all
            ),
        )
    }

    /// `check` agrees with the conflict list; a second sync does nothing.
    fn check_and_again(&mut self, done: &Synced) -> Result<(), Failure> {
        self.script.push(
            "(cd \"$W\" && cachesync conflicts --all; cachesync check); echo \"check exit $?\""
                .to_string(),
        );
        let check = self.run(&["check", "--json"], &[]);
        let want = if done.open.is_empty() { 0 } else { 7 };
        let listed = problem_paths(&parse(&check, "check --json")?);
        if check.code != want || listed != done.open {
            return fail(
                "check",
                format!(
                    "check exited {} listing {listed:?}; the open conflicts are {:?}: {check}",
                    check.code, done.open
                ),
            );
        }
        self.script
            .push("(cd \"$W\" && cachesync sync); echo \"second sync exit $?\"".to_string());
        let again = self.run(&["sync", "--json"], &[]);
        let j = parse(&again, "second sync --json")?;
        let steps = j["steps"].as_array().map_or(0, Vec::len);
        if again.code != want || steps != 0 {
            return fail(
                "second-sync-noop",
                format!(
                    "a second sync exited {} with {steps} step(s) (expected exit {want}, no step): {j}\nfirst: {}",
                    again.code, done.report
                ),
            );
        }
        Ok(())
    }

    /// Records what the sync left open, and moves the base to where both sides agree.
    fn settle(&mut self, done: &Synced, base: &mut Tree) {
        self.open = done.open.clone();
        self.open_kinds = done
            .records
            .iter()
            .filter(|c| c["state"] == "open")
            .filter_map(|c| {
                let path = c["path"].as_str()?.to_string();
                Some((path, c["kind"].as_str().unwrap_or_default().to_string()))
            })
            .collect();
        self.agree(base);
    }

    /// Moves the base to where both sides agree.
    fn agree(&self, base: &mut Tree) {
        let now = self.both();
        let local = synced_part(&now.local);
        let keys: BTreeSet<Vec<u8>> = base
            .keys()
            .chain(local.keys())
            .chain(now.remote.keys())
            .cloned()
            .collect();
        for k in keys {
            let (l, r) = (local.get(&k), now.remote.get(&k));
            if l == r {
                match l {
                    Some(n) => base.insert(k, n.clone()),
                    None => base.remove(&k),
                };
            }
        }
    }

    /// Runs `sync` paused at `point` while `op` is applied (afterwards if the point is never
    /// reached), and adjusts `keep`: what the change made must be kept too; what it
    /// overwrote or removed need not, even where the sync had copied it to the other side
    /// (the user replaced it; the sync was paused, or done: only the change changed the
    /// trees meanwhile).
    fn paused_sync(
        &mut self,
        point: &str,
        op: &Op,
        base: &Tree,
        keep: &mut Keep,
    ) -> Result<(), Failure> {
        let pause = self.env.root().join("paused");
        self.script.push(format!(
            "(cd \"$W\" && CACHESYNC_PAUSE={point} CACHESYNC_PAUSE_FILE=\"$T/paused\" cachesync sync) &"
        ));
        self.script.push(
            "while [ ! -e \"$T/paused\" ] && kill -0 $! 2>/dev/null; do sleep 0.05; done"
                .to_string(),
        );
        let mut child =
            common::spawn_paused(&self.env.ws, &self.env.home, &["sync"], point, &pause);
        let mut exited = false;
        let settled = cachesync_testutils::poll_until(Duration::from_secs(120), || {
            exited = exited || child.try_wait().expect("poll the sync").is_some();
            exited || pause.exists()
        });
        if !settled {
            let _ = child.kill();
            return fail("hang", format!("sync paused at {point}: no pause, no exit"));
        }
        let reached = pause.exists();
        if reached {
            self.count("pause reached");
        }
        let mid = self.both();
        self.apply(op);
        if reached {
            fs::remove_file(&pause).expect("resume the sync");
        }
        self.script
            .push("rm -f \"$T/paused\"; wait $!; echo \"exit $?\"".to_string());
        let out = child.wait_with_output().expect("the sync ends");
        let code = out.status.code().unwrap_or(-1);
        if code != 0 && code != 7 {
            let r = Run {
                code,
                signal: std::os::unix::process::ExitStatusExt::signal(&out.status),
                stdout: out.stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            return fail(
                "exit-code",
                format!("a sync during which {op:?} was made exited {code}: {r}"),
            );
        }
        let during = self.both();
        for (c, at) in Self::must_keep(&during, base) {
            keep.entry(c).or_insert(at);
        }
        for (m, d) in [(&mid.local, &during.local), (&mid.remote, &during.remote)] {
            for (p, n) in m {
                if d.get(p).and_then(content) != content(n) {
                    if let Some(c) = content(n) {
                        keep.remove(&c);
                    }
                }
            }
        }
        Ok(())
    }

    /// True when the workspace's file at `path` holds every line of `c` that the base did
    /// not (and is another version).
    fn inside_a_merge(c: &Content, path: &[u8], base: &Tree, local: &Tree) -> bool {
        let Content::File(body) = c else { return false };
        let Some(Node::File(_, now)) = local.get(path) else {
            return false;
        };
        let old: BTreeSet<&[u8]> = match base.get(path) {
            Some(Node::File(_, b)) => b.split_inclusive(|x| *x == b'\n').collect(),
            _ => BTreeSet::new(),
        };
        let now: BTreeSet<&[u8]> = now.split_inclusive(|x| *x == b'\n').collect();
        body.split_inclusive(|x| *x == b'\n')
            .all(|l| old.contains(l) || now.contains(l))
    }

    /// True when `c` is a variant of a conflict record. For an open record, `show` must print
    /// it.
    fn in_a_variant(&self, c: &Content, records: &[serde_json::Value]) -> Result<bool, Failure> {
        for rec in records {
            for v in ["base", "client", "server", "resolved"] {
                let var = &rec[v];
                let hit = match c {
                    Content::File(b) => {
                        var["file"].as_str() == Some(FileId::of(b).to_hex().as_str())
                    }
                    Content::Link(t) => {
                        var["kind"] == "symlink"
                            && var["target"].as_str().map(str::as_bytes) == Some(t.as_slice())
                    }
                };
                if !hit {
                    continue;
                }
                let shown = rec["state"] == "open" || v != "client";
                if !shown {
                    return Ok(true);
                }
                let path = rec["path"].as_str().unwrap_or_default();
                let r = self.run(&["show", path, "--variant", v], &[]);
                let want: Vec<u8> = match c {
                    Content::File(b) => b.clone(),
                    Content::Link(t) => [t.as_slice(), b"\n"].concat(),
                };
                if r.code != 0 || r.stdout != want {
                    return fail(
                        "nothing-lost",
                        format!(
                            "{c:?} is the {v} variant of the record {rec}, but `show {path} --variant {v}` does not print it: {r}"
                        ),
                    );
                }
                return Ok(true);
            }
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case

/// Where a case's operations come from.
enum Source<'a> {
    /// Drawn from a seed as the case runs.
    Draw(Generator),
    /// Replayed (shrinking, reporting).
    Replay(&'a Case),
}

/// Runs a case in a fresh remote and workspace: returns it as run (drawn operations
/// recorded, up to the failure if one), the script that replays it, and the result.
/// What all the drawn cases did, summed.
static STATS: std::sync::Mutex<BTreeMap<String, usize>> = std::sync::Mutex::new(BTreeMap::new());

fn run_case(source: Source<'_>) -> (Case, Vec<String>, Result<(), Failure>) {
    let mut w = World::new();
    let (mut gen, mut case) = match source {
        Source::Draw(g) => {
            let seed = g.rng.0;
            let case = Case {
                seed,
                init: Vec::new(),
                steps: Vec::new(),
            };
            (Some(g), case)
        }
        Source::Replay(c) => (None, c.clone()),
    };
    let result = w.start(gen.as_mut(), &mut case).and_then(|mut base| {
        w.script.push("# round 1".to_string());
        match gen.as_mut() {
            Some(g) => {
                let rounds = g.rng.range(1, 5);
                for round in 0..rounds {
                    for _ in 0..g.rng.range(1, 8) {
                        if let Some(op) = g.edit(&w, 40) {
                            case.steps.push(op.clone());
                            w.step(&op, &mut base)?;
                        }
                    }
                    if round + 1 < rounds || g.rng.chance(30) {
                        let op = g.sync(&w);
                        case.steps.push(op.clone());
                        w.step(&op, &mut base)?;
                        if let Some(op) = g.undo() {
                            case.steps.push(op.clone());
                            w.step(&op, &mut base)?;
                        }
                    }
                }
            }
            None => {
                for op in &case.steps {
                    w.step(op, &mut base)?;
                }
            }
        }
        w.step(&Op::Sync(None), &mut base)?;
        w.script.pop();
        Ok(())
    });
    if gen.is_some() {
        let mut all = STATS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, v) in &w.stats {
            *all.entry(k.clone()).or_default() += v;
        }
    }
    (case, w.script, result)
}

impl World {
    fn new() -> World {
        World {
            env: Env::new(),
            script: Vec::new(),
            stats: BTreeMap::new(),
            stat_kept: BTreeSet::new(),
            open: BTreeSet::new(),
            open_kinds: BTreeMap::new(),
            broken: None,
        }
    }

    /// The starting tree on the remote (drawn, or the case's), dated an hour back (the scans
    /// trust the stat of such files), and the clone. Returns the base.
    fn start(&mut self, gen: Option<&mut Generator>, case: &mut Case) -> Result<Tree, Failure> {
        fs::write(self.env.r(TEXT), text_file()).expect("write the text file");
        self.script
            .push(format!("{} > \"$R/{TEXT}\"", printf(&text_file())));
        match gen {
            Some(g) => {
                for _ in 0..g.rng.range(4, 10) {
                    let op = g.start(self);
                    self.apply(&op);
                    case.init.push(op);
                }
            }
            None => {
                for op in &case.init {
                    self.apply(op);
                }
            }
        }
        common::age_files(&self.env.remote);
        self.script
            .push("find \"$R\" -type f -exec touch -d @$(( $(date +%s) - 3600 )) {} +".to_string());
        self.script.push(
            "cachesync clone -q --max-delete 100 \"$R\" \"$W\"; echo \"exit $?\"".to_string(),
        );
        let r = self.env.clone_with(&["-q", "--max-delete", "100"]);
        if r.code != 0 {
            return fail("clone", format!("clone: {r}"));
        }
        let now = self.both();
        if now.local != now.remote {
            return fail(
                "clone",
                format!(
                    "after the clone the sides differ:\n{}",
                    tree_diff(&now.local, &now.remote)
                ),
            );
        }
        Ok(now.remote)
    }

    /// One step of a case: an edit, or a sync and its checks.
    fn step(&mut self, op: &Op, base: &mut Tree) -> Result<(), Failure> {
        let how = match op {
            Op::Sync(Some(point)) => Disturb::Kill(point),
            Op::Sync(None) => Disturb::Nothing,
            Op::SyncDuring(point, op) => Disturb::Pause(point, op),
            Op::Undo(point) => return self.undo(point.as_deref(), base),
            _ => {
                self.apply(op);
                return Ok(());
            }
        };
        self.sync(how, base)?;
        self.script.push("# next round".to_string());
        Ok(())
    }
}

fn render_script(case: &Case, lines: &[String]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "#!/bin/bash\n# randomized.rs, seed {:#x}: replays the shrunk case with the binary on PATH.\nset -u\nT=$(mktemp -d); R=$T/remote; W=$T/ws; export HOME=$T/home\nmkdir -p \"$R\" \"$HOME\"\n",
        case.seed
    ));
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("echo \"trees in $T\"\n");
    s
}

/// Shrinks a failing case: removes chunks of steps, starting entries, kills and syncs, as long
/// as the same invariant still breaks. Bounded in time.
fn shrink(case: &Case, invariant: &'static str) -> Case {
    let limit = Duration::from_secs(
        std::env::var("CACHESYNC_RANDOMIZED_SHRINK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if long_run() { 600 } else { 120 }),
    );
    let started = Instant::now();
    let mut best = case.clone();
    let still_fails =
        |c: &Case| matches!(run_case(Source::Replay(c)).2, Err(f) if f.invariant == invariant);
    let mut progress = true;
    while progress && started.elapsed() < limit {
        progress = false;
        // Chunks of steps, halves down to single steps.
        let mut n = best.steps.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < best.steps.len() && started.elapsed() < limit {
                let mut c = best.clone();
                let end = (i + n).min(c.steps.len());
                c.steps.drain(i..end);
                if still_fails(&c) {
                    best = c;
                    progress = true;
                } else {
                    i += n;
                }
            }
            if n == 1 {
                break;
            }
            n = n.div_ceil(2);
        }
        // Starting entries, one at a time.
        let mut i = 0;
        while i < best.init.len() && started.elapsed() < limit {
            let mut c = best.clone();
            c.init.remove(i);
            if still_fails(&c) {
                best = c;
                progress = true;
            } else {
                i += 1;
            }
        }
        // Kills become plain syncs; a change made during a sync is made before it.
        let mut i = 0;
        while i < best.steps.len() {
            i += 1;
            let i = i - 1;
            if started.elapsed() >= limit {
                break;
            }
            let simpler = match &best.steps[i] {
                Op::Sync(Some(_)) => vec![Op::Sync(None)],
                Op::Undo(Some(_)) => vec![Op::Undo(None)],
                Op::SyncDuring(_, op) => vec![Op::Sync(None), (**op).clone()],
                _ => continue,
            };
            let mut c = best.clone();
            c.steps.splice(i..=i, simpler);
            if still_fails(&c) {
                best = c;
                progress = true;
            }
        }
    }
    best
}

/// `CACHESYNC_FAULTS=all`: the long run of `make faults`.
fn long_run() -> bool {
    std::env::var("CACHESYNC_FAULTS").as_deref() == Ok("all")
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The failure of `case` (run once more, for its details and its script).
fn report(case: &Case, f: &Failure) -> String {
    let (_, lines, result) = run_case(Source::Replay(case));
    let detail = match result {
        Err(g) if g.invariant == f.invariant => g.detail,
        Err(g) => format!(
            "(run again, it broke `{}` instead: {})\nfirst: {}",
            g.invariant, g.detail, f.detail
        ),
        Ok(()) => format!("(run again, it passed: timing-dependent?)\n{}", f.detail),
    };
    format!(
        "randomized: invariant `{}` broken\n{case:?}\n\n{detail}\n\nreplay (bash, cachesync on PATH):\n{}",
        f.invariant,
        render_script(case, &lines)
    )
}

#[test]
fn random_edits_on_both_sides_converge_and_lose_nothing() {
    let long = long_run();
    let base_seed = env_u64("CACHESYNC_FAULTS_SEED").unwrap_or(0x5eed_cafe);
    let seeds: Vec<u64> = match env_u64("CACHESYNC_RANDOMIZED_SEED") {
        Some(s) => vec![s],
        None => {
            let n = env_u64("CACHESYNC_RANDOMIZED_CASES").unwrap_or(if long { 400 } else { 40 });
            let mut rng = Rng(base_seed);
            (0..n).map(|_| rng.next_u64()).collect()
        }
    };
    let keep_going = std::env::var("CACHESYNC_RANDOMIZED_KEEP_GOING").is_ok_and(|v| v == "1");
    let verbose = std::env::var("CACHESYNC_RANDOMIZED_VERBOSE").is_ok_and(|v| v == "1");
    let do_shrink = std::env::var("CACHESYNC_RANDOMIZED_SHRINK").map_or(true, |v| v != "0");
    let started = Instant::now();
    let mut failures = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let t = Instant::now();
        let (case, lines, result) = run_case(Source::Draw(Generator::new(*seed)));
        if verbose {
            eprintln!(
                "case {i} ({:.1} s): {case:?}\n{}",
                t.elapsed().as_secs_f64(),
                render_script(&case, &lines)
            );
        }
        if let Err(f) = result {
            eprintln!(
                "randomized: seed {seed:#x} breaks `{}`; shrinking...",
                f.invariant
            );
            let small = if do_shrink {
                shrink(&case, f.invariant)
            } else {
                case.clone()
            };
            let text = report(&small, &f);
            if !keep_going {
                panic!("{text}");
            }
            eprintln!("{text}");
            failures.push(format!("seed {seed:#x}: `{}`", f.invariant));
        }
    }
    let stats = STATS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    eprintln!(
        "randomized: done: {}",
        stats
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(stats);
    eprintln!(
        "randomized: {} case(s) in {:.1} s, {} failure(s)",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failing seeds:\n{}",
        failures.join("\n")
    );
}
