//! The fault suite, outage half: a push or a pull over sshfs (on loopback, with the server in
//! its own network namespace) is paused at a moment chosen by a seeded generator (a file being
//! read, a step about to run, a file half written to the remote, a step just done); then the
//! server is killed or the link cut, and the command resumed. It must end within its timeout,
//! as disconnected (or done, when nothing it still had to do needed the server); no file on the
//! server may hold anything but its old or its new content; once the server is back, `sync`
//! completes, both sides hold every change, `fsck` is clean and no temporary is left.
//!
//! CI runs a few cases; `CACHESYNC_FAULTS=all` (`make faults`) runs many more, and
//! `CACHESYNC_FAULTS_SEED=N` (`make faults FAULTS_SEED=N`) draws other moments.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use cachesync_testutils::{wait_until, Rng, SshfsRemote};
use common::{noise, tree, Tree};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    KillServer,
    CutLink,
}

struct World {
    share: SshfsRemote,
    tmp: tempfile::TempDir,
    ws: PathBuf,
    home: PathBuf,
}

impl World {
    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let home = self.home.to_str().expect("utf-8");
        let mut env = vec![("HOME", home)];
        env.extend_from_slice(extra);
        common::cachesync(&self.ws, args, &env)
    }
}

/// Ten files of 1 MB and a few small ones on the share, cloned with a 2-second timeout.
fn world() -> World {
    let share = SshfsRemote::start_in_netns();
    for i in 0..10u64 {
        let p = share.served().join(format!("data/f{i}.bin"));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, noise(i, 1_000_000)).expect("write");
    }
    for name in ["a.txt", "b.txt", "docs/c.md"] {
        let p = share.served().join(name);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, format!("{name}\n")).expect("write");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    fs::create_dir(&home).expect("mkdir");
    let ws = tmp.path().join("ws");
    let w = World {
        share,
        tmp,
        ws,
        home,
    };
    let mnt = w.share.mnt().to_str().expect("utf-8").to_string();
    let out = common::cachesync(
        w.tmp.path(),
        &[
            "clone",
            &mnt,
            w.ws.to_str().expect("utf-8"),
            "--timeout",
            "2",
        ],
        &[("HOME", w.home.to_str().expect("utf-8"))],
    );
    assert!(out.status.success(), "clone: {out:?}");
    w
}

/// The same changes, made on one side: new files, edits, a deletion.
fn change(root: &Path, salt: u64) {
    for i in 0..4u64 {
        let p = root.join(format!("new/n{i}.bin"));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, noise(100 + salt + i, 1_500_000)).expect("write");
    }
    common::write_changed(&root.join("data/f1.bin"), &noise(200 + salt, 1_000_000));
    common::write_changed(&root.join("a.txt"), b"a, edited\n");
    fs::remove_file(root.join("data/f2.bin")).expect("rm");
}

/// Runs one case: `command` paused at `point`, the outage, resumed.
#[allow(clippy::too_many_lines)] // a scenario reads top to bottom: pause, outage, resume, compare
fn case(command: &str, point: &str, outage: Outage) {
    let mut w = world();
    let server_side = command == "pull";
    if server_side {
        change(w.share.served(), 0);
        // The kernel caches the mount's attributes for about a second: a pull started at once
        // would rightly not see the edits yet.
        let served = tree(w.share.served());
        wait_until(
            "the mount shows the server's changes",
            Duration::from_secs(10),
            || tree(w.share.mnt()) == served,
        );
    } else {
        change(&w.ws, 0);
    }
    let before = tree(w.share.served());
    let wanted: Tree = if server_side {
        before.clone()
    } else {
        tree(&w.ws)
    };

    let pause = w.tmp.path().join("paused");
    let mut child = common::spawn_paused(&w.ws, &w.home, &[command], point, &pause);
    let reached = wait_until_or_exit(&mut child, &pause);
    if reached {
        match outage {
            Outage::KillServer => w.share.kill_server(),
            Outage::CutLink => w.share.cut_link(),
        }
        fs::remove_file(&pause).expect("resume");
    }
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{command} at {point}: did not end after the outage"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "{command}, {outage:?} at {point}: reached {reached}, exit {:?} after {:?}",
        status.code(),
        started.elapsed()
    );
    assert!(
        matches!(status.code(), Some(0 | 3)),
        "{command} at {point}, {outage:?}: exit {status:?} (done or disconnected)"
    );

    // Nothing partial under a real name on the server (read once the server is back).
    if reached {
        match outage {
            Outage::KillServer => w.share.restart_server(),
            Outage::CutLink => w.share.restore_link(),
        }
    }
    for (path, node) in tree(w.share.served()) {
        assert!(
            before.get(&path) == Some(&node) || wanted.get(&path) == Some(&node),
            "{command} at {point}, {outage:?}: {:?} on the server is neither old nor new",
            String::from_utf8_lossy(&path)
        );
    }
    wait_until(
        "sync completes once the server is back",
        Duration::from_secs(60),
        || w.run(&["sync"], &[]).status.success(),
    );
    if std::env::var_os("OUTAGE_DEBUG").is_some() {
        for args in [&["status"][..], &["log"], &["sync", "--dry-run"]] {
            let o = w.run(args, &[]);
            eprintln!(
                "{args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    // sshfs keeps a file replaced or removed while it still counts it open as
    // `.fuse_hidden*` and deletes it when the kernel's release (sent after close(2)
    // returns) reaches it. When the outage comes between the two, sshfs's delete fails and
    // the hidden copy of the version just replaced stays: sshfs's file, not cachesync's,
    // and left out here (tests/fuse_hidden.rs holds that none is left without an outage).
    // Known, see the issue notes: cachesync could find and remove such a copy later.
    let is_hidden = |p: &Vec<u8>| {
        p.rsplit(|&b| b == b'/')
            .next()
            .is_some_and(|n| n.starts_with(b".fuse_hidden"))
    };
    let served: Tree = tree(w.share.served())
        .into_iter()
        .filter(|(p, _)| !(reached && is_hidden(p)))
        .collect();
    for (side, got) in [("server", served), ("workspace", tree(&w.ws))] {
        assert!(
            got == wanted,
            "{command} at {point}, {outage:?}: the {side} differs (left: got, right: wanted):\n{}",
            common::diff(&got, &wanted)
        );
    }
    let fsck = w.run(&["fsck"], &[]);
    assert!(fsck.status.success(), "{fsck:?}");
    let temps: Vec<_> = walk(w.share.served())
        .into_iter()
        .chain(walk(&w.ws))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".cachesync-tmp."))
        })
        .collect();
    assert!(
        temps.is_empty(),
        "{command} at {point}: temporaries left: {temps:?}"
    );
}

/// Waits (bounded) until the run pauses (true) or ends without reaching the point (false).
fn wait_until_or_exit(child: &mut std::process::Child, pause: &Path) -> bool {
    let started = Instant::now();
    loop {
        if pause.exists() {
            return true;
        }
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run neither paused nor ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != ".cachesync" {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

#[test]
fn outages_at_seeded_moments_of_a_push_and_a_pull_lose_nothing() {
    let all = std::env::var("CACHESYNC_FAULTS").as_deref() == Ok("all");
    let cases = if all { 16 } else { 4 };
    let seed = std::env::var("CACHESYNC_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0007);
    eprintln!("outages: seed {seed}");
    let mut rng = Rng(seed);
    for n in 0..cases {
        // Alternate the commands and the outages; the moment is drawn.
        let command = if n % 2 == 0 { "push" } else { "pull" };
        let outage = if (n / 2) % 2 == 0 {
            Outage::CutLink
        } else {
            Outage::KillServer
        };
        // Push: 7 steps (4 new files in a new directory, an edit of each kind, a removal).
        let point = match (command, rng.below(3)) {
            ("pull", 0) => "fetching".to_string(),
            ("push", 0) => format!("mid-write:{}", 1 + rng.below(5)),
            (_, 1) => format!("before-step:{}", rng.below(7)),
            _ => format!("after-step:{}", rng.below(7)),
        };
        case(command, &point, outage);
    }
}

/// New files the writers put in place ahead of the loop, when an outage then stops the loop
/// before it reaches their steps, are recorded all the same: a file deleted on the share
/// afterwards is deleted here by the next sync, not taken for one added here and pushed back.
#[test]
fn files_put_in_place_ahead_of_a_loop_stopped_by_an_outage_are_recorded() {
    let mut w = world();
    // Enough new files for the writers (they start at 64), in a directory the workspace has,
    // so that no step of the loop's has to make one first; and an edit to push, whose step
    // (a.txt, at the top) runs before theirs.
    let new: Vec<String> = (0..80).map(|i| format!("data/n{i:02}.txt")).collect();
    for (i, rel) in new.iter().enumerate() {
        fs::write(w.share.served().join(rel), format!("new {i}\n")).expect("write");
    }
    let served = tree(w.share.served());
    wait_until(
        "the mount shows the new files",
        Duration::from_secs(10),
        || tree(w.share.mnt()) == served,
    );
    common::write_changed(&w.ws.join("a.txt"), b"a, edited here\n");

    let plan = w.run(&["sync", "--dry-run", "--json"], &[]);
    assert!(plan.status.success(), "dry run: {plan:?}");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let steps = common::steps(&plan);
    let push = steps
        .iter()
        .position(|s| s["side"] == "remote" && s["path"] == "a.txt")
        .unwrap_or_else(|| panic!("no step pushes a.txt: {plan}"));
    let first_new = steps
        .iter()
        .position(|s| s["side"] == "local" && s["path"] == new[0].as_str())
        .unwrap_or_else(|| panic!("no step writes {}: {plan}", new[0]));
    assert!(push < first_new, "the push must come first: {plan}");

    // The loop paused before the push; the writers go on and put every new file in place.
    let pause = w.tmp.path().join("paused");
    let point = format!("before-step:{push}");
    let mut child = common::spawn_paused(&w.ws, &w.home, &["sync"], &point, &pause);
    assert!(
        wait_until_or_exit(&mut child, &pause),
        "the sync never paused"
    );
    wait_until(
        "the writers put every new file in place",
        Duration::from_secs(60),
        || new.iter().all(|rel| w.ws.join(rel).exists()),
    );
    w.share.kill_server();
    fs::remove_file(&pause).expect("resume");
    let out = child.wait_with_output().expect("the sync ends");
    assert_eq!(
        out.status.code(),
        Some(3),
        "the sync should end disconnected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.share.restart_server();

    // A colleague deletes one of the new files meanwhile.
    let gone = &new[7];
    fs::remove_file(w.share.served().join(gone)).expect("rm");
    wait_until(
        "the mount shows the deletion",
        Duration::from_secs(10),
        || !w.share.mnt().join(gone).exists(),
    );
    wait_until(
        "sync completes once the server is back",
        Duration::from_secs(60),
        || w.run(&["sync"], &[]).status.success(),
    );
    assert!(
        !w.ws.join(gone).exists(),
        "{gone}, deleted on the share, is still in the workspace"
    );
    assert!(
        !w.share.served().join(gone).exists(),
        "{gone}, deleted on the share, was pushed back"
    );
    let server = tree(w.share.served());
    let here = tree(&w.ws);
    assert!(
        server == here,
        "the two sides differ (left: server, right: workspace):\n{}",
        common::diff(&server, &here)
    );
    assert_eq!(
        fs::read(w.share.served().join("a.txt")).expect("a.txt"),
        b"a, edited here\n"
    );
    let fsck = w.run(&["fsck"], &[]);
    assert!(fsck.status.success(), "{fsck:?}");
}
