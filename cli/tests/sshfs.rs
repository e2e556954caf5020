//! cachesync over a real network file system: an sshfs mount on loopback whose sshd the test
//! starts, kills and restarts itself (see cachesync-testutils).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use std::time::{Duration, Instant};

use cachesync_testutils::{wait_until, SshfsRemote};

fn cachesync(dir: &Path, args: &[&str]) -> Output {
    common::cachesync(dir, args, &[])
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cachesync(dir, args);
    assert!(
        out.status.success(),
        "cachesync {args:?} failed ({:?}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(ws: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(ws, &["status", "--refresh", "--json"]))
        .expect("status --json is JSON")
}

fn remote_changes(ws: &Path) -> Vec<String> {
    status(ws)["remote_changes"]
        .as_array()
        .expect("remote_changes")
        .iter()
        .filter_map(|c| c["path"].as_str().map(str::to_string))
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario reads top to bottom
fn clone_push_pull_outage_and_unmount_over_sshfs() {
    let mut share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    fs::create_dir_all(served.join("src")).expect("mkdir");
    fs::write(served.join("README.md"), "hello\n").expect("write");
    fs::write(served.join("src/main.rs"), "fn main() {}\n").expect("write");
    fs::write(served.join("old.txt"), "to be deleted on the server\n").expect("write");
    std::os::unix::fs::symlink("README.md", served.join("link")).expect("symlink");

    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let mnt = share.mnt().to_str().expect("utf-8").to_string();
    ok(
        tmp.path(),
        &["clone", &mnt, ws.to_str().expect("utf-8"), "--timeout", "3"],
    );
    assert_eq!(
        fs::read_to_string(ws.join("src/main.rs")).expect("cloned"),
        "fn main() {}\n"
    );
    assert_eq!(
        fs::read_link(ws.join("link")).expect("symlink cloned"),
        Path::new("README.md")
    );
    assert!(
        served.join(".cachesync-remote").is_file(),
        "the marker was written"
    );

    // A local edit and a new file, pushed through the mount.
    fs::write(ws.join("README.md"), "hello from the laptop\n").expect("edit");
    fs::write(ws.join("src/lib.rs"), "pub fn f() {}\n").expect("write");
    ok(&ws, &["push"]);
    assert_eq!(
        fs::read_to_string(served.join("README.md")).expect("pushed"),
        "hello from the laptop\n"
    );
    assert_eq!(
        fs::read_to_string(served.join("src/lib.rs")).expect("pushed"),
        "pub fn f() {}\n"
    );
    let leftovers: Vec<_> = fs::read_dir(served.join("src"))
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".cachesync-tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");

    // Another client edits and deletes on the server; the mount sees it after its attribute
    // cache expires (about a second), so wait for status to report it.
    fs::write(
        served.join("src/main.rs"),
        "fn main() { println!(\"v2\"); }\n",
    )
    .expect("edit");
    fs::remove_file(served.join("old.txt")).expect("rm");
    wait_until(
        "status sees both remote changes",
        Duration::from_secs(20),
        || {
            let changes = remote_changes(&ws);
            changes.contains(&"src/main.rs".to_string()) && changes.contains(&"old.txt".to_string())
        },
    );
    ok(&ws, &["pull"]);
    assert_eq!(
        fs::read_to_string(ws.join("src/main.rs")).expect("pulled"),
        "fn main() { println!(\"v2\"); }\n"
    );
    assert!(
        !ws.join("old.txt").exists(),
        "the remote deletion was pulled"
    );
    assert_eq!(
        ok(&ws, &["check"]).trim_end(),
        "clean: connected, nothing to pull or push, no conflicts"
    );

    // Outage: the server dies. The sync fails as disconnected (exit 3), bounded by the
    // timeout, and nothing local is touched.
    fs::write(
        ws.join("offline.txt"),
        "written while the server was down\n",
    )
    .expect("write");
    share.kill_server();
    let started = Instant::now();
    let out = cachesync(&ws, &["sync"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not reachable"), "{stderr}");
    eprintln!("sync against a dead server gave up after {took:?}");
    assert!(ws.join("offline.txt").is_file());
    assert!(ws.join("src/main.rs").is_file());
    let st = status(&ws);
    assert_eq!(st["mode"], "disconnected", "{st}");
    assert!(
        st["local_changes"]
            .as_array()
            .expect("local_changes")
            .iter()
            .any(|c| c["path"] == "offline.txt"),
        "{st}"
    );

    // The server is back: the next sync pushes what was written offline.
    share.restart_server();
    wait_until("the share answers again", Duration::from_secs(20), || {
        cachesync(&ws, &["sync"]).status.success()
    });
    assert_eq!(
        fs::read_to_string(served.join("offline.txt")).expect("pushed after the outage"),
        "written while the server was down\n"
    );

    // The share is unmounted: the mount point is an empty local directory. That is refused as
    // not the remote (exit 3), never taken for "the server deleted everything".
    let status = Command::new("fusermount3")
        .args(["-u", &mnt])
        .status()
        .expect("fusermount3 runs");
    assert!(status.success(), "unmounting failed");
    wait_until("the mount point is empty", Duration::from_secs(10), || {
        fs::read_dir(&mnt)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    });
    let out = cachesync(&ws, &["sync"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unmounted"), "{stderr}");
    for f in [
        "README.md",
        "src/main.rs",
        "src/lib.rs",
        "offline.txt",
        "link",
    ] {
        assert!(
            ws.join(f).symlink_metadata().is_ok(),
            "{f} was deleted locally"
        );
    }
}
