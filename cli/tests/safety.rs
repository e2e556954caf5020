//! Safety nets: an outage or an unmounted share is never taken for deletions, the deletion
//! guard, disconnected status, store integrity (fsck), and clear usage errors.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{arg, exists, paths_of, read, steps, Env};

/// A remote with `n` files `f0.txt` ... and a clone of it.
fn cloned_with_files(n: usize) -> Env {
    let env = Env::new();
    for i in 0..n {
        env.put_remote(format!("f{i}.txt"), format!("file number {i}\n"));
    }
    env.clone_ws();
    env
}

/// Moves the remote directory away; returns where it went.
fn move_remote_away(env: &Env) -> PathBuf {
    let away = env.root().join("remote.away");
    fs::rename(&env.remote, &away).expect("move the remote away");
    away
}

#[test]
fn an_empty_directory_at_the_remote_path_is_refused() {
    let env = cloned_with_files(4);
    env.put_local("f0.txt", "edited offline\n");
    env.put_local("new.txt", "new offline\n");
    let local_before = env.local_tree();

    // The share is "unmounted": an empty directory where it was.
    let away = move_remote_away(&env);
    fs::create_dir(&env.remote).expect("empty mount point");

    for args in [
        &["sync"][..],
        &["pull"][..],
        &["push"][..],
        &["sync", "--force"][..],
    ] {
        let r = env.expect_code(3, args);
        assert!(
            r.stderr.contains("marker"),
            "{args:?} names the marker: {r}"
        );
    }
    assert_eq!(env.local_tree(), local_before, "nothing changed locally");
    assert_eq!(
        fs::read_dir(&env.remote).expect("list").count(),
        0,
        "nothing written to the empty directory"
    );
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["mode"], "disconnected", "{st}");
    env.expect_code(3, &["check"]);

    // The share comes back: the offline work is pushed, nothing was lost.
    fs::remove_dir(&env.remote).expect("rmdir");
    fs::rename(&away, &env.remote).expect("move the remote back");
    env.ok(&["sync"]);
    assert_eq!(read(env.r("f0.txt")), "edited offline\n");
    assert_eq!(read(env.r("new.txt")), "new offline\n");
    assert_eq!(read(env.r("f3.txt")), "file number 3\n");
    env.assert_in_sync();
}

#[test]
fn a_remote_without_its_marker_is_refused() {
    let env = cloned_with_files(4);
    fs::remove_file(env.r(".cachesync-remote")).expect("rm marker");
    fs::remove_file(env.r("f1.txt")).expect("rm");
    let (local_before, remote_before) = (env.local_tree(), env.remote_tree());
    for args in [&["sync"][..], &["pull"][..], &["push"][..]] {
        let r = env.expect_code(3, args);
        assert!(
            r.stderr.contains("marker"),
            "{args:?} names the marker: {r}"
        );
    }
    assert_eq!(
        env.local_tree(),
        local_before,
        "the remote deletion was not pulled"
    );
    assert_eq!(env.remote_tree(), remote_before, "nothing pushed");
    assert!(exists(env.w("f1.txt")));
}

#[test]
fn the_deletion_guard_refuses_mass_remote_deletions_without_force() {
    let env = cloned_with_files(10);
    for i in 0..6 {
        fs::remove_file(env.r(format!("f{i}.txt"))).expect("rm");
    }
    let remote_before = env.remote_tree();

    let r = env.expect_code(1, &["sync"]);
    assert!(r.stderr.contains("refusing to delete 6 of 10"), "{r}");
    assert!(r.stderr.contains("--force"), "the way out is named: {r}");
    env.expect_code(1, &["pull"]);
    for i in 0..10 {
        assert_eq!(
            read(env.w(format!("f{i}.txt"))),
            format!("file number {i}\n"),
            "nothing deleted locally"
        );
    }
    assert_eq!(
        env.remote_tree(),
        remote_before,
        "nothing restored on the remote either"
    );

    let r = env.json(0, &["sync", "--force", "--json"]);
    assert_eq!(steps(&r).len(), 6, "{r}");
    for i in 0..6 {
        assert!(!exists(env.w(format!("f{i}.txt"))));
    }
    for i in 6..10 {
        assert!(exists(env.w(format!("f{i}.txt"))));
    }
    env.assert_in_sync();
}

#[test]
fn the_deletion_guard_lets_up_to_half_of_the_files_go() {
    let env = cloned_with_files(10);
    for i in 0..5 {
        fs::remove_file(env.r(format!("f{i}.txt"))).expect("rm");
    }
    env.ok(&["sync"]);
    assert_eq!(env.local_tree().len(), 5);
    env.assert_in_sync();
}

#[test]
fn the_deletion_guard_also_protects_the_remote() {
    let env = cloned_with_files(10);
    for i in 0..7 {
        fs::remove_file(env.w(format!("f{i}.txt"))).expect("rm");
    }
    let r = env.expect_code(1, &["push"]);
    assert!(r.stderr.contains("refusing to delete 7 of 10"), "{r}");
    assert_eq!(env.remote_tree().len(), 10, "nothing deleted on the remote");
    env.ok(&["push", "--force"]);
    assert_eq!(env.remote_tree().len(), 3);
    env.assert_in_sync();
}

#[test]
fn a_dry_run_shows_the_deletions_the_guard_refuses() {
    // The guard's hint says: "review the plan with `--dry-run`".
    let env = cloned_with_files(10);
    for i in 0..6 {
        fs::remove_file(env.r(format!("f{i}.txt"))).expect("rm");
    }
    let r = env.run(["sync", "--dry-run"]);
    let text = r.out();
    for i in 0..6 {
        assert!(
            text.lines()
                .any(|l| l.contains("remove") && l.contains(&format!("f{i}.txt"))),
            "the dry run lists the removal of f{i}.txt: {r}"
        );
    }
    assert_eq!(env.local_tree().len(), 10, "a dry run deletes nothing");
}

#[test]
fn status_with_the_remote_missing_reports_disconnected_and_local_changes() {
    let env = cloned_with_files(3);
    env.put_local("f0.txt", "edited while offline\n");
    env.put_local("offline.txt", "created offline\n");
    let _away = move_remote_away(&env);

    // A plain status does not look at the share: nothing noticed yet.
    let st = env.json(0, &["status", "--json"]);
    assert_eq!(
        (&st["mode"], &st["refreshed"]),
        (&"connected".into(), &false.into()),
        "{st}"
    );
    assert!(st["remote_seen_ns"].is_i64(), "{st}");
    assert_eq!(st["pending"]["push"], 2, "{st}");

    let r = env.ok(&["status", "--refresh"]);
    let text = r.out();
    assert!(text.contains("disconnected"), "{r}");
    assert!(
        text.contains("f0.txt") && text.contains("offline.txt"),
        "{r}"
    );

    let st = env.json(0, &["status", "--json"]);
    assert_eq!(st["mode"], "disconnected", "{st}");
    assert!(st["remote_error"].is_string(), "{st}");
    let mut locals = paths_of(&st["local_changes"]);
    locals.sort();
    assert_eq!(locals, ["f0.txt", "offline.txt"], "{st}");
    assert_eq!(st["remote_changes"], serde_json::json!([]), "{st}");

    let check = env.json(3, &["check", "--json"]);
    assert_eq!(check["clean"], false, "{check}");
    assert_eq!(check["code"], "EDISCONNECTED", "{check}");
    let err = env.json(3, &["sync", "--json"]);
    assert_eq!(err["code"], "EDISCONNECTED", "{err}");
    assert_eq!(err["exit"], 3, "{err}");
    assert_eq!(read(env.w("f0.txt")), "edited while offline\n");
    assert_eq!(read(env.w("f2.txt")), "file number 2\n");
}

#[test]
fn fsck_is_clean_after_a_few_syncs() {
    let env = cloned_with_files(4);
    env.put_local("f0.txt", "local 1\n");
    env.put_remote("f1.txt", "remote 1\n");
    env.put_local("dir/new.bin", pseudo_random(300_000, 7));
    env.ok(&["sync"]);
    env.put_local("f0.txt", "local 2\n");
    fs::remove_file(env.r("f2.txt")).expect("rm");
    env.ok(&["sync"]);
    // A conflict's variants are checked too.
    env.put_local("f3.txt", "mine\n");
    env.put_remote("f3.txt", "theirs!\n");
    env.expect_code(7, &["sync"]);

    let j = env.json(0, &["fsck", "--json"]);
    assert_eq!(j["clean"], true, "{j}");
    assert_eq!(j["problems"], serde_json::json!([]), "{j}");
    assert!(j["files"].as_u64().expect("files") >= 4, "{j}");
    assert!(j["chunks"].as_u64().expect("chunks") >= 4, "{j}");
    let text = env.ok(&["fsck"]).out();
    assert!(text.contains("clean"), "{text}");
}

/// Deterministic incompressible bytes (xorshift).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list the store") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A workspace whose store holds `big.bin`'s chunks in a RocksDB blob file, then one byte of
/// that file flipped. Returns the env and the original content.
fn corrupted_store() -> (Env, Vec<u8>) {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    let big = pseudo_random(400_000, 42);
    fs::write(env.r("big.bin"), &big).expect("write");
    env.clone_ws();
    let store = env.w(".cachesync/store");
    let needle = &big[200_000..200_064];
    // The clone's writes may still be in the write-ahead log; opening the store again
    // (any command) replays and flushes it into table and blob files.
    let mut blob = None;
    for _ in 0..5 {
        blob = files_under(&store).into_iter().find(|p| {
            p.extension().is_some_and(|e| e == "blob")
                && fs::read(p)
                    .expect("read store file")
                    .windows(needle.len())
                    .any(|w| w == needle)
        });
        if blob.is_some() {
            break;
        }
        env.ok(&["fsck"]);
    }
    let blob = blob.expect("the chunk bytes are in a blob file of the store");
    let mut bytes = fs::read(&blob).expect("read blob file");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("found above");
    bytes[at + 17] ^= 0xff;
    fs::write(&blob, &bytes).expect("write the damaged blob file");
    (env, big)
}

#[test]
fn fsck_reports_a_corrupted_chunk() {
    let (env, _) = corrupted_store();
    let j = env.json(1, &["fsck", "--json"]);
    assert_eq!(j["clean"], false, "{j}");
    let problems = j["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["object"] == "chunk"
            && p["context"].as_str().is_some_and(|c| c.contains("big.bin"))),
        "the damaged chunk is named with the file it belongs to: {j}"
    );
    let r = env.expect_code(1, &["fsck"]);
    assert!(r.out().contains("damaged chunk"), "{r}");
}

#[test]
fn a_corrupted_chunk_is_never_served_and_the_error_points_to_fsck() {
    let (env, big) = corrupted_store();
    let shown = env.run(["show", "big.bin", "--variant", "base"]);
    assert_ne!(shown.code, 0, "{shown}");
    assert!(shown.stdout.is_empty(), "no damaged bytes on stdout");
    assert!(shown.stderr.contains("fsck"), "what to do next: {shown}");

    // The local copy is dropped (remote-only); bringing it back must not write damaged
    // content from the store.
    env.ok(&["drop", "big.bin"]);
    assert!(!exists(env.w("big.bin")));
    let r = env.run(["get", "big.bin"]);
    if exists(env.w("big.bin")) {
        assert_eq!(
            fs::read(env.w("big.bin")).expect("read"),
            big,
            "only the right content may appear: {r}"
        );
    } else {
        assert_ne!(r.code, 0, "{r}");
        assert!(r.stderr.contains("fsck"), "what to do next: {r}");
    }
    assert_eq!(
        fs::read(env.r("big.bin")).expect("read"),
        big,
        "remote untouched"
    );
}

#[test]
fn fsck_repair_writes_a_damaged_chunk_again_from_the_workspace_copy() {
    let (env, big) = corrupted_store();
    let j = env.json(0, &["fsck", "--repair", "--json"]);
    assert_eq!(j["clean"], true, "{j}");
    assert_eq!(j["repair"]["repaired"][0]["path"], "big.bin", "{j}");
    assert_eq!(j["repair"]["repaired"][0]["from"], "workspace", "{j}");
    let shown = env.ok(&["show", "big.bin", "--variant", "base"]);
    assert!(shown.stdout == big, "the repaired content is served whole");
    env.assert_noop_sync();
}

#[test]
fn fsck_repair_fetches_from_the_remote_when_the_workspace_copy_changed() {
    let (env, big) = corrupted_store();
    // The workspace's copy is edited (not the stored content any more): the remote's is used.
    env.put_local("big.bin", "edited here\n");
    let r = env.ok(&["fsck", "--repair"]);
    assert!(
        r.out().contains("repaired big.bin (from the remote)"),
        "{r}"
    );
    let shown = env.ok(&["show", "big.bin", "--variant", "base"]);
    assert!(shown.stdout == big, "the base version is whole again");
    env.ok(&["sync"]);
    assert_eq!(
        read(env.r("big.bin")),
        "edited here\n",
        "the edit still goes out"
    );
}

#[test]
fn fsck_repair_without_an_intact_copy_says_so_and_serves_nothing() {
    let (env, _) = corrupted_store();
    env.put_local("big.bin", "edited here\n");
    env.put_remote("big.bin", "edited on the server\n");
    let j = env.json(1, &["fsck", "--repair", "--json"]);
    assert_eq!(j["clean"], false, "{j}");
    assert_eq!(j["repair"]["unrepaired"][0]["path"], "big.bin", "{j}");
    let shown = env.run(["show", "big.bin", "--variant", "base"]);
    assert_ne!(shown.code, 0, "{shown}");
    assert!(shown.stdout.is_empty(), "no damaged bytes on stdout");
}

#[test]
fn a_damaged_database_file_stops_every_command_clearly_and_serves_nothing() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    fs::write(env.r("big.bin"), pseudo_random(300_000, 9)).expect("write");
    env.clone_ws();
    env.ok(&["fsck"]); // flushes the clone's writes into table files
    let tables: Vec<PathBuf> = files_under(&env.w(".cachesync/store"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    assert!(!tables.is_empty(), "the store has table files");
    for t in &tables {
        let mut bytes = fs::read(t).expect("read table file");
        let n = bytes.len();
        for at in [n / 3, n / 2] {
            bytes[at] ^= 0xff;
        }
        fs::write(t, &bytes).expect("write the damaged table file");
    }
    for args in [
        &["status"][..],
        &["fsck"],
        &["show", "big.bin", "--variant", "base"],
        &["sync"],
    ] {
        let r = env.run(args);
        assert_ne!(r.code, 0, "{args:?} on a damaged store: {r}");
        assert!(r.stdout.is_empty(), "{args:?} printed nothing: {r}");
        assert!(
            r.stderr.contains("Corruption") && r.stderr.contains(".sst"),
            "{args:?} names the damaged file: {r}"
        );
        assert!(r.stderr.contains("reliability.md"), "what to do next: {r}");
    }
    assert_eq!(read(env.w("a.txt")), "a\n", "the workspace is untouched");
    assert_eq!(read(env.r("a.txt")), "a\n", "the remote is untouched");
}

#[test]
fn clone_into_a_non_empty_directory_is_a_usage_error() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    fs::create_dir(&env.ws).expect("mkdir");
    fs::write(env.w("mine.txt"), "my own file\n").expect("write");
    let r = env.run_in(
        env.root(),
        [arg(Path::new("clone")), arg(&env.remote), arg(&env.ws)],
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("not empty"), "{r}");
    assert_eq!(read(env.w("mine.txt")), "my own file\n");
    assert!(!exists(env.w(".cachesync")), "no workspace made");
    assert!(!exists(env.w("a.txt")), "nothing copied");
}

#[test]
fn clone_of_a_missing_remote_is_a_usage_error() {
    let env = Env::new();
    let missing = env.root().join("no-such-share");
    let r = env.run_in(
        env.root(),
        [arg(Path::new("clone")), arg(&missing), arg(&env.ws)],
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("does not exist"), "{r}");
    assert!(!exists(&env.ws), "no workspace made");
}

#[test]
fn status_outside_a_workspace_says_how_to_start() {
    let env = Env::new();
    let r = env.run_in(env.root(), ["status"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("not a cachesync workspace"), "{r}");
    assert!(r.stderr.contains("clone"), "the hint names clone: {r}");
    let j = env.run_in(env.root(), ["status", "--json"]);
    assert_eq!(j.code, 1, "{j}");
    assert_eq!(j.json()["code"], "EOTHER", "{j}");
}

#[test]
fn check_json_lists_local_changes() {
    let env = cloned_with_files(3);
    env.put_local("f1.txt", "changed\n");
    let j = env.json(1, &["check", "--json"]);
    assert_eq!(j["clean"], false, "{j}");
    assert_eq!(j["exit"], 1, "{j}");
    let problems = j["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "local-change" && p["path"] == "f1.txt"),
        "{j}"
    );
    env.ok(&["push"]);
    let j = env.json(0, &["check", "--json"]);
    assert_eq!(j["clean"], true, "{j}");
    assert_eq!(j["problems"], serde_json::json!([]), "{j}");
}

#[test]
fn another_share_at_the_remote_path_is_refused_before_anything_of_it_is_read_or_recorded() {
    let env = cloned_with_files(4);
    let counts = || {
        let f = env.json(0, &["fsck", "--json"]);
        ["chunks", "files", "trees", "snapshots", "bytes"].map(|k| f[k].clone())
    };
    let before = counts();
    // Another share mounted where ours was: the same names, another marker, and other
    // content in f0.txt (a scan would read it, as its size and mtime changed).
    let away = move_remote_away(&env);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&away)
        .arg(&env.remote)
        .status()
        .expect("run cp");
    assert!(status.success());
    let marker = env.r(".cachesync-remote");
    let text = read(&marker);
    let id_line = text
        .lines()
        .find(|l| l.starts_with("id "))
        .expect("id line");
    fs::write(
        &marker,
        text.replace(id_line, "id 00000000000000000000000000000000"),
    )
    .expect("write the other marker");
    common::write_changed(&env.r("f0.txt"), b"another share's f0, longer\n");

    for args in [&["sync"][..], &["status"][..]] {
        let r = env.run(args);
        assert!(
            r.stderr.contains("marker") || r.out().contains("marker"),
            "{args:?}: {r}"
        );
    }
    assert_eq!(read(env.w("f0.txt")), "file number 0\n");
    // Nothing of the other share was read into the store or saved as a snapshot.
    assert_eq!(counts(), before);

    // Our share comes back: in sync as it was.
    fs::remove_dir_all(&env.remote).expect("unmount the other share");
    fs::rename(&away, &env.remote).expect("our share is back");
    env.ok(&["sync"]);
    assert_eq!(read(env.w("f0.txt")), "file number 0\n");
    env.assert_in_sync();
    env.assert_noop_sync();
}
