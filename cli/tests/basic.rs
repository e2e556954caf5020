//! Everyday scenarios through the binary: clone, push and pull of every kind of change (edits,
//! deletions, new directories, renames, modes, symlinks, fifos, odd names), dry runs, the
//! journal, and the ignore rules.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{
    bytes_path, chmod, exists, has_step, hex, mkfifo, mode, paths_of, read, steps, Env, Node,
};

/// A remote with a little of everything.
fn rich_remote() -> Env {
    let env = Env::with_remote(&[
        ("a.txt", "alpha\n"),
        ("b.txt", "bravo\n"),
        ("docs/readme.md", "# readme\n"),
        ("docs/deep/notes.md", "deep notes\n"),
        ("bin/run.sh", "#!/bin/sh\necho run\n"),
        ("private/secret.txt", "secret\n"),
    ]);
    chmod(env.r("bin/run.sh"), 0o755);
    chmod(env.r("private/secret.txt"), 0o600);
    chmod(env.r("private"), 0o700);
    symlink("a.txt", env.r("link")).expect("symlink");
    symlink("../a.txt", env.r("docs/up")).expect("symlink");
    fs::create_dir(env.r("empty")).expect("mkdir");
    mkfifo(env.r("pipe"));
    env
}

#[test]
fn clone_copies_files_modes_symlinks_empty_dirs_and_fifos() {
    let env = rich_remote();
    let out = env.clone_ws();
    assert!(out.out().contains("cloned"), "{out}");

    env.assert_in_sync();
    assert_eq!(read(env.w("docs/deep/notes.md")), "deep notes\n");
    assert_eq!(mode(env.w("bin/run.sh")), 0o755, "executable bit kept");
    assert_eq!(mode(env.w("private/secret.txt")), 0o600);
    assert_eq!(mode(env.w("private")), 0o700);
    assert_eq!(
        fs::read_link(env.w("link")).expect("link is a symlink"),
        std::path::Path::new("a.txt")
    );
    assert!(env.w("empty").is_dir());
    assert_eq!(
        fs::read_dir(env.w("empty")).expect("list").count(),
        0,
        "the empty directory stays empty"
    );
    assert!(matches!(
        env.local_tree().get(b"pipe".as_slice()),
        Some(Node::Fifo(_))
    ));
    assert!(
        exists(env.r(".cachesync-remote")),
        "the marker is left on the remote"
    );

    // Clean right after the clone.
    let check = env.ok(&["check"]);
    assert!(check.out().contains("clean"), "{check}");
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["mode"], "connected", "{st}");
    assert_eq!(st["local_changes"], serde_json::json!([]), "{st}");
    assert_eq!(st["remote_changes"], serde_json::json!([]), "{st}");
    assert_eq!(st["conflicts"], serde_json::json!([]), "{st}");
    assert_eq!(st["pending"]["pull"], 0, "{st}");
    assert_eq!(st["pending"]["push"], 0, "{st}");
    let check = env.json(0, &["check", "--json"]);
    assert_eq!(check["clean"], true, "{check}");
}

#[test]
fn a_fifo_keeps_its_mode_through_clone_and_push() {
    // A group/world-writable fifo (0666): wider than the default umask allows at creation.
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    mkfifo(env.r("shared.fifo"));
    chmod(env.r("shared.fifo"), 0o666);
    env.clone_ws();
    assert_eq!(
        mode(env.w("shared.fifo")),
        0o666,
        "the clone keeps the fifo's mode"
    );
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["local_changes"], serde_json::json!([]), "{st}");

    mkfifo(env.w("local.fifo"));
    chmod(env.w("local.fifo"), 0o666);
    env.ok(&["push"]);
    assert_eq!(
        mode(env.r("local.fifo")),
        0o666,
        "the push keeps the fifo's mode"
    );
    env.assert_in_sync();
    let again = env.json(0, &["sync", "--json"]);
    assert_eq!(steps(&again).len(), 0, "nothing left to do: {again}");
}

#[test]
fn a_local_edit_is_pushed_and_a_remote_edit_is_pulled() {
    let env = Env::with_remote(&[("a.txt", "alpha\n"), ("b.txt", "bravo\n")]);
    env.clone_ws();
    env.put_local("a.txt", "alpha, edited on the laptop\n");
    env.put_remote("b.txt", "bravo, edited on the server\n");

    // A plain status answers from the last look at the share (the clone's): the server's
    // edit is not known yet; --refresh looks, and later plain ones know what it saw.
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(paths_of(&st["local_changes"]), ["a.txt"], "{st}");
    assert_eq!(st["local_changes"][0]["change"], "modified", "{st}");
    assert_eq!(
        paths_of(&st["remote_changes"]),
        Vec::<String>::new(),
        "{st}"
    );
    assert_eq!(st["refreshed"], false, "{st}");
    let text = env.ok(&["status"]).out();
    assert!(
        text.contains("as of") && text.contains("status --refresh"),
        "{text}"
    );
    for args in [
        &["status", "--refresh", "--json"][..],
        &["status", "--json"],
    ] {
        let st = env.json(0, args);
        assert_eq!(paths_of(&st["remote_changes"]), ["b.txt"], "{args:?}: {st}");
        assert_eq!(st["refreshed"], args.contains(&"--refresh"), "{st}");
    }

    // push sends the local edit only.
    env.ok(&["push"]);
    assert_eq!(read(env.r("a.txt")), "alpha, edited on the laptop\n");
    assert_eq!(read(env.w("b.txt")), "bravo\n", "push does not pull");

    // pull brings the remote edit.
    env.ok(&["pull"]);
    assert_eq!(read(env.w("b.txt")), "bravo, edited on the server\n");
    assert_eq!(read(env.r("a.txt")), "alpha, edited on the laptop\n");
    env.assert_in_sync();
    env.ok(&["check"]);
}

#[test]
fn a_remote_deletion_is_pulled_when_the_local_copy_is_unchanged() {
    let env = Env::with_remote(&[
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
        ("d/e.txt", "e\n"),
    ]);
    env.clone_ws();
    fs::remove_file(env.r("b.txt")).expect("rm");
    let st = env.json(0, &["status", "--refresh", "--json"]);
    assert_eq!(paths_of(&st["remote_changes"]), ["b.txt"], "{st}");
    assert_eq!(st["remote_changes"][0]["change"], "deleted", "{st}");

    let r = env.json(0, &["pull", "--json"]);
    assert!(has_step(&r, "local", "remove", "b.txt"), "{r}");
    assert!(!exists(env.w("b.txt")));
    assert_eq!(read(env.w("a.txt")), "a\n");
    env.assert_in_sync();
}

#[test]
fn a_local_deletion_is_pushed() {
    let env = Env::with_remote(&[
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
        ("d/e.txt", "e\n"),
    ]);
    env.clone_ws();
    fs::remove_file(env.w("c.txt")).expect("rm");
    let r = env.json(0, &["push", "--json"]);
    assert!(has_step(&r, "remote", "remove", "c.txt"), "{r}");
    assert!(!exists(env.r("c.txt")));
    assert_eq!(read(env.r("a.txt")), "a\n");
    env.assert_in_sync();
}

#[test]
fn a_new_local_directory_with_files_is_pushed() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    env.put_local("src/util/strings.rs", "pub fn f() {}\n");
    env.put_local("src/util/mod.rs", "pub mod strings;\n");
    env.put_local("src/main.rs", "fn main() {}\n");
    fs::create_dir(env.w("src/empty")).expect("mkdir");

    let r = env.json(0, &["push", "--json"]);
    assert!(has_step(&r, "remote", "mkdir", "src"), "{r}");
    assert!(has_step(&r, "remote", "mkdir", "src/util"), "{r}");
    assert_eq!(read(env.r("src/util/strings.rs")), "pub fn f() {}\n");
    assert_eq!(read(env.r("src/util/mod.rs")), "pub mod strings;\n");
    assert_eq!(read(env.r("src/main.rs")), "fn main() {}\n");
    assert!(env.r("src/empty").is_dir());
    env.assert_in_sync();
}

#[test]
fn renames_on_either_side_are_carried_out_as_renames() {
    let env = Env::with_remote(&[
        ("a.txt", "the content of a\n"),
        ("c.txt", "the content of c\n"),
        ("keep.txt", "keep\n"),
    ]);
    env.clone_ws();
    fs::rename(env.w("a.txt"), env.w("b.txt")).expect("local mv");
    fs::rename(env.r("c.txt"), env.r("d.txt")).expect("remote mv");

    let r = env.json(0, &["sync", "--json"]);
    let renames: Vec<_> = steps(&r)
        .into_iter()
        .filter(|s| s["op"] == "rename")
        .collect();
    assert!(
        renames
            .iter()
            .any(|s| s["side"] == "remote" && s["path"] == "b.txt" && s["from"] == "a.txt"),
        "{r}"
    );
    assert!(
        renames
            .iter()
            .any(|s| s["side"] == "local" && s["path"] == "d.txt" && s["from"] == "c.txt"),
        "{r}"
    );
    assert!(
        !steps(&r).iter().any(|s| s["op"] == "write"),
        "no copy for a rename: {r}"
    );
    assert!(!exists(env.r("a.txt")));
    assert_eq!(read(env.r("b.txt")), "the content of a\n");
    assert!(!exists(env.w("c.txt")));
    assert_eq!(read(env.w("d.txt")), "the content of c\n");
    env.assert_in_sync();
}

#[test]
fn mode_changes_travel_both_ways() {
    let env = Env::with_remote(&[("tool.sh", "#!/bin/sh\n"), ("data.txt", "data\n")]);
    env.clone_ws();
    assert_eq!(mode(env.w("tool.sh")), 0o644);

    chmod(env.w("tool.sh"), 0o755);
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(paths_of(&st["local_changes"]), ["tool.sh"], "{st}");
    assert_eq!(st["local_changes"][0]["change"], "mode", "{st}");
    let r = env.json(0, &["push", "--json"]);
    let tool: Vec<_> = steps(&r)
        .into_iter()
        .filter(|s| s["path"] == "tool.sh")
        .collect();
    assert_eq!(tool.len(), 1, "{r}");
    assert_eq!(tool[0]["side"], "remote", "{r}");
    assert_eq!(
        tool[0]["op"], "chmod",
        "a mode change only, no content written: {r}"
    );
    assert_eq!(mode(env.r("tool.sh")), 0o755, "chmod +x pushed");

    chmod(env.r("data.txt"), 0o600);
    env.ok(&["pull"]);
    assert_eq!(mode(env.w("data.txt")), 0o600, "remote chmod pulled");
    assert_eq!(read(env.w("data.txt")), "data\n");
    env.assert_in_sync();
}

#[test]
fn symlinks_travel_both_ways() {
    let env = Env::with_remote(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    symlink("a.txt", env.r("current")).expect("symlink");
    env.clone_ws();

    symlink("b.txt", env.w("latest")).expect("symlink");
    symlink("does/not/exist", env.w("dangling")).expect("symlink");
    let r = env.json(0, &["push", "--json"]);
    assert!(has_step(&r, "remote", "symlink", "latest"), "{r}");
    assert_eq!(
        fs::read_link(env.r("latest")).expect("pushed symlink"),
        std::path::Path::new("b.txt")
    );
    assert_eq!(
        fs::read_link(env.r("dangling")).expect("pushed dangling symlink"),
        std::path::Path::new("does/not/exist")
    );

    // The server repoints a symlink.
    fs::remove_file(env.r("current")).expect("rm");
    symlink("b.txt", env.r("current")).expect("symlink");
    let r = env.json(0, &["pull", "--json"]);
    assert!(has_step(&r, "local", "symlink", "current"), "{r}");
    assert_eq!(
        fs::read_link(env.w("current")).expect("pulled symlink"),
        std::path::Path::new("b.txt")
    );
    env.assert_in_sync();
}

#[test]
fn a_fifo_created_locally_is_pushed() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    mkfifo(env.w("events.fifo"));
    let r = env.json(0, &["push", "--json"]);
    assert!(has_step(&r, "remote", "mknod", "events.fifo"), "{r}");
    assert!(matches!(
        env.remote_tree().get(b"events.fifo".as_slice()),
        Some(Node::Fifo(_))
    ));
    env.assert_in_sync();
}

#[test]
fn non_utf8_and_newline_names_survive_push_and_pull() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    let bad: &[u8] = b"caf\xff.txt";
    let nl: &[u8] = b"two\nlines.txt";
    fs::write(env.w(bytes_path(bad)), "latin-1 name\n").expect("write");
    fs::write(env.w(bytes_path(nl)), "newline name\n").expect("write");

    let r = env.json(0, &["push", "--json"]);
    assert!(
        steps(&r).iter().any(|s| s["path_hex"] == hex(bad)),
        "the non-UTF-8 name is carried as hex: {r}"
    );
    assert_eq!(
        fs::read(env.r(bytes_path(bad))).expect("pushed non-UTF-8 name"),
        b"latin-1 name\n"
    );
    assert_eq!(
        fs::read(env.r(bytes_path(nl))).expect("pushed newline name"),
        b"newline name\n"
    );

    // The other way: the server creates such names, and edits one of ours.
    let srv_bad: &[u8] = b"srv\xfe\xfd";
    let srv_nl: &[u8] = b"dir\nwith newline/inner\nfile";
    env.put_remote(bytes_path(srv_bad), "from the server\n");
    env.put_remote(bytes_path(srv_nl), "nested\n");
    env.put_remote(bytes_path(bad), "latin-1 name, edited on the server\n");
    env.ok(&["pull"]);
    assert_eq!(
        fs::read(env.w(bytes_path(srv_bad))).expect("pulled non-UTF-8 name"),
        b"from the server\n"
    );
    assert_eq!(
        fs::read(env.w(bytes_path(srv_nl))).expect("pulled newline names"),
        b"nested\n"
    );
    assert_eq!(
        fs::read(env.w(bytes_path(bad))).expect("pulled edit"),
        b"latin-1 name, edited on the server\n"
    );
    env.assert_in_sync();
    env.assert_noop_sync();
}

#[test]
fn case_only_renames_are_carried_out() {
    let env = Env::with_remote(&[("File.txt", "file\n"), ("Notes.md", "notes\n")]);
    env.clone_ws();
    fs::rename(env.w("File.txt"), env.w("file.txt")).expect("local mv");
    fs::rename(env.r("Notes.md"), env.r("NOTES.md")).expect("remote mv");
    env.ok(&["sync"]);
    let remote: Vec<_> = env.remote_tree().into_keys().collect();
    assert_eq!(remote, [b"NOTES.md".to_vec(), b"file.txt".to_vec()]);
    let local: Vec<_> = env.local_tree().into_keys().collect();
    assert_eq!(local, [b"NOTES.md".to_vec(), b"file.txt".to_vec()]);
    assert_eq!(read(env.r("file.txt")), "file\n");
    assert_eq!(read(env.w("NOTES.md")), "notes\n");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let env = Env::with_remote(&[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")]);
    env.clone_ws();
    env.put_local("a.txt", "a, edited locally\n");
    env.put_local("new.txt", "new\n");
    env.put_remote("b.txt", "b, edited remotely\n");
    fs::remove_file(env.r("c.txt")).expect("rm");
    let (local_before, remote_before) = (env.local_tree(), env.remote_tree());
    let ops_before = env
        .json(0, &["log", "--json"])
        .as_array()
        .expect("ops")
        .len();

    let out = env.ok(&["sync", "--dry-run"]);
    let text = out.out();
    assert!(text.contains("sync would run 4 step(s)"), "{out}");
    for (side, op, path) in [
        ("remote", "write", "a.txt"),
        ("remote", "write", "new.txt"),
        ("local", "write", "b.txt"),
        ("local", "remove", "c.txt"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(side) && l.contains(op) && l.contains(path)),
            "{side} {op} {path} in the plan: {out}"
        );
    }
    let j = env.json(0, &["sync", "--dry-run", "--json"]);
    assert_eq!(j["dry_run"], true, "{j}");
    assert_eq!(steps(&j).len(), 4, "{j}");
    assert!(has_step(&j, "local", "remove", "c.txt"), "{j}");
    let pull = env.json(0, &["pull", "--dry-run", "--json"]);
    assert!(
        steps(&pull).iter().all(|s| s["side"] == "local") && steps(&pull).len() == 2,
        "{pull}"
    );
    let push = env.json(0, &["push", "--dry-run", "--json"]);
    assert!(
        steps(&push).iter().all(|s| s["side"] == "remote") && steps(&push).len() == 2,
        "{push}"
    );

    assert_eq!(
        env.local_tree(),
        local_before,
        "dry runs left the workspace alone"
    );
    assert_eq!(
        env.remote_tree(),
        remote_before,
        "dry runs left the remote alone"
    );
    let ops_after = env
        .json(0, &["log", "--json"])
        .as_array()
        .expect("ops")
        .len();
    assert_eq!(ops_after, ops_before, "dry runs are not journalled");

    // The real run does what the dry run said.
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(steps(&r).len(), 4, "{r}");
    env.assert_in_sync();
    assert_eq!(read(env.r("a.txt")), "a, edited locally\n");
    assert_eq!(read(env.w("b.txt")), "b, edited remotely\n");
    assert!(!exists(env.w("c.txt")));
}

#[test]
fn a_second_sync_right_after_a_sync_is_a_no_op() {
    let env = rich_remote();
    env.clone_ws();
    env.put_local("a.txt", "alpha 2\n");
    env.put_local("new/dir/file.txt", "new\n");
    chmod(env.w("b.txt"), 0o640);
    env.put_remote("docs/readme.md", "# readme, edited\n");
    env.put_remote("srv/new.txt", "srv\n");
    symlink("b.txt", env.w("link2")).expect("symlink");
    let first = env.json(0, &["sync", "--json"]);
    assert!(!steps(&first).is_empty(), "{first}");
    env.assert_in_sync();

    let second = env.json(0, &["sync", "--json"]);
    assert_eq!(second["steps"], serde_json::json!([]), "{second}");
    assert_eq!(second["applied"], 0, "{second}");
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["local_changes"], serde_json::json!([]), "{st}");
    assert_eq!(st["remote_changes"], serde_json::json!([]), "{st}");
    env.ok(&["check"]);
}

#[test]
fn the_log_lists_every_operation_by_command() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    env.put_local("a.txt", "a2\n");
    env.ok(&["sync"]);
    env.put_local("b.txt", "b\n");
    env.ok(&["push"]);
    env.put_remote("c.txt", "c\n");
    env.ok(&["pull"]);

    let log = env.json(0, &["log", "--json"]);
    let ops = log.as_array().expect("the log is an array");
    let commands: Vec<&str> = ops
        .iter()
        .map(|o| o["command"].as_str().expect("command"))
        .collect();
    assert_eq!(commands, ["clone", "sync", "push", "pull"], "{log}");
    for o in ops {
        assert_eq!(o["state"], "done", "{o}");
    }
    assert!(
        ops[1]["plan"]
            .as_array()
            .expect("plan")
            .iter()
            .any(|s| s["path"] == "a.txt" && s["op"] == "write"),
        "{log}"
    );
    let text = env.ok(&["log"]).out();
    assert!(text.contains("clone") && text.contains("sync"), "{text}");
}

#[test]
fn ignored_paths_are_never_synced_and_status_lists_them() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    env.put_local(".cachesyncignore", "build/\n*.log\n");
    env.put_local("build/out.o", "object\n");
    env.put_local("debug.log", "log\n");
    env.put_local("src/keep.txt", "keep\n");
    env.put_local("src/trace.log", "trace\n");

    let st = env.json(0, &["status", "--json", "--ignored"]);
    let ignored: Vec<&str> = st["ignored"]
        .as_array()
        .expect("ignored listed with --ignored")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    for p in ["build", "debug.log", "src/trace.log"] {
        assert!(ignored.contains(&p), "{p} listed as ignored: {st}");
    }
    let locals = paths_of(&st["local_changes"]);
    assert!(
        !locals
            .iter()
            .any(|p| p.contains("build") || p.ends_with(".log")),
        "{st}"
    );
    let text = env.ok(&["status", "--ignored"]).out();
    assert!(
        text.contains("ignored:") && text.contains("debug.log"),
        "{text}"
    );

    env.ok(&["sync"]);
    assert_eq!(read(env.r("src/keep.txt")), "keep\n");
    assert!(exists(env.r(".cachesyncignore")));
    assert!(!exists(env.r("build")), "ignored directory not pushed");
    assert!(!exists(env.r("debug.log")));
    assert!(!exists(env.r("src/trace.log")));

    // Ignored on the way in, too.
    env.put_remote("server.log", "server log\n");
    env.ok(&["sync"]);
    assert!(
        !exists(env.w("server.log")),
        "ignored remote file not pulled"
    );
    assert_eq!(
        read(env.w("build/out.o")),
        "object\n",
        "ignored files stay local"
    );
    env.assert_noop_sync();
}

#[test]
fn editor_swap_files_are_never_pushed() {
    let env = Env::with_remote(&[("notes.txt", "notes\n")]);
    env.clone_ws();
    env.put_local(".notes.txt.swp", "vim swap\n");
    env.put_local("sub/.x.swp", "vim swap\n");
    env.put_local("notes.txt~", "backup\n");
    env.put_local("notes.txt", "notes, edited\n");
    env.put_remote(".other.txt.swp", "someone else's swap\n");

    let r = env.json(0, &["sync", "--json"]);
    assert!(
        !steps(&r).iter().any(|s| s["path"]
            .as_str()
            .is_some_and(|p| p.contains(".swp") || p.ends_with('~'))),
        "{r}"
    );
    assert_eq!(read(env.r("notes.txt")), "notes, edited\n");
    assert!(!exists(env.r(".notes.txt.swp")));
    assert!(!exists(env.r("sub/.x.swp")));
    assert!(!exists(env.r("notes.txt~")));
    assert!(
        !exists(env.w(".other.txt.swp")),
        "a remote swap file is not pulled"
    );
}

#[test]
fn a_file_replaced_by_a_directory_is_synced_both_ways() {
    let env = Env::with_remote(&[("a", "file a\n"), ("b", "file b\n"), ("c.txt", "c\n")]);
    env.clone_ws();
    fs::remove_file(env.w("a")).expect("rm");
    env.put_local("a/inside.txt", "now a directory\n");
    fs::remove_file(env.r("b")).expect("rm");
    env.put_remote("b/inside.txt", "now a directory on the server\n");

    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["skipped"], serde_json::json!([]), "{r}");
    assert_eq!(read(env.r("a/inside.txt")), "now a directory\n");
    assert_eq!(
        read(env.w("b/inside.txt")),
        "now a directory on the server\n"
    );
    env.assert_in_sync();
    env.assert_noop_sync();
}

#[test]
fn a_file_replaced_by_a_symlink_is_synced_both_ways() {
    let env = Env::with_remote(&[
        ("config", "old config\n"),
        ("data", "old data\n"),
        ("config.new", "new config\n"),
        ("data.new", "new data\n"),
    ]);
    env.clone_ws();
    // ln -sf config.new config, on the laptop.
    fs::remove_file(env.w("config")).expect("rm");
    symlink("config.new", env.w("config")).expect("symlink");
    // The same on the server, for data.
    fs::remove_file(env.r("data")).expect("rm");
    symlink("data.new", env.r("data")).expect("symlink");

    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["skipped"], serde_json::json!([]), "{r}");
    assert_eq!(
        fs::read_link(env.r("config")).expect("the remote config is a symlink now"),
        std::path::Path::new("config.new")
    );
    assert_eq!(
        fs::read_link(env.w("data")).expect("the local data is a symlink now"),
        std::path::Path::new("data.new")
    );
    env.assert_in_sync();
    env.assert_noop_sync();
}

#[test]
fn a_directory_replaced_by_a_file_is_synced_both_ways() {
    let env = Env::with_remote(&[
        ("out/x.txt", "x\n"),
        ("logs/y.txt", "y\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ]);
    env.clone_ws();
    fs::remove_dir_all(env.w("out")).expect("rm -r");
    env.put_local("out", "out is a file now\n");
    fs::remove_dir_all(env.r("logs")).expect("rm -r");
    env.put_remote("logs", "logs is a file now\n");

    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["skipped"], serde_json::json!([]), "{r}");
    assert_eq!(read(env.r("out")), "out is a file now\n");
    assert_eq!(read(env.w("logs")), "logs is a file now\n");
    env.assert_in_sync();
    env.assert_noop_sync();
}

#[test]
fn path_arguments_limit_pull_and_push() {
    let env = Env::with_remote(&[
        ("top.txt", "top\n"),
        ("docs/guide.md", "guide\n"),
        ("src/main.rs", "main\n"),
    ]);
    env.clone_ws();
    env.put_remote("top.txt", "top, edited remotely\n");
    env.put_remote("docs/guide.md", "guide, edited remotely\n");
    env.put_local("src/main.rs", "main, edited locally\n");
    env.put_local("src/lib.rs", "lib, new locally\n");

    env.ok(&["pull", "docs"]);
    assert_eq!(read(env.w("docs/guide.md")), "guide, edited remotely\n");
    assert_eq!(
        read(env.w("top.txt")),
        "top\n",
        "outside the path: not pulled"
    );

    // A path relative to the current directory.
    let r = env.run_in(&env.w("src"), ["push", "lib.rs"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(read(env.r("src/lib.rs")), "lib, new locally\n");
    assert_eq!(
        read(env.r("src/main.rs")),
        "main\n",
        "not named: not pushed"
    );

    let st = env.json(0, &["status", "--json"]);
    assert_eq!(paths_of(&st["local_changes"]), ["src/main.rs"], "{st}");
    assert_eq!(paths_of(&st["remote_changes"]), ["top.txt"], "{st}");
    env.ok(&["sync"]);
    env.assert_in_sync();
}

#[test]
fn pushing_a_new_file_by_path_creates_its_new_parent_directories() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    env.put_local("reports/2024/q1.txt", "first quarter\n");
    let r = env.json(0, &["push", "reports/2024/q1.txt", "--json"]);
    assert_eq!(r["skipped"], serde_json::json!([]), "{r}");
    assert_eq!(read(env.r("reports/2024/q1.txt")), "first quarter\n");
    env.assert_in_sync();
}

#[test]
fn a_one_byte_edit_rehashes_the_file_but_stores_only_the_chunks_it_touched() {
    // 1 MB of incompressible bytes: about 16 chunks of 64 KiB on average.
    let mut seed = 7u64;
    let body: Vec<u8> = (0..1_000_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let env = Env::with_remote(&[]);
    fs::write(env.r("big.bin"), &body).expect("write the remote file");
    // Old on the server too: a file written just before a scan is racy, and read again by
    // the next scan (see the racy tests).
    common::age(&env.r("big.bin"));
    env.clone_ws();

    let mut edited = body.clone();
    edited[500_000] ^= 0xff;
    fs::write(env.w("big.bin"), &edited).expect("edit");
    // Dated well in the past, so that the index entry written by this sync is not racy (a
    // file modified in the second of its scan is read again by the next scan, as in git).
    common::age(&env.w("big.bin"));
    let out = env.json(0, &["sync", "--json"]);
    // The edited file is hashed and stored here; the server's copy, which the push writes
    // over, is read and hashed too (verify_before_overwrite): it must still be the base's
    // content, and as it is, it is not stored again.
    assert_eq!(out["bytes_ingested"], 1_000_000, "{out}");
    assert_eq!(out["bytes_read"], 1_000_000, "{out}");
    assert_eq!(out["bytes_written"], 1_000_000, "{out}");
    let stored = out["bytes_stored"].as_u64().expect("bytes_stored");
    // One chunk changed (two if the edit moved a boundary); each is at most 256 KiB.
    assert!(
        stored > 0 && stored <= 2 * 256 * 1024,
        "stored {stored} bytes: {out}"
    );
    assert_eq!(fs::read(env.r("big.bin")).expect("read the remote"), edited);

    let again = env.json(0, &["sync", "--json"]);
    assert_eq!(again["bytes_ingested"], 0, "{again}");
    assert_eq!(again["bytes_stored"], 0, "{again}");
}
