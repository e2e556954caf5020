//! Presence: remote-only files (metadata here, content not) are never taken for local
//! deletions, follow the server without their content coming here, and come back with
//! `get` (from the cache, or from the remote; offline and uncached: EDISCONDATA).

mod common;

use common::{exists, read, write_changed, Env};

fn state_of(env: &Env, path: &str) -> Option<String> {
    let dir = match path.rsplit_once('/') {
        Some((d, _)) => d.to_string(),
        None => ".".to_string(),
    };
    let ls = env.json(0, &["ls", &dir, "--json"]);
    ls.as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"] == path)
        .map(|e| e["state"].as_str().unwrap_or("").to_string())
}

fn cloned() -> Env {
    let env = Env::with_remote(&[
        ("a.txt", "alpha\n"),
        ("docs/b.txt", "bravo\n"),
        ("c.txt", "charlie\n"),
        ("d.txt", "delta\n"),
    ]);
    env.clone_ws();
    env
}

#[test]
fn a_dropped_file_is_not_pushed_as_a_deletion() {
    let env = cloned();
    let r = env.ok(&["drop", "a.txt", "docs"]);
    assert!(r.out().contains("dropped: 2 file(s)"), "{r}");
    assert!(!exists(env.w("a.txt")) && !exists(env.w("docs/b.txt")));
    assert_eq!(state_of(&env, "a.txt").as_deref(), Some("remote-only"));
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["local_changes"], serde_json::json!([]), "{st}");
    let s = env.json(0, &["sync", "--json"]);
    assert_eq!(s["steps"], serde_json::json!([]), "{s}");
    assert_eq!(read(env.r("a.txt")), "alpha\n", "still on the server");
    assert_eq!(read(env.r("docs/b.txt")), "bravo\n");
    env.ok(&["check"]);
}

#[test]
fn a_remote_only_file_follows_the_server_without_its_content() {
    let env = cloned();
    env.ok(&["drop", "a.txt"]);
    write_changed(&env.r("a.txt"), b"alpha, much longer on the server now\n");
    let s = env.json(0, &["sync", "--json"]);
    assert_eq!(s["bytes_read"], 0, "no content fetched: {s}");
    assert!(!exists(env.w("a.txt")));
    let ls = env.json(0, &["ls", "--json"]);
    let a = ls
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"] == "a.txt")
        .expect("listed")
        .clone();
    assert_eq!(a["size"], 37, "{a}");
    assert_eq!(a["state"], "remote-only");
    env.ok(&["fsck"]);

    // Offline, its content is not here: EDISCONDATA.
    env.ok(&["disconnect"]);
    let r = env.expect_code(4, &["get", "a.txt"]);
    assert!(r.stderr.contains("not in the cache"), "{r}");
    env.ok(&["connect", "--no-sync"]);
    let r = env.ok(&["get", "a.txt"]);
    assert!(r.out().contains("got a.txt"), "{r}");
    assert_eq!(
        read(env.w("a.txt")),
        "alpha, much longer on the server now\n"
    );
    assert_eq!(state_of(&env, "a.txt").as_deref(), Some("synced"));
    let s = env.json(0, &["sync", "--json"]);
    assert_eq!(s["steps"], serde_json::json!([]), "{s}");
    env.ok(&["fsck"]);
}

#[test]
fn get_uses_the_cache_offline() {
    let env = cloned();
    env.ok(&["drop", "docs/b.txt"]);
    env.ok(&["disconnect"]);
    env.ok(&["get", "docs"]);
    assert_eq!(read(env.w("docs/b.txt")), "bravo\n");
    assert_eq!(state_of(&env, "docs/b.txt").as_deref(), Some("synced"));
}

#[test]
fn files_with_unpushed_changes_are_never_dropped() {
    let env = cloned();
    env.put_local("a.txt", "edited here\n");
    env.put_local("new.txt", "created here\n");
    let r = env.expect_code(1, &["drop", "a.txt", "new.txt", "c.txt"]);
    assert!(
        r.stderr
            .contains("a.txt left as it is: has changes not pushed yet"),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("new.txt left as it is: created here and never pushed"),
        "{r}"
    );
    assert_eq!(read(env.w("a.txt")), "edited here\n");
    assert_eq!(read(env.w("new.txt")), "created here\n");
    assert!(!exists(env.w("c.txt")), "the clean one was dropped");
}

#[test]
fn a_remote_only_file_deleted_on_the_server_or_recreated_here() {
    let env = cloned();
    env.ok(&["drop", "c.txt", "d.txt"]);
    std::fs::remove_file(env.r("c.txt")).expect("rm on the server");
    env.ok(&["sync"]);
    assert_eq!(state_of(&env, "c.txt"), None, "gone from the listing");
    // Writing a file where a remote-only one is makes it materialized: it is pushed.
    env.put_local("d.txt", "delta, rewritten here\n");
    env.ok(&["sync"]);
    assert_eq!(read(env.r("d.txt")), "delta, rewritten here\n");
    assert_eq!(state_of(&env, "d.txt").as_deref(), Some("synced"));
    let s = env.json(0, &["sync", "--json"]);
    assert_eq!(s["steps"], serde_json::json!([]), "{s}");
}
