//! One process per workspace: a live holder of the lock keeps a second run out with a clear
//! message; a crashed run's lock (a record without a live holder) is taken over; a config
//! written by a newer cachesync is refused, never misread.

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

fn cloned() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).expect("mkdir");
    fs::write(remote.join("a.txt"), "a\n").expect("write");
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
    (tmp, ws)
}

#[test]
fn a_held_lock_keeps_a_second_run_out_and_a_stale_one_is_taken_over() {
    let (_tmp, ws) = cloned();
    let lock_path = ws.join(".cachesync/lock");
    let holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .expect("open lock");
    holder
        .lock()
        .expect("take the lock as another process would");
    let out = cachesync(&ws, &["sync"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another cachesync process"), "{stderr}");
    assert!(stderr.contains("pid"), "the holder is named: {stderr}");
    holder.unlock().expect("unlock");
    drop(holder);

    // A record left by a crashed run (no live holder of the flock) does not lock anyone out.
    fs::write(&lock_path, "pid 4194303\nboot 00000000-dead\n").expect("write stale record");
    let out = cachesync(&ws, &["sync"]);
    assert!(out.status.success(), "{out:?}");
    let record = fs::read_to_string(&lock_path).expect("read lock");
    assert!(
        !record.contains("4194303"),
        "the stale record was replaced: {record}"
    );
}

#[test]
fn a_config_from_a_newer_cachesync_is_refused() {
    let (_tmp, ws) = cloned();
    let path = ws.join(".cachesync/config.json");
    let text = fs::read_to_string(&path).expect("read config");
    fs::write(&path, text.replace("\"version\": 1", "\"version\": 99")).expect("write config");
    let out = cachesync(&ws, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("newer cachesync"), "{stderr}");
}
