//! No `.fuse_hidden*` file is left on the share (issue 12, item 9). sshfs (through libfuse's
//! high-level API) keeps a file that is removed or renamed over while it is open under a
//! `.fuse_hidden*` name, and deletes it at the close; when the close races with the removal,
//! the hidden file can stay for good. A file cachesync has just read (the check of a racy
//! file's content before a step replaces or removes it, or the scan's read) must be closed,
//! and the close done, before anything replaces or removes it. One test holds such a close
//! (a pause in the remote helper) and shows that nothing happens on the share meanwhile; the
//! other replaces and removes many just-read files over a real sshfs mount while the CPUs are
//! busy, and the served directory must end with no hidden file.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use cachesync_testutils::{poll_until, wait_until, SshfsRemote};

/// Files per directory and round.
const FILES: usize = 20;
/// Rounds of pull, then replace and remove.
const ROUNDS: usize = 2;

/// Busy threads, one per CPU and one more, until dropped (or two minutes at most).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let until = Instant::now() + Duration::from_secs(120);
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        for i in 0..10_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    common::cachesync(dir, args, &[])
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let text = format!(
        "cachesync {args:?}: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("skipped"), "{text}");
    text
}

/// The `.fuse_hidden*` files anywhere under `dir`.
fn hidden(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(".fuse_hidden") {
                out.push(p);
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

/// The names and sizes in `dir` (hidden files included), sorted.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| {
            let len = e.metadata().map_or(0, |m| m.len());
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    out.sort();
    out
}

/// Writes `body` to `path` on the server with an mtime an hour ahead (see [`racy_files`]).
fn racy_file(path: &Path, body: &str) {
    fs::write(path, body).expect("write");
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(SystemTime::now() + Duration::from_secs(3600))
        .expect("set mtime");
}

#[test]
fn nothing_replaces_or_removes_a_file_while_its_close_is_pending() {
    let share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    racy_file(&served.join("gone"), "the server's gone\n");
    racy_file(&served.join("mine"), "the server's mine\n");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let mnt = share.mnt().to_str().expect("utf-8").to_string();
    ok(
        tmp.path(),
        &[
            "clone",
            &mnt,
            ws.to_str().expect("utf-8"),
            "--timeout",
            "30",
        ],
    );
    fs::remove_file(ws.join("gone")).expect("rm");
    fs::write(ws.join("mine"), "my version\n").expect("edit");

    // Every close of `gone` in the remote helper pauses until the test says go on: the scan
    // reads it (racy), and the removal checks its content first.
    let pause = tmp.path().join("paused");
    let mut child = common::spawn_paused(
        &ws,
        tmp.path(),
        &["sync", "--force"],
        "helper-close:gone",
        &pause,
    );
    let mut pauses = 0;
    loop {
        wait_until(
            "a close of `gone` pauses, or the sync ends",
            Duration::from_secs(60),
            || pause.exists() || child.try_wait().expect("wait").is_some(),
        );
        if !pause.exists() {
            break;
        }
        pauses += 1;
        // The command must wait for the close: were it to go on, the file would be replaced
        // or removed while still open.
        let before = listing(&served);
        let changed = poll_until(Duration::from_secs(2), || listing(&served) != before);
        assert!(
            !changed,
            "pause {pauses}: the share changed while a close was pending: {before:?} -> {:?}",
            listing(&served)
        );
        fs::remove_file(&pause).expect("go on");
    }
    let out = child.wait_with_output().expect("the sync ends");
    assert!(
        out.status.success(),
        "{:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pauses >= 1, "the close of `gone` was reached");
    assert!(!served.join("gone").exists());
    assert_eq!(
        fs::read_to_string(served.join("mine")).expect("pushed"),
        "my version\n"
    );
    assert!(
        poll_until(Duration::from_secs(10), || hidden(&served).is_empty()),
        "left on the share: {:?}",
        hidden(&served)
    );
}

/// Writes `FILES` files in `dir` on the server, with an mtime an hour ahead: racy at every
/// scan (an mtime that close to a scan cannot vouch for the content), so every step that
/// replaces or removes one first reads it.
fn racy_files(dir: &Path, tag: &str) {
    fs::create_dir_all(dir).expect("mkdir");
    for i in 0..FILES {
        racy_file(&dir.join(format!("f{i:02}")), &format!("{tag} {i}\n"));
    }
}

#[test]
fn files_just_read_then_replaced_or_removed_leave_no_fuse_hidden_file_under_load() {
    let share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    fs::write(served.join("README"), "hello\n").expect("write");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("ws");
    let mnt = share.mnt().to_str().expect("utf-8").to_string();
    ok(
        tmp.path(),
        &[
            "clone",
            &mnt,
            ws.to_str().expect("utf-8"),
            "--timeout",
            "20",
        ],
    );
    let _load = Load::start();
    for round in 0..ROUNDS {
        let (replace, remove) = (format!("replace{round}"), format!("remove{round}"));
        racy_files(&served.join(&replace), "server");
        racy_files(&served.join(&remove), "server");
        wait_until(
            "the pull brings the new files",
            Duration::from_secs(30),
            || {
                ok(&ws, &["pull"]);
                (0..FILES).all(|i| {
                    ws.join(&replace).join(format!("f{i:02}")).is_file()
                        && ws.join(&remove).join(format!("f{i:02}")).is_file()
                })
            },
        );
        for i in 0..FILES {
            fs::write(
                ws.join(&replace).join(format!("f{i:02}")),
                format!("mine {i}\n"),
            )
            .expect("edit");
        }
        fs::remove_dir_all(ws.join(&remove)).expect("rm");
        ok(&ws, &["sync", "--force"]);
        assert!(!served.join(&remove).exists(), "round {round}: removed");
        for i in 0..FILES {
            assert_eq!(
                fs::read_to_string(served.join(&replace).join(format!("f{i:02}"))).expect("pushed"),
                format!("mine {i}\n")
            );
        }
        // The file system deletes a hidden file at the close, a moment after it: only one
        // that stays is left for good.
        let gone = poll_until(Duration::from_secs(10), || hidden(&served).is_empty());
        assert!(
            gone,
            "round {round}: left on the share: {:?}",
            hidden(&served)
        );
    }
}
