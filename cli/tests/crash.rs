//! Crash safety through the binary: a sync killed (SIGKILL, via the `CACHESYNC_FAILPOINT`
//! hook) at each point of its plan leaves no partial file under a real name, the next run
//! completes the work, `fsck` is clean and nothing is lost.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

struct Setup {
    _tmp: tempfile::TempDir,
    remote: PathBuf,
    ws: PathBuf,
}

fn cachesync(dir: &Path, args: &[&str], failpoint: Option<&str>) -> Output {
    match failpoint {
        Some(p) => common::cachesync(dir, args, &[("CACHESYNC_FAILPOINT", p)]),
        None => common::cachesync(dir, args, &[]),
    }
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cachesync(dir, args, None);
    assert!(
        out.status.success(),
        "cachesync {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const BIG_LEN: usize = 3_000_000;

fn big_content() -> Vec<u8> {
    (0..BIG_LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A remote with a few files, a clone, then changes on both sides: a sync has a plan of
/// several steps in both directions (writes, a rename, a removal, a mkdir).
fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    let ws = tmp.path().join("ws");
    fs::create_dir_all(remote.join("docs")).expect("mkdir");
    for (name, body) in [
        ("a.txt", "alpha\n"),
        ("b.txt", "bravo\n"),
        ("c.txt", "charlie\n"),
        ("docs/d.md", "delta\n"),
        ("docs/e.md", "echo\n"),
    ] {
        fs::write(remote.join(name), body).expect("write");
    }
    let big = big_content();
    fs::write(remote.join("big.bin"), &big).expect("write big");
    ok(
        tmp.path(),
        &[
            "clone",
            remote.to_str().expect("utf-8"),
            ws.to_str().expect("utf-8"),
        ],
    );
    // Local: edit, add a directory with a file, rename, delete, grow the big file.
    fs::write(ws.join("a.txt"), "alpha, edited locally\n").expect("edit");
    fs::create_dir(ws.join("new")).expect("mkdir");
    fs::write(ws.join("new/n.txt"), "november\n").expect("write");
    fs::rename(ws.join("b.txt"), ws.join("b-renamed.txt")).expect("rename");
    fs::remove_file(ws.join("docs/e.md")).expect("rm");
    let mut big2 = big;
    big2.extend_from_slice(b"appended locally");
    fs::write(ws.join("big.bin"), &big2).expect("write big");
    // Remote: an edit and a new file.
    fs::write(remote.join("c.txt"), "charlie, edited on the server\n").expect("edit");
    fs::write(remote.join("docs/f.md"), "foxtrot\n").expect("write");
    Setup {
        _tmp: tmp,
        remote,
        ws,
    }
}

/// Every regular file under `root` (relative path → bytes), cachesync's own files aside.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".cachesync" || name == ".cachesync-remote" {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

const EXPECTED: [&str; 7] = [
    "a.txt",
    "b-renamed.txt",
    "big.bin",
    "c.txt",
    "docs/d.md",
    "docs/f.md",
    "new/n.txt",
];

fn crash_at(point: &str) {
    crash_at_with(point, true);
}

/// [`crash_at`]; `journalled`: whether the run is killed with its operation journalled
/// (the next run then says it recovered it), not while it still reads.
fn crash_at_with(point: &str, journalled: bool) {
    let s = setup();
    let plan: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["sync", "--dry-run", "--json"])).expect("json");
    let n = plan["steps"].as_array().expect("steps").len();
    assert!(
        n >= 7,
        "the plan should have several steps, has {n}: {plan}"
    );

    let killed = cachesync(&s.ws, &["sync"], Some(point));
    assert_eq!(
        killed.status.signal(),
        Some(9),
        "sync was not killed at {point}: {killed:?}"
    );

    // No partial file under a real name: every remote file holds its old or its new content.
    let local_big_len = BIG_LEN + b"appended locally".len();
    for (rel, data) in files(&s.remote) {
        if rel.contains(".cachesync-tmp.") {
            continue; // a temporary, cleaned up by the next run
        }
        match rel.as_str() {
            "a.txt" => assert!(
                data == b"alpha\n" || data == b"alpha, edited locally\n",
                "a.txt is partial: {data:?}"
            ),
            "big.bin" => assert!(
                data.len() == BIG_LEN || data.len() == local_big_len,
                "big.bin is partial: {} bytes",
                data.len()
            ),
            _ => {}
        }
    }

    // The next run completes the work.
    let out = ok(&s.ws, &["sync"]);
    assert!(
        out.contains("recovered") == journalled,
        "recovered (expected {journalled}): {out}"
    );
    let remote_files = files(&s.remote);
    let local_files = files(&s.ws);
    assert!(
        remote_files == local_files,
        "sides differ after recovery from {point}"
    );
    let names: Vec<&str> = remote_files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, EXPECTED, "after {point}");
    let a = fs::read_to_string(s.remote.join("a.txt")).expect("read");
    assert_eq!(a, "alpha, edited locally\n");
    let c = fs::read_to_string(s.ws.join("c.txt")).expect("read");
    assert_eq!(c, "charlie, edited on the server\n");
    let big = fs::read(s.remote.join("big.bin")).expect("read");
    assert!(big.ends_with(b"appended locally"));

    // fsck clean, a no-op second sync, and the journal tells the story.
    let fsck: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["fsck", "--json"])).expect("json");
    assert_eq!(fsck["clean"], true, "{fsck}");
    let again: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["sync", "--json"])).expect("json");
    assert_eq!(
        again["steps"].as_array().expect("steps").len(),
        0,
        "{again}"
    );
    let log: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["log", "--json"])).expect("json");
    let states: Vec<&str> = log
        .as_array()
        .expect("ops")
        .iter()
        .filter_map(|o| o["state"].as_str())
        .collect();
    assert_eq!(states.contains(&"abandoned"), journalled, "{states:?}");
}

#[test]
fn killed_before_the_first_step() {
    crash_at("before-step:0");
}

#[test]
fn killed_with_a_temporary_written_but_not_renamed() {
    // Every write step of the plan that renames a temporary into place, in both
    // directions: all but the new file from the server (docs/f.md), put in place as it
    // is read (see the next test).
    let s = setup();
    let plan: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["sync", "--dry-run", "--json"])).expect("json");
    let steps = plan["steps"].as_array().expect("steps");
    let landed = |step: &serde_json::Value| step["side"] == "local" && step["expect"] == "absent";
    assert!(
        steps
            .iter()
            .any(|step| landed(step) && step["path"] == "docs/f.md"),
        "{plan}"
    );
    let writes: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step["op"] == "write" && !landed(step))
        .map(|(i, _)| i)
        .collect();
    assert!(writes.len() >= 3, "{plan}");
    for i in writes {
        crash_at(&format!("before-rename:{i}"));
    }
}

#[test]
fn killed_with_a_new_file_put_in_place_as_it_was_read() {
    // Killed while it still reads: nothing journalled, the file from the server in place
    // and in the run's log, which the next run finds: it removes the file, then reads and
    // puts it in place again.
    crash_at_with("landed", false);
}

#[test]
fn killed_after_some_steps() {
    crash_at("after-step:2");
    crash_at("after-step:5");
}

#[test]
fn killed_before_the_commit() {
    crash_at("before-commit");
}

#[test]
fn killed_with_the_index_written_before_the_commit() {
    // The index's new entries are written ahead of the commit: a run killed between the two
    // leaves a stat cache ahead of the base, which the next run must trust no further than
    // the files it describes.
    crash_at("index-written");
}

#[test]
fn a_change_made_while_a_file_is_replaced_stays_listed_when_the_run_is_killed() {
    // The sync writes the server's c.txt over the local one by an exchange. Paused just
    // after it, the test changes what came out (the local version, now under the temporary
    // name) and removes what went in, so that putting the local version back fails: it goes
    // to lost+found instead. The run is then killed before its commit.
    let s = setup();
    let pause = s.ws.parent().expect("parent").join("paused");
    let mut run = std::process::Command::new(common::binary())
        .arg("sync")
        .current_dir(&s.ws)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CACHESYNC_PAUSE", "exchanged")
        .env("CACHESYNC_PAUSE_FILE", &pause)
        .env("CACHESYNC_FAILPOINT", "index-written")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sync starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pause.exists() {
        assert!(std::time::Instant::now() < deadline, "sync never paused");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = fs::read_dir(&s.ws)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            name.starts_with(".cachesync-tmp.") && fs::read(p).ok().as_deref() == Some(b"charlie\n")
        })
        .expect("the local c.txt under its temporary name");
    fs::write(&out, "charlie, edited here meanwhile\n").expect("edit");
    fs::remove_file(s.ws.join("c.txt")).expect("remove");
    fs::remove_file(&pause).expect("resume");
    let killed = run.wait().expect("sync ends");
    assert_eq!(killed.signal(), Some(9), "sync was not killed: {killed:?}");

    // The edit is in lost+found, and the conflicts say where, although no commit ran.
    let list: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["conflicts", "--json"])).expect("json");
    let lf = list
        .as_array()
        .expect("conflicts")
        .iter()
        .find(|c| c["path"] == "c.txt")
        .and_then(|c| c["lost_found"].as_str())
        .unwrap_or_else(|| panic!("c.txt's lost+found copy is not listed: {list}"))
        .to_owned();
    assert_eq!(
        fs::read_to_string(s.ws.join(&lf)).expect("the copy"),
        "charlie, edited here meanwhile\n"
    );
    // The next sync completes the work (it says conflicts remain: the copy is listed).
    let again = cachesync(&s.ws, &["sync"], None);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("conflicts remain"),
        "{again:?}"
    );
    assert_eq!(
        fs::read_to_string(s.ws.join("c.txt")).expect("c.txt"),
        "charlie, edited on the server\n"
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(&s.ws, &["conflicts", "--json"])).expect("json");
    assert!(
        list.as_array()
            .expect("conflicts")
            .iter()
            .any(|c| c["lost_found"].as_str() == Some(lf.as_str())),
        "{list}"
    );
}

/// `len` bytes no two 64 KiB pieces of which are alike (drawn from `seed`): every chunk
/// of it is new to a store.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = cachesync_testutils::Rng(seed);
    let mut out: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    out.truncate(len);
    out
}

#[test]
fn the_chunks_of_a_big_file_are_durable_before_anything_names_them() {
    // Past its first 64 chunks, a big file's chunks are written to the store without the
    // write-ahead log, and flushed before its file object is written; small files' chunks
    // go without the log too, their file objects held back until a flush of them. Killed
    // once the files are stored (one big file read from the share, one hashed here, and
    // small ones on both sides), and again once the remote snapshot that names them is
    // written, a run must leave no file object naming a chunk the kill lost: with 12 MB
    // each, the chunks would still be in the memtable, the file objects in the log.
    // Big and small files apart: a big file's flush would make the small files' chunks
    // durable too.
    for (point, big) in [
        ("fetched", true),
        ("fetched", false),
        ("remote-snapshot", false),
    ] {
        let s = setup();
        ok(&s.ws, &["sync"]);
        let theirs = random_bytes(12 << 20, 1);
        let ours = random_bytes(12 << 20, 2);
        if big {
            fs::write(s.remote.join("theirs.bin"), &theirs).expect("write");
            fs::write(s.ws.join("ours.bin"), &ours).expect("write");
        } else {
            fs::create_dir(s.remote.join("small")).expect("mkdir");
            for i in 0..200u64 {
                let len = 1_500 + (i as usize * 37) % 5_000;
                fs::write(
                    s.remote.join(format!("small/{i}.dat")),
                    random_bytes(len, 100 + i),
                )
                .expect("write");
            }
        }
        let killed = cachesync(&s.ws, &["sync"], Some(point));
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "not killed at {point}: {killed:?}"
        );
        every_file_object_whole(&s.ws, point);
        ok(&s.ws, &["sync"]);
        if big {
            assert!(fs::read(s.ws.join("theirs.bin")).expect("read") == theirs);
            assert!(fs::read(s.remote.join("ours.bin")).expect("read") == ours);
        }
        assert!(files(&s.ws) == files(&s.remote), "after {point}");
        let fsck: serde_json::Value =
            serde_json::from_str(&ok(&s.ws, &["fsck", "--json"])).expect("json");
        assert_eq!(fsck["clean"], true, "{fsck}");
    }
}

/// Every file object in the workspace's store, read whole (every chunk checked): fsck walks
/// from the refs only, and nothing may reach these yet.
fn every_file_object_whole(ws: &Path, point: &str) {
    use cachesync_objects::{keys, FileId, Store};
    let store = Store::open(&ws.join(".cachesync/store")).expect("open the store");
    let objects = store
        .table(keys::CF_FILES)
        .scan_prefix(b"")
        .expect("file objects");
    for (key, _) in &objects {
        let id = FileId::from_slice(key).expect("a file id");
        let mut sink = std::io::sink();
        if let Err(e) = store.read_file(id, &mut sink) {
            panic!("killed at {point}: file {}: {e}", id.short());
        }
    }
}
