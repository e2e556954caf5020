//! New remote files staged in the workspace as they are read (`.cachesync/incoming/`) and
//! put in place at once (or, where that cannot be, by the apply): each arrives whole with
//! its mode and mtime and is the very file staged (not written a second time), a path taken
//! meanwhile keeps what was put there, a path on another file system gets its file all the
//! same, and nothing staged outlives a run, finished or killed.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{leftovers, noise, spawn_paused, staged, steps, Env, SmallDisk};

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
    paused_at(env, dir, args, "planned", at_pause)
}

/// [`paused_at_plan`], paused at `point`.
fn paused_at(env: &Env, dir: &Path, args: &[&str], point: &str, at_pause: impl FnOnce()) -> String {
    let pause = env.root().join("paused");
    let run = spawn_paused(dir, &env.home, args, point, &pause);
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
fn new_files_go_in_place_as_they_are_read_whole_with_mode_and_mtime() {
    let env = Env::new();
    let files = put_files(&env, "a", 90);
    let (remote, ws) = (
        env.remote.to_str().expect("utf-8"),
        env.ws.to_str().expect("utf-8"),
    );
    let placed: Vec<String> = files
        .iter()
        .map(|rel| env.w(rel).display().to_string())
        .collect();
    let mut at_plan = HashSet::new();
    paused_at_plan(&env, env.root(), &["clone", remote, ws], || {
        // Every file is in place before the plan is made, the directories made for them,
        // and nothing is left staged.
        assert_eq!(staged(&env.ws), Vec::<String>::new());
        at_plan = inodes(&placed);
        arrived(&env, &files);
    });
    env.assert_in_sync();
    // Each file in place is the one put there as it was read: not written again.
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

    // New files pulled into a workspace that has others: in place as they are read too.
    let more = put_files(&env, "b", 40);
    let placed: Vec<String> = more
        .iter()
        .map(|rel| env.w(rel).display().to_string())
        .collect();
    let mut at_plan = HashSet::new();
    paused_at_plan(&env, &env.ws, &["sync"], || {
        assert_eq!(staged(&env.ws), Vec::<String>::new());
        at_plan = inodes(&placed);
    });
    env.assert_in_sync();
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
    // And a file where a new directory is to be made: nothing is written under it. Both
    // made once the workspace was scanned, before anything was read.
    let out = paused_at(&env, &env.ws, &["sync", "--json"], "scanned", || {
        assert!(!env.w(&taken).exists());
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
    // Killed with a file staged, about to be put in place.
    let killed = env.run_with(
        env.root(),
        [
            OsStr::new("clone"),
            env.remote.as_os_str(),
            env.ws.as_os_str(),
        ],
        &[("CACHESYNC_FAILPOINT", OsStr::new("before-landing"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert!(!staged(&env.ws).is_empty(), "nothing was staged");
    // A push stages nothing, and clears what was left.
    env.ok(&["push"]);
    assert_eq!(staged(&env.ws), Vec::<String>::new());

    // Killed again once the plan is journalled (every new file put in place as it was
    // read, no step run): nothing is left staged.
    let more = put_files(&env, "m", 50);
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("planned"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert_eq!(staged(&env.ws), Vec::<String>::new());
    assert!(more.iter().all(|rel| env.w(rel).exists()));
    // Nothing recorded them: the next sync removes them first (as the killed run's log
    // names them), then writes them again; a dry run before it says so.
    let step_list = |report: &serde_json::Value| {
        let mut list: Vec<String> = steps(report)
            .iter()
            .map(|s| format!("{} {} {}", s["side"], s["op"], s["path"]))
            .collect();
        list.sort();
        list
    };
    let planned = step_list(&env.json(0, &["sync", "--dry-run", "--json"]));
    let next = env.json(0, &["sync", "--json"]);
    assert!(
        steps(&next)
            .iter()
            .any(|s| s["path"].as_str().is_some_and(|p| p.starts_with("m/"))),
        "{next}"
    );
    assert_eq!(planned, step_list(&next), "the dry run planned otherwise");
    env.assert_in_sync();
    // And killed in the middle of the steps, with more: the next sync completes the copy.
    let most = put_files(&env, "o", 50);
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("after-step:20"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    env.ok(&["sync"]);
    env.assert_in_sync();
    assert!(more.iter().chain(&most).all(|rel| env.w(rel).exists()));
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
    // Nothing can be put in place there as it is read: all of it is left to the apply,
    // which finds one of the paths taken meanwhile and keeps what is there.
    let taken = env.w(&new[1]);
    let out = paused_at_plan(&env, &env.ws, &["sync", "--json"], || {
        assert!(new.iter().all(|rel| !env.w(rel).exists()));
        assert_eq!(staged(&env.ws).len(), new.len());
        fs::write(&taken, "made here while the sync ran\n").expect("write");
    });
    assert!(
        out.contains(&new[1]),
        "the skipped step is not reported: {out}"
    );
    assert_eq!(
        fs::read_to_string(&taken).expect("read"),
        "made here while the sync ran\n"
    );
    arrived(&env, new.iter().filter(|p| **p != new[1]));
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

/// A run killed once it has read every new file (each put in place, none recorded): a file
/// deleted on the share before the next run is deleted here too, not taken for one added
/// here and pushed back; one edited here since is kept.
#[test]
fn a_file_put_in_place_by_a_killed_run_then_deleted_on_the_share_stays_deleted() {
    let env = Env::new();
    env.put_remote("seed.txt", "seed\n");
    env.clone_ws();
    let new = put_files(&env, "n", 30);
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("fetched"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    assert!(new.iter().all(|rel| env.w(rel).exists()), "not in place");
    let (gone, edited) = (&new[3], &new[4]);
    fs::remove_file(env.r(gone)).expect("rm");
    fs::write(env.w(edited), "edited here after the kill\n").expect("write");

    // The edit meets the share's file, both new since the last sync: a conflict, both kept.
    env.expect_code(7, &["sync"]);
    assert!(!env.w(gone).exists(), "{gone} came back here");
    assert!(!env.r(gone).exists(), "{gone} was pushed back to the share");
    let here = common::tree(&env.ws);
    assert!(
        here.values().any(
            |n| matches!(n, common::Node::File(_, body) if body == b"edited here after the kill\n")
        ),
        "the edit made after the kill is lost: {:?}",
        here.keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
}
