//! Disconnected operation over a real network file system (sshfs on loopback, with an sshd
//! the test starts, kills and restarts): the switch to disconnected mode, offline work, events
//! and the hook, reconnection with changes made on the server meanwhile, and a push cut in
//! the middle of a file.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachesync_testutils::{wait_until, SshfsRemote};

/// A cloned workspace on an sshfs share, with its own HOME and a hook that logs events.
struct World {
    share: SshfsRemote,
    _tmp: tempfile::TempDir,
    ws: PathBuf,
    home: PathBuf,
    hook_log: PathBuf,
}

impl World {
    fn new(files: &[(&str, &[u8])]) -> World {
        let w = World::with_share(SshfsRemote::start(), files);
        // The hook appends each event's JSON to a file.
        let config = w.ws.join(".cachesync/config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&config).expect("config")).expect("json");
        c["hook"] = serde_json::Value::String(format!("cat >> '{}'", w.hook_log.display()));
        fs::write(&config, c.to_string()).expect("write config");
        w
    }

    fn run_in(&self, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let home = self.home.to_str().expect("utf-8");
        let mut env = vec![("HOME", home)];
        env.extend_from_slice(extra);
        common::cachesync(dir, args, &env)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.ws, args, &[])
    }

    fn code(&self, args: &[&str]) -> i32 {
        let out = self.run(args);
        out.status.code().unwrap_or(-1)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
    }

    fn events(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["events", "--json"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
            .collect()
    }

    fn hook_lines(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.hook_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("the hook got JSON"))
            .collect()
    }

    fn served(&self, rel: &str) -> PathBuf {
        self.share.served().join(rel)
    }
}

fn kinds(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["kind"].as_str()).collect()
}

fn paths(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect()
}

#[test]
fn an_outage_offline_work_and_reconnection() {
    let mut w = World::new(&[
        ("a.txt", b"a\n"),
        ("b.txt", b"b\n"),
        ("docs/c.md", b"c\n"),
        ("old.txt", b"old\n"),
    ]);
    w.share.kill_server();

    // Work offline.
    fs::write(w.ws.join("a.txt"), "a, edited on the train\n").expect("edit");
    fs::write(w.ws.join("new.txt"), "written offline\n").expect("write");
    fs::remove_file(w.ws.join("b.txt")).expect("rm");

    // The first command that needs the remote finds it gone, within its timeout.
    let started = Instant::now();
    let out = w.run(&["pull"]);
    let took = started.elapsed();
    eprintln!("pull with the server killed gave up after {took:?}");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(took < Duration::from_secs(12), "pull took {took:?}");

    // Everything local works offline.
    let st = w.json(&["status", "--json"]);
    assert_eq!(st["mode"], "disconnected", "{st}");
    assert!(st["reason"].as_str().is_some_and(|r| !r.is_empty()), "{st}");
    assert!(st["since_ns"].as_i64().is_some_and(|s| s > 0), "{st}");
    assert_eq!(paths(&st["provisional"]), ["new.txt"], "{st}");
    let mut changed = paths(&st["local_changes"]);
    changed.sort_unstable();
    assert_eq!(changed, ["a.txt", "b.txt", "new.txt"], "{st}");
    assert_eq!(w.code(&["check"]), 3);
    assert_eq!(w.code(&["push"]), 3);
    assert_eq!(w.code(&["log"]), 0);
    assert_eq!(w.code(&["conflicts"]), 0);
    let shown = w.run(&["show", "a.txt", "--variant", "base"]);
    assert_eq!(shown.stdout, b"a\n", "{shown:?}");

    // One event and one hook call for the switch, however many commands failed.
    assert_eq!(kinds(&w.events()), ["disconnected"]);
    let hooked = w.hook_lines();
    assert_eq!(kinds(&hooked), ["disconnected"], "{hooked:?}");
    let log = w.json(&["log", "--json"]);
    let commands: Vec<&str> = log
        .as_array()
        .expect("ops")
        .iter()
        .filter_map(|o| o["command"].as_str())
        .collect();
    assert!(commands.contains(&"disconnect"), "{commands:?}");
    assert!(commands.contains(&"offline"), "{commands:?}");

    // Meanwhile, on the server: an edit and a deletion.
    fs::write(w.served("docs/c.md"), "c, edited on the server meanwhile\n").expect("edit");
    fs::remove_file(w.served("old.txt")).expect("rm");

    // The server is back: `connect` checks it is the same remote, then syncs both ways.
    w.share.restart_server();
    let out = w.run(&["connect"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(w.served("a.txt")).expect("pushed"),
        "a, edited on the train\n"
    );
    assert_eq!(
        fs::read_to_string(w.served("new.txt")).expect("pushed"),
        "written offline\n"
    );
    assert!(
        !w.served("b.txt").exists(),
        "the offline deletion was pushed"
    );
    // The mount may show the server's edits only once its attribute cache expires (about a
    // second, as on any network file system): sync until they arrive.
    wait_until(
        "the server's edit and deletion arrive",
        Duration::from_secs(20),
        || {
            let edited = fs::read_to_string(w.ws.join("docs/c.md")).unwrap_or_default()
                == "c, edited on the server meanwhile\n";
            edited && !w.ws.join("old.txt").exists() || {
                w.run(&["sync"]);
                false
            }
        },
    );
    assert!(
        !w.ws.join("old.txt").exists(),
        "the server's deletion was pulled"
    );

    let st = w.json(&["status", "--json"]);
    assert_eq!(st["mode"], "connected", "{st}");
    assert_eq!(paths(&st["provisional"]), Vec::<&str>::new(), "{st}");
    assert_eq!(kinds(&w.events()), ["disconnected", "connected"]);
    assert_eq!(kinds(&w.hook_lines()), ["disconnected", "connected"]);
    assert_eq!(w.code(&["check"]), 0);
}

#[test]
fn disconnect_by_hand_keeps_off_the_remote_until_connect() {
    let w = World::new(&[("a.txt", b"a\n")]);
    assert_eq!(w.code(&["disconnect"]), 0);
    fs::write(w.ws.join("a.txt"), "offline\n").expect("edit");
    let started = Instant::now();
    let out = w.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cachesync connect"),
        "{out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it did not even try"
    );
    assert_eq!(fs::read_to_string(w.served("a.txt")).expect("read"), "a\n");
    let st = w.json(&["status", "--json"]);
    assert_eq!(st["mode"], "disconnected");
    assert_eq!(st["manual"], true);
    let ev = w.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["manual"], true);

    assert_eq!(w.code(&["connect"]), 0);
    assert_eq!(
        fs::read_to_string(w.served("a.txt")).expect("read"),
        "offline\n"
    );
    assert_eq!(kinds(&w.events()), ["disconnected", "connected"]);

    // --server HOST and --all act on every registered workspace of that server, the one
    // status names.
    assert_eq!(w.json(&["status", "--json"])["server"], "127.0.0.1");
    let out = w.run(&["disconnect", "--server", "127.0.0.1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.json(&["status", "--json"])["manual"], true);
    let out = w.run(&["connect", "--all"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.json(&["status", "--json"])["mode"], "connected");
    let out = w.run(&["disconnect", "--server", "elsewhere.example"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.json(&["status", "--json"])["mode"], "connected");
}

#[test]
fn a_push_cut_mid_file_leaves_the_remote_clean_and_completes_later() {
    let mut w = World::new(&[("small.txt", b"s\n")]);
    let big: Vec<u8> = (0..24_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    fs::write(w.ws.join("big.bin"), &big).expect("write");
    let pause = w._tmp.path().join("paused");
    let home = w.home.clone();
    let mut child = common::spawn_paused(&w.ws, &home, &["push"], "mid-write:0", &pause);
    wait_until(
        "the push is in the middle of the file",
        Duration::from_secs(60),
        || pause.exists(),
    );
    w.share.kill_server();
    fs::remove_file(&pause).expect("resume the push");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the push did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "the cut push is a disconnection");
    assert!(
        !w.served("big.bin").exists(),
        "no partial file under the real name"
    );

    w.share.restart_server();
    wait_until("a sync completes the push", Duration::from_secs(30), || {
        w.run(&["sync"]).status.success()
    });
    assert!(fs::read(w.served("big.bin")).expect("pushed") == big);
    let leftovers: Vec<String> = fs::read_dir(w.share.served())
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".cachesync-tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    assert_eq!(w.json(&["fsck", "--json"])["clean"], true);
}

/// A big file patched in place over sshfs (it cannot copy on the server): only the changed
/// chunks cross the link. When the link dies between two of them, the file on the server
/// is half patched until the next run that reaches it, which finishes the patch before it
/// scans: no conflict, nothing sent whole.
#[test]
fn a_patch_in_place_cut_by_an_outage_is_finished_after_reconnection() {
    let base = common::noise(4, 12 << 20);
    let mut w = World::new(&[("disk.img", &base)]);
    let mut target = base.clone();
    target[1 << 20] ^= 1;
    target[10 << 20] ^= 1;
    fs::write(w.ws.join("disk.img"), &target).expect("write");
    let pause = w._tmp.path().join("paused");
    let home = w.home.clone();
    let mut child = common::spawn_paused(&w.ws, &home, &["push"], "mid-patch:0", &pause);
    wait_until(
        "the push is between two patches",
        Duration::from_secs(60),
        || pause.exists(),
    );
    // sshfs writes behind: the first chunk reaches the server's file a moment later.
    let mut half = Vec::new();
    wait_until(
        "the first chunk reached the server",
        Duration::from_secs(30),
        || {
            half = fs::read(w.served("disk.img")).expect("read");
            half != base
        },
    );
    assert!(half != target, "half patched while paused");
    w.share.kill_server();
    fs::remove_file(&pause).expect("resume the push");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the push did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "the cut push is a disconnection");

    w.share.restart_server();
    wait_until("a sync reaches the share", Duration::from_secs(30), || {
        w.code(&["sync"]) != 3
    });
    assert!(fs::read(w.served("disk.img")).expect("read") == target);
    let r = w.json(&["sync", "--json"]);
    assert_eq!(r["steps"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(r["conflicts"].as_array().map(Vec::len), Some(0), "{r}");

    // The next edit goes the same way, and says so.
    target[5 << 20] ^= 1;
    fs::write(w.ws.join("disk.img"), &target).expect("write");
    let r = w.json(&["push", "--json"]);
    assert_eq!(r["patched"][0]["how"], "in-place", "{r}");
    assert!(
        r["bytes_written"].as_u64().expect("bytes") <= 1 << 20,
        "{r}"
    );
    assert!(fs::read(w.served("disk.img")).expect("read") == target);
}

/// EDISCONPERM: offline, a change that the cached server permissions do not allow this user
/// is flagged by status and makes check exit 5. Runs cachesync as `nobody` on a workspace it
/// owns, cloned from a share whose root is root's (0755) with a directory `ours/` that is
/// nobody's: every write is a new file renamed into place, so what counts is whether the
/// directory is writable.
#[test]
fn offline_changes_the_server_would_refuse_are_flagged() {
    let env = common::Env::with_remote(&[("theirs.txt", "t\n"), ("ours/mine.txt", "m\n")]);
    let nobody = common::NOBODY;
    fs::set_permissions(&env.remote, fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(env.r("ours"), Some(nobody), Some(nobody)).expect("chown");
    env.clone_ws();
    let bin = env.hand_to_nobody();
    let as_nobody = |args: &[&str]| env.run_as_nobody(&bin, args);
    let status = || -> serde_json::Value {
        let out = as_nobody(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("json")
    };
    assert_eq!(as_nobody(&["disconnect"]).code, 0);
    let st = status();
    assert!(paths(&st["permission"]).is_empty(), "{st}");
    // Edits in place: the last answer is brought up to date at them, and their permissions
    // judged again.
    fs::write(env.w("ours/mine.txt"), "mine, edited\n").expect("edit");
    fs::write(env.w("theirs.txt"), "theirs, edited\n").expect("edit");
    let st = status();
    assert!(st["local_scan"]["rechecked"].as_u64() >= Some(2), "{st}");
    assert_eq!(paths(&st["permission"]), ["theirs.txt"], "{st}");
    fs::write(env.w("ours/added.txt"), "new, in our directory\n").expect("write");
    fs::write(env.w("added.txt"), "new, at the top\n").expect("write");
    let st = status();
    let mut flagged = paths(&st["permission"]);
    flagged.sort_unstable();
    assert_eq!(flagged, ["added.txt", "theirs.txt"], "{st}");
    let out = as_nobody(&["check"]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.out().contains("permission: theirs.txt"), "{out}");
    // Online again, the server agrees: what was allowed is pushed, the rest is refused and
    // kept as permission conflicts, never lost.
    let out = as_nobody(&["connect"]);
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(
        fs::read_to_string(env.r("ours/mine.txt")).expect("pushed"),
        "mine, edited\n"
    );
    assert_eq!(
        fs::read_to_string(env.r("theirs.txt")).expect("kept"),
        "t\n"
    );
    let out = as_nobody(&["conflicts", "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut refused = paths(&c);
    refused.sort_unstable();
    assert_eq!(refused, ["added.txt", "theirs.txt"], "{c}");
    assert_eq!(
        fs::read_to_string(env.w("theirs.txt")).expect("local kept"),
        "theirs, edited\n"
    );
}

impl World {
    /// Like [`World::new`], on a share mounted as `options` say.
    fn with_share(share: SshfsRemote, files: &[(&str, &[u8])]) -> World {
        for (rel, body) in files {
            let p = share.served().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, body).expect("write");
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        fs::create_dir(&home).expect("mkdir");
        let w = World {
            ws: tmp.path().join("ws"),
            hook_log: tmp.path().join("hook.log"),
            share,
            home,
            _tmp: tmp,
        };
        let mnt = w.share.mnt().to_str().expect("utf-8").to_string();
        let out = w.run_in(
            w._tmp.path(),
            &[
                "clone",
                &mnt,
                w.ws.to_str().expect("utf-8"),
                "--timeout",
                "3",
            ],
            &[],
        );
        assert!(out.status.success(), "clone: {out:?}");
        w
    }
}

/// With sshfs's default options a frozen server (SIGSTOP: TCP stays up, nothing answers)
/// makes every call on the mount hang for as long as the freeze lasts, and the calling thread
/// cannot be killed. cachesync's remote calls run in a helper process, so the command the
/// user waits for still gives up after its timeout (3 s here) and exits.
#[test]
fn a_frozen_server_under_default_sshfs_options_never_hangs_cachesync() {
    let share = SshfsRemote::builder().resilient(false).start();
    let mut w = World::with_share(share, &[("a.txt", b"a\n")]);
    fs::write(w.ws.join("a.txt"), "edited while the server froze\n").expect("edit");
    w.share.freeze_server();

    let started = Instant::now();
    let out = w.run(&["pull"]);
    let took = started.elapsed();
    eprintln!("pull against a frozen server (default sshfs options) gave up after {took:?}");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(took < Duration::from_secs(20), "pull took {took:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not answer"),
        "{out:?}"
    );

    // Offline, everything local still answers at once.
    let started = Instant::now();
    let st = w.json(&["status", "--json"]);
    assert_eq!(st["mode"], "disconnected", "{st}");
    eprintln!("status while frozen took {:?}", started.elapsed());

    w.share.thaw_server();
    wait_until(
        "connect succeeds after the thaw",
        Duration::from_secs(30),
        || w.run(&["connect"]).status.success(),
    );
    assert_eq!(
        fs::read_to_string(w.served("a.txt")).expect("pushed"),
        "edited while the server froze\n"
    );
}

/// The network link cut (a laptop leaving the wifi), in the middle of a push: the push stops
/// as disconnected, nothing partial is left under the real name, and once the link is back
/// `connect` completes it.
#[test]
fn the_link_cut_in_the_middle_of_a_push() {
    let share = SshfsRemote::start_in_netns();
    let mut w = World::with_share(share, &[("small.txt", b"s\n")]);
    let big: Vec<u8> = (0..16_000_000u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    fs::write(w.ws.join("big.bin"), &big).expect("write");
    let pause = w._tmp.path().join("paused");
    let mut child = common::spawn_paused(&w.ws, &w.home, &["push"], "mid-write:0", &pause);
    wait_until("the push is mid-file", Duration::from_secs(60), || {
        pause.exists()
    });
    w.share.cut_link();
    let started = Instant::now();
    fs::remove_file(&pause).expect("resume the push");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the push did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "push with the link cut gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(3));
    assert!(!w.served("big.bin").exists(), "nothing under the real name");
    assert_eq!(w.json(&["status", "--json"])["mode"], "disconnected");

    w.share.restore_link();
    wait_until(
        "connect succeeds once the link is back",
        Duration::from_secs(30),
        || w.run(&["connect"]).status.success(),
    );
    assert!(fs::read(w.served("big.bin")).expect("pushed") == big);
}

/// `events --follow` streams new events as they happen, without holding the workspace lock.
#[test]
fn events_follow_streams_new_events() {
    use std::io::BufRead;
    let w = World::new(&[("a.txt", b"a\n")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachesync"))
        .args(["events", "--follow", "--json"])
        .current_dir(&w.ws)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &w.home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events --follow");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Other commands run while it follows.
    assert_eq!(w.code(&["disconnect"]), 0);
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the disconnection is streamed");
    assert_eq!(w.code(&["connect", "--no-sync"]), 0);
    let second = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the reconnection is streamed");
    let _ = child.kill();
    let _ = child.wait();
    let first: serde_json::Value = serde_json::from_str(&first).expect("json");
    let second: serde_json::Value = serde_json::from_str(&second).expect("json");
    assert_eq!(first["kind"], "disconnected");
    assert_eq!(first["manual"], true);
    assert_eq!(second["kind"], "connected");
}

/// New files that do not fit the cache budget stay remote-only: the budget working, not an
/// error (exit 0 with a notice, one `cache-full` event); everything else is synced, and
/// raising the budget brings them in.
#[test]
fn the_cache_budget_leaves_what_does_not_fit_remote_only() {
    let env = common::Env::new();
    for i in 0..4u64 {
        let data = common::noise(i + 1, 1_000_000);
        fs::write(env.r(format!("f{i}.bin")), data).expect("write");
    }
    let r = env.clone_with(&["--budget", "6.5M"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("do not fit the cache budget"), "{r}");
    let present = (0..4)
        .filter(|i| env.w(format!("f{i}.bin")).exists())
        .count();
    assert!(present < 4, "everything was brought in despite the budget");
    let events = env.ok(&["events", "--json"]).out();
    assert_eq!(events.matches("\"cache-full\"").count(), 1, "{events}");
    // What did not fit is remote-only now: a second run has nothing to bring in, and no
    // second cache-full event.
    env.ok(&["sync"]);
    let events = env.ok(&["events", "--json"]).out();
    assert_eq!(events.matches("\"cache-full\"").count(), 1, "{events}");

    let config = env.w(".cachesync/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config).expect("config")).expect("json");
    c["budget_bytes"] = serde_json::json!(1u64 << 30);
    fs::write(&config, c.to_string()).expect("write config");
    // What did not fit stayed remote-only: listed, and brought in by get.
    let ls = env.json(0, &["ls", "--json"]);
    let remote_only = ls
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["state"] == "remote-only")
        .count();
    assert_eq!(remote_only, 4 - present, "{ls}");
    env.ok(&["sync"]);
    env.ok(&["get"]);
    for i in 0..4 {
        assert!(env.w(format!("f{i}.bin")).exists(), "f{i}.bin brought in");
    }
    env.assert_in_sync();
}

/// diff and ls answer from the cache, offline.
#[test]
fn diff_and_ls_work_offline() {
    let env = common::Env::with_remote(&[("notes.txt", "one\ntwo\nthree\n"), ("gone.txt", "g\n")]);
    env.clone_ws();
    env.ok(&["disconnect"]);
    env.put_local("notes.txt", "one\n2\nthree\n");
    env.put_local("new.txt", "fresh\n");
    fs::remove_file(env.w("gone.txt")).expect("rm");
    let d = env.ok(&["diff"]).out();
    assert!(d.contains("--- a/notes.txt\n+++ b/notes.txt\n"), "{d}");
    assert!(d.contains("-two\n+2\n"), "{d}");
    assert!(d.contains("+++ b/new.txt") && d.contains("+fresh"), "{d}");
    assert!(d.contains("deleted file mode") && d.contains("-g\n"), "{d}");
    let only = env.ok(&["diff", "new.txt"]).out();
    assert!(!only.contains("notes.txt"), "{only}");
    let ls = env.json(0, &["ls", "--json"]);
    let state = |p: &str| {
        ls.as_array()
            .expect("entries")
            .iter()
            .find(|e| e["path"] == p)
            .map(|e| e["state"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(state("notes.txt").as_deref(), Some("modified"), "{ls}");
    assert_eq!(state("new.txt").as_deref(), Some("provisional"), "{ls}");
    assert_eq!(state("gone.txt").as_deref(), Some("deleted"), "{ls}");
}

/// prefetch as cron runs it (no terminal, a minimal PATH): silent when all is well, and
/// silent with exit 3 when the server is down (the switch is recorded as an event).
#[test]
fn prefetch_from_cron_over_sshfs_and_with_the_remote_down() {
    let mut w = World::new(&[("a.txt", b"a\n"), ("docs/b.txt", b"b\n")]);
    // On the server, a new file arrives.
    fs::write(w.served("docs/new.txt"), "new on the server\n").expect("write");
    let cron = |w: &World| {
        Command::new(env!("CARGO_BIN_EXE_cachesync"))
            .args(["prefetch", "--quiet"])
            .current_dir(&w.ws)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &w.home)
            .stdin(Stdio::null())
            .output()
            .expect("prefetch runs")
    };
    let out = cron(&w);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "silent: {out:?}"
    );
    // The mount may show it only once its attribute cache expires: run prefetch until then.
    wait_until(
        "prefetch brings the new file",
        Duration::from_secs(20),
        || cron(&w).status.success() && w.ws.join("docs/new.txt").exists(),
    );
    assert_eq!(
        fs::read_to_string(w.ws.join("docs/new.txt")).expect("fetched"),
        "new on the server\n"
    );
    w.share.kill_server();
    let out = cron(&w);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "silent: {out:?}"
    );
    assert_eq!(kinds(&w.events()), ["disconnected"]);
}
