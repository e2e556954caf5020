//! Workspace files written ahead of the apply loop by other threads (plans with 64 local
//! file writes or more; new files are staged as they are read instead, see staged.rs): every
//! file arrives whole, with its mode and mtime; a step whose
//! path was taken meanwhile is skipped and its file written ahead is removed; a run killed
//! while files are written ahead is completed by the next one; no temporary is ever left.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{noise, spawn_paused, steps, Env};

mod common;

/// Every cachesync temporary under `root`.
fn temporaries(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_name()
                .to_string_lossy()
                .starts_with(".cachesync-tmp.")
            {
                out.push(p);
            } else if e.file_type().expect("type").is_dir() && e.file_name() != ".cachesync" {
                stack.push(p);
            }
        }
    }
    out
}

/// `dirs` directories (one nested in another) of `per` files each on the remote, of
/// several sizes, some executable; generation `gen` of their contents.
fn put_many(env: &Env, top: &str, dirs: usize, per: usize, gen: u64) {
    for d in 0..dirs {
        for f in 0..per {
            let rel = format!("{top}/d{d:02}/sub/f{f:03}");
            let body = noise(
                gen * 1_000_000 + (d * 1000 + f) as u64,
                10 + (f * 997) % 20_000,
            );
            env.put_remote(&rel, &body);
            if f % 7 == 0 {
                fs::set_permissions(env.r(&rel), fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        }
    }
}

#[test]
fn a_pull_of_many_changed_files_brings_each_whole_with_its_mode_and_mtime() {
    let env = Env::new();
    put_many(&env, "a", 6, 40, 0);
    env.clone_ws();
    env.assert_in_sync();
    // Every file changed on the server: the workspace has each, so each is written ahead
    // (new files are staged as they are read instead, see staged.rs).
    put_many(&env, "a", 6, 40, 1);
    let done = env.json(0, &["sync", "--json"]);
    assert!(steps(&done).len() >= 240, "{done}");
    env.assert_in_sync();
    for rel in ["a/d03/sub/f007", "a/d05/sub/f039"] {
        let (l, r) = (
            fs::metadata(env.w(rel)).expect("local"),
            fs::metadata(env.r(rel)).expect("remote"),
        );
        assert_eq!(l.modified().expect("mtime"), r.modified().expect("mtime"));
        assert_eq!(l.permissions().mode(), r.permissions().mode());
    }
    assert_eq!(temporaries(&env.ws), Vec::<PathBuf>::new());
    env.assert_noop_sync();
}

#[test]
fn a_path_taken_while_its_file_was_written_ahead_is_skipped_and_nothing_is_left() {
    let env = Env::new();
    env.put_remote("seed.txt", "seed\n");
    put_many(&env, "n", 1, 300, 0);
    env.clone_ws();
    // Every file changed on the server: the workspace has each (new files would be staged
    // as they are read, see tests/staged.rs, with nothing to write ahead).
    put_many(&env, "n", 1, 300, 1);
    let plan = env.json(0, &["sync", "--dry-run", "--json"]);
    let plan = steps(&plan);
    // Paused before step 5, the writers go on ahead of it.
    let pause = env.root().join("paused");
    let sync = spawn_paused(&env.ws, &env.home, &["sync"], "before-step:5", &pause);
    let paused = cachesync_testutils::poll_until(Duration::from_secs(60), || pause.exists());
    assert!(paused, "the sync never paused");
    let ahead = cachesync_testutils::poll_until(Duration::from_secs(60), || {
        temporaries(&env.ws).len() >= 20
    });
    assert!(ahead, "no file was written ahead of the paused loop");
    // One file written ahead: its step, and its path, taken here meanwhile.
    let taken = temporaries(&env.ws)
        .into_iter()
        .filter_map(|t| {
            let name = t.file_name()?.to_string_lossy().into_owned();
            name.rsplit('.').next()?.parse::<usize>().ok()
        })
        .max()
        .expect("a temporary of a step");
    assert!(taken > 5, "written ahead of step 5: {taken}");
    let rel = plan[taken]["path"].as_str().expect("a path").to_owned();
    fs::write(env.w(&rel), "made here while the sync ran\n").expect("write");
    fs::remove_file(&pause).expect("resume");
    let out = sync.wait_with_output().expect("the sync ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        format!("{stdout}{stderr}").contains(&rel),
        "the skipped step is not reported: {stdout}{stderr}"
    );
    assert_eq!(
        fs::read_to_string(env.w(&rel)).expect("read"),
        "made here while the sync ran\n"
    );
    assert_eq!(temporaries(&env.ws), Vec::<PathBuf>::new());
    // Every other file arrived.
    for step in plan.iter().filter(|s| s["op"] == "write") {
        let p = step["path"].as_str().expect("path");
        if p != rel {
            assert_eq!(fs::read(env.w(p)).ok(), fs::read(env.r(p)).ok(), "{p}");
        }
    }
}

#[test]
fn a_run_killed_while_files_are_written_ahead_is_completed_by_the_next() {
    let env = Env::new();
    put_many(&env, "k", 4, 50, 0);
    env.clone_ws();
    put_many(&env, "k", 4, 50, 1);
    let killed = env.run_with(
        &env.ws,
        ["sync"],
        &[("CACHESYNC_FAILPOINT", OsStr::new("before-step:120"))],
    );
    assert_eq!(killed.signal, Some(9), "{killed}");
    let next = env.json(0, &["sync", "--json"]);
    assert_eq!(
        next["recovered"].as_array().map(Vec::len),
        Some(1),
        "{next}"
    );
    env.assert_in_sync();
    assert_eq!(temporaries(&env.ws), Vec::<PathBuf>::new());
    let fsck = env.json(0, &["fsck", "--json"]);
    assert_eq!(fsck["clean"], true, "{fsck}");
    env.assert_noop_sync();
}
