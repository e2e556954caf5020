//! `cachesync undo`: an operation taken back on both sides, and undone again.

mod common;

use common::{read, write_changed, Env, Tree};

/// A share with files the scenario touches, and enough others that removing a directory
/// stays under the deletion guard.
fn env() -> Env {
    let env = Env::with_remote(&[
        ("a.txt", "a, agreed\n"),
        ("b.txt", "b, agreed\n"),
        ("old.txt", "to be renamed\n"),
        ("docs/one.md", "one\n"),
        ("docs/deep/two.md", "two\n"),
        ("k1.txt", "k\n"),
        ("k2.txt", "k\n"),
        ("k3.txt", "k\n"),
        ("k4.txt", "k\n"),
        ("k5.txt", "k\n"),
    ]);
    env.clone_ws();
    env
}

/// A sync that pulls a colleague's removal of `docs/`, overwrite of `b.txt` and rename of
/// `old.txt`, and pushes a local edit of `a.txt`; its operation number.
fn the_sync(env: &Env) -> String {
    std::fs::remove_dir_all(env.r("docs")).expect("remove docs/ on the share");
    write_changed(&env.r("b.txt"), b"b, overwritten there\n");
    std::fs::rename(env.r("old.txt"), env.r("new.txt")).expect("rename on the share");
    env.put_local("a.txt", "a, edited here\n");
    let sync = env.json(0, &["sync", "--json"]);
    assert!(!env.w("docs").exists());
    assert_eq!(read(env.r("a.txt")), "a, edited here\n");
    sync["op"].to_string()
}

/// The paths an undo's `--json` report says it left as they are.
fn left_paths(report: &serde_json::Value) -> Vec<String> {
    report["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter(|p| p["action"] == "left")
        .filter_map(|p| p["path"].as_str().map(str::to_string))
        .collect()
}

fn both(env: &Env) -> (Tree, Tree) {
    (env.local_tree(), env.remote_tree())
}

#[test]
fn undo_puts_both_sides_back_and_undo_of_the_undo_gives_the_sync_back() {
    let env = env();
    let agreed = both(&env);
    let op = the_sync(&env);
    let after_sync = both(&env);

    // The plan first: nothing changes.
    let dry = env.json(0, &["undo", "--dry-run", "--json"]);
    assert_eq!(dry["undone"].to_string(), op);
    let actions: Vec<String> = dry["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["action"].as_str().unwrap_or("?"),
                p["path"].as_str().unwrap_or("?")
            )
        })
        .collect();
    for want in [
        "restore a.txt",
        "restore b.txt",
        "restore docs",
        "restore docs/deep/two.md",
        "remove new.txt",
        "restore old.txt",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} not in {actions:?}"
        );
    }
    assert_eq!(both(&env), after_sync, "a dry run changed something");

    // Undone: every path the sync touched is as agreed before it, on both sides.
    let undo = env.ok(&["undo"]);
    assert!(
        undo.out().contains(&format!("undo of operation {op}")),
        "{undo}"
    );
    let (local, remote) = both(&env);
    assert_eq!(local, agreed.0, "{}", common::diff(&agreed.0, &local));
    assert_eq!(remote, agreed.1, "{}", common::diff(&agreed.1, &remote));
    env.assert_noop_sync();
    let log = env.json(0, &["log", "--json"]);
    let undos: Vec<&serde_json::Value> = log
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| o["command"] == "undo")
        .collect();
    assert_eq!(undos.len(), 1, "{log}");
    assert_eq!(undos[0]["state"], "done", "{log}");

    // The undo is an operation too: undone, the sync's changes are back on both sides.
    env.ok(&["undo"]);
    let (local, remote) = both(&env);
    assert_eq!(
        local,
        after_sync.0,
        "{}",
        common::diff(&after_sync.0, &local)
    );
    assert_eq!(
        remote,
        after_sync.1,
        "{}",
        common::diff(&after_sync.1, &remote)
    );
    env.assert_noop_sync();

    // What the sync carried stays in the store.
    let dest = env.root().join("then");
    env.ok(&[
        "restore",
        "a.txt",
        "--at",
        &op,
        "--to",
        dest.to_str().expect("UTF-8"),
    ]);
    assert_eq!(read(dest.join("a.txt")), "a, edited here\n");
}

#[test]
fn what_changed_since_is_never_written_over() {
    let env = env();
    let op = the_sync(&env);
    // A colleague edits b.txt again on the share; a.txt is edited here again, not sent.
    write_changed(&env.r("b.txt"), b"b, edited again there\n");
    write_changed(&env.w("a.txt"), b"a, edited again here\n");

    let undo = env.run(["undo", &op, "--json"]);
    assert_eq!(undo.code, 7, "{undo}");
    let report = undo.json();
    let left = left_paths(&report);
    assert_eq!(left, ["a.txt"], "{report}");
    assert_eq!(read(env.w("a.txt")), "a, edited again here\n");
    // b.txt: the earlier version and the colleague's new one are both kept, as a conflict.
    assert_eq!(read(env.r("b.txt")), "b, edited again there\n");
    let conflicts = env.json(0, &["conflicts", "--json"]);
    let paths = common::paths_of(&conflicts);
    assert_eq!(paths, ["b.txt"], "{conflicts}");
    let server = env.ok(&["show", "b.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"b, edited again there\n");
    assert_eq!(read(env.w("b.txt")), "b, agreed\n");
    // The rest is undone on both sides.
    assert_eq!(read(env.r("docs/deep/two.md")), "two\n");
    assert_eq!(read(env.w("old.txt")), "to be renamed\n");
    assert!(!env.r("new.txt").exists() && !env.w("new.txt").exists());
}

#[test]
fn undo_refuses_what_it_cannot_take_back() {
    let env = env();
    let r = env.run(["undo"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("first copy"), "{r}");
    let r = env.run(["undo", "77"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("no operation 77"), "{r}");
    let op = the_sync(&env);
    env.ok(&["disconnect"]);
    let before = both(&env);
    let r = env.run(["undo", &op]);
    assert_ne!(r.code, 0, "{r}");
    assert_eq!(both(&env), before, "an undo offline changed something");
}

#[test]
fn over_sshfs_undo_puts_both_sides_back_and_an_edit_there_since_is_kept() {
    use cachesync_testutils::SshfsRemote;
    let share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    for (p, body) in [
        ("a.txt", "a, agreed\n"),
        ("b.txt", "b, agreed\n"),
        ("c.txt", "c, agreed\n"),
        ("docs/one.md", "one\n"),
        ("k1.txt", "k\n"),
        ("k2.txt", "k\n"),
        ("k3.txt", "k\n"),
    ] {
        let path = served.join(p);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, body).expect("write on the share");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("HOME");
    let ws = tmp.path().join("ws");
    let home_var = home.to_str().expect("UTF-8");
    let run = |args: &[&str]| common::cachesync(&ws, args, &[("HOME", home_var)]);
    let mnt = share.mnt().to_str().expect("UTF-8");
    let clone = common::cachesync(
        tmp.path(),
        &["clone", mnt, ws.to_str().expect("UTF-8"), "--timeout", "5"],
        &[("HOME", home_var)],
    );
    assert!(clone.status.success(), "{clone:?}");
    let agreed = (common::tree(&ws), common::tree(&served));

    std::fs::remove_dir_all(served.join("docs")).expect("a colleague removes docs/");
    write_changed(&served.join("b.txt"), b"b, overwritten there\n");
    std::fs::rename(served.join("c.txt"), served.join("c2.txt")).expect("rename there");
    write_changed(&ws.join("a.txt"), b"a, edited here\n");
    // The kernel keeps what it looked up through the mount for about a second.
    let mounted = share.mnt().to_path_buf();
    let shows = |rel: &str| std::fs::symlink_metadata(mounted.join(rel)).is_ok();
    cachesync_testutils::wait_until(
        "the mount shows the colleague's changes",
        std::time::Duration::from_secs(20),
        || {
            !shows("c.txt")
                && shows("c2.txt")
                && !shows("docs")
                && std::fs::metadata(mounted.join("b.txt"))
                    .is_ok_and(|m| m.len() == "b, overwritten there\n".len() as u64)
        },
    );
    let sync = run(&["sync", "--json"]);
    assert!(sync.status.success(), "{sync:?}");
    let op: serde_json::Value = serde_json::from_slice(&sync.stdout).expect("JSON");
    let op = op["op"].to_string();

    let undo = run(&["undo", &op, "--json"]);
    assert!(undo.status.success(), "{undo:?}");
    let (local, remote) = (common::tree(&ws), common::tree(&served));
    assert_eq!(local, agreed.0, "{}", common::diff(&agreed.0, &local));
    assert_eq!(remote, agreed.1, "{}", common::diff(&agreed.1, &remote));
    let again = run(&["sync", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(common::steps(&again).len(), 0, "{again}");

    // Undo of the undo, after a colleague edited b.txt there: kept, as a conflict.
    write_changed(&served.join("b.txt"), b"b, edited again there\n");
    let size = "b, edited again there\n".len() as u64;
    cachesync_testutils::wait_until(
        "the mount shows the new b.txt",
        std::time::Duration::from_secs(20),
        || std::fs::metadata(mounted.join("b.txt")).is_ok_and(|m| m.len() == size),
    );
    let redo = run(&["undo"]);
    assert_eq!(redo.status.code(), Some(7), "{redo:?}");
    assert_eq!(read(served.join("b.txt")), "b, edited again there\n");
    assert_eq!(read(served.join("a.txt")), "a, edited here\n");
    assert!(!served.join("docs").exists());
    assert_eq!(read(served.join("c2.txt")), "c, agreed\n");
}

#[test]
fn an_edit_inside_a_directory_the_operation_made_stays_here_and_off_the_share() {
    let env = env();
    env.put_remote("reports/q1.txt", "q1, theirs\n");
    let op = env.json(0, &["sync", "--json"])["op"].to_string();
    write_changed(&env.w("reports/q1.txt"), b"q1, edited here\n");

    let undo = env.run(["undo", &op, "--json"]);
    assert_eq!(undo.code, 7, "{undo}");
    let report = undo.json();
    let left = left_paths(&report);
    assert!(left.iter().any(|p| p == "reports/q1.txt"), "{report}");
    assert_eq!(read(env.w("reports/q1.txt")), "q1, edited here\n");
    // The undo sent nothing of it: the share has what it had.
    assert_eq!(read(env.r("reports/q1.txt")), "q1, theirs\n");
}

#[test]
fn an_undo_killed_after_it_wrote_the_workspace_is_finished_by_undo_not_sent_half_by_sync() {
    let env = env();
    let op = the_sync(&env);
    let killed = env.run_with(
        &env.ws,
        ["undo", &op],
        &[("CACHESYNC_FAILPOINT", std::ffi::OsStr::new("undo-restored"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    let sync = env.run(["sync"]);
    assert_eq!(sync.code, 2, "{sync}");
    assert!(
        sync.stderr.contains(&format!("cachesync undo {op}")),
        "{sync}"
    );
    // Nothing of it reached the share yet.
    assert!(env.r("new.txt").exists() && !env.r("old.txt").exists());
    env.ok(&["undo", &op]);
    assert_eq!(read(env.r("old.txt")), "to be renamed\n");
    assert!(!env.r("new.txt").exists() && !env.w("new.txt").exists());
    assert_eq!(read(env.r("b.txt")), "b, agreed\n");
    env.assert_noop_sync();
}

/// The conflict of `b.txt`: edited here and on the share.
fn b_in_conflict(env: &Env) {
    env.put_local("b.txt", "b, mine\n");
    write_changed(&env.r("b.txt"), b"b, theirs\n");
    assert_eq!(env.run(["sync"]).code, 7);
}

/// The open conflicts, by path.
fn open_conflicts(env: &Env) -> Vec<String> {
    let list = env.json(0, &["conflicts", "--json"]);
    list.as_array()
        .expect("a list")
        .iter()
        .filter(|c| c["state"] == "open")
        .filter_map(|c| c["path"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn undo_of_a_resolve_opens_the_conflict_again_and_undo_of_that_settles_it_again() {
    let env = env();
    b_in_conflict(&env);
    env.ok(&["resolve", "b.txt", "--take", "server"]);
    assert_eq!(read(env.w("b.txt")), "b, theirs\n");
    assert!(open_conflicts(&env).is_empty());

    let r = env.json(0, &["undo", "--json"]);
    assert_eq!(r["command"], "resolve", "{r}");
    assert_eq!(r["paths"][0]["action"], "reopen", "{r}");
    assert_eq!(read(env.w("b.txt")), "b, mine\n", "yours is back here");
    assert_eq!(open_conflicts(&env), ["b.txt"]);
    let server = env.ok(&["show", "b.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"b, theirs\n");
    // Open again, the next sync sends nothing of it and says so.
    assert_eq!(env.run(["sync"]).code, 7);
    assert_eq!(read(env.r("b.txt")), "b, theirs\n");
    assert_eq!(read(env.w("b.txt")), "b, mine\n");

    // Undo of the undo settles it again, as the resolve did.
    let r = env.json(0, &["undo", "--json"]);
    assert_eq!(r["paths"][0]["action"], "settle", "{r}");
    assert_eq!(read(env.w("b.txt")), "b, theirs\n");
    assert!(open_conflicts(&env).is_empty());
    env.assert_noop_sync();
    assert_eq!(read(env.r("b.txt")), "b, theirs\n");
}

#[test]
fn a_resolve_a_sync_sent_is_undone_once_that_sync_is() {
    let env = env();
    b_in_conflict(&env);
    env.put_local("b.txt", "b, mine and merged by hand\n");
    env.ok(&["resolve", "b.txt", "--mark"]);
    let resolve = env
        .json(0, &["log", "--json", "--no-plan"])
        .as_array()
        .and_then(|ops| ops.last().map(|op| op["id"].to_string()))
        .expect("the resolve's number");
    let sync = env.json(0, &["sync", "--json"])["op"].to_string();
    assert_eq!(read(env.r("b.txt")), "b, mine and merged by hand\n");

    let r = env.json(7, &["undo", &resolve, "--json"]);
    assert!(left_paths(&r).contains(&"b.txt".to_string()), "{r}");
    let why = r["paths"][0]["reason"].as_str().unwrap_or_default();
    assert!(why.contains("undo that sync first"), "{r}");
    assert_eq!(read(env.w("b.txt")), "b, mine and merged by hand\n");

    // The sync undone, both sides hold the server's version; then the resolve is undone.
    env.ok(&["undo", &sync]);
    assert_eq!(read(env.r("b.txt")), "b, theirs\n");
    env.ok(&["undo", &resolve]);
    assert_eq!(open_conflicts(&env), ["b.txt"]);
    assert_eq!(
        read(env.w("b.txt")),
        "b, mine and merged by hand\n",
        "what was here before the resolve (its edited file) is back"
    );
    assert_eq!(env.run(["sync"]).code, 7);
    assert_eq!(read(env.r("b.txt")), "b, theirs\n");
}

#[test]
fn undo_of_a_resolve_never_writes_over_an_edit_made_since() {
    let env = env();
    b_in_conflict(&env);
    env.ok(&["resolve", "b.txt", "--take", "server"]);
    env.put_local("b.txt", "b, edited after the resolve\n");
    let r = env.json(7, &["undo", "--json"]);
    assert_eq!(left_paths(&r), ["b.txt"], "{r}");
    assert_eq!(read(env.w("b.txt")), "b, edited after the resolve\n");
    assert!(open_conflicts(&env).is_empty());
}

/// Whether the workspace's `path` is remote-only, as `ls` says.
fn remote_only(env: &Env, path: &str) -> bool {
    let dir = path.rsplit_once('/').map_or(".", |(d, _)| d);
    let ls = env.json(0, &["ls", dir, "--json"]);
    ls.as_array()
        .expect("entries")
        .iter()
        .any(|e| e["path"] == path && e["state"] == "remote-only")
}

#[test]
fn undo_of_drop_get_and_cull_puts_back_which_files_are_here() {
    let env = env();
    env.ok(&["drop", "a.txt", "docs"]);
    assert!(remote_only(&env, "a.txt") && remote_only(&env, "docs/deep/two.md"));
    let r = env.json(0, &["undo", "--json"]);
    assert_eq!(r["command"], "drop", "{r}");
    assert_eq!(read(env.w("a.txt")), "a, agreed\n");
    assert_eq!(read(env.w("docs/deep/two.md")), "two\n");
    // Undo of the undo drops them again; the share never changes.
    env.ok(&["undo"]);
    assert!(remote_only(&env, "a.txt") && remote_only(&env, "docs/one.md"));
    assert_eq!(read(env.r("a.txt")), "a, agreed\n");
    env.assert_noop_sync();

    // A file brought here and edited since is not dropped by the undo of the get.
    env.ok(&["get", "a.txt", "docs"]);
    env.put_local("a.txt", "a, edited after the get\n");
    let r = env.json(7, &["undo", "--json"]);
    assert_eq!(r["command"], "get", "{r}");
    assert_eq!(left_paths(&r), ["a.txt"], "{r}");
    assert_eq!(read(env.w("a.txt")), "a, edited after the get\n");
    assert!(remote_only(&env, "docs/one.md"), "the rest is dropped: {r}");

    // Culled files come back (from the share: the cull let their content go).
    env.ok(&["sync"]);
    env.set_config(|c| c["budget_bytes"] = 1.into());
    let cull = env.json(0, &["cull", "--json"]);
    assert!(remote_only(&env, "k1.txt"), "{cull}");
    let r = env.json(0, &["undo", "--json"]);
    assert_eq!(r["command"], "cull", "{r}");
    for p in ["k1.txt", "k5.txt", "b.txt"] {
        assert!(!remote_only(&env, p), "{p}: {r}");
    }
    assert_eq!(read(env.w("k1.txt")), "k\n");
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
}

/// An undo of a resolve killed after it wrote the workspace: the sync waits for it, a gc
/// with no history kept does not take what it needs, and an edit made meanwhile neither
/// stops it nor is sent as the resolution: the conflict is open again, with the edit as
/// this side's version.
#[test]
fn a_killed_undo_of_a_resolve_is_finished_whatever_happened_meanwhile() {
    let env = env();
    b_in_conflict(&env);
    env.ok(&["resolve", "b.txt", "--take", "server"]);
    let resolve = "3";
    let killed = env.run_with(
        &env.ws,
        ["undo", resolve],
        &[(
            "CACHESYNC_FAILPOINT",
            std::ffi::OsStr::new("undo-reopen-written"),
        )],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert_eq!(read(env.w("b.txt")), "b, mine\n");
    let sync = env.run(["sync"]);
    assert_eq!(sync.code, 2, "{sync}");
    assert_eq!(read(env.r("b.txt")), "b, theirs\n");
    env.set_config(|c| {
        c["keep_operations"] = 0.into();
        c["keep_operations_days"] = 0.into();
    });
    env.ok(&["gc"]);
    env.put_local("b.txt", "b, mine, edited while the undo was stopped\n");
    let r = env.json(0, &["undo", resolve, "--json"]);
    assert_eq!(r["paths"][0]["action"], "reopen", "{r}");
    assert_eq!(open_conflicts(&env), ["b.txt"]);
    assert_eq!(
        read(env.w("b.txt")),
        "b, mine, edited while the undo was stopped\n"
    );
    assert_eq!(env.run(["sync"]).code, 7);
    assert_eq!(read(env.r("b.txt")), "b, theirs\n", "nothing was sent");
}

/// A file removed here since it was brought, or one made here since it was let go, is left
/// as it is; a sync's cull is the cache's, not an operation `undo` takes back.
#[test]
fn undo_of_get_and_drop_leaves_what_changed_here_since_and_skips_a_sync_s_cull() {
    let env = env();
    env.ok(&["drop", "a.txt"]);
    env.ok(&["get", "a.txt"]);
    std::fs::remove_file(env.w("a.txt")).expect("remove");
    let r = env.json(7, &["undo", "--json"]);
    assert_eq!(r["command"], "get", "{r}");
    assert_eq!(left_paths(&r), ["a.txt"], "{r}");
    env.ok(&["sync"]);
    assert!(!env.r("a.txt").exists(), "the removal was a change here");

    env.ok(&["drop", "b.txt"]);
    env.put_local("b.txt", "b, made here after the drop\n");
    let r = env.json(7, &["undo", "--json"]);
    assert_eq!(r["command"], "drop", "{r}");
    assert_eq!(left_paths(&r), ["b.txt"], "{r}");
    assert_eq!(read(env.w("b.txt")), "b, made here after the drop\n");

    env.ok(&["sync"]);
    env.set_config(|c| c["budget_bytes"] = 1.into());
    let sync = env.json(0, &["sync", "--json"]);
    assert!(remote_only(&env, "k1.txt"), "the sync culled: {sync}");
    let log = env.json(0, &["log", "--json", "--no-plan"]);
    let last = log
        .as_array()
        .and_then(|ops| ops.last())
        .expect("an operation");
    assert_eq!(last["command"], "sync", "no cull of its own: {log}");
}

/// The randomized tester found it: the share replaced a directory by a symlink; undone, the
/// directory comes back with what was in it (the symlink on the way is the operation's own,
/// and goes), and the symlink is given back by `restore --to`, its directory made there.
#[test]
fn a_directory_the_share_made_a_symlink_comes_back_whole() {
    let env = Env::with_remote(&[("a/x/z", "z\n"), ("t.txt", "t\n")]);
    env.clone_ws();
    std::fs::remove_dir_all(env.r("a/x")).expect("rm");
    std::os::unix::fs::symlink("x/z", env.r("a/x")).expect("symlink");
    let op = env.json(0, &["sync", "--json"])["op"].to_string();
    assert!(env.w("a/x").is_symlink());
    env.ok(&["undo", &op]);
    assert_eq!(read(env.w("a/x/z")), "z\n");
    assert_eq!(read(env.r("a/x/z")), "z\n");
    env.assert_noop_sync();
    let out = env.root().join("out");
    let to = out.to_str().expect("UTF-8");
    env.ok(&["restore", "a/x", "--at", &op, "--to", to]);
    let target = std::fs::read_link(out.join("a/x")).expect("the symlink, restored");
    assert_eq!(target, std::path::Path::new("x/z"));
}
