//! `cachesync log PATH` and `cachesync restore PATH --at OP`: a path's versions in the
//! journal, and any of them written back, into the workspace or elsewhere.

mod common;

use common::{read, Env};

/// The operations that changed `path`, as `log PATH --json` gives them.
fn versions(env: &Env, path: &str) -> Vec<serde_json::Value> {
    env.json(0, &["log", path, "--json"])
        .as_array()
        .expect("an array")
        .clone()
}

/// The number of the operation `log PATH` lists last.
fn last_op(env: &Env, path: &str) -> String {
    versions(env, path)
        .last()
        .and_then(|v| v["op"].as_u64())
        .expect("an operation changed it")
        .to_string()
}

#[test]
fn a_file_and_a_directory_come_back_as_they_were_after_any_operation() {
    let env = Env::with_remote(&[
        ("a.txt", "one\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
        ("d.txt", "d\n"),
        ("docs/x.md", "x\n"),
        ("docs/deep/y.md", "y\n"),
    ]);
    env.clone_ws();
    let cloned = last_op(&env, "a.txt");
    common::chmod(env.r("docs/x.md"), 0o600);
    env.put_remote("a.txt", "two, longer\n");
    env.ok(&["sync"]);
    let edited = last_op(&env, "a.txt");
    assert_ne!(cloned, edited);
    std::fs::remove_dir_all(env.r("docs")).expect("a colleague removes docs/");
    env.ok(&["sync"]);
    assert!(!env.w("docs").exists());

    // The history of a.txt: added by the clone, modified by the sync, each with its size
    // and content id.
    let a = versions(&env, "a.txt");
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0]["change"], "added");
    assert_eq!(a[0]["size"], 4);
    assert_eq!(a[1]["change"], "modified");
    assert_eq!(a[1]["size"], 12);
    assert_ne!(a[0]["hash"], a[1]["hash"]);
    let docs = versions(&env, "docs");
    let changes: Vec<&str> = docs.iter().filter_map(|v| v["change"].as_str()).collect();
    assert_eq!(changes, ["added", "modified", "deleted"], "{docs:?}");
    let text = env.ok(&["log", "a.txt"]).out();
    assert!(text.contains("modified") && text.contains("12 B"), "{text}");

    // a.txt as the clone left it: a local change, which the sync sends.
    let r = env.ok(&["restore", "a.txt", "--at", &cloned]);
    assert!(r.out().contains("restored a.txt"), "{r}");
    assert_eq!(read(env.w("a.txt")), "one\n");
    env.ok(&["sync"]);
    assert_eq!(read(env.r("a.txt")), "one\n");

    // docs/ as it was before the colleague removed it: every file, with its mode.
    let before_removal = docs[1]["op"].to_string();
    env.ok(&["restore", "docs", "--at", &before_removal]);
    assert_eq!(read(env.w("docs/deep/y.md")), "y\n");
    assert_eq!(common::mode(env.w("docs/x.md")) & 0o777, 0o600);
    env.ok(&["sync"]);
    assert_eq!(read(env.r("docs/x.md")), "x\n");
    assert_eq!(read(env.r("docs/deep/y.md")), "y\n");
    env.assert_in_sync();

    // The whole tree, as the clone left it.
    let whole = env.root().join("whole");
    env.ok(&[
        "restore",
        ".",
        "--at",
        &cloned,
        "--to",
        whole.to_str().expect("UTF-8"),
    ]);
    assert_eq!(read(whole.join("a.txt")), "one\n");
    assert_eq!(read(whole.join("docs/deep/y.md")), "y\n");

    // Elsewhere, with --to: the tree under DEST; never over a file there.
    let dest = env.root().join("old");
    let out = env.json(
        0,
        &[
            "restore",
            "a.txt",
            "docs",
            "--at",
            &edited,
            "--to",
            dest.to_str().expect("UTF-8"),
            "--json",
        ],
    );
    assert_eq!(read(dest.join("a.txt")), "two, longer\n", "{out}");
    assert_eq!(read(dest.join("docs/x.md")), "x\n");
    assert_eq!(read(env.w("a.txt")), "one\n", "the workspace is left alone");
    let again = env.run([
        "restore",
        "a.txt",
        "--at",
        &edited,
        "--to",
        dest.to_str().expect("UTF-8"),
    ]);
    assert_ne!(again.code, 0, "{again}");
    assert!(again.stderr.contains("a.txt"), "{again}");
}

#[test]
fn gc_keeps_the_recent_operations_versions_and_lets_older_ones_go() {
    let env = Env::with_remote(&[("a.txt", "one\n")]);
    env.clone_ws();
    let cloned = last_op(&env, "a.txt");
    env.put_remote("a.txt", "two\n");
    env.ok(&["sync"]);

    // Kept by default: the version the clone left is still there after gc.
    env.ok(&["gc"]);
    let dest = env.root().join("kept");
    let dest_arg = dest.to_str().expect("UTF-8");
    env.ok(&["restore", "a.txt", "--at", &cloned, "--to", dest_arg]);
    assert_eq!(read(dest.join("a.txt")), "one\n");
    assert_eq!(versions(&env, "a.txt").len(), 2);

    // Kept for the last operation only (what it started from, and what it left): after a
    // third, the clone's snapshot goes, and with it that version.
    env.put_remote("a.txt", "three\n");
    env.ok(&["sync"]);
    env.set_config(|c| {
        c["keep_operations"] = 1.into();
        c["keep_operations_days"] = 0.into();
    });
    env.ok(&["gc"]);
    let r = env.run([
        "restore",
        "a.txt",
        "--at",
        &cloned,
        "--to",
        env.root().join("gone").to_str().expect("UTF-8"),
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("no longer in the store"), "{r}");
    // The last operation's versions stay: the one before it and the one it left.
    let left = versions(&env, "a.txt");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["change"], "modified");
    assert_eq!(left[0]["size"], 6);
    assert_eq!(read(env.w("a.txt")), "three\n");
    env.assert_noop_sync();
}

#[test]
fn restore_refuses_what_it_cannot_do_without_losing_anything() {
    let env = Env::with_remote(&[("a.txt", "one\n")]);
    env.clone_ws();
    let cloned = last_op(&env, "a.txt");
    env.put_remote("a.txt", "two\n");
    env.ok(&["sync"]);

    // A change not yet sent is not written over.
    common::write_changed(&env.w("a.txt"), b"mine, not sent\n");
    let r = env.run(["restore", "a.txt", "--at", &cloned]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("not yet sent"), "{r}");
    assert_eq!(read(env.w("a.txt")), "mine, not sent\n");

    // Even an edit that kept the size and the modification time.
    let path = env.w("a.txt");
    std::fs::write(&path, "two\n").expect("back to the agreed text");
    env.ok(&["sync"]);
    // The time the agreed version carries: the share's, which the pull gave the file here.
    let agreed_time = std::fs::metadata(env.r("a.txt"))
        .and_then(|m| m.modified())
        .expect("the share's time");
    std::fs::write(&path, "TWO\n").expect("an edit of the same size");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(agreed_time))
        .expect("the time put back");
    let r = env.run(["restore", "a.txt", "--at", &cloned]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("not yet sent"), "{r}");
    assert_eq!(read(&path), "TWO\n");

    // Nor a change of mode alone.
    std::fs::write(&path, "two\n").expect("the agreed text");
    common::chmod(&path, 0o600);
    let r = env.run(["restore", "a.txt", "--at", &cloned]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("not yet sent"), "{r}");
    common::chmod(&path, 0o644);
    env.ok(&["sync"]);

    // Nowhere inside the workspace but the workspace itself.
    let r = env.run(["restore", "a.txt", "--at", &cloned, "--to", "sub"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("inside the workspace"), "{r}");

    // By time: a time after every operation gives the last one's version, one before any
    // is refused, and something that is no time is told apart.
    let later = env.root().join("later");
    env.ok(&[
        "restore",
        "a.txt",
        "--at",
        "2200-01-01",
        "--to",
        later.to_str().expect("UTF-8"),
    ]);
    assert_eq!(read(later.join("a.txt")), "two\n");
    let r = env.run([
        "restore",
        "a.txt",
        "--at",
        "2000-01-01 00:00:00",
        "--to",
        "/tmp/x",
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("no operation that changed anything"),
        "{r}"
    );
    let r = env.run(["restore", "a.txt", "--at", "yesterday"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("neither an operation's number nor a time"),
        "{r}"
    );

    // No such operation; a path that was not there; an operation that changed nothing.
    let r = env.run(["restore", "a.txt", "--at", "999"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("no operation 999"), "{r}");
    let r = env.run(["restore", "nothing.txt", "--at", &cloned]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("was not there"), "{r}");
    env.ok(&["disconnect"]);
    let switched = env.json(0, &["log", "--json"]);
    let disconnect = switched
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["command"] == "disconnect"))
        .and_then(|o| o["id"].as_u64())
        .expect("disconnect is journalled");
    let r = env.run(["restore", "a.txt", "--at", &disconnect.to_string()]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("left no snapshot"), "{r}");
}

#[test]
fn under_a_budget_the_history_goes_before_any_file_is_culled() {
    let env = Env::new();
    std::fs::write(env.r("big.bin"), common::noise(1, 1_000_000)).expect("write");
    std::fs::write(env.r("small.bin"), common::noise(2, 200_000)).expect("write");
    env.clone_ws();
    for seed in 3..6 {
        common::write_changed(&env.r("big.bin"), &common::noise(seed, 1_000_000));
        env.ok(&["sync"]);
    }
    assert_eq!(
        versions(&env, "big.bin").len(),
        4,
        "three earlier versions are kept"
    );
    // A budget the cache is over the culling target of (80%) while the history is kept.
    let used = env.json(0, &["status", "--json"])["cache"]["used"]
        .as_u64()
        .expect("the cache's use");
    env.set_config(|c| c["budget_bytes"] = (used * 100 / 95).into());

    let cull = env.json(0, &["cull", "--json"]);
    assert_eq!(cull["report"]["dropped"], serde_json::json!([]), "{cull}");
    let len = |p: &str| std::fs::metadata(env.w(p)).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len("big.bin"), 1_000_000, "nothing culled: {cull}");
    assert_eq!(len("small.bin"), 200_000, "nothing culled: {cull}");
    assert!(
        versions(&env, "big.bin").len() < 4,
        "the history made the room"
    );
}

#[test]
fn a_version_that_was_never_brought_here_is_refused_as_such() {
    let env = Env::with_remote(&[("a.txt", "one\n")]);
    env.clone_ws();
    let path = env.w(".cachesync/config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&read(&path)).expect("the config is JSON");
    config["never_cache"] = serde_json::json!(["scratch"]);
    std::fs::write(&path, config.to_string()).expect("write the config");
    env.put_remote("scratch/x.txt", "remote only\n");
    env.ok(&["sync"]);
    assert!(!env.w("scratch/x.txt").exists(), "stays remote-only");
    let op = last_op(&env, "scratch/x.txt");
    let dest = env.root().join("x");
    let r = env.run([
        "restore",
        "scratch/x.txt",
        "--at",
        &op,
        "--to",
        dest.to_str().expect("UTF-8"),
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("never brought here"), "{r}");
    assert!(!dest.exists(), "nothing written");
}

/// A read-only directory tree comes back for a user who is not root: its directories are
/// writable by their owner while what goes inside is written, and get their own modes last
/// (set first, the user could not write into them).
#[test]
fn a_read_only_tree_is_restored_by_a_user_who_is_not_root() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_remote(&[
        ("ro/top.txt", "top\n"),
        ("ro/inner/deep.txt", "deep\n"),
        ("other.txt", "o\n"),
    ]);
    for dir in ["ro/inner", "ro"] {
        std::fs::set_permissions(env.r(dir), std::fs::Permissions::from_mode(0o555))
            .expect("chmod");
    }
    env.clone_ws();
    assert_eq!(common::mode(env.w("ro")), 0o555);
    let bin = env.hand_to_nobody();
    let dest = env.root().join("dest");
    std::fs::create_dir(&dest).expect("mkdir");
    std::os::unix::fs::chown(&dest, Some(common::NOBODY), Some(common::NOBODY)).expect("chown");
    let to = dest.to_str().expect("a UTF-8 path");
    let r = env.run_as_nobody(&bin, &["restore", "ro", "--at", "1", "--to", to]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(read(dest.join("ro/inner/deep.txt")), "deep\n");
    assert_eq!(common::mode(dest.join("ro")), 0o555);
    assert_eq!(common::mode(dest.join("ro/inner")), 0o555);

    // Into the workspace, where the tree was removed (as root: nobody could not).
    std::fs::remove_dir_all(env.w("ro")).expect("remove ro/");
    let r = env.run_as_nobody(&bin, &["restore", "ro", "--at", "1"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(read(env.w("ro/top.txt")), "top\n");
    assert_eq!(read(env.w("ro/inner/deep.txt")), "deep\n");
    assert_eq!(common::mode(env.w("ro/inner")), 0o555);
    let st = env.run_as_nobody(&bin, &["status", "--json"]).json();
    assert_eq!(
        st["local_changes"],
        serde_json::json!([]),
        "as before: {st}"
    );
}
