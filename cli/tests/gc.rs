//! Garbage collection removes what nothing refers to, and never a conflict variant or the
//! content of a local change not yet pushed.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn cachesync(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachesync"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("the cachesync binary runs")
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = cachesync(dir, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
}

#[test]
fn gc_keeps_variants_and_unpushed_content() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).expect("mkdir");
    fs::write(remote.join("notes.txt"), "v0\n").expect("write");
    fs::write(remote.join("shared.txt"), "base\n").expect("write");
    let ws = tmp.path().join("ws");
    let out = cachesync(
        tmp.path(),
        &[
            "clone",
            remote.to_str().expect("utf-8"),
            ws.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{out:?}");

    // Versions that only old snapshots refer to.
    for i in 1..4 {
        fs::write(ws.join("notes.txt"), format!("version {i} of the notes\n")).expect("edit");
        assert!(cachesync(&ws, &["sync"]).status.success());
    }
    // A conflict (its server and base variants live only in the store) and an unpushed edit.
    fs::write(ws.join("shared.txt"), "laptop's version\n").expect("edit");
    fs::write(remote.join("shared.txt"), "server's version!\n").expect("edit");
    assert_eq!(cachesync(&ws, &["sync"]).status.code(), Some(7));
    fs::write(ws.join("notes.txt"), "unpushed final notes\n").expect("edit");
    assert!(cachesync(&ws, &["status"]).status.success());

    let gc = json(&ws, &["gc", "--json"]);
    assert!(
        gc["files"].as_u64().expect("files") >= 2,
        "old versions removed: {gc}"
    );
    assert_eq!(json(&ws, &["fsck", "--json"])["clean"], true);

    let server = cachesync(&ws, &["show", "shared.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"server's version!\n", "{server:?}");
    let base = cachesync(&ws, &["show", "shared.txt", "--variant", "base"]);
    assert_eq!(base.stdout, b"base\n", "{base:?}");

    let out = cachesync(&ws, &["push", "notes.txt"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(remote.join("notes.txt")).expect("pushed"),
        "unpushed final notes\n"
    );
}
