//! Racy remote entries: a server file edited again with the same size and the same mtime (as
//! an edit in the same second looks over sshfs or SMB, which keep whole seconds) is still seen,
//! and is never overwritten by a push that took it for unchanged.

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use cachesync_testutils::wait_until;
use common::{read, Env};

/// Gives `path` the mtime `t`.
fn set_mtime(path: &std::path::Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(t)
        .expect("set mtime");
}

/// Rewrites `path` with `body` (the same size as before) and gives it back its mtime.
fn edit_keeping_the_stat(path: &std::path::Path, body: &str) {
    let before = fs::metadata(path).expect("stat");
    assert_eq!(before.len(), body.len() as u64, "same size");
    let mtime: SystemTime = before.modified().expect("mtime");
    fs::write(path, body).expect("write");
    set_mtime(path, mtime);
}

#[test]
fn a_same_size_same_mtime_edit_on_the_server_right_after_a_scan_is_pulled() {
    let env = Env::with_remote(&[("a.txt", "aaaa\n"), ("old.txt", "old\n")]);
    // old.txt is old: its stat vouches for it; a.txt was just written.
    set_mtime(
        &env.r("old.txt"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    env.clone_ws();
    edit_keeping_the_stat(&env.r("a.txt"), "bbbb\n");
    let r = env.json(0, &["pull", "--json"]);
    assert_eq!(read(env.w("a.txt")), "bbbb\n", "{r}");
    // Only the racy file was read again.
    assert_eq!(r["bytes_read"], 5, "{r}");
}

#[test]
fn a_first_copy_trusts_files_older_than_the_servers_clock_and_reads_fresh_ones_again() {
    let env = Env::with_remote(&[("fresh.txt", "fresh\n"), ("recent.txt", "recent\n")]);
    // Three seconds old: within the workspace clock's window (five seconds), but a grain
    // (two) older than the server's clock read at the start of the copy.
    set_mtime(
        &env.r("recent.txt"),
        SystemTime::now() - Duration::from_secs(3),
    );
    // And the fresh one is never a grain older than the server's clock, however slow this
    // machine is between here and the copy: it is a minute ahead.
    set_mtime(
        &env.r("fresh.txt"),
        SystemTime::now() + Duration::from_secs(60),
    );
    env.clone_ws();
    // The clock was read through a directory made and removed on the server.
    let left: Vec<_> = fs::read_dir(&env.remote)
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".cachesync-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The next run reads the fresh file again (an edit within its mtime's tick could hide
    // behind its stat), not the other.
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["bytes_read"], 6, "{r}");
    // And the fresh file is still judged as before: a same-size, same-mtime edit is seen.
    edit_keeping_the_stat(&env.r("fresh.txt"), "FRESH\n");
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(read(env.w("fresh.txt")), "FRESH\n", "{r}");
}

#[test]
fn a_push_does_not_overwrite_a_racy_file_the_server_changed_under_the_same_stat() {
    let env = Env::with_remote(&[("a.txt", "aaaa\n")]);
    env.clone_ws();
    env.put_local("a.txt", "mine\n");
    // The push pauses before its write; meanwhile the server's copy changes, same size, same
    // mtime.
    let pause = env.root().join("paused");
    let mut child = common::spawn_paused(&env.ws, &env.home, &["push"], "before-step:0", &pause);
    wait_until("the push pauses", Duration::from_secs(30), || {
        pause.exists()
    });
    edit_keeping_the_stat(&env.r("a.txt"), "tttt\n");
    fs::remove_file(&pause).expect("resume");
    let status = child.wait().expect("the push ends");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        read(env.r("a.txt")),
        "tttt\n",
        "the server's edit is not overwritten"
    );
    assert_eq!(read(env.w("a.txt")), "mine\n", "the local edit is kept");

    // The next sync sees both edits: a conflict that keeps both.
    let r = env.run(["sync"]);
    assert_eq!(r.code, 7, "{r}");
    assert_eq!(
        env.ok(&["show", "a.txt", "--variant", "server"]).stdout,
        b"tttt\n"
    );
    assert_eq!(
        env.ok(&["show", "a.txt", "--variant", "client"]).stdout,
        b"mine\n"
    );
}
