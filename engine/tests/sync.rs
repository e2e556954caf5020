//! Engine-level sync scenarios on a local-directory remote: fast, and close to the plan.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cachesync_engine::journal::OpKind;
use cachesync_engine::plan::Direction;
use cachesync_engine::status;
use cachesync_engine::sync;
use cachesync_engine::{NoProgress, Workspace};

struct Pair {
    _tmp: tempfile::TempDir,
    remote: PathBuf,
    ws: Workspace,
}

fn pair(build: impl FnOnce(&Path)) -> Pair {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).expect("mkdir");
    build(&remote);
    let mut ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
    run(&mut ws, OpKind::Clone, Direction::Pull);
    Pair {
        _tmp: tmp,
        remote,
        ws,
    }
}

fn run(ws: &mut Workspace, command: OpKind, direction: Direction) -> sync::Outcome {
    let opts = sync::Options {
        command,
        direction,
        paths: Vec::new(),
        dry_run: false,
        force: false,
        exact_paths: false,
    };
    sync::run(ws, &opts, &NoProgress).expect("sync")
}

fn sync(p: &mut Pair) -> sync::Outcome {
    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert!(r.skipped.is_empty(), "skipped: {:?}", r.skipped);
    assert!(r.conflicts.is_empty(), "conflicts: {:?}", r.conflicts);
    r
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn a_directory_replaced_by_a_file_on_either_side() {
    let mut p = pair(|r| {
        fs::create_dir_all(r.join("d/sub")).expect("mkdir");
        fs::write(r.join("d/sub/x"), "x").expect("write");
        fs::write(r.join("d/y"), "y").expect("write");
        fs::create_dir(r.join("e")).expect("mkdir");
        fs::write(r.join("e/z"), "z").expect("write");
        for i in 0..6 {
            fs::write(r.join(format!("other{i}")), "o").expect("write");
        }
    });
    let ws = p.ws.root.clone();
    // Locally, d becomes a file; on the server, e becomes a file.
    fs::remove_dir_all(ws.join("d")).expect("rm");
    fs::write(ws.join("d"), "now a file").expect("write");
    fs::remove_dir_all(p.remote.join("e")).expect("rm");
    fs::write(p.remote.join("e"), "also a file").expect("write");
    sync(&mut p);
    assert_eq!(
        fs::read_to_string(p.remote.join("d")).expect("file"),
        "now a file"
    );
    assert_eq!(
        fs::read_to_string(ws.join("e")).expect("file"),
        "also a file"
    );
    let again = sync(&mut p);
    assert!(again.plan.steps.is_empty(), "{:?}", again.plan.steps);
}

#[test]
fn a_file_replaced_by_a_directory_and_a_symlink_by_a_file() {
    let mut p = pair(|r| {
        fs::write(r.join("f"), "file").expect("write");
        std::os::unix::fs::symlink("f", r.join("l")).expect("symlink");
    });
    let ws = p.ws.root.clone();
    fs::remove_file(ws.join("f")).expect("rm");
    fs::create_dir(ws.join("f")).expect("mkdir");
    fs::write(ws.join("f/inside"), "in").expect("write");
    fs::remove_file(p.remote.join("l")).expect("rm");
    fs::write(p.remote.join("l"), "no longer a link").expect("write");
    sync(&mut p);
    assert_eq!(
        fs::read_to_string(p.remote.join("f/inside")).expect("file"),
        "in"
    );
    assert!(fs::symlink_metadata(ws.join("l")).expect("stat").is_file());
    assert!(sync(&mut p).plan.steps.is_empty());
}

#[test]
fn a_new_read_only_directory_is_filled_then_made_read_only() {
    let mut p = pair(|_| {});
    fs::create_dir(p.remote.join("ro")).expect("mkdir");
    fs::write(p.remote.join("ro/a"), "a").expect("write");
    fs::set_permissions(p.remote.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
    sync(&mut p);
    let ws = p.ws.root.clone();
    assert_eq!(fs::read_to_string(ws.join("ro/a")).expect("pulled"), "a");
    assert_eq!(mode(&ws.join("ro")), 0o555);
    assert!(sync(&mut p).plan.steps.is_empty());
    // And the same in the other direction.
    fs::create_dir(ws.join("ro2")).expect("mkdir");
    fs::write(ws.join("ro2/b"), "b").expect("write");
    fs::set_permissions(ws.join("ro2"), fs::Permissions::from_mode(0o500)).expect("chmod");
    sync(&mut p);
    assert_eq!(
        fs::read_to_string(p.remote.join("ro2/b")).expect("pushed"),
        "b"
    );
    assert_eq!(mode(&p.remote.join("ro2")), 0o500);
    assert!(sync(&mut p).plan.steps.is_empty());
}

#[test]
fn a_newly_ignored_path_leaves_the_synced_set_untouched() {
    let mut p = pair(|r| {
        fs::create_dir(r.join("build")).expect("mkdir");
        fs::write(r.join("build/out.o"), "obj").expect("write");
        fs::write(r.join("keep.c"), "int x;").expect("write");
    });
    let ws = p.ws.root.clone();
    fs::write(ws.join(".cachesyncignore"), "build/\n").expect("write");
    let r = sync(&mut p);
    // The ignore file itself is pushed; nothing under build/ is deleted anywhere.
    assert!(
        r.plan.steps.iter().all(|s| s.path == b".cachesyncignore"),
        "{:?}",
        r.plan.steps
    );
    assert!(p.remote.join("build/out.o").exists());
    assert!(ws.join("build/out.o").exists());
    let st = status::run(&p.ws, &status::Options::default(), &NoProgress).expect("status");
    assert!(
        st.local_changes.is_empty() && st.remote_changes.is_empty(),
        "{st:?}"
    );
}

#[test]
fn the_deletion_guard_stops_a_run_but_not_a_dry_run() {
    let mut p = pair(|r| {
        for i in 0..10 {
            fs::write(r.join(format!("f{i}")), format!("{i}")).expect("write");
        }
    });
    for i in 0..6 {
        fs::remove_file(p.remote.join(format!("f{i}"))).expect("rm");
    }
    let mut opts = sync::Options {
        command: cachesync_engine::journal::OpKind::Sync,
        direction: Direction::Both,
        paths: Vec::new(),
        dry_run: true,
        force: false,
        exact_paths: false,
    };
    let dry = sync::run(&mut p.ws, &opts, &NoProgress).expect("a dry run shows the plan");
    assert_eq!(dry.plan.steps.len(), 6);
    assert!(
        dry.warnings
            .iter()
            .any(|w| w.contains("refusing to delete 6 of 10")),
        "{:?}",
        dry.warnings
    );
    opts.dry_run = false;
    let err = sync::run(&mut p.ws, &opts, &NoProgress).expect_err("the guard refuses");
    assert!(
        err.to_string().contains("refusing to delete 6 of 10"),
        "{err}"
    );
    assert!(p.ws.root.join("f0").exists(), "nothing was deleted");
    opts.force = true;
    sync::run(&mut p.ws, &opts, &NoProgress).expect("forced");
    assert!(!p.ws.root.join("f0").exists());
}
