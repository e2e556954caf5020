//! Entries a share lists but will not let us read, over a real sshfs mount: Debian's sshfs
//! 3.7.3 refuses to read a symlink whose target is absolute or contains `..` (its
//! `contain_symlinks` option, on by default: readlink gives EPERM). Such an entry does not fail
//! the run: everything else is done, the entry is left as it is on both sides, `status` and
//! `check` list it with what to do, the exit code (1) says the run was incomplete, and the next
//! run tries it again.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cachesync_testutils::{wait_until, SshfsRemote};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let out: Output = common::cachesync(dir, args, &[]);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn link_target(p: &Path) -> Option<PathBuf> {
    fs::read_link(p).ok()
}

/// The unreadable paths `status --json` lists (it exits 0).
fn unreadable(ws: &Path) -> Vec<serde_json::Value> {
    let r = run(ws, &["status", "--refresh", "--json"]);
    assert_eq!(r.code, 0, "{r}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("status --json is JSON");
    v["unreadable"].as_array().expect("unreadable").clone()
}

fn paths(list: &[serde_json::Value]) -> Vec<&str> {
    list.iter().filter_map(|u| u["path"].as_str()).collect()
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario reads top to bottom
fn symlinks_sshfs_will_not_read_are_left_alone_and_the_rest_is_synced() {
    let share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    fs::create_dir_all(served.join("scripts/dtc/include-prefixes")).expect("mkdir");
    fs::write(served.join("README"), "hello\n").expect("write");
    fs::write(served.join("x"), "x\n").expect("write");
    // As in the Linux source tree: a target with `..`, and an absolute one.
    symlink(
        "../../../arch/arm/boot/dts",
        served.join("scripts/dtc/include-prefixes/arm"),
    )
    .expect("symlink");
    symlink("/etc/hostname", served.join("abs")).expect("symlink");
    symlink("x", served.join("plain")).expect("symlink");
    symlink("x", served.join("later")).expect("symlink");

    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let mnt = share.mnt().to_str().expect("utf-8").to_string();
    let clone = run(
        tmp.path(),
        &["clone", &mnt, ws.to_str().expect("utf-8"), "--timeout", "5"],
    );
    // Incomplete: exit 1, naming an entry, with what to do; everything else is cloned.
    assert_eq!(clone.code, 1, "{clone}");
    assert!(clone.stdout.contains("cloned"), "{clone}");
    assert!(
        clone.stderr.contains("cachesync: error: remote abs")
            && clone.stderr.contains("Operation not permitted")
            && clone.stderr.contains("-o no_contain_symlinks"),
        "{clone}"
    );
    assert_eq!(
        fs::read_to_string(ws.join("README")).expect("cloned"),
        "hello\n"
    );
    assert_eq!(link_target(&ws.join("plain")), Some("x".into()));
    assert_eq!(link_target(&ws.join("later")), Some("x".into()));
    assert!(ws.join("scripts/dtc/include-prefixes").is_dir());
    assert_eq!(
        link_target(&ws.join("scripts/dtc/include-prefixes/arm")),
        None
    );
    assert_eq!(link_target(&ws.join("abs")), None);

    // status and check list them, with the reason and the remedy.
    let list = unreadable(&ws);
    assert_eq!(paths(&list), ["abs", "scripts/dtc/include-prefixes/arm"]);
    for u in &list {
        assert_eq!(u["kind"], "symlink");
        assert!(
            u["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Operation not permitted")),
            "{u}"
        );
        assert!(
            u["remedy"]
                .as_str()
                .is_some_and(|r| r.contains("no_contain_symlinks")),
            "{u}"
        );
    }
    let status = run(&ws, &["status"]);
    assert!(
        status.stdout.contains("unreadable on the remote")
            && status
                .stdout
                .contains("symlink   abs: its target cannot be read")
            && !status.stdout.contains("up to date"),
        "{status}"
    );
    let check = run(&ws, &["check"]);
    assert_eq!(check.code, 1, "{check}");
    assert!(
        check
            .stdout
            .contains("unreadable: scripts/dtc/include-prefixes/arm: its target cannot be read"),
        "{check}"
    );
    let check = run(&ws, &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&check.stdout).expect("JSON");
    assert_eq!(v["code"], "EOTHER", "{check}");
    assert_eq!(v["exit"], 1, "{check}");

    // A link the workspace holds becomes one sshfs refuses, while the server changes a file:
    // the change is pulled, the link is left as it is on both sides (never taken for a
    // deletion), and nothing on the server is removed.
    fs::remove_file(served.join("later")).expect("rm");
    symlink("../x", served.join("later")).expect("symlink");
    fs::write(served.join("README"), "hello, again\n").expect("write");
    wait_until(
        "status sees the link change",
        Duration::from_secs(20),
        || paths(&unreadable(&ws)).contains(&"later"),
    );
    let sync = run(&ws, &["sync"]);
    assert_eq!(sync.code, 1, "{sync}");
    assert_eq!(
        fs::read_to_string(ws.join("README")).expect("pulled"),
        "hello, again\n"
    );
    assert_eq!(link_target(&ws.join("later")), Some("x".into()), "{sync}");
    for p in ["abs", "later", "scripts/dtc/include-prefixes/arm"] {
        assert!(
            served.join(p).symlink_metadata().is_ok(),
            "{p} is still on the server"
        );
    }
    assert_eq!(link_target(&served.join("later")), Some("../x".into()));

    // Fixed on the server (plain relative targets): the next sync brings them, complete.
    for (p, target) in [
        ("abs", "x"),
        ("later", "README"),
        ("scripts/dtc/include-prefixes/arm", "dts"),
    ] {
        fs::remove_file(served.join(p)).expect("rm");
        symlink(target, served.join(p)).expect("symlink");
    }
    wait_until(
        "a sync brings the fixed links",
        Duration::from_secs(20),
        || run(&ws, &["sync"]).code == 0,
    );
    assert_eq!(link_target(&ws.join("abs")), Some("x".into()));
    assert_eq!(link_target(&ws.join("later")), Some("README".into()));
    assert_eq!(
        link_target(&ws.join("scripts/dtc/include-prefixes/arm")),
        Some("dts".into())
    );
    let check = run(&ws, &["check"]);
    assert_eq!(check.code, 0, "{check}");
}

/// A symlink made here with a target sshfs refuses to read back (`..`): the push writes it
/// (no failed step), the next runs list it as unreadable and leave it alone, and `prefetch`
/// still fetches the working set before it says the run was incomplete.
#[test]
fn a_pushed_symlink_sshfs_will_not_read_back_is_pushed_and_left_alone() {
    let share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    fs::write(served.join("x"), "x\n").expect("write");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let mnt = share.mnt().to_str().expect("utf-8").to_string();
    let clone = run(tmp.path(), &["clone", &mnt, ws.to_str().expect("utf-8")]);
    assert_eq!(clone.code, 0, "{clone}");

    symlink("../elsewhere", ws.join("up")).expect("symlink");
    let push = run(&ws, &["push"]);
    assert_eq!(push.code, 0, "the write itself succeeded: {push}");
    assert_eq!(link_target(&served.join("up")), Some("../elsewhere".into()));

    // The next run sees it unreadable: left alone on both sides.
    let sync = run(&ws, &["sync"]);
    assert_eq!(sync.code, 1, "{sync}");
    assert_eq!(link_target(&ws.join("up")), Some("../elsewhere".into()));
    assert_eq!(link_target(&served.join("up")), Some("../elsewhere".into()));

    // prefetch goes on with the working set (x, dropped, then pinned in the config by
    // hand), then says the run was incomplete.
    run(&ws, &["drop", "x"]);
    assert!(ws.join("x").symlink_metadata().is_err(), "x is remote-only");
    let config = ws.join(".cachesync/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config).expect("config")).expect("json");
    c["pins"] = serde_json::json!(["x"]);
    fs::write(&config, c.to_string()).expect("write config");
    let prefetch = run(&ws, &["prefetch", "--quiet"]);
    assert_eq!(prefetch.code, 1, "{prefetch}");
    assert_eq!(fs::read_to_string(ws.join("x")).expect("fetched"), "x\n");
}
