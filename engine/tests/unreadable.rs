//! Remote entries that cannot be read (a file the server refuses, or fails on while it answers
//! for the rest): the run does everything else, leaves them as they are on both sides, says it
//! is incomplete, and the next run tries them again. Over a fault-injecting remote (tests run
//! as root, so a mode-000 file would be read anyway); the sshfs symlink case is in the cli's
//! tests/unreadable.rs.

use std::fs;
use std::path::{Path, PathBuf};

use cachesync_engine::fs_remote::FsRemote;
use cachesync_engine::journal::OpKind;
use cachesync_engine::plan::Direction;
use cachesync_engine::status;
use cachesync_engine::sync;
use cachesync_engine::{NoProgress, SyncError, Workspace};
use cachesync_testutils::{Fault, FaultRemote};

struct Pair {
    _tmp: tempfile::TempDir,
    remote: PathBuf,
    fault: FaultRemote,
    ws: Workspace,
}

/// A remote holding `files`, its fault remote (no fault yet), and a workspace not cloned yet
/// that reaches the remote through it.
fn pair(files: &[(&str, &str)]) -> Pair {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    for (p, body) in files {
        let path = remote.join(p);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, body).expect("write");
    }
    let fault = FaultRemote::new(FsRemote::new(&remote));
    let ws = Workspace::init_with_remote_factory(
        &remote,
        &tmp.path().join("ws"),
        |_| {},
        fault.factory(),
    )
    .expect("init");
    Pair {
        _tmp: tmp,
        remote,
        fault,
        ws,
    }
}

fn run(ws: &mut Workspace, command: OpKind, direction: Direction) -> sync::Outcome {
    let opts = sync::Options {
        command,
        direction,
        paths: Vec::new(),
        dry_run: false,
        force: command == OpKind::Clone,
        exact_paths: false,
    };
    sync::run(ws, &opts, &NoProgress).expect("the run does everything else")
}

fn unreadable(r: &sync::Outcome) -> Vec<&str> {
    r.unreadable.iter().map(|u| u.path.as_str()).collect()
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p).expect("read")
}

/// Rewrites a file with other content and another size (its stat says it changed).
fn rewrite(path: &Path, body: &str) {
    fs::write(path, body).expect("write");
}

#[test]
fn a_file_the_server_refuses_to_read_does_not_fail_the_clone() {
    let mut p = pair(&[("a.txt", "a\n"), ("secret/key", "k\n"), ("z.txt", "z\n")]);
    p.fault
        .inject("open", b"secret/key", Fault::Errno(libc::EACCES));
    let r = run(&mut p.ws, OpKind::Clone, Direction::Pull);
    assert_eq!(unreadable(&r), ["secret/key"]);
    assert!(
        matches!(&r.failed, Some(e @ SyncError::RemoteIo { .. }) if e.to_string().contains("secret/key")),
        "the run says it is incomplete: {:?}",
        r.failed
    );
    assert_eq!(read(p.ws.root.join("a.txt")), "a\n");
    assert_eq!(read(p.ws.root.join("z.txt")), "z\n");
    assert!(p.ws.root.join("secret").is_dir());
    assert!(!p.ws.root.join("secret/key").exists());

    let status = status::run(&p.ws, &status::Options::default(), &NoProgress).expect("status");
    assert_eq!(status.unreadable.len(), 1);
    assert!(status.unreadable[0].reason.contains("Permission denied"));
    let (problems, code) = cachesync_engine::check::problems(&status);
    assert!(
        problems.iter().any(
            |pr| pr.kind == cachesync_engine::check::ProblemKind::Unreadable
                && pr.path.as_deref() == Some("secret/key")
        ),
        "{problems:?}"
    );
    assert_eq!(code.map(|c| c.exit_code()), Some(1));

    // Readable again: the next run brings it, and is complete.
    p.fault.clear();
    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert!(
        r.unreadable.is_empty() && r.failed.is_none(),
        "{:?}",
        r.failed
    );
    assert_eq!(read(p.ws.root.join("secret/key")), "k\n");
}

#[test]
fn an_unreadable_file_is_left_as_it_is_on_both_sides() {
    let mut p = pair(&[
        ("edited-here", "base 1\n"),
        ("changed-there", "base 2\n"),
        ("deleted-here", "base 3\n"),
        ("other", "o\n"),
    ]);
    run(&mut p.ws, OpKind::Clone, Direction::Pull);
    // The server changed all three (new size: their stat says so) and now refuses them
    // (EIO on that file alone here: the share answers for the others).
    for name in ["edited-here", "changed-there", "deleted-here"] {
        rewrite(&p.remote.join(name), &format!("the server's new {name}\n"));
        p.fault
            .inject("open", name.as_bytes(), Fault::Errno(libc::EIO));
    }
    fs::write(p.ws.root.join("edited-here"), "my edit\n").expect("edit");
    fs::remove_file(p.ws.root.join("deleted-here")).expect("rm");
    rewrite(&p.remote.join("other"), "o2\n");

    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert_eq!(
        unreadable(&r),
        ["changed-there", "deleted-here", "edited-here"]
    );
    assert!(r.failed.is_some());
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    // Everything else was done.
    assert_eq!(read(p.ws.root.join("other")), "o2\n");
    // Never written over, never removed, on either side.
    assert_eq!(
        read(p.remote.join("edited-here")),
        "the server's new edited-here\n"
    );
    assert_eq!(
        read(p.remote.join("deleted-here")),
        "the server's new deleted-here\n"
    );
    assert_eq!(read(p.ws.root.join("edited-here")), "my edit\n");
    assert_eq!(read(p.ws.root.join("changed-there")), "base 2\n");
    assert!(!p.ws.root.join("deleted-here").exists());

    // The next run tries them again (still refused: still left alone).
    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert_eq!(r.unreadable.len(), 3);
    assert_eq!(
        read(p.remote.join("edited-here")),
        "the server's new edited-here\n"
    );
    assert_eq!(read(p.ws.root.join("changed-there")), "base 2\n");
}

#[test]
fn a_conflict_whose_path_cannot_be_read_stays_open() {
    let mut p = pair(&[("c.txt", "one\n")]);
    run(&mut p.ws, OpKind::Clone, Direction::Pull);
    rewrite(&p.ws.root.join("c.txt"), "mine, a local edit\n");
    rewrite(&p.remote.join("c.txt"), "theirs, the server's edit\n");
    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert_eq!(r.conflicts.len(), 1, "a conflict is recorded");

    // The server edits it again, and now refuses to give it.
    rewrite(&p.remote.join("c.txt"), "theirs again, not readable\n");
    p.fault.inject("open", b"c.txt", Fault::Errno(libc::EACCES));
    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert_eq!(unreadable(&r), ["c.txt"]);
    assert_eq!(
        r.conflicts.len(),
        1,
        "the run did not look at it: the conflict is still open"
    );
    assert_eq!(read(p.ws.root.join("c.txt")), "mine, a local edit\n");

    p.fault.clear();
    let r = run(&mut p.ws, OpKind::Sync, Direction::Both);
    assert_eq!(r.conflicts.len(), 1, "readable again: still a conflict");
}
