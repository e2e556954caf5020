//! Presence: remote-only files (metadata here, content not) are never taken for local
//! deletions, follow the server without their content coming here, and come back with
//! `get` (from the cache, or from the remote; offline and uncached: EDISCONDATA).

mod common;

use common::{exists, noise, read, write_changed, Env};

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
    env.assert_noop_sync();
    assert_eq!(read(env.r("a.txt")), "alpha\n", "still on the server");
    assert_eq!(read(env.r("docs/b.txt")), "bravo\n");
    env.ok(&["check"]);
}

#[test]
fn a_remote_only_file_follows_the_server_without_its_content() {
    let env = Env::with_remote(&[
        ("a.txt", "alpha\n"),
        ("docs/b.txt", "bravo\n"),
        ("c.txt", "charlie\n"),
        ("d.txt", "delta\n"),
    ]);
    common::age_files(&env.remote);
    env.clone_ws();
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
    env.assert_noop_sync();
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
    env.assert_noop_sync();
}

#[test]
fn pinned_files_come_back_and_are_never_dropped() {
    let env = cloned();
    env.ok(&["drop", "docs"]);
    let r = env.ok(&["pin", "docs"]);
    assert!(
        r.out().contains("pinned docs") && r.out().contains("got docs/b.txt"),
        "{r}"
    );
    assert_eq!(read(env.w("docs/b.txt")), "bravo\n");
    let r = env.expect_code(1, &["drop", "docs/b.txt"]);
    assert!(r.stderr.contains("pinned; unpin it first"), "{r}");
    env.ok(&["unpin", "docs"]);
    env.ok(&["drop", "docs/b.txt"]);
    assert!(!exists(env.w("docs/b.txt")));
    env.expect_code(1, &["unpin", "docs"]);
}

#[test]
fn clone_pin_and_never_cache_directories() {
    let env = Env::with_remote(&[("keep/a.txt", "a\n"), ("scratch/old.txt", "o\n")]);
    let r = env.clone_with(&["--pin", "keep"]);
    assert_eq!(r.code, 0, "{r}");
    let c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.w(".cachesync/config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(c["pins"], serde_json::json!(["keep"]));
    env.set_config(|c| c["never_cache"] = serde_json::json!(["scratch"]));
    write_changed(&env.r("scratch/new.bin"), b"a big scratch file\n");
    write_changed(&env.r("keep/b.txt"), b"b\n");
    env.ok(&["sync"]);
    assert!(
        !exists(env.w("scratch/new.bin")),
        "never-cache: left remote-only"
    );
    assert_eq!(
        state_of(&env, "scratch/new.bin").as_deref(),
        Some("remote-only")
    );
    assert_eq!(read(env.w("keep/b.txt")), "b\n");
    env.ok(&["get", "scratch/new.bin"]);
    assert_eq!(read(env.w("scratch/new.bin")), "a big scratch file\n");
    env.assert_noop_sync();
}

#[test]
fn cull_drops_the_least_wanted_clean_files_first() {
    let env = Env::new();
    for (i, name) in ["keep/a.bin", "big.iso", "other.bin", "p.bin", "mod.bin"]
        .iter()
        .enumerate()
    {
        write_changed(&env.r(name), &noise(i as u64 + 1, 1_000_000));
    }
    env.clone_ws();
    env.ok(&["pin", "p.bin"]);
    env.set_config(|c| {
        c["hoard"] = serde_json::json!(["keep/** 100", "*.iso 0"]);
        c["budget_bytes"] = serde_json::json!(9u64 << 20);
    });
    env.put_local("mod.bin", "modified here, not pushed\n");
    let plan = env.json(0, &["cull", "--dry-run", "--json"]);
    let would: Vec<&str> = plan["report"]["dropped"]
        .as_array()
        .expect("dropped")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(
        would.first().copied(),
        Some("big.iso"),
        "lowest priority first: {plan}"
    );
    assert!(exists(env.w("big.iso")), "a dry run changes nothing");
    let r = env.json(0, &["cull", "--json"]);
    let dropped: Vec<&str> = r["report"]["dropped"]
        .as_array()
        .expect("dropped")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(!dropped.is_empty(), "{r}");
    for kept in ["p.bin", "mod.bin", "keep/a.bin"] {
        assert!(!dropped.contains(&kept), "{kept} must not be culled: {r}");
        assert!(exists(env.w(kept)));
    }
    assert!(
        r["report"]["used_after"].as_u64() < r["report"]["used_before"].as_u64(),
        "{r}"
    );
    assert_eq!(read(env.w("mod.bin")), "modified here, not pushed\n");
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
    // The culled content comes back from the remote.
    env.ok(&["get", "big.iso"]);
    assert!(std::fs::read(env.w("big.iso")).expect("got") == noise(2, 1_000_000));
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
}

#[test]
fn prefetch_fetches_the_working_set_within_the_budget() {
    let env = Env::new();
    let names = [
        "hi/a.bin", "hi/b.bin", "lo1.iso", "lo2.iso", "mid.bin", "p.bin",
    ];
    for (i, name) in names.iter().enumerate() {
        write_changed(&env.r(name), &noise(i as u64 + 10, 1_000_000));
    }
    // The share is larger than the budget: clone brings in what fits, the rest stays
    // remote-only (the budget working: exit 0).
    let r = env.clone_with(&["--budget", "9M", "--pin", "p.bin"]);
    assert_eq!(r.code, 0, "{r}");
    env.set_config(|c| c["hoard"] = serde_json::json!(["hi/** 100", "*.iso 1"]));
    let r = env.json(0, &["prefetch", "--json"]);
    for wanted in ["p.bin", "hi/a.bin", "hi/b.bin"] {
        assert!(
            exists(env.w(wanted)),
            "{wanted} present after prefetch: {r}"
        );
    }
    for low in ["lo1.iso", "lo2.iso"] {
        assert_eq!(state_of(&env, low).as_deref(), Some("remote-only"), "{r}");
    }
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
}

#[test]
fn two_prefetches_started_together_do_not_collide() {
    let env = cloned();
    let pause = env.root().join("paused");
    let first = common::spawn_paused(
        &env.ws,
        &env.home,
        &["prefetch", "--quiet"],
        "before-commit",
        &pause,
    );
    cachesync_testutils::wait_until(
        "the first prefetch holds the workspace",
        std::time::Duration::from_secs(30),
        || pause.exists(),
    );
    let second = env.expect_code(1, &["prefetch", "--quiet"]);
    assert!(
        second.stderr.contains("another cachesync process"),
        "{second}"
    );
    std::fs::remove_file(&pause).expect("let the first go on");
    let out = first.wait_with_output().expect("first prefetch");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "--quiet: {out:?}"
    );
}

#[test]
fn status_shows_the_budget_and_how_ready_the_workspace_is() {
    let env = Env::new();
    for (i, name) in ["keep/a.bin", "keep/b.bin", "other.bin", "old.iso"]
        .iter()
        .enumerate()
    {
        write_changed(&env.r(name), &noise(i as u64 + 30, 200_000));
    }
    env.clone_ws();
    env.set_config(|c| {
        c["hoard"] = serde_json::json!(["*.iso 0"]);
        c["always_cache"] = serde_json::json!(["keep"]);
        c["budget_bytes"] = serde_json::json!(64u64 << 20);
    });
    env.ok(&["drop", "other.bin"]);
    let st = env.json(0, &["status", "--json"]);
    let cache = &st["cache"];
    assert_eq!(cache["budget"], 64u64 << 20, "{st}");
    assert_eq!(cache["cull_start"], (64u64 << 20) * 90 / 100, "{st}");
    assert_eq!(cache["cull_to"], (64u64 << 20) * 80 / 100, "{st}");
    assert!(cache["used"].as_u64().expect("used") > 600_000, "{st}");
    let r = &st["readiness"];
    // The working set: keep/* (always cached) and other.bin (default priority); not old.iso.
    assert_eq!(r["working_set_files"], 3, "{st}");
    assert_eq!(r["present"], 2, "{st}");
    assert_eq!(r["missing_bytes"], 200_000, "{st}");
    // Culling would take the least wanted first: old.iso; never the always-cached files.
    assert_eq!(r["cull_next"][0], "old.iso", "{st}");
    assert!(!r["cull_next"].to_string().contains("keep/"), "{st}");
    let r = env.expect_code(1, &["drop", "keep/a.bin"]);
    assert!(r.stderr.contains("pinned"), "{r}");
}

/// A file refused by the budget does not make the small files already here leave: the
/// refused content is collected first, and culling only runs if that was not enough.
#[test]
fn a_refused_file_does_not_cull_what_fits() {
    let env = Env::with_remote(&[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")]);
    let r = env.clone_with(&["--budget", "3M"]);
    assert_eq!(r.code, 0, "{r}");
    write_changed(&env.r("big.bin"), &noise(77, 2_500_000));
    let r = env.expect_code(0, &["sync"]);
    assert!(!r.out().contains("culled"), "{r}");
    for f in ["a.txt", "b.txt", "c.txt"] {
        assert!(exists(env.w(f)), "{f} stays: {r}");
    }
    assert_eq!(state_of(&env, "big.bin").as_deref(), Some("remote-only"));
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
}

/// drop killed after recording the flags and before removing the files: the next sync
/// takes the files as here again, and nothing is deleted anywhere.
#[test]
fn a_drop_killed_half_way_loses_nothing() {
    let env = cloned();
    let out = common::cachesync(
        &env.ws,
        &["drop", "a.txt", "c.txt"],
        &[("CACHESYNC_FAILPOINT", "drop-before-remove")],
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{out:?}"
    );
    env.assert_noop_sync();
    assert_eq!(read(env.r("a.txt")), "alpha\n");
    assert_eq!(read(env.w("a.txt")), "alpha\n");
    assert_eq!(state_of(&env, "a.txt").as_deref(), Some("synced"));
    // Dropping again works.
    env.ok(&["drop", "a.txt"]);
    assert_eq!(state_of(&env, "a.txt").as_deref(), Some("remote-only"));
}

/// A file written at a remote-only path whose server version this workspace never held (it
/// changed on the server while remote-only) does not silently replace that version: it is
/// a conflict, with both kept.
#[test]
fn a_file_written_over_a_version_never_held_is_a_conflict() {
    let env = cloned();
    env.ok(&["drop", "a.txt"]);
    write_changed(&env.r("a.txt"), b"SERVER v2, important\n");
    env.ok(&["sync"]);
    env.put_local("a.txt", "my new notes\n");
    env.expect_code(7, &["sync"]);
    assert_eq!(
        read(env.r("a.txt")),
        "SERVER v2, important\n",
        "not overwritten"
    );
    assert_eq!(read(env.w("a.txt")), "my new notes\n", "kept");
    let server = env.ok(&["show", "a.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"SERVER v2, important\n");
    env.ok(&["resolve", "a.txt", "--take", "client"]);
    env.ok(&["sync"]);
    assert_eq!(read(env.r("a.txt")), "my new notes\n");
    env.assert_noop_sync();
}

/// A remote-only path ignored for a while is not deleted from the server afterwards.
#[test]
fn ignoring_a_remote_only_path_for_a_while_deletes_nothing() {
    let env = cloned();
    env.ok(&["drop", "a.txt"]);
    env.put_local(".cachesyncignore", "a.txt\n");
    env.ok(&["pull"]);
    std::fs::remove_file(env.w(".cachesyncignore")).expect("rm");
    env.ok(&["sync"]);
    assert_eq!(read(env.r("a.txt")), "alpha\n", "still on the server");
    assert_eq!(state_of(&env, "a.txt").as_deref(), Some("remote-only"));
}

/// An edit made while drop runs is never removed: drop checks each file again as it takes
/// it away.
#[test]
fn an_edit_made_during_a_drop_is_kept() {
    let env = cloned();
    let pause = env.root().join("paused");
    let child = common::spawn_paused(
        &env.ws,
        &env.home,
        &["drop", "a.txt"],
        "drop-before-remove",
        &pause,
    );
    cachesync_testutils::wait_until(
        "drop is about to remove the file",
        std::time::Duration::from_secs(30),
        || pause.exists(),
    );
    std::fs::write(env.w("a.txt"), "edited while drop ran, longer\n").expect("edit");
    std::fs::remove_file(&pause).expect("resume");
    let out = child.wait_with_output().expect("drop ends");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(read(env.w("a.txt")), "edited while drop ran, longer\n");
    env.ok(&["sync"]);
    assert_eq!(read(env.r("a.txt")), "edited while drop ran, longer\n");
}

#[test]
fn prefetch_leaves_files_dropped_by_hand_alone() {
    let env = cloned();
    env.ok(&["drop", "a.txt", "c.txt"]);
    env.ok(&["pin", "c.txt"]);
    env.ok(&["prefetch", "--quiet"]);
    assert!(
        !exists(env.w("a.txt")),
        "dropped by hand: stays remote-only"
    );
    assert_eq!(read(env.w("c.txt")), "charlie\n", "pinned: fetched");
}

#[test]
fn deleting_a_directory_deletes_its_remote_only_files_too() {
    let env = Env::with_remote(&[
        ("docs/b.txt", "b\n"),
        ("docs/c.txt", "c\n"),
        ("x.txt", "x\n"),
        ("y.txt", "y\n"),
        ("z.txt", "z\n"),
    ]);
    env.clone_ws();
    env.ok(&["drop", "docs/b.txt"]);
    std::fs::remove_dir_all(env.w("docs")).expect("rm -r");
    env.ok(&["sync"]);
    assert!(!exists(env.r("docs")), "the deletion reached the server");
    env.ok(&["check"]);
}

/// A budget smaller than the share: clone brings in what fits, most wanted first (pins
/// first), instead of nothing, and that is not an error.
#[test]
fn clone_under_a_small_budget_brings_in_what_fits_by_priority() {
    let env = Env::new();
    for i in 0..20u64 {
        write_changed(&env.r(format!("f{i:02}.bin")), &noise(100 + i, 200_000));
    }
    let r = env.clone_with(&["--budget", "3M", "--pin", "f19.bin"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("stay remote-only"), "{r}");
    let here: Vec<u64> = (0..20u64)
        .filter(|i| exists(env.w(format!("f{i:02}.bin"))))
        .collect();
    assert!(here.len() >= 3, "some files fit: {here:?} {r}");
    assert!(here.contains(&19), "the pinned one is here: {here:?}");
    let st = env.json(0, &["status", "--json"]);
    assert!(
        st["cache"]["used"].as_u64().expect("used") <= 3 << 20,
        "within the budget: {st}"
    );
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
}
