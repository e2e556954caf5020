//! `status` gives the last status's answer again while nothing it depends on changed (the
//! store, the settings, every entry's stat), and never once something did: each kind of
//! change a person can make is seen by the very next status.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use cachesync_testutils::{wait_until, Rng};
use common::{chmod, Env};
use serde_json::Value;

/// The newest ctime or mtime under `dir` (not `.cachesync/`), ns.
fn newest_change(dir: &std::path::Path) -> i64 {
    let mut newest = 0;
    for e in fs::read_dir(dir).expect("list").flatten() {
        if e.file_name() == ".cachesync" {
            continue;
        }
        let md = e.path().symlink_metadata().expect("stat");
        newest = newest
            .max(md.ctime() * 1_000_000_000 + md.ctime_nsec())
            .max(md.mtime() * 1_000_000_000 + md.mtime_nsec());
        if md.is_dir() {
            newest = newest.max(newest_change(&e.path()));
        }
    }
    newest
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64
}

/// The answer without what follows the disk's use from one run to the next, or says how
/// the workspace was looked at.
fn answer(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("an object");
    o.remove("cache_bytes");
    o.remove("cache");
    o.remove("local_scan");
    v
}

fn reused(v: &Value) -> bool {
    v["local_scan"]["reused"]
        .as_bool()
        .unwrap_or_else(|| panic!("no local_scan.reused in {v}"))
}

/// Waits until every entry of the workspace changed more than a second ago.
fn wait_until_old(env: &Env) {
    wait_until(
        "every entry is more than a second old",
        Duration::from_secs(10),
        || now_ns() - newest_change(&env.ws) > 1_200_000_000,
    );
}

/// Waits until every entry's last change is more than a second old (a change within the
/// timestamp's grain could hide behind an unchanged stat, and then nothing is kept), then
/// runs status twice: the second gives the first's answer again. Returns it.
fn settled(env: &Env) -> Value {
    wait_until_old(env);
    let first = env.json(0, &["status", "--json"]);
    let again = env.json(0, &["status", "--json"]);
    assert!(reused(&again), "not reused: {again}");
    assert_eq!(answer(first), answer(again.clone()));
    again
}

/// The next status after `change`: not the kept answer, and `check` holds of it.
fn after(env: &Env, what: &str, change: impl FnOnce(), check: impl FnOnce(&Value) -> bool) {
    settled(env);
    change();
    let v = env.json(0, &["status", "--json"]);
    assert!(!reused(&v), "{what}: the kept answer was given: {v}");
    assert!(check(&v), "{what}: {v}");
}

fn local_change(v: &Value, path: &str, change: &str) -> bool {
    v["local_changes"]
        .as_array()
        .expect("a list")
        .iter()
        .any(|c| c["path"] == path && c["change"] == change)
}

#[test]
fn status_gives_its_last_answer_again_only_while_nothing_changed() {
    let env = Env::with_remote(&[("a.txt", "aaaa\n"), ("d/b.txt", "bbbb\n")]);
    std::os::unix::fs::symlink("a.txt", env.r("link")).expect("symlink");
    env.clone_ws();
    let v = settled(&env);
    assert_eq!(v["local_changes"], serde_json::json!([]), "{v}");

    // An edit of the same size that puts the mtime back: the ctime still moves.
    after(
        &env,
        "same-size edit, mtime put back",
        || {
            let mtime = fs::metadata(env.w("a.txt")).expect("stat").modified();
            fs::write(env.w("a.txt"), "AAAA\n").expect("write");
            fs::File::options()
                .write(true)
                .open(env.w("a.txt"))
                .expect("open")
                .set_modified(mtime.expect("mtime"))
                .expect("set mtime");
        },
        |v| local_change(v, "a.txt", "modified"),
    );
    after(
        &env,
        "chmod",
        || chmod(env.w("d/b.txt"), 0o600),
        |v| local_change(v, "d/b.txt", "mode"),
    );
    after(
        &env,
        "new file",
        || fs::write(env.w("d/new.txt"), "new\n").expect("write"),
        |v| local_change(v, "d/new.txt", "added"),
    );
    after(
        &env,
        "new empty directory",
        || fs::create_dir(env.w("e")).expect("mkdir"),
        |v| local_change(v, "e", "added"),
    );
    after(
        &env,
        "symlink pointed elsewhere (same length)",
        || {
            fs::remove_file(env.w("link")).expect("rm");
            std::os::unix::fs::symlink("b.txt", env.w("link")).expect("symlink");
        },
        |v| local_change(v, "link", "modified"),
    );
    after(
        &env,
        "a path ignored by a new rule",
        || fs::write(env.w(".cachesyncignore"), "d/new.txt\n").expect("write"),
        |v| !local_change(v, "d/new.txt", "added") && local_change(v, ".cachesyncignore", "added"),
    );
    after(
        &env,
        "file deleted",
        || fs::remove_file(env.w("d/b.txt")).expect("rm"),
        |v| local_change(v, "d/b.txt", "deleted"),
    );
    // Changes of the store and of the settings, with the workspace as it was.
    after(
        &env,
        "disconnected by hand",
        || {
            env.ok(&["disconnect"]);
        },
        |v| v["mode"] == "disconnected",
    );
    after(
        &env,
        "a pin",
        || {
            env.ok(&["pin", "a.txt"]);
        },
        |v| v["readiness"]["working_set_files"].as_u64() > Some(0),
    );
    after(
        &env,
        "reconnected and synced",
        || {
            env.ok(&["connect"]);
            env.ok(&["sync"]);
        },
        |v| v["mode"] == "connected" && v["local_changes"] == serde_json::json!([]),
    );
}

/// How many directories the status's walk took from their kept listing.
fn listed(v: &Value) -> u64 {
    v["local_scan"]["listed"]
        .as_u64()
        .unwrap_or_else(|| panic!("no local_scan.listed in {v}"))
}

/// A status after `change`: it sees the change (`check`), and took from their listings
/// only the `expect_listed` directories left as they were (`None`: the answer is made the
/// whole way).
fn after_listed(
    env: &Env,
    what: &str,
    change: impl FnOnce(),
    check: impl FnOnce(&Value) -> bool,
    expect_listed: Option<u64>,
) {
    // The second status of `settled` kept the listings; the next takes every directory
    // from them.
    settled(env);
    let v = env.json(0, &["status", "--json"]);
    assert!(reused(&v), "{what}: {v}");
    assert_eq!(listed(&v), 5, "{what}: before, every directory listed: {v}");
    change();
    let v = env.json(0, &["status", "--json"]);
    assert!(check(&v), "{what}: {v}");
    // `None`: the answer was made the whole way, which reads every directory.
    let expect_listed = expect_listed.unwrap_or(0);
    assert_eq!(listed(&v), expect_listed, "{what}: {v}");
}

#[test]
fn a_directory_is_taken_from_its_listing_only_while_it_is_as_it_was() {
    // Five directories: the root, d, d/e, f, g. A directory whose listing holds is still
    // read when one of its entries changed (the walk notes that entry with its stat): a
    // change to an entry is read in its directory and in its parent's.
    let env = Env::with_remote(&[
        ("a.txt", "a\n"),
        ("d/b.txt", "b\n"),
        ("d/e/c.txt", "c\n"),
        ("f/g.txt", "g\n"),
        ("g/h.txt", "h\n"),
    ]);
    env.clone_ws();
    after_listed(
        &env,
        "a file added deep down",
        || fs::write(env.w("d/e/new.txt"), "new\n").expect("write"),
        |v| local_change(v, "d/e/new.txt", "added"),
        Some(3),
    );
    // The directory's mtime put back: its ctime still moves, and nothing sets that back.
    after_listed(
        &env,
        "a file added, the directory's mtime put back",
        || {
            let mtime = fs::metadata(env.w("d")).expect("stat").modified();
            fs::write(env.w("d/hidden.txt"), "x\n").expect("write");
            fs::File::open(env.w("d"))
                .expect("open the directory")
                .set_modified(mtime.expect("mtime"))
                .expect("set mtime");
        },
        |v| local_change(v, "d/hidden.txt", "added"),
        Some(3),
    );
    // No name changed: only the file's own directory is read.
    after_listed(
        &env,
        "a file edited",
        || fs::write(env.w("d/e/c.txt"), "cc\n").expect("write"),
        |v| local_change(v, "d/e/c.txt", "modified"),
        Some(4),
    );
    after_listed(
        &env,
        "a file renamed",
        || fs::rename(env.w("f/g.txt"), env.w("f/g2.txt")).expect("rename"),
        |v| local_change(v, "f/g.txt", "deleted") && local_change(v, "f/g2.txt", "added"),
        None,
    );
    // A new directory in the place of one listed, holding the same names: another inode.
    after_listed(
        &env,
        "a directory replaced by one with the same names",
        || {
            fs::rename(env.w("g"), env.w("g.old")).expect("rename");
            fs::create_dir(env.w("g")).expect("mkdir");
            fs::write(env.w("g/h.txt"), "other\n").expect("write");
        },
        |v| local_change(v, "g/h.txt", "modified") && local_change(v, "g.old/h.txt", "added"),
        None,
    );
    // Listings that do not check out are not read: every directory is read.
    let v = settled(&env);
    let mut bytes = fs::read(env.w(".cachesync/status-dirs")).expect("the listings");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(env.w(".cachesync/status-dirs"), &bytes).expect("write");
    fs::write(env.w("d/e/late.txt"), "late\n").expect("write");
    let v2 = env.json(0, &["status", "--json"]);
    assert!(local_change(&v2, "d/e/late.txt", "added"), "{v2}");
    assert_eq!(listed(&v2), 0, "before: {v}\nafter: {v2}");
}

#[test]
fn the_share_seen_again_is_the_answer_from_then_on() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    settled(&env);
    fs::write(env.r("b.txt"), "b\n").expect("write");
    // Not looked at: the last look stands, and so does the kept answer.
    let v = env.json(0, &["status", "--json"]);
    assert!(reused(&v), "{v}");
    assert_eq!(v["remote_changes"], serde_json::json!([]), "{v}");
    let v = env.json(0, &["status", "--refresh", "--json"]);
    assert!(!reused(&v), "{v}");
    let seen = |v: &Value| {
        v["remote_changes"][0]["path"] == "b.txt" && v["pending"]["pull"].as_u64() == Some(1)
    };
    assert!(seen(&v), "{v}");
    let v = env.json(0, &["status", "--json"]);
    assert!(!reused(&v) && seen(&v), "{v}");
    let v = settled(&env);
    assert!(seen(&v), "{v}");
}

#[test]
fn an_entry_changed_within_the_grain_of_the_walk_is_looked_at_again_by_every_status() {
    let env = Env::with_remote(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    env.clone_ws();
    settled(&env);
    // Dated a minute ahead: to every status in this test, changed "just now". A write
    // within the same tick of the clock could leave its stat as it is, so no answer that
    // saw it is given again without reading it again.
    fs::File::options()
        .write(true)
        .open(env.w("b.txt"))
        .expect("open")
        .set_modified(SystemTime::now() + Duration::from_secs(60))
        .expect("set mtime");
    for _ in 0..3 {
        let v = env.json(0, &["status", "--json"]);
        assert!(!reused(&v), "{v}");
        assert_eq!(v["local_scan"]["rechecked"], 1, "{v}");
        assert_eq!(v["local_changes"], serde_json::json!([]), "{v}");
    }
}

#[test]
fn rules_changed_behind_a_symlink_are_seen_by_the_next_status() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    // The rules live outside the workspace: editing them changes no entry of it. And the
    // path they come to leave out is on the server only: no walk of the workspace sees it.
    let rules = env.root().join("shared-rules");
    fs::write(&rules, "").expect("write");
    std::os::unix::fs::symlink(&rules, env.w(".cachesyncignore")).expect("symlink");
    fs::write(env.r("r.txt"), "r\n").expect("write");
    env.json(0, &["status", "--refresh", "--json"]);
    let remote_change = |v: &Value| {
        v["remote_changes"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|c| c["path"] == "r.txt")
    };
    let v = settled(&env);
    assert!(remote_change(&v), "{v}");
    fs::write(&rules, "r.txt\n").expect("write");
    let v = env.json(0, &["status", "--json"]);
    assert!(!reused(&v), "{v}");
    assert!(!remote_change(&v), "{v}");
}

#[test]
fn a_lost_and_found_copy_moved_away_and_back_is_seen_each_time() {
    let env = Env::with_remote(&[("keep.txt", "k\n")]);
    env.clone_ws();
    // A directory on the server where the workspace made a file: the server's comes in,
    // the file goes to lost+found.
    fs::create_dir(env.r("n")).expect("mkdir");
    fs::write(env.r("n/inside.txt"), "inside\n").expect("write");
    fs::write(env.w("n"), "mine\n").expect("write");
    env.expect_code(7, &["sync"]);
    let lf = |v: &Value| -> Option<String> {
        v["conflicts"]
            .as_array()
            .expect("a list")
            .iter()
            .find_map(|c| c["lost_found"].as_str().map(str::to_owned))
    };
    wait_until_old(&env);
    let v = env.json(0, &["status", "--json"]);
    let copy = env.w(lf(&v).unwrap_or_else(|| panic!("a lost+found copy: {v}")));
    let aside = env.root().join("aside");
    fs::rename(&copy, &aside).expect("move away");
    for _ in 0..2 {
        let v = env.json(0, &["status", "--json"]);
        assert_eq!(lf(&v), None, "{v}");
        assert!(!reused(&v), "{v}");
    }
    fs::rename(&aside, &copy).expect("move back");
    let v = env.json(0, &["status", "--json"]);
    assert!(lf(&v).is_some(), "the copy is back: {v}");
}

/// The workspace's regular files and directories (relative, `.cachesync/` left out).
fn entries(root: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let (mut files, mut dirs) = (Vec::new(), vec![String::new()]);
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(root.join(&dir)).expect("list").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dir.is_empty() && name == ".cachesync" {
                continue;
            }
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let ft = e.file_type().expect("type");
            if ft.is_dir() {
                dirs.push(rel.clone());
                todo.push(rel);
            } else if ft.is_file() {
                files.push(rel);
            }
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs)
}

/// Changes every byte of the file at `path`, and gives it back its mtime.
fn same_size_edit(path: &std::path::Path) {
    let before = fs::metadata(path).expect("stat");
    let body: Vec<u8> = fs::read(path)
        .expect("read")
        .iter()
        .map(|b| b.wrapping_add(1))
        .collect();
    fs::write(path, body).expect("write");
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|h| h.set_modified(before.modified().expect("mtime")))
        .expect("set mtime");
}

/// One change drawn at random, made; says what it was.
fn random_change(env: &Env, rng: &mut Rng, n: usize) -> String {
    let (files, dirs) = entries(&env.ws);
    let file = |rng: &mut Rng| files.get(rng.below(files.len().max(1))).cloned();
    let dir = dirs[rng.below(dirs.len())].clone();
    let joined = |d: &str, name: String| {
        if d.is_empty() {
            name
        } else {
            format!("{d}/{name}")
        }
    };
    match rng.below(10) {
        0 => match file(rng) {
            Some(f) => {
                fs::write(
                    env.w(&f),
                    format!("edit {n} {}\n", "x".repeat(rng.below(40))),
                )
                .expect("write");
                format!("edited {f}")
            }
            None => "nothing".into(),
        },
        1 => match file(rng) {
            Some(f) => {
                same_size_edit(&env.w(&f));
                format!("same-size edit of {f}, mtime put back")
            }
            None => "nothing".into(),
        },
        2 => match file(rng) {
            Some(f) => {
                let mode = [0o600, 0o644, 0o755][rng.below(3)];
                chmod(env.w(&f), mode);
                format!("chmod {mode:o} {f}")
            }
            None => "nothing".into(),
        },
        3 => {
            let f = joined(&dir, format!("new{n}.txt"));
            fs::write(env.w(&f), format!("new {n}\n")).expect("write");
            format!("created {f}")
        }
        4 => match file(rng) {
            Some(f) if f != ".cachesyncignore" => {
                fs::remove_file(env.w(&f)).expect("rm");
                format!("deleted {f}")
            }
            _ => "nothing".into(),
        },
        5 => {
            let d = joined(&dir, format!("dir{n}"));
            fs::create_dir(env.w(&d)).expect("mkdir");
            format!("made directory {d}")
        }
        6 => {
            let f = format!("remote{}.txt", rng.below(3));
            fs::write(env.r(&f), format!("server {n}\n")).expect("write");
            env.json(0, &["status", "--refresh", "--json"]);
            format!("wrote {f} on the server, looked again")
        }
        7 => {
            env.run(["sync"]);
            "synced".into()
        }
        8 => match file(rng) {
            Some(f) => {
                let mut rules = fs::read_to_string(env.w(".cachesyncignore")).unwrap_or_default();
                rules.push_str(&format!("/{f}\n"));
                fs::write(env.w(".cachesyncignore"), rules).expect("write");
                format!("ignored {f}")
            }
            None => "nothing".into(),
        },
        _ => {
            let disconnected = env.json(0, &["status", "--json"])["mode"] == "disconnected";
            // Connecting syncs, which may refuse (many deletions): its exit is not the point.
            env.run([if disconnected {
                "connect"
            } else {
                "disconnect"
            }]);
            format!(
                "{} by hand",
                if disconnected {
                    "connected"
                } else {
                    "disconnected"
                }
            )
        }
    }
}

/// An answer as compared: without what follows the disk's use or the way it was looked
/// at, the ignored list (only the whole way gives one), and the time a conflict the next
/// sync would record was first seen (the whole way says "now" at every run).
fn comparable(v: Value) -> Value {
    let mut v = answer(v);
    let o = v.as_object_mut().expect("an object");
    o.remove("ignored");
    if let Some(Value::Array(cs)) = o.get_mut("conflicts") {
        for c in cs {
            c.as_object_mut().expect("a record").remove("since_ns");
        }
    }
    v
}

#[test]
fn a_kept_answer_is_always_the_one_the_whole_way_gives() {
    for seed in [7, 8] {
        let env = Env::with_remote(&[("a.txt", "a\n"), ("d/b.txt", "b\n"), ("d/e/c.txt", "c\n")]);
        env.clone_ws();
        let mut rng = Rng(seed);
        let mut reuses = 0;
        for n in 0..8 {
            let what = random_change(&env, &mut rng, n);
            wait_until_old(&env);
            env.json(0, &["status", "--json"]);
            let given = env.json(0, &["status", "--json"]);
            reuses += usize::from(reused(&given));
            // `--ignored` never reads nor keeps an answer.
            let whole = env.json(0, &["status", "--ignored", "--json"]);
            assert_eq!(
                comparable(given),
                comparable(whole),
                "seed {seed}, change {n}: {what}"
            );
        }
        assert!(reuses > 0, "seed {seed}: no answer was ever kept");
    }
}

/// The store's files, each with its size and mtime.
fn store_files(env: &Env) -> Vec<(String, u64, i64, i64)> {
    let mut files: Vec<_> = fs::read_dir(env.w(".cachesync/store"))
        .expect("list the store")
        .flatten()
        .map(|e| {
            let md = e.metadata().expect("stat");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, md.size(), md.mtime(), md.mtime_nsec())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_kept_answer_leaves_the_store_as_it_was() {
    let env = Env::with_remote(&[("a.txt", "aaaa\n"), ("d/b.txt", "bbbb\n")]);
    env.clone_ws();
    settled(&env);
    let before = store_files(&env);
    for _ in 0..2 {
        let v = env.json(0, &["status", "--json"]);
        assert!(reused(&v), "{v}");
    }
    // Opening the store to write rewrites its options and its manifest; a status that gives
    // its last answer again opens it to read only.
    assert_eq!(store_files(&env), before);
    // When the answer cannot stand, the status opens the store to write and keeps the new one.
    fs::write(env.w("new.txt"), "new\n").expect("write");
    let v = env.json(0, &["status", "--json"]);
    assert!(!reused(&v) && local_change(&v, "new.txt", "added"), "{v}");
    let v = settled(&env);
    assert!(local_change(&v, "new.txt", "added"), "{v}");
}

/// Bytes of the regular files in the workspace that no rule ignores, as the cache counts
/// them (`ignored`: the whole way's list of ignored paths).
fn files_bytes(env: &Env, ignored: &Value) -> u64 {
    let ignored: Vec<&str> = ignored
        .as_array()
        .expect("a list of ignored paths")
        .iter()
        .map(|p| p.as_str().expect("a path"))
        .collect();
    let (files, _) = entries(&env.ws);
    files
        .iter()
        .filter(|f| {
            !ignored
                .iter()
                .any(|i| f.as_str() == *i || f.starts_with(&format!("{i}/")))
        })
        .map(|f| fs::symlink_metadata(env.w(f)).expect("stat").len())
        .sum()
}

/// The whole way's answer for the workspace as it is, the store left as it was: the store
/// is set aside (copied) while `status --ignored` runs, then put back.
fn whole_way_aside(env: &Env) -> Value {
    let meta = env.w(".cachesync");
    let aside = env.root().join("store-aside");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .expect("cp");
        assert!(ok.success(), "cp -a {} {}", from.display(), to.display());
    };
    let _ = fs::remove_dir_all(&aside);
    cp(&meta, &aside);
    let whole = env.json(0, &["status", "--ignored", "--json"]);
    fs::remove_dir_all(&meta).expect("remove the store");
    fs::rename(&aside, &meta).expect("put the store back");
    whole
}

/// A change drawn at random and made, mostly of the kinds a status brings a kept answer up
/// to date for (a path the base has, keeping its kind; a path added), some it does not (a
/// removal, a server write). Says what it was.
fn in_place_change(env: &Env, rng: &mut Rng, n: usize) -> String {
    let (files, dirs) = entries(&env.ws);
    let files: Vec<String> = files
        .into_iter()
        .filter(|f| f != ".cachesyncignore")
        .collect();
    if files.is_empty() {
        fs::write(env.w(format!("d/again{n}.txt")), "again\n").expect("write");
        return format!("created d/again{n}.txt");
    }
    let f = files[rng.below(files.len())].clone();
    match rng.below(14) {
        9.. => added_or_removed(env, rng, n, &f, &dirs),
        0 => {
            let body = format!("edit {n} {}\n", "x".repeat(rng.below(40)));
            fs::write(env.w(&f), body).expect("write");
            format!("edited {f}")
        }
        1 => {
            same_size_edit(&env.w(&f));
            format!("same-size edit of {f}, mtime put back")
        }
        2 => {
            let mode = [0o600, 0o644, 0o755][rng.below(3)];
            chmod(env.w(&f), mode);
            format!("chmod {mode:o} {f}")
        }
        3 => {
            fs::File::options()
                .write(true)
                .open(env.w(&f))
                .and_then(|h| h.set_modified(SystemTime::now()))
                .expect("touch");
            format!("touched {f}")
        }
        4 => {
            // As editors save: a new file beside it, renamed over it.
            let tmp = env.w(format!("{f}.swp"));
            fs::write(&tmp, format!("saved {n}\n")).expect("write");
            fs::rename(&tmp, env.w(&f)).expect("rename");
            format!("saved {f} by a rename over it")
        }
        5 => match fs::read(env.r(&f)) {
            Ok(body) => {
                fs::write(env.w(&f), body).expect("write");
                format!("put the server's content back in {f}")
            }
            Err(_) => "nothing".into(),
        },
        6 => {
            let target = ["a.txt", "d/b.txt", "nowhere"][rng.below(3)];
            fs::remove_file(env.w("link")).expect("rm");
            std::os::unix::fs::symlink(target, env.w("link")).expect("symlink");
            format!("link pointed at {target}")
        }
        7 => {
            let d = dirs[1 + rng.below(dirs.len() - 1)].clone();
            let mode = [0o700, 0o755][rng.below(2)];
            chmod(env.w(&d), mode);
            format!("chmod {mode:o} {d}/")
        }
        _ => {
            let f = format!("re\"mote{}.txt", rng.below(2));
            fs::write(env.r(&f), format!("server {n}\n")).expect("write");
            env.json(0, &["status", "--refresh", "--json"]);
            format!("wrote {f} on the server, looked again")
        }
    }
}

/// One of [`in_place_change`]'s changes that add or remove paths: a file (sometimes with
/// the content of `f`), a directory (sometimes one its owner may not write), a symlink; `f`
/// removed, or a whole directory.
fn added_or_removed(env: &Env, rng: &mut Rng, n: usize, f: &str, dirs: &[String]) -> String {
    let dir = dirs[rng.below(dirs.len())].clone();
    let under = |name: String| {
        if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        }
    };
    match rng.below(5) + 9 {
        13 if dirs.len() > 2 => {
            // A whole directory, and what is in it ("d" stays, for the other changes).
            let d = dirs[2 + rng.below(dirs.len() - 2)].clone();
            fs::remove_dir_all(env.w(&d)).expect("rm -r");
            format!("removed directory {d}/")
        }
        13 => "nothing".into(),
        9 => {
            // Sometimes the content of another file: a rename, were that one removed.
            let new =
                under([format!("new{n}.txt"), format!("new \"{n}\".txt")][rng.below(2)].clone());
            let body = match rng.below(2) {
                0 => fs::read(env.w(f)).expect("read"),
                _ => format!("new {n}\n").into_bytes(),
            };
            fs::write(env.w(&new), body).expect("write");
            format!("created {new}")
        }
        10 => {
            let new = under(format!("dir{n}"));
            fs::create_dir(env.w(&new)).expect("mkdir");
            let mode = [0o755, 0o555][rng.below(2)];
            chmod(env.w(&new), mode);
            format!("made directory {new} ({mode:o})")
        }
        11 => {
            fs::remove_file(env.w(f)).expect("rm");
            format!("deleted {f}")
        }
        12 => {
            let new = under(format!("link{n}"));
            std::os::unix::fs::symlink("a.txt", env.w(&new)).expect("symlink");
            format!("made symlink {new}")
        }
        _ => unreachable!("five kinds"),
    }
}

#[test]
fn an_answer_brought_up_to_date_at_the_paths_changed_is_the_whole_ways() {
    for seed in [21, 22, 23] {
        // Some names a status shows quoted, with escapes.
        let env = Env::with_remote(&[
            ("a.txt", "a\n"),
            ("d/b.txt", "b\n"),
            ("d/e/c.txt", "c\n"),
            ("d/q\"uote.txt", "q\n"),
            ("d/e/back\\slash\ttab.txt", "t\n"),
            ("re\"mote0.txt", "r0\n"),
            ("re\"mote1.txt", "r1\n"),
        ]);
        std::os::unix::fs::symlink("a.txt", env.r("link")).expect("symlink");
        env.clone_ws();
        settled(&env);
        let mut rng = Rng(seed);
        let mut rechecked = 0;
        for n in 0..24 {
            let what = match rng.below(12) {
                0 => {
                    env.run(["sync"]);
                    "synced".to_string()
                }
                1 => {
                    let disconnected = env.json(0, &["status", "--json"])["mode"] == "disconnected";
                    env.run([if disconnected {
                        "connect"
                    } else {
                        "disconnect"
                    }]);
                    format!("connected: {disconnected}")
                }
                _ => (0..1 + rng.below(3))
                    .map(|_| in_place_change(&env, &mut rng, n))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            // Right after the change (racy entries included), and once more.
            for look in 0..2 {
                let whole = whole_way_aside(&env);
                let given = env.json(0, &["status", "--json"]);
                let facts = &given["local_scan"];
                rechecked += usize::from(facts["rechecked"].as_u64() > Some(0));
                // The kept answer's bytes of files, brought up to date or not (the whole
                // way measures the store's use twice).
                if reused(&given) || facts["rechecked"].as_u64() > Some(0) {
                    let used = given["cache"]["used"].as_u64().expect("used");
                    let cache = given["cache_bytes"].as_u64().expect("cache bytes");
                    assert_eq!(
                        used - cache,
                        files_bytes(&env, &whole["ignored"]),
                        "seed {seed}, change {n} ({what}), look {look}: bytes of files"
                    );
                }
                assert_eq!(
                    comparable(given.clone()),
                    comparable(whole),
                    "seed {seed}, change {n} ({what}), look {look}: {facts}"
                );
            }
        }
        assert!(
            rechecked >= 20,
            "seed {seed}: only {rechecked} answers brought up to date"
        );
    }
}

#[test]
fn a_file_added_with_the_content_of_one_removed_is_counted_as_the_rename_a_sync_makes() {
    let env = Env::with_remote(&[("a.txt", "moved\n"), ("d/b.txt", "b\n")]);
    env.clone_ws();
    settled(&env);
    fs::remove_file(env.w("a.txt")).expect("rm");
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 1, "{v}");
    // Added since that answer: a new file of other content is a step of its own, one with
    // the removed file's content pairs with its removal into one rename.
    fs::write(env.w("d/other.txt"), "other\n").expect("write");
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 2, "{v}");
    assert!(v["local_scan"]["rechecked"].as_u64() > Some(0), "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
    fs::write(env.w("d/moved.txt"), "moved\n").expect("write");
    let v = env.json(0, &["status", "--json"]);
    assert!(local_change(&v, "d/moved.txt", "added"), "{v}");
    assert_eq!(v["pending"]["push"], 2, "a rename and a write: {v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
    let out = env.ok(&["sync", "--dry-run", "--json"]).json();
    assert_eq!(out["steps"].as_array().map(Vec::len), Some(2), "{out}");
    // The added file's content changed: the rename it made falls apart into a removal and
    // a write.
    settled(&env);
    fs::write(env.w("d/moved.txt"), "moved, then edited\n").expect("write");
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 3, "a removal and two writes: {v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
}

#[test]
fn a_directory_added_that_its_owner_may_not_write_costs_a_step_more() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    settled(&env);
    fs::create_dir(env.w("shut")).expect("mkdir");
    chmod(env.w("shut"), 0o555);
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(
        v["pending"]["push"], 2,
        "made writable, then given its mode: {v}"
    );
    assert!(v["local_scan"]["rechecked"].as_u64() > Some(0), "{v}");
    chmod(env.w("shut"), 0o755);
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 1, "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
    chmod(env.w("shut"), 0o500);
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 2, "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
}

#[test]
fn a_file_read_that_brings_back_a_dropped_files_content_takes_the_whole_way() {
    let env = Env::with_remote(&[("a.txt", "the server's a\n"), ("b.txt", "b\n")]);
    env.clone_ws();
    env.ok(&["drop", "a.txt"]);
    env.ok(&["gc"]);
    // Written here while remote-only, its base content gone from the store: reconciled
    // without a base, so both versions are kept.
    fs::write(env.w("a.txt"), "mine\n").expect("write");
    settled(&env);
    // Another file with that content: reading it puts the content back in the store, and
    // the path is an ordinary edit again.
    fs::write(env.w("copy.txt"), "the server's a\n").expect("write");
    let whole = whole_way_aside(&env);
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(comparable(v), comparable(whole));
}

#[test]
fn removals_are_brought_up_to_date_too() {
    let env = Env::with_remote(&[
        ("a.txt", "a\n"),
        ("d/b.txt", "b\n"),
        ("d/e/c.txt", "c\n"),
        ("top.txt", "top\n"),
    ]);
    env.clone_ws();
    settled(&env);
    fs::remove_file(env.w("top.txt")).expect("rm");
    let v = env.json(0, &["status", "--json"]);
    assert!(v["local_scan"]["rechecked"].as_u64() > Some(0), "{v}");
    assert!(local_change(&v, "top.txt", "deleted"), "{v}");
    assert_eq!(v["pending"]["push"], 1, "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
    // A directory and what it holds: a removal each.
    fs::remove_dir_all(env.w("d")).expect("rm -r");
    let v = env.json(0, &["status", "--json"]);
    assert!(v["local_scan"]["rechecked"].as_u64() >= Some(4), "{v}");
    assert_eq!(v["pending"]["push"], 5, "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
    // A file added since the last sync, then removed: no longer a change.
    fs::write(env.w("new.txt"), "new\n").expect("write");
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 6, "{v}");
    fs::remove_file(env.w("new.txt")).expect("rm");
    let v = env.json(0, &["status", "--json"]);
    assert!(v["local_scan"]["rechecked"].as_u64() > Some(0), "{v}");
    assert_eq!(v["pending"]["push"], 5, "{v}");
    assert_eq!(v["provisional"], serde_json::json!([]), "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
}

#[test]
fn a_removal_that_pairs_with_a_file_a_sync_creates_is_counted_as_the_rename() {
    // A directory replaced by a copy of a file: the file is created where the directory
    // was; removing the original makes the two one rename.
    let env = Env::with_remote(&[("a.txt", "a\n"), ("d/x.txt", "x\n"), ("s.txt", "s\n")]);
    env.clone_ws();
    fs::remove_dir_all(env.w("d")).expect("rm -r");
    fs::copy(env.w("a.txt"), env.w("d")).expect("copy");
    settled(&env);
    fs::remove_file(env.w("a.txt")).expect("rm");
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(v["pending"]["push"], 3, "{v}");
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
    // A file removed on the share and edited here is written there again (nothing there to
    // expect); removing a file of the same content here makes the two one rename.
    let env = Env::with_remote(&[("a.txt", "a\n"), ("s.txt", "s\n"), ("t.txt", "t\n")]);
    env.clone_ws();
    fs::remove_file(env.r("s.txt")).expect("rm on the share");
    fs::copy(env.w("t.txt"), env.w("s.txt")).expect("copy");
    env.json(0, &["status", "--refresh", "--json"]);
    settled(&env);
    fs::remove_file(env.w("t.txt")).expect("rm");
    let v = env.json(0, &["status", "--json"]);
    assert_eq!(comparable(v), comparable(whole_way_aside(&env)));
}
