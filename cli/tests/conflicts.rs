//! Both sides changed: real conflicts keep both versions (local file untouched, server version
//! in the store, every variant printable); everything safe is resolved automatically.

mod common;

use std::fs;

use common::{chmod, exists, mode, paths_of, read, steps, Env};

fn conflicted() -> Env {
    let env = Env::with_remote(&[
        ("shared.txt", "base version\n"),
        ("other.txt", "other\n"),
        ("third.txt", "third\n"),
    ]);
    env.clone_ws();
    env.put_local("shared.txt", "the laptop's version\n");
    env.put_remote("shared.txt", "the server's version!\n");
    env
}

#[test]
fn different_edits_conflict_and_keep_every_version() {
    let env = conflicted();
    // Unrelated changes in the same run still go through.
    env.put_remote("other.txt", "other, edited on the server\n");
    env.put_local("third.txt", "third, edited locally\n");

    let r = env.expect_code(7, &["sync"]);
    assert!(r.out().contains("conflict (content): shared.txt"), "{r}");
    assert!(r.stderr.contains("conflicts remain"), "{r}");
    assert_eq!(
        read(env.w("shared.txt")),
        "the laptop's version\n",
        "local kept"
    );
    assert_eq!(
        read(env.r("shared.txt")),
        "the server's version!\n",
        "remote kept"
    );
    assert_eq!(read(env.w("other.txt")), "other, edited on the server\n");
    assert_eq!(read(env.r("third.txt")), "third, edited locally\n");

    let list = env.json(0, &["conflicts", "--json"]);
    assert_eq!(paths_of(&list), ["shared.txt"], "{list}");
    let c = &list[0];
    assert_eq!(c["kind"], "content", "{c}");
    assert_eq!(c["state"], "open", "{c}");
    for v in ["base", "client", "server"] {
        assert_eq!(c[v]["kind"], "file", "{v} variant: {c}");
    }
    assert_eq!(c["base"]["size"], "base version\n".len(), "{c}");
    assert_eq!(c["client"]["size"], "the laptop's version\n".len(), "{c}");
    assert_eq!(c["server"]["size"], "the server's version!\n".len(), "{c}");
    let text = env.ok(&["conflicts"]).out();
    assert!(
        text.contains("shared.txt") && text.contains("content"),
        "{text}"
    );

    for (variant, bytes) in [
        ("server", "the server's version!\n"),
        ("client", "the laptop's version\n"),
        ("base", "base version\n"),
    ] {
        let shown = env.ok(&["show", "shared.txt", "--variant", variant]);
        assert_eq!(
            shown.stdout,
            bytes.as_bytes(),
            "--variant {variant}: {shown}"
        );
    }

    let check = env.expect_code(7, &["check"]);
    assert!(check.out().contains("shared.txt"), "{check}");
    let check = env.json(7, &["check", "--json"]);
    assert_eq!(check["clean"], false, "{check}");
    assert_eq!(check["code"], "ECONFLICTED", "{check}");
    assert!(
        check["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["kind"] == "conflict" && p["path"] == "shared.txt"),
        "{check}"
    );
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(paths_of(&st["conflicts"]), ["shared.txt"], "{st}");
}

#[test]
fn a_remaining_conflict_fails_pull_push_and_sync() {
    let env = conflicted();
    env.expect_code(7, &["sync"]);
    // The conflict stays until resolved: pull, push and sync keep exiting 7.
    env.expect_code(7, &["sync"]);
    env.expect_code(7, &["push"]);
    env.expect_code(7, &["pull"]);
    assert_eq!(read(env.w("shared.txt")), "the laptop's version\n");
    assert_eq!(read(env.r("shared.txt")), "the server's version!\n");
    let j = env.json(7, &["sync", "--json"]);
    assert_eq!(paths_of(&j["conflicts"]), ["shared.txt"], "{j}");
    let j = env.json(7, &["pull", "--json"]);
    assert_eq!(
        paths_of(&j["conflicts"]),
        ["shared.txt"],
        "pull lists it: {j}"
    );
}

#[test]
fn the_same_edit_on_both_sides_is_no_conflict() {
    let env = Env::with_remote(&[("a.txt", "one\n"), ("b.txt", "b\n")]);
    env.clone_ws();
    env.put_local("a.txt", "the same new text\n");
    env.put_remote("a.txt", "the same new text\n");
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["conflicts"], serde_json::json!([]), "{r}");
    assert_eq!(steps(&r).len(), 0, "nothing to transfer: {r}");
    assert_eq!(read(env.w("a.txt")), "the same new text\n");
    assert_eq!(read(env.r("a.txt")), "the same new text\n");
    assert_eq!(env.json(0, &["conflicts", "--json"]), serde_json::json!([]));
    env.ok(&["check"]);
}

#[test]
fn a_mode_change_and_a_content_change_are_both_kept() {
    let env = Env::with_remote(&[("run.sh", "echo 1\n"), ("data.txt", "data 1\n")]);
    env.clone_ws();
    // run.sh: executable bit locally, new content on the server.
    chmod(env.w("run.sh"), 0o755);
    env.put_remote("run.sh", "echo 2, from the server\n");
    // data.txt: the other way round.
    env.put_local("data.txt", "data 2, from the laptop\n");
    chmod(env.r("data.txt"), 0o600);

    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["conflicts"], serde_json::json!([]), "{r}");
    for side in [&env.ws, &env.remote] {
        assert_eq!(read(side.join("run.sh")), "echo 2, from the server\n");
        assert_eq!(mode(side.join("run.sh")), 0o755);
        assert_eq!(read(side.join("data.txt")), "data 2, from the laptop\n");
        assert_eq!(mode(side.join("data.txt")), 0o600);
    }
    env.assert_in_sync();
    env.ok(&["check"]);
}

#[test]
fn modify_delete_keeps_the_modified_version_both_ways() {
    let env = Env::with_remote(&[
        ("local-edit.txt", "v1\n"),
        ("remote-edit.txt", "v1\n"),
        ("x.txt", "x\n"),
        ("y.txt", "y\n"),
    ]);
    env.clone_ws();
    // Edited locally, deleted on the server.
    env.put_local("local-edit.txt", "v2, edited on the laptop\n");
    fs::remove_file(env.r("local-edit.txt")).expect("rm");
    // Edited on the server, deleted locally.
    env.put_remote("remote-edit.txt", "v2, edited on the server\n");
    fs::remove_file(env.w("remote-edit.txt")).expect("rm");

    let r = env.ok(&["sync"]);
    let text = r.out();
    assert!(
        text.lines()
            .any(|l| l.starts_with("note:") && l.contains("local-edit.txt")),
        "{r}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("note:") && l.contains("remote-edit.txt")),
        "{r}"
    );
    for side in [&env.ws, &env.remote] {
        assert_eq!(
            read(side.join("local-edit.txt")),
            "v2, edited on the laptop\n"
        );
        assert_eq!(
            read(side.join("remote-edit.txt")),
            "v2, edited on the server\n"
        );
    }
    env.assert_in_sync();
    assert_eq!(env.json(0, &["conflicts", "--json"]), serde_json::json!([]));
    env.ok(&["check"]);
}

#[test]
fn a_remotely_deleted_directory_is_kept_for_a_new_local_file() {
    let env = Env::with_remote(&[
        ("proj/old.txt", "old\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ]);
    env.clone_ws();
    fs::remove_dir_all(env.r("proj")).expect("remote rm -r");
    env.put_local("proj/new.txt", "written offline\n");

    let r = env.ok(&["sync"]);
    assert!(
        r.out()
            .lines()
            .any(|l| l.starts_with("note:") && l.contains("proj")),
        "the kept directory is reported: {r}"
    );
    for side in [&env.ws, &env.remote] {
        assert!(
            side.join("proj").is_dir(),
            "proj kept in {}",
            side.display()
        );
        assert_eq!(read(side.join("proj/new.txt")), "written offline\n");
    }
    assert!(
        !exists(env.w("proj/old.txt")),
        "the server's deletion of old.txt is pulled"
    );
    env.assert_in_sync();
    env.ok(&["check"]);
}

#[test]
fn making_both_sides_equal_by_hand_resolves_the_conflict() {
    let env = conflicted();
    env.expect_code(7, &["sync"]);
    // The user takes the server's version.
    let server = env
        .ok(&["show", "shared.txt", "--variant", "server"])
        .stdout;
    fs::write(env.w("shared.txt"), &server).expect("write");

    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["conflicts"], serde_json::json!([]), "{r}");
    assert_eq!(env.json(0, &["conflicts", "--json"]), serde_json::json!([]));
    let all = env.json(0, &["conflicts", "--json", "--all"]);
    assert_eq!(paths_of(&all), ["shared.txt"], "{all}");
    assert_eq!(all[0]["state"], "resolved", "{all}");
    assert_eq!(read(env.w("shared.txt")), "the server's version!\n");
    assert_eq!(read(env.r("shared.txt")), "the server's version!\n");
    env.ok(&["check"]);

    // Later edits sync normally again.
    env.put_local("shared.txt", "after the conflict\n");
    env.ok(&["sync"]);
    assert_eq!(read(env.r("shared.txt")), "after the conflict\n");
}

#[test]
fn a_locally_deleted_directory_is_kept_for_a_remote_edit_inside_it() {
    let env = Env::with_remote(&[
        ("proj/a.txt", "a\n"),
        ("proj/b.txt", "b\n"),
        ("x.txt", "x\n"),
        ("y.txt", "y\n"),
        ("z.txt", "z\n"),
    ]);
    env.clone_ws();
    fs::remove_dir_all(env.w("proj")).expect("local rm -r");
    env.put_remote("proj/a.txt", "a, edited on the server\n");

    let r = env.ok(&["sync"]);
    assert!(
        r.out()
            .lines()
            .any(|l| l.starts_with("note:") && l.contains("proj/a.txt")),
        "{r}"
    );
    for side in [&env.ws, &env.remote] {
        assert_eq!(read(side.join("proj/a.txt")), "a, edited on the server\n");
        assert!(
            !exists(side.join("proj/b.txt")),
            "the local deletion of b went through"
        );
    }
    env.assert_in_sync();
    env.ok(&["check"]);
}

#[test]
fn both_sides_creating_the_same_path_differently_is_a_conflict_without_base() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    env.put_local("todo.txt", "my list\n");
    env.put_remote("todo.txt", "their list!\n");

    env.expect_code(7, &["sync"]);
    assert_eq!(read(env.w("todo.txt")), "my list\n");
    assert_eq!(read(env.r("todo.txt")), "their list!\n");
    let list = env.json(0, &["conflicts", "--json"]);
    assert_eq!(paths_of(&list), ["todo.txt"], "{list}");
    assert_eq!(list[0]["kind"], "content", "{list}");
    assert!(list[0]["base"].is_null(), "no base version: {list}");
    let server = env.ok(&["show", "todo.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"their list!\n", "{server}");
    let client = env.ok(&["show", "todo.txt", "--variant", "client"]);
    assert_eq!(client.stdout, b"my list\n", "{client}");
    let base = env.run(["show", "todo.txt", "--variant", "base"]);
    assert_eq!(base.code, 1, "{base}");
    assert!(base.stdout.is_empty(), "{base}");
    assert!(base.stderr.contains("no such version"), "{base}");
}
