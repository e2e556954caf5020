//! A remote that folds case (a test double: this kernel has no case-folding file system):
//! a name created locally that the remote holds in another case never replaces the remote's
//! file; it goes to lost+found. A case-only rename still works.

use std::fs;

use cachesync_engine::plan::Direction;
use cachesync_engine::sync;
use cachesync_engine::{NoProgress, Workspace};
use cachesync_testutils::FoldRemote;

fn sync(ws: &mut Workspace) -> sync::Outcome {
    let opts = sync::Options {
        command: cachesync_engine::journal::OpKind::Sync,
        direction: Direction::Both,
        paths: Vec::new(),
        dry_run: false,
        force: false,
        exact_paths: false,
    };
    sync::run(ws, &opts, &NoProgress).expect("sync")
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Workspace) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).expect("mkdir");
    fs::write(remote.join("Readme.txt"), "the server's readme\n").expect("write");
    fs::write(remote.join("File.txt"), "f\n").expect("write");
    fs::write(remote.join("other.txt"), "o\n").expect("write");
    let mut ws = Workspace::init_with_remote_factory(
        &remote,
        &tmp.path().join("ws"),
        |_| {},
        FoldRemote::factory(),
    )
    .expect("init");
    assert!(
        ws.identity.case_insensitive,
        "the probe saw the remote fold case"
    );
    let clone = sync::Options {
        command: cachesync_engine::journal::OpKind::Clone,
        direction: Direction::Pull,
        paths: Vec::new(),
        dry_run: false,
        force: true,
        exact_paths: false,
    };
    sync::run(&mut ws, &clone, &NoProgress).expect("clone");
    (tmp, remote, ws)
}

#[test]
fn a_name_the_remote_holds_in_another_case_goes_to_lost_found() {
    let (_tmp, remote, mut ws) = setup();
    fs::write(ws.root.join("README.txt"), "my own readme\n").expect("write");
    let r = sync(&mut ws);
    assert_eq!(
        fs::read_to_string(remote.join("Readme.txt")).expect("still there"),
        "the server's readme\n",
        "the server's file was not replaced"
    );
    assert!(!ws.root.join("README.txt").exists());
    assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
    let c = &r.conflicts[0];
    assert_eq!(c.kind.as_str(), "name-clash");
    let lf = ws
        .root
        .join(c.lost_found.as_deref().expect("a lost+found path"));
    assert_eq!(fs::read_to_string(lf).expect("kept"), "my own readme\n");
    // Nothing more to do, and nothing lost, on the next run.
    let again = sync(&mut ws);
    assert!(again.plan.steps.is_empty(), "{:?}", again.plan.steps);
}

#[test]
fn a_case_only_rename_is_carried_out() {
    let (_tmp, remote, mut ws) = setup();
    fs::rename(ws.root.join("File.txt"), ws.root.join("file.txt")).expect("rename");
    let r = sync(&mut ws);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    let names: Vec<String> = fs::read_dir(&remote)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".cachesync"))
        .collect();
    assert!(names.contains(&"file.txt".to_string()), "{names:?}");
    assert!(!names.contains(&"File.txt".to_string()), "{names:?}");
    // Opened again, the workspace is given its remote again.
    let root = ws.root.clone();
    drop(ws);
    let mut ws = Workspace::open(&root)
        .expect("open")
        .with_remote_factory(FoldRemote::factory());
    assert!(sync(&mut ws).plan.steps.is_empty());
}
