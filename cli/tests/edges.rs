//! Nothing lost at the edges (issue 12): a server edit that keeps size and mtime, a file that
//! appears at a path between the precondition check and the rename, hard links in the
//! workspace, and a file made where a pull is about to make a directory.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use cachesync_testutils::wait_until;
use common::{chmod, exists, mode, read, Env};

/// Sets the mtime of `path` to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// What `tar x`, `cp -p` or `rsync -t` leave: new content of the same size, the old mtime.
fn rewrite_keeping_stat(path: &Path, body: &str) {
    let before = fs::metadata(path).expect("stat");
    assert_eq!(before.len(), body.len() as u64, "the test keeps the size");
    fs::write(path, body).expect("rewrite");
    set_mtime(path, 1_600_000_000);
}

/// A remote holding `f` = "version 1\n" dated 2020, cloned.
fn cloned_old_file() -> Env {
    let env = Env::new();
    env.put_remote("f", "version 1\n");
    set_mtime(&env.r("f"), 1_600_000_000);
    env.clone_ws();
    env
}

#[test]
fn a_server_edit_that_keeps_size_and_mtime_is_not_overwritten_by_a_local_edit() {
    let env = cloned_old_file();
    rewrite_keeping_stat(&env.r("f"), "version 2\n");
    env.put_local("f", "my edit\n");

    let r = env.expect_code(7, &["sync"]);
    assert_eq!(
        read(env.r("f")),
        "version 2\n",
        "the server's edit stays: {r}"
    );
    assert_eq!(read(env.w("f")), "my edit\n", "the local edit stays");
    let server = env.ok(&["show", "f", "--variant", "server"]);
    assert_eq!(
        server.out(),
        "version 2\n",
        "the server's version is a variant"
    );
    let base = env.ok(&["show", "f", "--variant", "base"]);
    assert_eq!(base.out(), "version 1\n");
    env.expect_code(7, &["check"]);
}

/// A file past the one-call read (256 KiB) is first only hashed when it is read back to be
/// sure of it: when the hash says it changed, its content is still read into the store and
/// kept as the server's variant.
#[test]
fn a_big_server_edit_that_keeps_size_and_mtime_is_kept_as_a_variant() {
    let env = Env::new();
    let v1 = common::noise(1, 3 << 20);
    fs::write(env.r("f"), &v1).expect("write");
    set_mtime(&env.r("f"), 1_600_000_000);
    env.clone_ws();
    let mut v2 = v1.clone();
    v2[2 << 20] ^= 1;
    fs::write(env.r("f"), &v2).expect("rewrite");
    set_mtime(&env.r("f"), 1_600_000_000);
    let mut mine = v1.clone();
    mine[1 << 20] ^= 1;
    env.put_local("f", &mine);

    env.expect_code(7, &["sync"]);
    assert!(
        fs::read(env.r("f")).expect("read") == v2,
        "the server's edit stays"
    );
    assert!(
        fs::read(env.w("f")).expect("read") == mine,
        "the local edit stays"
    );
    let server = env.ok(&["show", "f", "--variant", "server"]);
    assert!(server.stdout == v2, "the server's version is a variant");
    env.ok(&["fsck"]);
}

#[test]
fn a_server_edit_that_keeps_size_and_mtime_is_not_removed_by_a_local_delete() {
    let env = cloned_old_file();
    rewrite_keeping_stat(&env.r("f"), "version 2\n");
    fs::remove_file(env.w("f")).expect("rm");

    let r = env.ok(&["sync"]);
    assert_eq!(read(env.r("f")), "version 2\n", "{r}");
    assert_eq!(
        read(env.w("f")),
        "version 2\n",
        "modified wins over deleted"
    );
    env.assert_noop_sync();
}

#[test]
fn status_shows_a_server_edit_that_kept_size_and_mtime_under_a_local_edit() {
    let env = cloned_old_file();
    rewrite_keeping_stat(&env.r("f"), "version 2\n");
    env.put_local("f", "my edit\n");
    let st = env.json(0, &["status", "--refresh", "--json"]);
    assert_eq!(st["conflicts"][0]["path"], "f", "{st}");
    assert_eq!(st["pending"]["push"], 0, "{st}");
}

/// Starts `cachesync ARGS` in the workspace, paused at `point`, and waits until it is there.
fn paused(env: &Env, args: &[&str], point: &str) -> (Child, std::path::PathBuf) {
    let pause = env.root().join("paused");
    let child = common::spawn_paused(&env.ws, &env.home, args, point, &pause);
    wait_until(
        &format!("{args:?} pauses at {point}"),
        Duration::from_secs(60),
        || pause.exists(),
    );
    (child, pause)
}

/// Lets a paused run go on and returns its exit code and output.
fn resume(child: Child, pause: &Path) -> (i32, String) {
    fs::remove_file(pause).expect("resume");
    let out = child.wait_with_output().expect("wait for the run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Something the user makes at `path` while the run is paused: a file or a symlink.
fn make(path: &Path, symlink: bool) {
    if symlink {
        std::os::unix::fs::symlink("somewhere else", path).expect("symlink");
    } else {
        fs::write(path, "made during the sync\n").expect("write");
    }
}

fn assert_made(path: &Path, symlink: bool) {
    if symlink {
        assert_eq!(
            fs::read_link(path).expect("still a symlink"),
            Path::new("somewhere else")
        );
    } else {
        assert_eq!(read(path), "made during the sync\n");
    }
}

/// Where the workspace's version of `rel` is after a sync: at its path, or in lost+found
/// when a type clash moved it there.
fn local_version(env: &Env, rel: &str) -> std::path::PathBuf {
    let list = env.json(0, &["conflicts", "--json"]);
    let moved = list
        .as_array()
        .expect("records")
        .iter()
        .find(|c| c["path"] == rel)
        .and_then(|c| c["lost_found"].as_str());
    env.w(moved.unwrap_or(rel))
}

/// Runs `command` paused just before its rename into `rel`, makes a file or symlink at
/// `at` meanwhile (removing what was there), lets it go on, and checks the step was skipped
/// and what was made is still there.
fn race(env: &Env, command: &str, at: &Path, rel: &str, symlink: bool) {
    race_at(env, command, "before-rename:0", at, rel, symlink);
}

/// [`race`], paused at `point` (a new file from the server is put in place as it is read:
/// `before-landing`).
fn race_at(env: &Env, command: &str, point: &str, at: &Path, rel: &str, symlink: bool) {
    let (child, pause) = paused(env, &[command], point);
    if at.symlink_metadata().is_ok() {
        fs::remove_file(at).expect("rm");
    }
    make(at, symlink);
    let (code, out) = resume(child, &pause);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("skipped {rel}")), "{out}");
    assert_made(at, symlink);
}

#[test]
fn a_file_made_in_the_workspace_just_before_a_pull_renames_over_it_is_kept() {
    for symlink in [false, true] {
        // A new file: the path must stay free until the rename.
        let env = Env::with_remote(&[("keep.txt", "k\n")]);
        env.clone_ws();
        env.put_remote("n", "from the server\n");
        race_at(&env, "pull", "before-landing", &env.w("n"), "n", symlink);
        assert_eq!(read(env.r("n")), "from the server\n");
        // The next sync sees both: nothing is lost.
        env.expect_code(7, &["sync"]);
        assert_made(&local_version(&env, "n"), symlink);
        assert_eq!(read(env.r("n")), "from the server\n");

        // A file the pull replaces: what is there must still be what the plan saw.
        let env = Env::with_remote(&[("f", "v1\n")]);
        env.clone_ws();
        env.put_remote("f", "v2 from the server\n");
        race(&env, "pull", &env.w("f"), "f", symlink);
        assert_eq!(common::leftovers(&env.ws), Vec::<String>::new());
    }
}

#[test]
fn a_file_made_on_the_share_just_before_a_push_renames_over_it_is_kept() {
    for symlink in [false, true] {
        let env = Env::with_remote(&[("keep.txt", "k\n")]);
        env.clone_ws();
        env.put_local("n", "from the laptop\n");
        race(&env, "push", &env.r("n"), "n", symlink);
        assert_eq!(read(env.w("n")), "from the laptop\n");

        let env = Env::with_remote(&[("f", "v1\n")]);
        env.clone_ws();
        env.put_local("f", "v2 from the laptop\n");
        race(&env, "push", &env.r("f"), "f", symlink);
        assert_eq!(read(env.w("f")), "v2 from the laptop\n");
        assert_eq!(common::leftovers(&env.remote), Vec::<String>::new());
        // Both versions end up kept.
        env.expect_code(7, &["sync"]);
        assert_made(&env.r("f"), symlink);
        assert_eq!(read(local_version(&env, "f")), "v2 from the laptop\n");
    }
}

#[test]
fn a_mode_pulled_for_one_name_of_a_hard_link_leaves_the_other_name_alone() {
    let env = Env::with_remote(&[("a", "same\n"), ("b", "same\n")]);
    env.clone_ws();
    // In the workspace, b becomes another name of a's inode.
    fs::remove_file(env.w("b")).expect("rm b");
    fs::hard_link(env.w("a"), env.w("b")).expect("ln a b");
    env.ok(&["sync"]);
    chmod(env.r("a"), 0o755);

    env.ok(&["sync"]);
    assert_eq!(mode(env.w("a")), 0o755);
    assert_eq!(mode(env.w("b")), 0o644, "the other name keeps its mode");
    assert_eq!(mode(env.r("b")), 0o644);
    assert_eq!(read(env.w("a")), "same\n");
    assert_eq!(read(env.w("b")), "same\n");
    env.assert_noop_sync();
    assert_eq!(mode(env.r("b")), 0o644, "no mode change nobody made");
}

#[test]
fn a_file_made_where_a_pull_makes_a_directory_skips_what_goes_inside() {
    let env = Env::with_remote(&[("keep.txt", "k\n")]);
    env.clone_ws();
    fs::create_dir(env.r("n")).expect("mkdir");
    env.put_remote("n/inside.txt", "inside\n");
    env.put_remote("n/deeper/more.txt", "more\n");
    // Before anything is read: a new file is put in place as it is read, its directory
    // made for it.
    let (child, pause) = paused(&env, &["pull"], "scanned");
    fs::write(env.w("n"), "mine, made during the pull\n").expect("write");
    let (code, out) = resume(child, &pause);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("skipped n/inside.txt"), "{out}");
    assert!(
        out.contains("the directory n was not made"),
        "the skip names the path: {out}"
    );
    assert!(!out.contains("os error"), "no raw OS error: {out}");
    assert_eq!(read(env.w("n")), "mine, made during the pull\n");

    // The next sync settles it as a type clash: the server's directory comes in, the file
    // goes to lost+found.
    let r = env.expect_code(7, &["sync"]);
    assert_eq!(read(env.w("n/inside.txt")), "inside\n", "{r}");
    assert_eq!(read(env.w("n/deeper/more.txt")), "more\n");
    let list = env.json(0, &["conflicts", "--json"]);
    let lf = list[0]["lost_found"].as_str().expect("a lost+found copy");
    assert_eq!(read(env.w(lf)), "mine, made during the pull\n");
    assert!(exists(env.r("n/inside.txt")));
    assert!(fs::metadata(env.r("n")).expect("stat").permissions().mode() & 0o700 != 0);
}

/// Bytes under `dir`, recursively.
fn du(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| {
            let md = e.metadata().expect("stat");
            if md.is_dir() {
                du(&e.path())
            } else {
                md.len()
            }
        })
        .sum()
}

#[test]
fn a_budget_smaller_than_the_share_is_the_budget_working_and_reads_nothing_it_leaves() {
    let env = Env::with_remote(&[("small.txt", "s\n")]);
    for i in 0..16u64 {
        fs::write(
            env.r(format!("big{i:02}.bin")),
            common::noise(i + 1, 1 << 20),
        )
        .expect("write");
    }
    let r = env.clone_with(&["--budget", "1M"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("stay remote-only"), "a notice: {r}");
    assert_eq!(read(env.w("small.txt")), "s\n");
    assert!(
        du(&env.w(".cachesync")) < 4 << 20,
        "what stays remote-only was not read into the store: {} bytes",
        du(&env.w(".cachesync"))
    );
    let ls = env.json(0, &["ls", "--json"]);
    let remote_only = ls
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["state"] == "remote-only")
        .count();
    assert_eq!(remote_only, 16, "{ls}");

    // New files on the share later: the same, with the figures in --json.
    for i in 16..20u64 {
        fs::write(
            env.r(format!("big{i:02}.bin")),
            common::noise(i + 1, 1 << 20),
        )
        .expect("write");
    }
    let j = env.json(0, &["sync", "--json"]);
    assert_eq!(j["cache_full"]["refused"], 4, "{j}");
    assert_eq!(j["cache_full"]["required"], 0, "{j}");
    assert!(
        j["bytes_read"].as_u64().expect("bytes_read") < 1 << 20,
        "{j}"
    );
    env.ok(&["check"]);

    // From cron: quiet, and fine.
    for i in 20..22u64 {
        fs::write(
            env.r(format!("big{i:02}.bin")),
            common::noise(i + 1, 1 << 20),
        )
        .expect("write");
    }
    let p = env.expect_code(0, &["prefetch", "--quiet"]);
    assert!(p.out().is_empty() && p.stderr.is_empty(), "quiet: {p}");
}

#[test]
fn a_pinned_file_that_does_not_fit_the_budget_is_the_cache_full() {
    let env = Env::with_remote(&[("small.txt", "s\n")]);
    fs::create_dir(env.r("keep")).expect("mkdir");
    fs::write(env.r("keep/big.bin"), common::noise(9, 3 << 20)).expect("write");
    let r = env.clone_with(&["--budget", "1M", "--pin", "keep"]);
    assert_eq!(r.code, 6, "EDISCONFULL: {r}");
    assert!(r.stderr.contains("budget"), "{r}");
    assert_eq!(read(env.w("small.txt")), "s\n", "the rest is done: {r}");
}

/// Found by the randomized tester: the server's directory removed while a push into it
/// runs is a change the next run takes up, not a raw error on a temporary name (exit 1).
#[test]
fn a_server_directory_removed_during_a_push_into_it_is_skipped_cleanly() {
    let env = Env::with_remote(&[("b/y/z", "1\n"), ("keep", "k\n")]);
    env.clone_ws();
    env.put_local("b/y/z", "1, and more\n");
    let (child, pause) = paused(&env, &["sync"], "fetched");
    fs::remove_dir_all(env.r("b/y")).expect("rm -r on the server");
    let (code, out) = resume(child, &pause);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("skipped b/y/z") && !out.contains("os error"),
        "{out}"
    );
    assert_eq!(read(env.w("b/y/z")), "1, and more\n", "the edit is kept");
    // The next sync: modified here, removed there: the modification wins.
    env.ok(&["sync"]);
    assert_eq!(read(env.r("b/y/z")), "1, and more\n");
}

/// Found by the randomized tester: a directory made on both sides with different modes is
/// a metadata conflict, and it stays one when something inside it settled (the base held
/// the directory implicitly, with a default mode, and the next sync pushed one side's mode).
#[test]
fn a_directory_made_on_both_sides_with_different_modes_stays_a_conflict() {
    let env = Env::with_remote(&[("x", "x\n")]);
    env.clone_ws();
    for (side, m) in [(&env.ws, 0o744), (&env.remote, 0o755)] {
        fs::create_dir(side.join("c")).expect("mkdir");
        chmod(side.join("c"), m);
        fs::write(side.join("c/z"), "same\n").expect("write");
    }
    env.expect_code(7, &["sync"]);
    let again = env.expect_code(7, &["sync"]);
    assert_eq!(mode(env.w("c")), 0o744, "{again}");
    assert_eq!(mode(env.r("c")), 0o755, "{again}");
    let list = env.json(0, &["conflicts", "--json"]);
    assert_eq!(list[0]["path"], "c", "{list}");
    assert_eq!(read(env.w("c/z")), "same\n");
}

/// Found by the randomized tester: a run killed after one side holds an automatic merge
/// left no "merged automatically" record, so the versions it was made from were in no
/// variant. The record is now written before any step runs.
#[test]
fn a_merge_interrupted_by_a_kill_still_keeps_what_it_was_made_from() {
    let text: String = (0..12).map(|i| format!("line {i}\n")).collect();
    let env = Env::with_remote(&[("t.txt", text.as_str())]);
    common::age_files(&env.remote);
    env.clone_ws();
    env.put_remote("t.txt", format!("{text}appended on the server\n"));
    let mine = text.replace("line 6\n", "line 6 edited here\n");
    env.put_local("t.txt", &mine);
    env.put_local("a/n13", "new here\n");
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", std::ffi::OsStr::new("mid-write:2"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    env.ok(&["sync"]);
    let all = env.json(0, &["conflicts", "--json", "--all"]);
    let r = all
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["path"] == "t.txt")
        .unwrap_or_else(|| panic!("no record of the merge: {all}"));
    assert_eq!(r["resolution"], "merged automatically", "{r}");
    // The versions it was made from, by size (each differs from the merge's).
    let server = format!("{text}appended on the server\n");
    assert_eq!(
        r["client"]["size"],
        mine.len(),
        "the version before the merge: {r}"
    );
    assert_eq!(r["server"]["size"], server.len(), "{r}");
    assert_ne!(r["resolved"]["size"], r["client"]["size"], "{r}");
    env.assert_in_sync();
}

/// Found by the randomized tester: a directory renamed, and a file of it given the
/// directory's old name (a hard link here). The share gets the file at that name: it is
/// written there, not renamed from inside the directory that must go first (the removal
/// was skipped, "it still holds files", and the sides stayed apart).
#[test]
fn a_file_given_its_own_directory_s_old_name_is_written_there() {
    let env = Env::with_remote(&[("a/x", "x\n"), ("t.txt", "t\n")]);
    env.clone_ws();
    fs::rename(env.w("a"), env.w("a22")).expect("mv");
    fs::hard_link(env.w("a22/x"), env.w("a")).expect("ln");
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["skipped"], serde_json::json!([]), "{r}");
    assert_eq!(read(env.r("a")), "x\n");
    assert_eq!(read(env.r("a22/x")), "x\n");
    env.assert_in_sync();
    env.assert_noop_sync();
}
