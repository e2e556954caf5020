//! Conflict resolution (issue 4): automatic three-way merges of text edits that do not
//! overlap, what is never merged (binary, too large, symlink targets), the four variants of a
//! conflict, `resolve` with each of its options (online and offline), permission conflicts
//! when the server refuses a write, and the lost+found area for local data that has nowhere
//! to go. Every scenario checks the bytes on both sides, exit codes and the JSON shapes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{exists, paths_of, read, steps, write_changed, Env, Node};

const LOST_FOUND: &str = ".cachesync-lost+found";

/// Five lines; the scenarios edit the first, second or last one.
const BASE: &str = "one\ntwo\nthree\nfour\nfive\n";

/// A remote holding `notes.txt` (= [`BASE`]) and a few bystanders, cloned.
fn cloned() -> Env {
    let env = Env::with_remote(&[
        ("notes.txt", BASE),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
    ]);
    env.clone_ws();
    env
}

const CLIENT_OVERLAP: &str = "one\ntwo, from the laptop\nthree\nfour\nfive\n";
const SERVER_OVERLAP: &str = "one\ntwo, from the server!\nthree\nfour\nfive\n";

/// Both sides rewrote the same line of `notes.txt` differently; the first sync recorded the
/// conflict.
fn overlapping() -> Env {
    let env = cloned();
    env.put_local("notes.txt", CLIENT_OVERLAP);
    env.put_remote("notes.txt", SERVER_OVERLAP);
    let r = env.expect_code(7, &["sync"]);
    assert!(r.out().contains("conflict (content): notes.txt"), "{r}");
    assert_eq!(read(env.w("notes.txt")), CLIENT_OVERLAP, "local kept");
    assert_eq!(read(env.r("notes.txt")), SERVER_OVERLAP, "remote kept");
    env
}

/// The open conflict records.
/// Syncs, expecting a content conflict at `path` that is not merged: exit 7, both sides kept
/// as they are (`client` here, `server` on the remote), one open conflict. Returns the open
/// conflicts.
fn sync_to_an_unmerged_conflict(
    env: &Env,
    path: &str,
    client: &[u8],
    server: &[u8],
) -> serde_json::Value {
    let r = env.expect_code(7, &["sync"]);
    assert!(
        r.out().contains(&format!("conflict (content): {path}")),
        "{r}"
    );
    assert!(!r.out().contains("merged"), "{r}");
    // Not assert_eq: a failure would print the files (megabytes for some).
    assert!(fs::read(env.w(path)).expect("read") == client, "local kept");
    assert!(
        fs::read(env.r(path)).expect("read") == server,
        "remote kept"
    );
    let list = open_conflicts(env);
    assert_eq!(paths_of(&list), [path], "{list}");
    assert_eq!(list[0]["kind"], "content", "{list}");
    list
}

fn open_conflicts(env: &Env) -> serde_json::Value {
    env.json(0, &["conflicts", "--json"])
}

/// The record of `path` among every record (open and resolved).
fn record_of(env: &Env, path: &str) -> serde_json::Value {
    let all = env.json(0, &["conflicts", "--json", "--all"]);
    all.as_array()
        .expect("an array of records")
        .iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no record of {path}: {all}"))
        .clone()
}

/// A sync that has nothing to do: exit 0, no steps, no conflicts.
fn assert_noop(env: &Env) {
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(steps(&r).len(), 0, "the second sync is a no-op: {r}");
    assert_eq!(r["conflicts"], serde_json::json!([]), "{r}");
}

/// `resolve notes.txt ARGS...`, then a sync that sends it, then a no-op sync: both sides end
/// up holding `expected`, the record is resolved and `show --variant resolved` prints it.
fn settle(env: &Env, resolve: &[&str], expected: &str) {
    let mut args = vec!["resolve", "notes.txt"];
    args.extend_from_slice(resolve);
    let r = env.ok(&args);
    assert!(r.out().contains("notes.txt"), "{r}");
    assert_eq!(
        read(env.w("notes.txt")),
        expected,
        "workspace after resolve"
    );
    assert_eq!(open_conflicts(env), serde_json::json!([]), "nothing open");
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(r["conflicts"], serde_json::json!([]), "{r}");
    for side in [&env.ws, &env.remote] {
        assert_eq!(
            read(side.join("notes.txt")),
            expected,
            "after the sync, in {}",
            side.display()
        );
    }
    env.assert_in_sync();
    assert_noop(env);
    let rec = record_of(env, "notes.txt");
    assert_eq!(rec["state"], "resolved", "{rec}");
    let shown = env.ok(&["show", "notes.txt", "--variant", "resolved"]);
    assert_eq!(shown.stdout, expected.as_bytes(), "{shown}");
    env.ok(&["check"]);
}

/// The single numbered directory under the workspace's lost+found.
fn lost_found_slot(env: &Env) -> PathBuf {
    let dir = env.w(LOST_FOUND);
    let slots: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|d| d.expect("directory entry").path())
        .collect();
    assert_eq!(slots.len(), 1, "one lost+found slot: {slots:?}");
    let slot = slots.into_iter().next().expect("one slot");
    let name = slot
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 name")
        .to_string();
    assert!(
        name.parse::<u64>().is_ok(),
        "lost+found slots are numbered: {name}"
    );
    slot
}

/// Asserts the remote never received anything of lost+found.
fn assert_lost_found_not_pushed(env: &Env) {
    assert!(
        !exists(env.r(LOST_FOUND)),
        "lost+found must never be pushed"
    );
    assert!(
        env.remote_tree()
            .keys()
            .all(|k| !String::from_utf8_lossy(k).contains("lost+found")),
        "{:?}",
        env.remote_tree().keys().collect::<Vec<_>>()
    );
}

/// Asserts both sides hold the same entries, leaving out the workspace's lost+found.
fn assert_in_sync_but_lost_found(env: &Env) {
    let mut local = env.local_tree();
    local.retain(|k, _| !k.starts_with(LOST_FOUND.as_bytes()));
    let remote = env.remote_tree();
    assert_eq!(
        local,
        remote,
        "workspace (left, without lost+found) and remote (right) differ:\n{}",
        common::diff(&local, &remote)
    );
}

/// Makes a directory immutable (`chattr +i`: even root cannot create, rename or delete in
/// it); dropping the guard makes it mutable again so the temporary directory can go.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        let st = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .expect("run chattr");
        assert!(st.success(), "chattr +i {}", dir.display());
        Immutable(dir.to_path_buf())
    }

    fn release(&self) {
        let st = Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status()
            .expect("run chattr");
        assert!(st.success(), "chattr -i {}", self.0.display());
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

// ---------------------------------------------------------------------------------------
// Automatic where it is safe

#[test]
fn non_overlapping_text_edits_are_merged_on_both_sides() {
    let env = cloned();
    env.put_local(
        "notes.txt",
        "ONE, from the laptop\ntwo\nthree\nfour\nfive\n",
    );
    env.put_remote(
        "notes.txt",
        "one\ntwo\nthree\nfour\nFIVE, from the server\n",
    );
    let merged = "ONE, from the laptop\ntwo\nthree\nfour\nFIVE, from the server\n";

    let r = env.ok(&["sync"]);
    assert!(
        r.out()
            .lines()
            .any(|l| l.starts_with("note:") && l.contains("notes.txt") && l.contains("merged")),
        "a note says it was merged: {r}"
    );
    assert!(!r.out().contains("conflict ("), "{r}");
    for side in [&env.ws, &env.remote] {
        assert_eq!(
            read(side.join("notes.txt")),
            merged,
            "the merge in {}",
            side.display()
        );
    }
    env.assert_in_sync();

    assert_eq!(open_conflicts(&env), serde_json::json!([]));
    let rec = record_of(&env, "notes.txt");
    assert_eq!(rec["state"], "resolved", "{rec}");
    assert_eq!(rec["resolution"], "merged automatically", "{rec}");
    assert_eq!(rec["resolved"]["size"], merged.len(), "{rec}");
    let shown = env.ok(&["show", "notes.txt", "--variant", "resolved"]);
    assert_eq!(shown.stdout, merged.as_bytes(), "{shown}");
    let base = env.ok(&["show", "notes.txt", "--variant", "base"]);
    assert_eq!(base.stdout, BASE.as_bytes(), "{base}");

    assert_noop(&env);
    env.ok(&["check"]);
}

#[test]
fn overlapping_edits_keep_all_four_variants_byte_for_byte() {
    let env = overlapping();
    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["notes.txt"], "{list}");
    assert_eq!(list[0]["kind"], "content", "{list}");
    assert_eq!(list[0]["state"], "open", "{list}");
    assert!(list[0]["resolved"].is_null(), "not resolved yet: {list}");

    for (variant, bytes) in [
        ("base", BASE),
        ("client", CLIENT_OVERLAP),
        ("server", SERVER_OVERLAP),
    ] {
        let shown = env.ok(&["show", "notes.txt", "--variant", variant]);
        assert_eq!(
            shown.stdout,
            bytes.as_bytes(),
            "--variant {variant}: {shown}"
        );
    }
    let none = env.run(["show", "notes.txt", "--variant", "resolved"]);
    assert_eq!(none.code, 1, "no resolved variant while open: {none}");
    assert!(none.stdout.is_empty(), "{none}");

    let d = env.ok(&[
        "diff",
        "--variant",
        "server",
        "--variant",
        "client",
        "notes.txt",
    ]);
    let text = d.out();
    assert!(
        text.lines().any(|l| l == "-two, from the server!"),
        "the server's line: {d}"
    );
    assert!(
        text.lines().any(|l| l == "+two, from the laptop"),
        "the client's line: {d}"
    );

    env.ok(&["resolve", "notes.txt", "--take", "server"]);
    let shown = env.ok(&["show", "notes.txt", "--variant", "resolved"]);
    assert_eq!(shown.stdout, SERVER_OVERLAP.as_bytes(), "{shown}");
    // The other variants stay available after resolution.
    for (variant, bytes) in [("base", BASE), ("server", SERVER_OVERLAP)] {
        let shown = env.ok(&["show", "notes.txt", "--variant", variant]);
        assert_eq!(
            shown.stdout,
            bytes.as_bytes(),
            "--variant {variant} after resolve: {shown}"
        );
    }
    let rec = record_of(&env, "notes.txt");
    assert_eq!(rec["state"], "resolved", "{rec}");
    assert_eq!(rec["client"]["size"], CLIENT_OVERLAP.len(), "{rec}");
    assert_eq!(rec["resolved"]["size"], SERVER_OVERLAP.len(), "{rec}");
}

#[test]
fn binary_files_are_never_merged() {
    let base: Vec<u8> = b"header\n\0\x01\x02 binary\nmiddle\nmore\nfooter\n".to_vec();
    let client: Vec<u8> =
        b"HEADER, from the laptop\n\0\x01\x02 binary\nmiddle\nmore\nfooter\n".to_vec();
    let server: Vec<u8> =
        b"header\n\0\x01\x02 binary\nmiddle\nmore\nFOOTER, from the server\n".to_vec();
    let env = Env::new();
    write_changed(&env.r("blob.bin"), &base);
    env.put_remote("a.txt", "a\n");
    env.put_remote("b.txt", "b\n");
    env.clone_ws();
    env.put_local("blob.bin", &client);
    env.put_remote("blob.bin", &server);

    sync_to_an_unmerged_conflict(&env, "blob.bin", &client, &server);
    for (variant, bytes) in [("base", &base), ("client", &client), ("server", &server)] {
        let shown = env.ok(&["show", "blob.bin", "--variant", variant]);
        assert_eq!(&shown.stdout, bytes, "--variant {variant}");
    }
    // Nor by hand: there is no merge of binary files to take.
    let m = env.expect_code(2, &["resolve", "blob.bin", "--take", "merged"]);
    assert!(m.stderr.contains("blob.bin"), "{m}");
    assert_eq!(fs::read(env.w("blob.bin")).expect("read"), client);
    assert_eq!(paths_of(&open_conflicts(&env)), ["blob.bin"]);
}

#[test]
fn a_text_file_over_8_mib_is_not_merged() {
    let lines: Vec<String> = (0..750_000).map(|i| format!("line {i:07}\n")).collect();
    let base: String = lines.concat();
    assert!(base.len() > 8 << 20, "over the limit: {}", base.len());
    let client = base.replacen("line 0000000\n", "line 0, from the laptop\n", 1);
    let server = base.replacen("line 0749999\n", "line 749999, from the server\n", 1);
    let env = Env::with_remote(&[("big.txt", &base), ("a.txt", "a\n"), ("b.txt", "b\n")]);
    env.clone_ws();
    env.put_local("big.txt", &client);
    env.put_remote("big.txt", &server);

    let list = sync_to_an_unmerged_conflict(&env, "big.txt", client.as_bytes(), server.as_bytes());
    assert_eq!(list[0]["client"]["size"], client.len(), "{list}");
    assert_eq!(list[0]["server"]["size"], server.len(), "{list}");
}

#[test]
fn different_symlink_targets_are_a_target_conflict() {
    let env = Env::with_remote(&[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")]);
    std::os::unix::fs::symlink("a.txt", env.r("link")).expect("remote symlink");
    env.clone_ws();
    assert_eq!(
        fs::read_link(env.w("link")).expect("readlink"),
        Path::new("a.txt")
    );
    fs::remove_file(env.w("link")).expect("rm");
    std::os::unix::fs::symlink("b.txt", env.w("link")).expect("local symlink");
    fs::remove_file(env.r("link")).expect("rm");
    std::os::unix::fs::symlink("c.txt-on-the-server", env.r("link")).expect("remote symlink");

    let r = env.expect_code(7, &["sync"]);
    assert!(r.out().contains("conflict (target): link"), "{r}");
    assert_eq!(
        fs::read_link(env.w("link")).expect("readlink"),
        Path::new("b.txt"),
        "local symlink unchanged"
    );
    assert_eq!(
        fs::read_link(env.r("link")).expect("readlink"),
        Path::new("c.txt-on-the-server"),
        "server's symlink unchanged"
    );
    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["link"], "{list}");
    let c = &list[0];
    assert_eq!(c["kind"], "target", "{c}");
    assert_eq!(c["base"]["target"], "a.txt", "{c}");
    assert_eq!(c["client"]["target"], "b.txt", "{c}");
    assert_eq!(c["server"]["target"], "c.txt-on-the-server", "{c}");
    for (variant, target) in [
        ("base", "a.txt\n"),
        ("client", "b.txt\n"),
        ("server", "c.txt-on-the-server\n"),
    ] {
        let shown = env.ok(&["show", "link", "--variant", variant]);
        assert_eq!(shown.stdout, target.as_bytes(), "--variant {variant}");
    }
    env.expect_code(7, &["check"]);

    // Settled like a file: the server's target on both sides.
    env.ok(&["resolve", "link", "--take", "server"]);
    env.ok(&["sync"]);
    for side in [&env.ws, &env.remote] {
        assert_eq!(
            fs::read_link(side.join("link")).expect("readlink"),
            Path::new("c.txt-on-the-server")
        );
    }
    env.assert_in_sync();
    assert_noop(&env);
}

// ---------------------------------------------------------------------------------------
// resolve, with each option

#[test]
fn resolve_take_server() {
    let env = overlapping();
    settle(&env, &["--take", "server"], SERVER_OVERLAP);
    let rec = record_of(&env, "notes.txt");
    assert!(
        rec["resolution"]
            .as_str()
            .is_some_and(|s| s.contains("server")),
        "{rec}"
    );
}

#[test]
fn resolve_take_client() {
    let env = overlapping();
    settle(&env, &["--take", "client"], CLIENT_OVERLAP);
}

#[test]
fn resolve_take_base() {
    let env = overlapping();
    settle(&env, &["--take", "base"], BASE);
}

#[test]
fn resolve_take_merged_refuses_overlapping_edits_and_suggests_edit() {
    let env = overlapping();
    let r = env.expect_code(2, &["resolve", "notes.txt", "--take", "merged"]);
    assert!(r.stderr.contains("--edit"), "suggests --edit: {r}");
    assert_eq!(read(env.w("notes.txt")), CLIENT_OVERLAP, "nothing written");
    assert_eq!(read(env.r("notes.txt")), SERVER_OVERLAP);
    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["notes.txt"], "still open: {list}");
    assert_eq!(list[0]["state"], "open", "{list}");
}

#[test]
fn resolve_take_merged_when_only_the_modes_clash() {
    // Edits in different places, but each side gave the file a different mode: the content
    // merges cleanly, the modes do not, so it stays a conflict that `--take merged` settles.
    let env = cloned();
    env.put_local(
        "notes.txt",
        "ONE, from the laptop\ntwo\nthree\nfour\nfive\n",
    );
    common::chmod(env.w("notes.txt"), 0o600);
    env.put_remote(
        "notes.txt",
        "one\ntwo\nthree\nfour\nFIVE, from the server\n",
    );
    common::chmod(env.r("notes.txt"), 0o640);
    let merged = "ONE, from the laptop\ntwo\nthree\nfour\nFIVE, from the server\n";

    let r = env.expect_code(7, &["sync"]);
    assert!(r.out().contains("conflict ("), "{r}");
    assert_eq!(paths_of(&open_conflicts(&env)), ["notes.txt"]);
    settle(&env, &["--take", "merged"], merged);
}

#[test]
fn resolve_with_a_file() {
    let env = overlapping();
    let mine = env.root().join("my-resolution.txt");
    fs::write(
        &mine,
        "one\ntwo, as agreed on the phone\nthree\nfour\nfive\n",
    )
    .expect("write");
    let mine_arg = mine.to_str().expect("a UTF-8 path");
    settle(
        &env,
        &["--with", mine_arg],
        "one\ntwo, as agreed on the phone\nthree\nfour\nfive\n",
    );
    assert!(exists(&mine), "the given file is left alone");
}

#[test]
fn resolve_edit_writes_markers_and_mark_takes_the_edited_file() {
    let env = overlapping();
    let r = env.ok(&["resolve", "notes.txt", "--edit"]);
    assert!(r.out().contains("--mark"), "says what to do next: {r}");
    let marked = read(env.w("notes.txt"));
    let lines: Vec<&str> = marked.lines().collect();
    for marker in ["<<<<<<< client (yours)", "=======", ">>>>>>> server"] {
        assert!(lines.contains(&marker), "{marker:?} in:\n{marked}");
    }
    for side in ["two, from the laptop", "two, from the server!"] {
        assert!(lines.contains(&side), "{side:?} in:\n{marked}");
    }
    let at = |m: &str| lines.iter().position(|l| *l == m).expect("marker");
    assert!(
        at("<<<<<<< client (yours)") < at("two, from the laptop")
            && at("two, from the laptop") < at("=======")
            && at("=======") < at("two, from the server!")
            && at("two, from the server!") < at(">>>>>>> server"),
        "client above, server below:\n{marked}"
    );
    assert_eq!(read(env.r("notes.txt")), SERVER_OVERLAP, "remote untouched");
    assert_eq!(
        paths_of(&open_conflicts(&env)),
        ["notes.txt"],
        "still open while editing"
    );

    // Marking with the markers still in is refused.
    let m = env.expect_code(2, &["resolve", "notes.txt", "--mark"]);
    assert!(m.stderr.contains("marker"), "{m}");
    assert_eq!(
        read(env.w("notes.txt")),
        marked,
        "the file is left as it was"
    );
    assert_eq!(paths_of(&open_conflicts(&env)), ["notes.txt"]);

    let by_hand = "one\ntwo, from both of us\nthree\nfour\nfive\n";
    write_changed(&env.w("notes.txt"), by_hand.as_bytes());
    settle(&env, &["--mark"], by_hand);
}

// ---------------------------------------------------------------------------------------
// resolve refusals, offline use

#[test]
fn resolve_without_a_conflict_is_a_usage_error() {
    let env = cloned();
    let r = env.expect_code(2, &["resolve", "a.txt", "--take", "server"]);
    assert!(r.stderr.contains("a.txt"), "{r}");
    assert_eq!(read(env.w("a.txt")), "a\n");
    let r = env.expect_code(2, &["resolve", "no-such-file.txt", "--take", "client"]);
    assert!(r.stderr.contains("no-such-file.txt"), "{r}");
    assert!(!exists(env.w("no-such-file.txt")));
}

#[test]
fn resolve_refuses_when_the_server_changed_since_the_conflict() {
    let env = overlapping();
    let newer = "one\ntwo, the server's second thought\nthree\nfour\nfive\n";
    env.put_remote("notes.txt", newer);
    // status --refresh refreshes the remote snapshot without syncing.
    env.ok(&["status", "--refresh"]);
    let r = env.expect_code(2, &["resolve", "notes.txt", "--take", "client"]);
    assert!(r.stderr.contains("sync"), "says to sync first: {r}");
    assert_eq!(
        read(env.w("notes.txt")),
        CLIENT_OVERLAP,
        "workspace untouched"
    );
    assert_eq!(read(env.r("notes.txt")), newer, "the newer edit is safe");
    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["notes.txt"], "{list}");

    // A sync records the conflict as it is now; resolving it then works.
    env.expect_code(7, &["sync"]);
    let shown = env.ok(&["show", "notes.txt", "--variant", "server"]);
    assert_eq!(shown.stdout, newer.as_bytes(), "{shown}");
    settle(&env, &["--take", "client"], CLIENT_OVERLAP);
}

#[test]
fn resolve_works_offline_and_connect_sends_it() {
    let env = overlapping();
    env.ok(&["disconnect"]);
    let r = env.ok(&["resolve", "notes.txt", "--take", "client"]);
    assert!(r.out().contains("sync"), "{r}");
    assert_eq!(read(env.w("notes.txt")), CLIENT_OVERLAP);
    assert_eq!(
        read(env.r("notes.txt")),
        SERVER_OVERLAP,
        "nothing reaches the server while disconnected"
    );
    assert_eq!(open_conflicts(&env), serde_json::json!([]));

    let c = env.ok(&["connect"]);
    assert!(c.out().contains("connected"), "{c}");
    for side in [&env.ws, &env.remote] {
        assert_eq!(read(side.join("notes.txt")), CLIENT_OVERLAP);
    }
    env.assert_in_sync();
    assert_noop(&env);
    env.ok(&["check"]);
}

// ---------------------------------------------------------------------------------------
// The server refuses a write

#[test]
fn a_write_the_server_refuses_is_a_permission_conflict() {
    let env = Env::with_remote(&[
        ("locked/f.txt", "v1\n"),
        ("open.txt", "open v1\n"),
        ("a.txt", "a\n"),
    ]);
    env.clone_ws();
    let guard = Immutable::set(&env.r("locked"));
    env.put_local("locked/f.txt", "v2, edited on the laptop\n");
    env.put_local("open.txt", "open v2\n");

    let r = env.expect_code(7, &["sync"]);
    assert!(r.out().contains("locked/f.txt"), "{r}");
    assert_eq!(read(env.w("locked/f.txt")), "v2, edited on the laptop\n");
    assert_eq!(read(env.r("locked/f.txt")), "v1\n", "remote unchanged");
    assert_eq!(
        read(env.r("open.txt")),
        "open v2\n",
        "the rest went through"
    );
    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["locked/f.txt"], "{list}");
    let c = &list[0];
    assert_eq!(c["kind"], "permission", "{c}");
    assert_eq!(c["state"], "open", "{c}");
    assert_eq!(
        c["server"]["kind"], "file",
        "the cached remote version: {c}"
    );
    assert!(c["server"]["mode"].is_u64(), "its cached mode: {c}");
    let server = env.ok(&["show", "locked/f.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"v1\n", "{server}");
    let check = env.json(7, &["check", "--json"]);
    assert!(
        check["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["path"] == "locked/f.txt"),
        "{check}"
    );
    // It stays a conflict while the server keeps refusing.
    env.expect_code(7, &["sync"]);
    assert_eq!(read(env.w("locked/f.txt")), "v2, edited on the laptop\n");

    guard.release();
    let r = env.ok(&["sync"]);
    assert!(!r.out().contains("conflict ("), "{r}");
    for side in [&env.ws, &env.remote] {
        assert_eq!(
            read(side.join("locked/f.txt")),
            "v2, edited on the laptop\n"
        );
    }
    env.assert_in_sync();
    assert_eq!(open_conflicts(&env), serde_json::json!([]));
    let rec = record_of(&env, "locked/f.txt");
    assert_eq!(rec["state"], "resolved", "{rec}");
    assert_noop(&env);
    env.ok(&["check"]);
    drop(guard);
}

// ---------------------------------------------------------------------------------------
// lost+found

/// A remote with `d/a.txt`, `d/b.txt` and bystanders, cloned.
fn with_dir() -> Env {
    let env = Env::with_remote(&[
        ("d/a.txt", "a v1\n"),
        ("d/b.txt", "b v1\n"),
        ("x.txt", "x\n"),
        ("y.txt", "y\n"),
        ("z.txt", "z\n"),
    ]);
    env.clone_ws();
    env
}

/// The server replaced `d/` with a file; the workspace edited `d/a.txt` and added
/// `d/new.txt`; the first sync ran (exit 7): the environment and that sync's output.
fn server_replaced_dir() -> (Env, String) {
    let env = with_dir();
    env.put_local("d/a.txt", "a v2, edited on the laptop\n");
    env.put_local("d/new.txt", "new, written on the laptop\n");
    fs::remove_dir_all(env.r("d")).expect("remote rm -r");
    env.put_remote("d", "d is a file on the server now\n");
    let r = env.expect_code(7, &["sync"]);
    (env, r.out())
}

#[test]
fn a_directory_the_server_replaced_by_a_file_sends_local_changes_to_lost_found() {
    let (env, out) = server_replaced_dir();
    assert!(
        out.lines()
            .any(|l| l.starts_with("note:") && l.contains(LOST_FOUND)),
        "a note names lost+found:\n{out}"
    );
    // The server's file is in the workspace, the server untouched.
    assert_eq!(read(env.w("d")), "d is a file on the server now\n");
    assert_eq!(read(env.r("d")), "d is a file on the server now\n");
    assert!(env.r("d").is_file());
    // Both local files, byte for byte, in lost+found.
    let slot = lost_found_slot(&env);
    assert!(slot.join("d").is_dir(), "{}", slot.display());
    assert_eq!(read(slot.join("d/a.txt")), "a v2, edited on the laptop\n");
    assert_eq!(read(slot.join("d/new.txt")), "new, written on the laptop\n");
    assert_eq!(read(slot.join("d/b.txt")), "b v1\n", "moved whole");
    assert_in_sync_but_lost_found(&env);
    assert_lost_found_not_pushed(&env);

    let check = env.expect_code(7, &["check"]);
    assert!(check.out().contains(LOST_FOUND), "{check}");
    let cj = env.json(7, &["check", "--json"]);
    assert_eq!(cj["clean"], false, "{cj}");
    assert_eq!(cj["code"], "ECONFLICTED", "{cj}");
    assert!(
        cj["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["kind"] == "lost-found" && p["path"] == "d"),
        "{cj}"
    );

    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["d"], "{list}");
    let c = &list[0];
    assert_eq!(c["kind"], "type", "{c}");
    let lf = c["lost_found"].as_str().expect("lost_found is named");
    assert!(
        lf.starts_with(&format!("{LOST_FOUND}/")) && lf.ends_with("/d"),
        "{lf}"
    );
    assert!(env.w(lf).is_dir(), "lost_found names the copy: {lf}");
    assert_eq!(env.w(lf), slot.join("d"));

    // Nothing moves again while the copy is there.
    env.expect_code(7, &["sync"]);
    assert_eq!(read(slot.join("d/a.txt")), "a v2, edited on the laptop\n");
    assert_eq!(lost_found_slot(&env), slot);
    assert_lost_found_not_pushed(&env);

    // The user is done with it.
    fs::remove_dir_all(env.w(lf)).expect("rm the lost+found copy");
    env.ok(&["sync"]);
    env.ok(&["check"]);
    assert_eq!(open_conflicts(&env), serde_json::json!([]));
    assert_eq!(record_of(&env, "d")["state"], "resolved");
    assert_eq!(read(env.w("d")), "d is a file on the server now\n");
    assert_lost_found_not_pushed(&env);
    assert_noop(&env);
}

/// Issue 12, item 6: the guide says `--take server` closes a lost+found record when the
/// server's version is a file; other choices are refused, and the copy is never touched.
#[test]
fn take_server_closes_a_type_clash_record_and_keeps_the_copy() {
    let (env, _) = server_replaced_dir();
    let slot = lost_found_slot(&env);
    let refused = env.expect_code(2, &["resolve", "d", "--take", "client"]);
    assert!(refused.stderr.contains("--take server"), "{refused}");
    let r = env.ok(&["resolve", "d", "--take", "server"]);
    assert!(
        r.out().contains(LOST_FOUND),
        "names where the copy stays: {r}"
    );
    assert_eq!(open_conflicts(&env), serde_json::json!([]));
    assert_eq!(record_of(&env, "d")["state"], "resolved");
    assert_eq!(read(slot.join("d/a.txt")), "a v2, edited on the laptop\n");
    assert_eq!(read(env.w("d")), "d is a file on the server now\n");
    env.ok(&["check"]);
    assert_noop(&env);
    assert_eq!(read(slot.join("d/a.txt")), "a v2, edited on the laptop\n");
    assert_lost_found_not_pushed(&env);
}

/// Issue 12, item 5: a file created on one side where the other created a directory is a
/// type clash the next sync records; `status` and `check` show it beforehand, as the sync's
/// dry run does, in both directions.
#[test]
fn status_and_check_show_a_type_clash_before_the_sync_records_it() {
    for local_is_file in [true, false] {
        let env = with_dir();
        let (file_side, dir_side) = if local_is_file {
            (&env.ws, &env.remote)
        } else {
            (&env.remote, &env.ws)
        };
        fs::write(file_side.join("n"), "a file\n").expect("write n");
        fs::create_dir(dir_side.join("n")).expect("mkdir n");
        fs::write(dir_side.join("n/inside.txt"), "inside\n").expect("write n/inside.txt");

        let st = env.json(0, &["status", "--refresh", "--json"]);
        assert_eq!(
            paths_of(&st["conflicts"]),
            ["n"],
            "local file: {local_is_file}: {st}"
        );
        assert_eq!(st["conflicts"][0]["kind"], "type", "{st}");
        let dry = env.json(7, &["sync", "--dry-run", "--json"]);
        assert_eq!(paths_of(&dry["conflicts"]), ["n"], "{dry}");
        let cj = env.json(7, &["check", "--json"]);
        assert_eq!(cj["code"], "ECONFLICTED", "{cj}");
        assert!(
            cj["problems"]
                .as_array()
                .expect("problems")
                .iter()
                .any(|p| p["path"] == "n"),
            "{cj}"
        );

        let synced = env.json(7, &["sync", "--json"]);
        assert_eq!(paths_of(&synced["conflicts"]), ["n"], "{synced}");
        assert_eq!(paths_of(&open_conflicts(&env)), ["n"]);
        env.expect_code(7, &["check"]);
    }
}

#[test]
fn a_directory_the_workspace_replaced_by_a_file_yields_to_the_servers_edit() {
    let env = with_dir();
    fs::remove_dir_all(env.w("d")).expect("local rm -r");
    env.put_local("d", "d is a file on the laptop now\n");
    env.put_remote("d/a.txt", "a v2, edited on the server\n");

    let r = env.expect_code(7, &["sync"]);
    assert!(
        r.out()
            .lines()
            .any(|l| l.starts_with("note:") && l.contains(LOST_FOUND)),
        "{r}"
    );
    // The server's directory wins, in the workspace too.
    for side in [&env.ws, &env.remote] {
        assert!(
            side.join("d").is_dir(),
            "d is a directory in {}",
            side.display()
        );
        assert_eq!(read(side.join("d/a.txt")), "a v2, edited on the server\n");
        assert_eq!(read(side.join("d/b.txt")), "b v1\n");
    }
    assert_in_sync_but_lost_found(&env);
    let slot = lost_found_slot(&env);
    assert!(slot.join("d").is_file(), "{}", slot.display());
    assert_eq!(read(slot.join("d")), "d is a file on the laptop now\n");
    assert_lost_found_not_pushed(&env);

    let list = open_conflicts(&env);
    assert_eq!(paths_of(&list), ["d"], "{list}");
    assert_eq!(list[0]["kind"], "type", "{list}");
    assert!(list[0]["lost_found"].is_string(), "{list}");
    let cj = env.json(7, &["check", "--json"]);
    assert!(
        cj["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["kind"] == "lost-found" && p["path"] == "d"),
        "{cj}"
    );

    // A second sync changes nothing on either side while the copy is kept.
    let again = env.json(7, &["sync", "--json"]);
    assert_eq!(steps(&again).len(), 0, "{again}");
    assert_eq!(read(env.r("d/b.txt")), "b v1\n", "the server's file stays");

    fs::remove_file(slot.join("d")).expect("rm the lost+found copy");
    env.ok(&["sync"]);
    env.assert_in_sync();
    env.ok(&["check"]);
    assert_eq!(open_conflicts(&env), serde_json::json!([]));
    assert_noop(&env);
}

#[test]
fn lost_found_is_never_pushed() {
    let env = cloned();
    // Whatever the user keeps there, by hand or from cachesync, stays local.
    env.put_local(format!("{LOST_FOUND}/7/kept.txt"), "kept by hand\n");
    env.put_local(format!("{LOST_FOUND}/notes.txt"), "a loose file\n");
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["local_changes"], serde_json::json!([]), "{st}");
    let r = env.json(0, &["sync", "--json"]);
    assert_eq!(steps(&r).len(), 0, "nothing to send: {r}");
    assert_lost_found_not_pushed(&env);
    env.ok(&["check"]);
    assert_eq!(
        read(env.w(format!("{LOST_FOUND}/7/kept.txt"))),
        "kept by hand\n"
    );

    // After a real stash, later syncs (with other changes) still leave it out.
    let env = server_replaced_dir().0;
    env.put_local("x.txt", "x v2\n");
    env.expect_code(7, &["sync"]);
    assert_eq!(read(env.r("x.txt")), "x v2\n");
    assert_lost_found_not_pushed(&env);
    let tree = env.local_tree();
    assert!(
        tree.iter()
            .any(|(k, n)| k.starts_with(LOST_FOUND.as_bytes())
                && matches!(n, Node::File(_, c) if c == b"a v2, edited on the laptop\n")),
        "still kept locally"
    );
}

// ---------------------------------------------------------------------------------------
// check, for CI

#[test]
fn check_lists_every_problem() {
    let env = with_dir();
    // A content conflict on x.txt, and a lost+found entry for d.
    env.put_local("x.txt", "x, from the laptop\n");
    env.put_remote("x.txt", "x, from the server!\n");
    env.put_local("d/a.txt", "a v2, edited on the laptop\n");
    fs::remove_dir_all(env.r("d")).expect("remote rm -r");
    env.put_remote("d", "d is a file on the server now\n");
    env.expect_code(7, &["sync"]);

    let cj = env.json(7, &["check", "--json"]);
    assert_eq!(cj["clean"], false, "{cj}");
    assert_eq!(cj["code"], "ECONFLICTED", "{cj}");
    assert_eq!(cj["exit"], 7, "{cj}");
    let problems = cj["problems"].as_array().expect("problems");
    let has = |kind: &str, path: &str| {
        problems
            .iter()
            .any(|p| p["kind"] == kind && p["path"] == path && p["message"].is_string())
    };
    assert!(has("conflict", "x.txt"), "{cj}");
    assert!(has("lost-found", "d"), "{cj}");
    assert!(
        problems
            .iter()
            .all(|p| p["path"] == "x.txt" || p["path"] == "d"),
        "nothing else: {cj}"
    );

    let text = env.expect_code(7, &["check"]);
    let lines: Vec<String> = text.out().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), problems.len(), "one line per problem: {text}");
    assert!(lines.iter().any(|l| l.contains("x.txt")), "{text}");
    assert!(lines.iter().any(|l| l.contains(LOST_FOUND)), "{text}");

    // Settling one leaves the other.
    env.ok(&["resolve", "x.txt", "--take", "server"]);
    env.expect_code(7, &["sync"]);
    let cj = env.json(7, &["check", "--json"]);
    let problems = cj["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{cj}");
    assert_eq!(problems[0]["kind"], "lost-found", "{cj}");
    let lf = open_conflicts(&env)[0]["lost_found"]
        .as_str()
        .expect("lost_found")
        .to_string();
    fs::remove_dir_all(env.w(&lf)).expect("rm the lost+found copy");
    env.ok(&["sync"]);
    let cj = env.json(0, &["check", "--json"]);
    assert_eq!(cj["clean"], true, "{cj}");
    assert_eq!(cj["problems"], serde_json::json!([]), "{cj}");
}

#[test]
fn a_resolved_conflict_keeps_its_client_variant() {
    let env = overlapping();
    env.ok(&["resolve", "notes.txt", "--take", "server"]);
    env.ok(&["sync"]);
    assert_eq!(read(env.w("notes.txt")), SERVER_OVERLAP);
    let client = env.ok(&["show", "notes.txt", "--variant", "client"]);
    assert_eq!(
        client.stdout,
        CLIENT_OVERLAP.as_bytes(),
        "the laptop's version stays"
    );
}

#[test]
fn a_sync_while_editing_markers_keeps_the_recorded_versions() {
    let env = overlapping();
    env.ok(&["resolve", "notes.txt", "--edit"]);
    // A sync in the middle: the file with markers is not a new client version.
    env.expect_code(7, &["sync"]);
    let client = env.ok(&["show", "notes.txt", "--variant", "client"]);
    assert_eq!(client.stdout, CLIENT_OVERLAP.as_bytes());
    env.put_local("notes.txt", "one\ntwo, agreed\nthree\nfour\nfive\n");
    env.ok(&["resolve", "notes.txt", "--mark"]);
    env.ok(&["sync"]);
    assert_eq!(
        read(env.r("notes.txt")),
        "one\ntwo, agreed\nthree\nfour\nfive\n"
    );
    assert_noop(&env);
}

/// A run killed right after moving the local version to lost+found (before it could record
/// the conflict) leaves a copy the next run finds and reports.
#[test]
fn a_lost_found_copy_from_a_killed_run_is_recorded() {
    let env = with_dir();
    env.put_local("d/a.txt", "a v2, edited on the laptop\n");
    fs::remove_dir_all(env.r("d")).expect("remote rm -r");
    env.put_remote("d", "d is a file on the server now\n");
    let killed = common::cachesync(
        &env.ws,
        &["sync"],
        &[("CACHESYNC_FAILPOINT", "after-step:0")],
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "{killed:?}"
    );
    env.expect_code(7, &["sync"]);
    let c = record_of(&env, "d");
    let lf = c["lost_found"]
        .as_str()
        .expect("a lost+found path")
        .to_string();
    assert_eq!(
        read(env.w(&lf).join("a.txt")),
        "a v2, edited on the laptop\n",
        "nothing lost"
    );
    let check = env.json(7, &["check", "--json"]);
    assert!(
        check["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["kind"] == "lost-found"),
        "{check}"
    );
}

/// Found by the randomized tester: the conflicted file was made a directory holding a file
/// here; settling the path is refused with the reason (it failed on an I/O error), and the
/// directory and what is in it stay.
#[test]
fn resolve_over_a_directory_made_here_with_files_in_it_is_refused() {
    let env = overlapping();
    fs::remove_file(env.w("notes.txt")).expect("rm");
    env.put_local("notes.txt/inside.txt", "mine, in a directory\n");
    let r = env.expect_code(2, &["resolve", "notes.txt", "--take", "server"]);
    assert!(r.stderr.contains("a directory with something in it"), "{r}");
    assert_eq!(
        read(env.w("notes.txt/inside.txt")),
        "mine, in a directory\n"
    );
    assert_eq!(paths_of(&open_conflicts(&env)), ["notes.txt"]);
}
