//! Engine-level tests of resolve, status and presence (get, drop): a workspace over a local
//! directory remote, changed on both sides in a few lines, and the operation called directly
//! (no binary), so each behaviour is checked in milliseconds. The binary tests in cli/tests
//! keep what only they show (output, exit codes).

use std::fs;
use std::path::{Path, PathBuf};

use cachesync_engine::journal::OpKind;
use cachesync_engine::plan::Direction;
use cachesync_engine::presence;
use cachesync_engine::resolve::{self, Resolution};
use cachesync_engine::status;
use cachesync_engine::sync;
use cachesync_engine::variants::{self, Which};
use cachesync_engine::{NoProgress, Workspace};

/// A remote, a workspace cloned from it, and edits on either side.
struct World {
    _tmp: tempfile::TempDir,
    remote: PathBuf,
    ws: Workspace,
}

impl World {
    /// A remote holding `files` (path, content), cloned.
    fn new(files: &[(&str, &str)]) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let remote = tmp.path().join("remote");
        for (p, body) in files {
            write(&remote.join(p), body);
        }
        fs::create_dir_all(&remote).expect("mkdir");
        let ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
        let mut w = World {
            _tmp: tmp,
            remote,
            ws,
        };
        w.run(OpKind::Clone, Direction::Pull, false);
        w
    }

    fn local(&self, rel: &str) -> PathBuf {
        self.ws.root.join(rel)
    }

    fn run(&mut self, command: OpKind, direction: Direction, dry_run: bool) -> sync::Outcome {
        let opts = sync::Options {
            command,
            direction,
            paths: Vec::new(),
            dry_run,
            force: false,
            exact_paths: false,
        };
        sync::run(&mut self.ws, &opts, &NoProgress).expect("sync")
    }

    fn sync(&mut self) -> sync::Outcome {
        self.run(OpKind::Sync, Direction::Both, false)
    }

    /// Both sides edit `rel` differently (one line each): a content conflict.
    fn conflict(files: &[(&str, &str)], rel: &str) -> World {
        let mut w = World::new(files);
        write(&w.local(rel), "mine\n");
        write(&w.remote.join(rel), "theirs, longer\n");
        let r = w.sync();
        assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
        w
    }
}

fn write(path: &Path, body: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir -p");
    }
    fs::write(path, body).expect("write");
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A record's field as JSON (what `conflicts --json` prints).
fn field(r: &impl serde::Serialize, name: &str) -> serde_json::Value {
    serde_json::to_value(r).expect("serializes")[name].clone()
}

const FILES: &[(&str, &str)] = &[("c.txt", "base\n"), ("x", "x\n"), ("y", "y\n")];

/// A status that looks at the share.
const REFRESH: status::Options = status::Options {
    with_ignored: false,
    refresh: true,
};

#[test]
fn resolve_take_server_settles_without_a_sync_and_take_client_needs_one() {
    let w = World::conflict(FILES, "c.txt");
    let done = resolve::run(
        &w.ws,
        &resolve::Options {
            path: b"c.txt".to_vec(),
            how: Resolution::Take(Which::Server),
        },
    )
    .expect("resolve");
    assert!(!done.needs_sync, "{}", done.message);
    assert_eq!(read(&w.local("c.txt")), "theirs, longer\n");

    let mut w = World::conflict(FILES, "c.txt");
    let done = resolve::run(
        &w.ws,
        &resolve::Options {
            path: b"c.txt".to_vec(),
            how: Resolution::Take(Which::Client),
        },
    )
    .expect("resolve");
    assert!(done.needs_sync, "{}", done.message);
    let r = w.sync();
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    assert_eq!(read(&w.remote.join("c.txt")), "mine\n");
    let resolved = variants::read(&w.ws, b"c.txt", Which::Resolved)
        .expect("variant")
        .expect("a resolved variant");
    assert_eq!(resolved.bytes, b"mine\n");
}

#[test]
fn every_variant_of_a_conflict_is_readable_and_a_second_resolve_is_refused() {
    let w = World::conflict(FILES, "c.txt");
    let get = |which| {
        variants::read(&w.ws, b"c.txt", which)
            .expect("variant")
            .map(|v| String::from_utf8(v.bytes).expect("utf-8"))
    };
    assert_eq!(get(Which::Base).as_deref(), Some("base\n"));
    assert_eq!(get(Which::Client).as_deref(), Some("mine\n"));
    assert_eq!(get(Which::Server).as_deref(), Some("theirs, longer\n"));
    resolve::run(
        &w.ws,
        &resolve::Options {
            path: b"c.txt".to_vec(),
            how: Resolution::With(b"both\n".to_vec()),
        },
    )
    .expect("resolve with");
    assert_eq!(read(&w.local("c.txt")), "both\n");
    let again = resolve::run(
        &w.ws,
        &resolve::Options {
            path: b"c.txt".to_vec(),
            how: Resolution::Take(Which::Server),
        },
    );
    assert!(again.is_err(), "no open conflict any more");
}

#[test]
fn resolve_refuses_a_merge_of_overlapping_edits_and_a_server_that_moved_on() {
    let mut w = World::conflict(FILES, "c.txt");
    let merged = resolve::run(
        &w.ws,
        &resolve::Options {
            path: b"c.txt".to_vec(),
            how: Resolution::Merged,
        },
    );
    assert!(merged.is_err(), "the edits overlap");
    // The server changes again: a resolution against the recorded version is refused.
    write(&w.remote.join("c.txt"), "theirs, again\n");
    status::run(&w.ws, &REFRESH, &NoProgress).expect("status refreshes the remote snapshot");
    let late = resolve::run(
        &w.ws,
        &resolve::Options {
            path: b"c.txt".to_vec(),
            how: Resolution::Take(Which::Client),
        },
    );
    assert!(late.is_err(), "the server moved on since the record");
    let r = w.sync();
    assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
    assert_eq!(read(&w.remote.join("c.txt")), "theirs, again\n");
}

#[test]
fn status_reports_each_side_and_what_a_sync_would_do() {
    let mut w = World::new(FILES);
    write(&w.local("x"), "x, edited here\n");
    write(&w.local("new"), "new here\n");
    fs::remove_file(w.remote.join("y")).expect("rm");
    let changes = |list: &[cachesync_engine::status::PathChange]| -> Vec<(String, String)> {
        list.iter()
            .map(|c| (c.path.clone(), c.change.to_string()))
            .collect()
    };
    // Without --refresh the share is not looked at: the deletion is not known yet.
    let cached = status::run(&w.ws, &status::Options::default(), &NoProgress).expect("status");
    assert!(!cached.refreshed && cached.remote_seen_ns.is_some());
    assert_eq!(changes(&cached.local_changes).len(), 2);
    assert!(
        cached.remote_changes.is_empty(),
        "{:?}",
        cached.remote_changes
    );
    assert_eq!((cached.pending.pull, cached.pending.push), (0, 2));
    let st = status::run(&w.ws, &REFRESH, &NoProgress).expect("status");
    assert!(st.refreshed);
    assert_eq!(
        changes(&st.local_changes),
        [
            ("new".into(), "added".into()),
            ("x".into(), "modified".into())
        ]
    );
    assert_eq!(
        changes(&st.remote_changes),
        [("y".into(), "deleted".into())]
    );
    assert_eq!((st.pending.pull, st.pending.push), (1, 2));
    assert_eq!(st.mode, "connected");
    assert_eq!(changes(&st.provisional), [("new".into(), "added".into())]);
    // The look is remembered: the next status knows of the deletion without looking.
    let after = status::run(&w.ws, &status::Options::default(), &NoProgress).expect("status");
    assert!(!after.refreshed);
    assert_eq!(changes(&after.remote_changes), changes(&st.remote_changes));
    assert_eq!((after.pending.pull, after.pending.push), (1, 2));
    assert!(after.remote_seen_ns >= st.remote_seen_ns);
    // Other ignore rules: the last look listed under the old ones, so status looks again
    // (once; then it answers from that look).
    write(&w.local(".cachesyncignore"), "scratch/\n");
    let relisted = status::run(&w.ws, &status::Options::default(), &NoProgress).expect("status");
    assert!(relisted.refreshed, "the rules changed since the last look");
    let again = status::run(&w.ws, &status::Options::default(), &NoProgress).expect("status");
    assert!(!again.refreshed);
    fs::remove_file(w.local(".cachesyncignore")).expect("rm");
    let dry = w.run(OpKind::Sync, Direction::Both, true);
    assert_eq!(dry.plan.steps.len(), 3);
    w.sync();
    let st = status::run(&w.ws, &status::Options::default(), &NoProgress).expect("status");
    assert!(st.local_changes.is_empty() && st.remote_changes.is_empty());
    assert_eq!((st.pending.pull, st.pending.push), (0, 0));
}

#[test]
fn status_offline_answers_from_the_last_look_at_the_share() {
    let w = World::conflict(FILES, "c.txt");
    write(&w.local("x"), "x, offline\n");
    w.ws.set_disconnected("by hand", true).expect("disconnect");
    // A change on the share while disconnected is not seen, with or without --refresh.
    write(&w.remote.join("y"), "y, edited there\n");
    for opts in [status::Options::default(), REFRESH] {
        let st = status::run(&w.ws, &opts, &NoProgress).expect("status");
        assert_eq!(st.mode, "disconnected");
        assert!(st.remote_error.is_some() && !st.refreshed);
        // The conflicted server edit is the one remote change known.
        let remote: Vec<&str> = st.remote_changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(remote, ["c.txt"]);
        assert_eq!((st.pending.pull, st.pending.push), (0, 1), "x to push");
        assert_eq!(st.local_changes.len(), 2, "{:?}", st.local_changes);
        assert_eq!(st.conflicts.len(), 1);
        assert_eq!(field(&st.conflicts[0], "kind"), "content");
    }
}

#[test]
fn drop_makes_a_clean_file_remote_only_get_brings_it_back_and_a_change_is_never_dropped() {
    let mut w = World::new(FILES);
    let dropped = presence::drop_paths(&w.ws, &[b"x".to_vec()]).expect("drop");
    assert_eq!(dropped.done, [b"x".to_vec()]);
    assert!(
        w.local("x").symlink_metadata().is_err(),
        "gone from the workspace"
    );
    assert_eq!(read(&w.remote.join("x")), "x\n", "never from the server");
    // A sync does not take the missing file for a deletion.
    let r = w.sync();
    assert!(r.plan.steps.is_empty(), "{:?}", r.plan.steps);
    assert_eq!(read(&w.remote.join("x")), "x\n");

    let got = presence::get(&w.ws, &[b"x".to_vec()]).expect("get");
    assert_eq!(got.done, [b"x".to_vec()]);
    assert_eq!(read(&w.local("x")), "x\n");

    write(&w.local("y"), "y, edited\n");
    let refused = presence::drop_paths(&w.ws, &[b"y".to_vec()]).expect("drop");
    assert!(refused.done.is_empty());
    assert_eq!(refused.refused.len(), 1, "{:?}", refused.refused);
    assert_eq!(read(&w.local("y")), "y, edited\n");
}

#[test]
fn a_remote_only_file_follows_the_server_without_its_content_coming_here() {
    let mut w = World::new(FILES);
    presence::drop_paths(&w.ws, &[b"x".to_vec()]).expect("drop");
    write(&w.remote.join("x"), "x, edited on the server\n");
    let r = w.sync();
    // The other files, written seconds ago, are racy and read again (7 bytes); x's new 24
    // bytes are not read.
    assert!(r.bytes_down < 24, "x not read: {}", r.bytes_down);
    assert!(
        w.local("x").symlink_metadata().is_err(),
        "still remote-only"
    );
    let got = presence::get(&w.ws, &[b"x".to_vec()]).expect("get");
    assert_eq!(got.done.len(), 1);
    assert_eq!(read(&w.local("x")), "x, edited on the server\n");
}
