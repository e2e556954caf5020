//! The fault suite, crash half: every command that changes anything (clone, sync, pull, push,
//! resolve, undo, drop, cull, gc) is run once on a situation with `CACHESYNC_FAILPOINT_TRACE`, which
//! lists the crash points it passes; then, on a fresh copy of the same situation each time, it
//! is killed with SIGKILL at each of those points in turn. After each kill:
//! - no file on either side holds anything but its content from before the run or from after
//!   it (no partial file under a real name);
//! - `fsck` is clean;
//! - the command run again completes, and leaves both sides, the open conflicts and their
//!   variants exactly as an uninterrupted run does: no change from either side is lost;
//! - no temporary file of cachesync's is left on either side.
//!
//! CI runs a deterministic slice: every named point, and of the numbered ones (`before-step:N`
//! and the like) the first, a middle and the last. `CACHESYNC_FAULTS=all` (`make faults`)
//! kills at every point.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;

use common::{leftovers, noise, paths_of, tree, Env, Node, Run, Tree};

/// A situation, the command killed in it, and how it is finished afterwards.
struct Scenario {
    name: &'static str,
    /// Builds the situation on a fresh remote and workspace.
    setup: fn() -> Env,
    /// The command (run in the workspace, or for `clone` in the temporary root).
    command: &'static [&'static str],
    /// What the user runs after the crash.
    again: Again,
    /// Exit codes a complete run may end with (7: conflicts remain, by design).
    codes: &'static [i32],
    /// Whether the workspace must end exactly as after an uninterrupted run. Not for cull:
    /// which files it drops depends on what is in the workspace when it runs (after a kill,
    /// some are gone already) and on the store's size on disk; nothing may be lost all the
    /// same.
    exact_local: bool,
    /// Whether a remote file may be left patched in part (`patch_big_files: "in-place"`):
    /// each byte its old one or its new one, until the next run finishes the patch.
    patched_in_place: bool,
}

impl Scenario {
    fn run(&self, env: &Env, extra: &[(&str, &OsStr)]) -> Run {
        if self.command[0] == "clone" {
            let args = [
                OsStr::new("clone"),
                env.remote.as_os_str(),
                env.ws.as_os_str(),
            ];
            env.run_with(env.root(), args, extra)
        } else {
            env.run_with(&env.ws, self.command, extra)
        }
    }

    fn finish(&self, env: &Env) -> Run {
        match self.again {
            Again::Same => self.run(env, &[]),
            Again::AfterClone => {
                if env.ws.join(".cachesync").exists() {
                    env.run(["pull"])
                } else {
                    self.run(env, &[])
                }
            }
        }
    }
}

/// What the user runs after a crash, as docs/guide.md says.
enum Again {
    /// The same command.
    Same,
    /// After a clone: `pull` in the workspace if `.cachesync/` is there (the workspace was
    /// made, the copy was not finished), else the same `clone` again.
    AfterClone,
}

/// Everything a run must leave the same, whether or not it was interrupted.
#[derive(Debug, PartialEq)]
struct Outcome {
    local: Tree,
    remote: Tree,
    conflicts: Vec<Conflict>,
}

/// A conflict record as the user sees it.
#[derive(Debug, PartialEq)]
struct Conflict {
    path: String,
    kind: String,
    state: String,
    /// Each variant of an open conflict, with its bytes.
    variants: Vec<(String, Vec<u8>)>,
}

fn outcome(env: &Env) -> Outcome {
    let list = env.json(0, &["conflicts", "--json", "--all"]);
    let mut conflicts = Vec::new();
    for (c, path) in list
        .as_array()
        .expect("conflicts")
        .iter()
        .zip(paths_of(&list))
    {
        let mut variants = Vec::new();
        if c["state"] == "open" {
            for v in ["base", "client", "server"] {
                if c[v].is_object() {
                    let shown = env.ok(&["show", &path, "--variant", v]);
                    variants.push((v.to_string(), shown.stdout));
                }
            }
        }
        conflicts.push(Conflict {
            path,
            kind: c["kind"].as_str().unwrap_or_default().to_string(),
            state: c["state"].as_str().unwrap_or_default().to_string(),
            variants,
        });
    }
    Outcome {
        local: if env.ws.exists() {
            tree(&env.ws)
        } else {
            Tree::new()
        },
        remote: tree(&env.remote),
        conflicts,
    }
}

/// The points a run of `s` passes, in order, each once.
fn points(s: &Scenario) -> Vec<String> {
    let env = (s.setup)();
    let trace = env.root().join("trace");
    let r = s.run(&env, &[("CACHESYNC_FAILPOINT_TRACE", trace.as_os_str())]);
    assert!(s.codes.contains(&r.code), "{}: traced run: {r}", s.name);
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let mut seen = Vec::new();
    for line in text.lines() {
        if !seen.iter().any(|p: &String| p == line) {
            seen.push(line.to_string());
        }
    }
    seen
}

/// Every named point, and of each numbered family the first, a middle and the last (all of
/// them with `CACHESYNC_FAULTS=all`).
fn slice(points: Vec<String>) -> Vec<String> {
    if std::env::var("CACHESYNC_FAULTS").as_deref() == Ok("all") {
        return points;
    }
    let mut families: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for p in &points {
        if let Some((name, n)) = p.split_once(':') {
            if let Ok(n) = n.parse() {
                families.entry(name.to_string()).or_default().push(n);
            }
        }
    }
    points
        .into_iter()
        .filter(|p| match p.split_once(':') {
            Some((name, n)) => {
                let mut ns = families[name].clone();
                ns.sort_unstable();
                let n: usize = n.parse().expect("numbered");
                n == ns[0] || n == ns[ns.len() / 2] || n == ns[ns.len() - 1]
            }
            None => true,
        })
        .collect()
}

/// A node of `killed` must be what the path held before the run or after it; with
/// `mixed`, a file may also hold, at each offset, its old byte or its new one.
fn assert_whole(side: &str, point: &str, before: &Tree, killed: &Tree, after: &Tree, mixed: bool) {
    for (path, node) in killed {
        let partly = mixed
            && match (before.get(path), node, after.get(path)) {
                (Some(Node::File(_, old)), Node::File(_, now), Some(Node::File(_, new))) => {
                    now.len() <= old.len().max(new.len())
                        && now
                            .iter()
                            .enumerate()
                            .all(|(i, b)| old.get(i) == Some(b) || new.get(i) == Some(b))
                }
                _ => false,
            };
        assert!(
            before.get(path) == Some(node) || after.get(path) == Some(node) || partly,
            "killed at {point}: {side} {:?} holds neither its old nor its new state: {node:?}",
            String::from_utf8_lossy(path)
        );
    }
}

#[allow(clippy::too_many_lines)] // one loop read top to bottom: kill, check, recover, compare
fn crash_everywhere(s: &Scenario) {
    let reference = {
        let env = (s.setup)();
        let r = s.run(&env, &[]);
        assert!(
            s.codes.contains(&r.code),
            "{}: uninterrupted run: {r}",
            s.name
        );
        outcome(&env)
    };
    let all = points(s);
    assert!(!all.is_empty(), "{}: the run passed no crash point", s.name);
    let chosen = slice(all);
    eprintln!(
        "{}: killing at {} point(s): {chosen:?}",
        s.name,
        chosen.len()
    );
    for point in &chosen {
        let env = (s.setup)();
        let (local_before, remote_before) = (
            if env.ws.exists() {
                tree(&env.ws)
            } else {
                Tree::new()
            },
            tree(&env.remote),
        );
        let killed = s.run(&env, &[("CACHESYNC_FAILPOINT", OsStr::new(point))]);
        // A cull drops as many files as the store's size on disk says it must, which varies a
        // little from run to run: the last numbered point of its trace may not come again.
        let may_miss = !s.exact_local && point.contains(':') && s.codes.contains(&killed.code);
        assert!(
            killed.signal == Some(9) || may_miss,
            "{}: not killed at {point}: {killed}",
            s.name
        );
        assert_whole(
            "remote",
            point,
            &remote_before,
            &tree(&env.remote),
            &reference.remote,
            s.patched_in_place,
        );
        if env.ws.exists() {
            assert_whole(
                "workspace",
                point,
                &local_before,
                &tree(&env.ws),
                &reference.local,
                false,
            );
        }
        if env.ws.join(".cachesync").exists() {
            let fsck = env.run(["fsck", "--json"]);
            assert_eq!(
                fsck.code, 0,
                "{}: fsck after a kill at {point}: {fsck}",
                s.name
            );
        }
        let again = s.finish(&env);
        assert!(
            s.codes.contains(&again.code),
            "{}: the run after a kill at {point} did not complete: {again}",
            s.name
        );
        let fsck = env.run(["fsck", "--json"]);
        assert_eq!(
            fsck.code, 0,
            "{}: fsck after recovery from {point}: {fsck}",
            s.name
        );
        let mut got = outcome(&env);
        if !s.exact_local {
            for (path, node) in &got.local {
                assert_eq!(
                    got.remote.get(path),
                    Some(node),
                    "{}: after recovery from {point}, {:?} in the workspace differs from the remote",
                    s.name,
                    String::from_utf8_lossy(path)
                );
            }
            let status = env.json(0, &["status", "--json"]);
            let (used, budget) = (&status["cache"]["used"], &status["cache"]["budget"]);
            assert!(
                used.as_u64() <= budget.as_u64(),
                "{}: over budget after recovery from {point}: {status}",
                s.name
            );
            got.local = reference.local.clone();
        }
        assert!(
            got == reference,
            "{}: after a kill at {point} and a new run, the result differs from an \
             uninterrupted run's.\nworkspace (left: got, right: expected):\n{}\nremote:\n{}\n\
             conflicts: {:?}\nexpected: {:?}",
            s.name,
            common::diff(&got.local, &reference.local),
            common::diff(&got.remote, &reference.remote),
            got.conflicts,
            reference.conflicts
        );
        for side in [&env.ws, &env.remote] {
            let left = leftovers(side);
            assert!(
                left.is_empty(),
                "{}: temporaries left after recovery from {point}: {left:?}",
                s.name
            );
        }
    }
}

/// A remote with text files, a directory and a 3 MB file of noise (several chunks).
fn remote_with_files() -> Env {
    let env = Env::with_remote(&[
        ("a.txt", "alpha\n"),
        ("b.txt", "bravo\n"),
        ("c.txt", "charlie\n"),
        ("docs/d.md", "delta\n"),
        ("docs/e.md", "echo\n"),
        ("shared.txt", "one\ntwo\nthree\n"),
    ]);
    fs::write(env.r("big.bin"), noise(7, 3_000_000)).expect("write big");
    env
}

/// Enough new files, in new directories, that the writers ahead of the loop make the
/// directories and put the staged files in place (`sync/ahead.rs`), and the kills land in
/// their threads too.
fn remote_with_many_files() -> Env {
    let env = remote_with_files();
    for i in 0..80 {
        env.put_remote(
            format!("many/d{}/f{i:02}.txt", i % 4),
            format!("file {i}\n"),
        );
    }
    env
}

/// Changes on both sides: edits, a new directory, a rename, a deletion, a grown big file, and
/// a content conflict.
fn both_sides_changed() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    env.put_local("a.txt", "alpha, edited locally\n");
    env.put_local("new/n.txt", "november\n");
    fs::rename(env.w("b.txt"), env.w("b-renamed.txt")).expect("rename");
    fs::remove_file(env.w("docs/e.md")).expect("rm");
    let mut big = noise(7, 3_000_000);
    big.extend_from_slice(b"appended locally");
    common::write_changed(&env.w("big.bin"), &big);
    env.put_local("shared.txt", "one\nTWO, here\nthree\n");
    env.put_remote("c.txt", "charlie, edited on the server\n");
    env.put_remote("docs/f.md", "foxtrot\n");
    env.put_remote("shared.txt", "one\nTWO, there\nthree\n");
    env
}

fn remote_changed() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    env.put_remote("a.txt", "alpha, edited on the server\n");
    env.put_remote("sub/deep/new.txt", "new on the server\n");
    fs::remove_file(env.r("docs/e.md")).expect("rm");
    let mut big = noise(7, 3_000_000);
    big[1_500_000..1_500_010].copy_from_slice(b"0123456789");
    common::write_changed(&env.r("big.bin"), &big);
    env
}

fn workspace_changed() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    env.put_local("a.txt", "alpha, edited locally\n");
    env.put_local("new/dir/n.txt", "november\n");
    fs::rename(env.w("c.txt"), env.w("c-renamed.txt")).expect("rename");
    fs::remove_file(env.w("docs/d.md")).expect("rm");
    common::write_changed(&env.w("big.bin"), &noise(8, 2_000_000));
    env
}

fn conflicted() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    env.put_local("b.txt", "bravo, mine\n");
    env.put_remote("b.txt", "bravo, theirs\n");
    let r = env.run(["sync"]);
    assert_eq!(r.code, 7, "the conflict is recorded: {r}");
    env
}

/// After operation 2, a sync that pulled a removal, an overwrite (of the big file too) and
/// a rename, and pushed an edit: the operation `undo 2` takes back.
fn synced_both_ways() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    fs::remove_dir_all(env.r("docs")).expect("remove docs/ on the share");
    common::write_changed(&env.r("big.bin"), &noise(11, 3_000_000));
    fs::rename(env.r("c.txt"), env.r("c2.txt")).expect("rename on the share");
    env.put_local("a.txt", "alpha, edited here\n");
    let sync = env.json(0, &["sync", "--json"]);
    assert_eq!(sync["op"], 2, "{sync}");
    env
}

fn cloned() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    env
}

/// A conflict on `a.txt` (op 2) settled by taking the server's version (op 3).
fn resolved() -> Env {
    let env = cloned();
    env.put_local("a.txt", "alpha, mine\n");
    env.put_remote("a.txt", "alpha, theirs\n");
    assert_eq!(env.run(["sync"]).code, 7);
    env.ok(&["resolve", "a.txt", "--take", "server"]);
    env
}

/// Files and a directory dropped (op 2).
fn dropped() -> Env {
    let env = cloned();
    env.ok(&["drop", "a.txt", "docs", "big.bin"]);
    env
}

fn over_budget() -> Env {
    let env = remote_with_files();
    for i in 0..4 {
        fs::write(env.r(format!("n{i}.bin")), noise(20 + i, 1_000_000)).expect("write");
    }
    env.clone_ws();
    env.set_config(|c| c["budget_bytes"] = serde_json::json!(4_500_000u64));
    env
}

/// Garbage to collect: old versions of edited files.
fn with_garbage() -> Env {
    let env = remote_with_files();
    env.clone_ws();
    common::write_changed(&env.w("big.bin"), &noise(9, 3_000_000));
    env.put_local("a.txt", "alpha 2\n");
    env.ok(&["sync"]);
    env
}

/// A 12 MiB file edited in two places here (and small edits beside it), with
/// `patch_big_files` set to `mode`: the push patches it instead of sending it.
fn big_file_edited(mode: &str) -> Env {
    let env = Env::with_remote(&[("a.txt", "alpha\n"), ("docs/d.md", "delta\n")]);
    fs::write(env.r("disk.img"), noise(11, 12 << 20)).expect("write big");
    common::age(&env.r("disk.img"));
    env.clone_ws();
    let path = env.w(".cachesync/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("config")).expect("json");
    c["patch_big_files"] = serde_json::json!(mode);
    fs::write(&path, c.to_string()).expect("write config");
    let mut big = noise(11, 12 << 20);
    big[1 << 20] ^= 1;
    big[10 << 20] ^= 1;
    big.extend_from_slice(b"and it grew");
    common::write_changed(&env.w("disk.img"), &big);
    env.put_local("a.txt", "alpha, edited locally\n");
    env
}

fn big_file_copied() -> Env {
    big_file_edited("copy")
}

fn big_file_in_place() -> Env {
    big_file_edited("in-place")
}

#[test]
fn a_push_patching_a_copy_on_the_server_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "push (patched copy)",
        setup: big_file_copied,
        command: &["push"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

/// In place, a kill mid-patch leaves the file on the share part old, part new (each byte
/// one or the other); the next run finishes it before anything else.
#[test]
fn a_push_patching_in_place_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "push (patched in place)",
        setup: big_file_in_place,
        command: &["push"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: true,
    });
}

#[test]
fn a_sync_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "sync",
        setup: both_sides_changed,
        command: &["sync"],
        again: Again::Same,
        codes: &[7],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn a_pull_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "pull",
        setup: remote_changed,
        command: &["pull"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn a_push_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "push",
        setup: workspace_changed,
        command: &["push"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

/// Issue 12, item 8: a clone killed while it made `.cachesync/` left a lock and a store but
/// no config, which `pull` did not take for a workspace and `clone` refused as not empty.
#[test]
fn a_clone_killed_anywhere_is_finished_by_clone_again_or_pull() {
    let s = Scenario {
        name: "clone",
        setup: remote_with_files,
        command: &["clone"],
        again: Again::AfterClone,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    };
    let creation: Vec<String> = points(&s)
        .into_iter()
        .filter(|p| p.starts_with("clone-"))
        .collect();
    assert!(
        creation.len() >= 5,
        "the making of the workspace has its crash points: {creation:?}"
    );
    crash_everywhere(&s);
    // Killed before the workspace is in place, a clone leaves no `.cachesync/`: the user
    // runs clone again, which removes what the killed one left.
    for point in &creation {
        let env = (s.setup)();
        let killed = s.run(&env, &[("CACHESYNC_FAILPOINT", OsStr::new(point))]);
        assert_eq!(killed.signal, Some(9), "not killed at {point}: {killed}");
        let meta = env.ws.join(".cachesync");
        if point == "clone-renamed" {
            assert!(
                meta.join("config.json").is_file(),
                "{point}: the workspace is whole"
            );
        } else {
            assert!(!meta.exists(), "{point}: no half-made .cachesync/ in place");
            let pull = env.run(["pull"]);
            assert_ne!(pull.code, 0, "{point}: not a workspace yet: {pull}");
        }
    }
}

#[test]
fn a_clone_put_in_place_by_the_writers_killed_anywhere_is_finished_by_the_next_run() {
    crash_everywhere(&Scenario {
        name: "clone (new files put in place ahead)",
        setup: remote_with_many_files,
        command: &["clone"],
        again: Again::AfterClone,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn a_clone_still_making_its_workspace_is_not_disturbed_by_another() {
    let env = remote_with_files();
    let paused = env.root().join("paused");
    let mut first = common::spawn_paused(
        env.root(),
        &env.home,
        &[
            "clone",
            &env.remote.to_string_lossy(),
            &env.ws.to_string_lossy(),
        ],
        "clone-config",
        &paused,
    );
    let started = std::time::Instant::now();
    while !paused.exists() {
        assert!(
            first.try_wait().expect("wait").is_none(),
            "the first clone ended before its pause"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the first clone did not reach its pause"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = env.clone_with(&[]);
    assert_eq!(
        second.code, 1,
        "refused while the first holds its lock: {second}"
    );
    assert!(
        second.stderr.contains("another cachesync process"),
        "{second}"
    );
    fs::remove_file(&paused).expect("resume the first clone");
    let status = first.wait().expect("the first clone ends");
    assert!(status.success(), "the first clone completes: {status}");
    env.ok(&["fsck"]);
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
    env.assert_in_sync();
}

#[test]
fn a_resolve_killed_anywhere_loses_nothing() {
    for take in ["server", "client"] {
        let command: &'static [&'static str] = if take == "server" {
            &["resolve", "b.txt", "--take", "server"]
        } else {
            &["resolve", "b.txt", "--take", "client"]
        };
        crash_everywhere(&Scenario {
            name: "resolve",
            setup: conflicted,
            command,
            again: Again::Same,
            codes: &[0],
            exact_local: true,
            patched_in_place: false,
        });
    }
}

#[test]
fn an_undo_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "undo",
        setup: synced_both_ways,
        command: &["undo", "2"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn an_undo_of_a_resolve_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "undo of a resolve",
        setup: resolved,
        command: &["undo", "3"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn an_undo_of_a_drop_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "undo of a drop",
        setup: dropped,
        command: &["undo", "2"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn a_drop_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "drop",
        setup: cloned,
        command: &["drop", "a.txt", "docs", "big.bin"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn a_cull_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "cull",
        setup: over_budget,
        command: &["cull"],
        again: Again::Same,
        codes: &[0],
        exact_local: false,
        patched_in_place: false,
    });
}

#[test]
fn a_gc_killed_anywhere_loses_nothing() {
    crash_everywhere(&Scenario {
        name: "gc",
        setup: with_garbage,
        command: &["gc"],
        again: Again::Same,
        codes: &[0],
        exact_local: true,
        patched_in_place: false,
    });
}

#[test]
fn a_file_recreated_after_an_interrupted_drop_keeps_the_earlier_copy_in_lost_found() {
    let env = cloned();
    let killed = env.run_with(
        &env.ws,
        ["drop", "a.txt"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("drop-aside:0"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert!(!env.w("a.txt").exists(), "moved aside when the drop died");
    // The user makes a new a.txt before anything runs again.
    env.put_local("a.txt", "a new file with the old name\n");
    let r = env.run(["sync"]);
    assert_eq!(
        r.code, 7,
        "the earlier copy is listed, as lost+found entries are: {r}"
    );
    assert_eq!(
        common::read(env.w("a.txt")),
        "a new file with the old name\n"
    );
    let list = env.json(0, &["conflicts", "--json"]);
    let lf = list
        .as_array()
        .expect("records")
        .iter()
        .find_map(|r| r["lost_found"].as_str())
        .unwrap_or_else(|| panic!("a lost+found record: {list}"))
        .to_string();
    assert_eq!(
        common::read(env.w(&lf)),
        "alpha\n",
        "the earlier copy, whole: {list}"
    );
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
}

/// A restore killed between its exchange and its check leaves the workspace's earlier file
/// under a temporary name. The next run removes it when the store holds its content, and
/// keeps it in lost+found when it does not: an edit made in the very instant before the
/// exchange (here written into the temporary by the test, as the exchange would have put it
/// there).
#[test]
fn an_edit_caught_in_a_killed_restore_s_exchange_is_kept_in_lost_found() {
    let setup = || {
        let env = cloned();
        env.put_remote("a.txt", "alpha, second\n");
        env.ok(&["sync"]);
        let killed = env.run_with(
            &env.ws,
            ["restore", "a.txt", "--at", "1"],
            &[("CACHESYNC_FAILPOINT", OsStr::new("restore-exchanged"))],
        );
        assert_eq!(killed.signal, Some(9), "{killed}");
        let left = leftovers(&env.ws);
        assert_eq!(left.len(), 1, "the swapped-out file: {left:?}");
        let aside = env.ws.join(&left[0]);
        assert_eq!(common::read(&aside), "alpha, second\n");
        (env, aside)
    };
    // What the store holds goes.
    let (env, _) = setup();
    env.ok(&["status"]);
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
    assert_eq!(common::read(env.w("a.txt")), "alpha\n");

    // An edit it does not hold is kept.
    let (env, aside) = setup();
    fs::write(&aside, "an edit made in that instant\n").expect("write");
    let r = env.run(["sync"]);
    assert_eq!(
        r.code, 7,
        "the copy is listed, as lost+found entries are: {r}"
    );
    assert_eq!(
        common::read(env.w(".cachesync-lost+found/interrupted-restore/a.txt")),
        "an edit made in that instant\n"
    );
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
}
