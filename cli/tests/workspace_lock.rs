//! One process per workspace: a live holder of the lock keeps a second run out with a clear
//! message; a crashed run's lock (a record without a live holder) is taken over; a config
//! written by a newer cachesync is refused, never misread.

mod common;

use std::fs;

use common::Env;

fn cloned() -> Env {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    env.clone_ws();
    env
}

#[test]
fn a_held_lock_keeps_a_second_run_out_and_a_stale_one_is_taken_over() {
    let env = cloned();
    let lock_path = env.w(".cachesync/lock");
    let holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .expect("open lock");
    holder
        .lock()
        .expect("take the lock as another process would");
    let r = env.expect_code(1, &["sync"]);
    assert!(r.stderr.contains("another cachesync process"), "{r}");
    assert!(r.stderr.contains("pid"), "the holder is named: {r}");
    holder.unlock().expect("unlock");
    drop(holder);

    // A record left by a crashed run (no live holder of the flock) does not lock anyone out.
    fs::write(&lock_path, "pid 4194303\nboot 00000000-dead\n").expect("write stale record");
    env.ok(&["sync"]);
    let record = fs::read_to_string(&lock_path).expect("read lock");
    assert!(
        !record.contains("4194303"),
        "the stale record was replaced: {record}"
    );
}

#[test]
fn a_config_from_a_newer_cachesync_is_refused() {
    let env = cloned();
    let path = env.w(".cachesync/config.json");
    let text = fs::read_to_string(&path).expect("read config");
    fs::write(&path, text.replace("\"version\": 1", "\"version\": 99")).expect("write config");
    let r = env.expect_code(1, &["status"]);
    assert!(r.stderr.contains("newer cachesync"), "{r}");
}

/// While another command holds the workspace, the commands that only read (log, conflicts,
/// show) still answer, from the state as of their start; the others say who holds it.
#[test]
fn reading_commands_answer_while_another_command_runs() {
    let env = cloned();
    env.ok(&["sync"]);
    let holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(env.w(".cachesync/lock"))
        .expect("open lock");
    holder
        .lock()
        .expect("take the lock as a running sync would");
    let log = env.json(0, &["log", "--json"]);
    assert!(log.as_array().is_some_and(|ops| ops.len() >= 2), "{log}");
    env.ok(&["conflicts"]);
    let shown = env.ok(&["show", "a.txt", "--variant", "base"]);
    assert_eq!(shown.stdout, b"a\n");
    let r = env.expect_code(1, &["status"]);
    assert!(r.stderr.contains("another cachesync process"), "{r}");
}
