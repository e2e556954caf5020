//! New remote files staged in the workspace as they are read (`.cachesync/incoming/`),
//! then put in place by the apply: each arrives whole with its mode and mtime and is the
//! very file staged (not written a second time), a path taken meanwhile keeps what was put
//! there, a path on another file system gets its file all the same, and nothing staged
//! outlives a run, finished or killed.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{leftovers, noise, spawn_paused, staged, Env, SmallDisk};

mod common;

/// `n` new files on the remote under `top` (in `top/dN/` and `top/` itself), of sizes up
/// to 40 KB, some executable and some private, and `top/big.bin` of 600 KB (read on its
/// own, streamed): their paths.
fn put_files(env: &Env, top: &str, n: usize) -> Vec<String> {
    let mut paths = Vec::new();
    for i in 0..n {
        let rel = if i % 3 == 0 {
            format!("{top}/f{i:03}")
        } else {
            format!("{top}/d{}/f{i:03}", i % 4)
        };
        env.put_remote(
            &rel,
            noise(i as u64 + top.len() as u64 * 1000, 1 + (i * 331) % 40_000),
        );
        let mode = [0o644, 0o755, 0o600][i % 3];
        fs::set_permissions(env.r(&rel), fs::Permissions::from_mode(mode)).expect("chmod");
        paths.push(rel);
    }
    env.put_remote(format!("{top}/big.bin"), noise(7, 600_000));
    paths.push(format!("{top}/big.bin"));
    paths
}

/// Runs `args` paused at `planned` (every file read, the plan journalled, no step run),
/// hands the pause to `at_pause`, then lets it finish and returns its standard output.
fn paused_at_plan(env: &Env, dir: &Path, args: &[&str], at_pause: impl FnOnce()) -> String {
    let pause = env.root().join("paused");
    let run = spawn_paused(dir, &env.home, args, "planned", &pause);
    let paused = cachesync_testutils::poll_until(Duration::from_secs(60), || pause.exists());
    assert!(paused, "{args:?} never paused");
    at_pause();
    fs::remove_file(&pause).expect("resume");
    let out = run.wait_with_output().expect("the run ends");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some(),
        "{args:?} was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts each of `rels` in the workspace holds what the remote holds.
fn arrived<'a>(env: &Env, rels: impl IntoIterator<Item = &'a String>) {
    for rel in rels {
        assert_eq!(
            fs::read(env.w(rel)).ok(),
            fs::read(env.r(rel)).ok(),
            "{rel}"
        );
    }
}

fn inodes(paths: &[String]) -> HashSet<u64> {
    paths
        .iter()
        .map(|p| fs::metadata(p).expect("stat").ino())
        .collect()
}

#[test]
fn new_files_go_in_place_from_where_they_were_staged_whole_with_mode_and_mtime() {
    let env = Env::new();
    let files = put_files(&env, "a", 90);
    let (remote, ws) = (
        env.remote.to_str().expect("utf-8"),
        env.ws.to_str().expect("utf-8"),
    );
    let mut at_plan = HashSet::new();
    paused_at_plan(&env, env.root(), &["clone", remote, ws], || {
        let staged_now = staged(&env.ws);
        assert_eq!(staged_now.len(), files.len(), "{staged_now:?}");
        at_plan = inodes(&staged_now);
    });
    env.assert_in_sync();
    let placed: Vec<String> = files
        .iter()
        .map(|rel| env.w(rel).display().to_string())
        .collect();
    // Each file in place is the one staged: renamed, not written again from the store.
    assert_eq!(inodes(&placed), at_plan);
    for rel in &files {
        let (l, r) = (
            fs::metadata(env.w(rel)).expect("local"),
            fs::metadata(env.r(rel)).expect("remote"),
        );
        assert_eq!(
            l.modified().expect("mtime"),
            r.modified().expect("mtime"),
            "{rel}"
        );
    }
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());

    // New files pulled into a workspace that has others: staged too.
    let more = put_files(&env, "b", 40);
    let mut at_plan = HashSet::new();
    paused_at_plan(&env, &env.ws, &["sync"], || {
        at_plan = inodes(&staged(&env.ws));
    });
    env.assert_in_sync();
    let placed: Vec<String> = more
        .iter()
        .map(|rel| env.w(rel).display().to_string())
        .collect();
    assert_eq!(inodes(&placed), at_plan);
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
    env.assert_noop_sync();
}

#[test]
fn a_path_taken_while_its_file_was_staged_keeps_what_was_put_there() {
    let env = Env::new();
    env.put_remote("n/seed.txt", "seed\n");
    env.clone_ws();
    let new = put_files(&env, "n", 80);
    // A new file at the top of `n` (a directory the workspace has): made here meanwhile.
    let taken = new
        .iter()
        .find(|p| p.starts_with("n/f"))
        .expect("one in n/")
        .clone();
    // And a file where a new directory is to be made: nothing is written under it.
    let out = paused_at_plan(&env, &env.ws, &["sync", "--json"], || {
        assert_eq!(staged(&env.ws).len(), 81);
        fs::write(env.w(&taken), "made here while the sync ran\n").expect("write");
        fs::write(env.w("n/d1"), "a file where a directory was to be\n").expect("write");
    });
    assert!(
        out.contains(&taken),
        "the skipped step is not reported: {out}"
    );
    assert_eq!(
        fs::read_to_string(env.w(&taken)).expect("read"),
        "made here while the sync ran\n"
    );
    let under_d1 = |p: &str| p.starts_with("n/d1/");
    assert!(new.iter().any(|p| under_d1(p)));
    arrived(&env, new.iter().filter(|p| **p != taken && !under_d1(p)));
    // What was staged for the steps that did not run is gone with the run.
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
}

#[test]
fn files_staged_by_a_killed_run_are_removed_by_the_next_whatever_it_is() {
    let env = Env::new();
    put_files(&env, "k", 50);
    let killed = env.run_with(
        env.root(),
        [
            OsStr::new("clone"),
            env.remote.as_os_str(),
            env.ws.as_os_str(),
        ],
        &[("CACHESYNC_FAILPOINT", OsStr::new("fetched"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert!(!staged(&env.ws).is_empty(), "nothing was staged");
    // A push stages nothing, and clears what was left.
    env.ok(&["push"]);
    assert_eq!(staged(&env.ws), Vec::<String>::new());

    // Killed again once the plan is journalled (every new file staged, none put in place):
    // they are left staged.
    let more = put_files(&env, "m", 50);
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("planned"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert!(!staged(&env.ws).is_empty(), "nothing was left staged");
    // And in the middle of the steps (by then the writers ahead of the loop may have put
    // every file in place): the next sync completes the copy.
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("after-step:20"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    env.ok(&["sync"]);
    env.assert_in_sync();
    assert!(more.iter().all(|rel| env.w(rel).exists()));
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
    let fsck = env.json(0, &["fsck", "--json"]);
    assert_eq!(fsck["clean"], true, "{fsck}");
    env.assert_noop_sync();
}

#[test]
fn a_file_staged_for_a_directory_on_another_file_system_is_written_there_all_the_same() {
    let env = Env::new();
    env.put_remote("other/seed.txt", "seed\n");
    env.clone_ws();
    // `other` in the workspace is a mount point: a rename (or a link) from the stage cannot
    // reach it. Enough files that they are put in place by the writers ahead of the loop.
    let dir = env.w("other");
    fs::remove_file(dir.join("seed.txt")).expect("rm");
    let _mounted = SmallDisk::mount(&dir, "16m");
    fs::write(dir.join("seed.txt"), "seed\n").expect("write");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let new = put_files(&env, "other", 80);
    env.ok(&["sync"]);
    arrived(&env, &new);
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
}

/// The cache budget counts what a run staged once, as the workspace files they become: a
/// budget that the whole first copy fits in brings every file in.
#[test]
fn a_budget_the_whole_first_copy_fits_in_brings_every_file_in() {
    let put = |env: &Env| {
        for i in 0..4u64 {
            env.put_remote(format!("f{i}.bin"), noise(i + 1, 1_000_000));
        }
    };
    // What the whole copy uses, without a budget.
    let unbounded = Env::new();
    put(&unbounded);
    unbounded.clone_ws();
    let status = unbounded.json(0, &["status", "--json"]);
    let used = status["cache"]["used"].as_u64().expect("cache.used");
    // The same copy with a budget of that and 1.5 MB more (4 MB are staged meanwhile).
    let env = Env::new();
    put(&env);
    let r = env.clone_with(&["--budget", &(used + 1_500_000).to_string()]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        !r.stderr.contains("do not fit"),
        "used {used} unbounded: {r}"
    );
    env.assert_in_sync();
    assert_eq!(leftovers(&env.ws), Vec::<String>::new());
}
