//! `cachesync mount`: the workspace served as a FUSE file system, used as a program would
//! use the share, with the share there and with it gone.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cachesync_testutils::{wait_until, SshfsRemote};
use common::{binary, Env};

/// How long a mount may take to come up or go away.
const MOUNT_WAIT: Duration = Duration::from_secs(20);

/// A running `cachesync mount --foreground` and its mount point.
struct Mounted {
    child: Child,
    at: PathBuf,
}

impl Mounted {
    fn start(env: &Env, at: &Path) -> Mounted {
        Mounted::start_in(&env.ws, &env.home, at)
    }

    fn start_in(ws: &Path, home: &Path, at: &Path) -> Mounted {
        Mounted::start_with(ws, home, at, &[])
    }

    fn start_with(ws: &Path, home: &Path, at: &Path, extra: &[&str]) -> Mounted {
        let child = Command::new(binary())
            .args(["mount", "--foreground"])
            .args(extra)
            .arg(at)
            .current_dir(ws)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cachesync mount starts");
        let m = Mounted {
            child,
            at: at.to_path_buf(),
        };
        // A dead daemon's mount stays listed until the new one lazily unmounts it, and
        // the mount table and a stat read at different moments can see that entry and the
        // bare directory under it: wait for an answer from a mounted file system (a device
        // not the parent's; a dead one answers ENOTCONN), then for the table to list ours.
        wait_until("the view is mounted", MOUNT_WAIT, || {
            answers_as_a_mount(at) && mounted(at)
        });
        m
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.at.join(rel)
    }

    /// SIGTERM: the daemon unmounts and exits 0.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(start.elapsed() < MOUNT_WAIT, "the daemon did not exit");
            std::thread::park_timeout(Duration::from_millis(20));
        };
        assert!(status.success(), "the daemon exits cleanly: {status}");
        assert!(!mounted(&self.at), "the view is gone");
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.at)
            .status();
    }
}

/// True when a cachesync view is mounted at `at` (per /proc/self/mountinfo).
fn mounted(at: &Path) -> bool {
    cachesync_testutils::is_cachesync_view(at)
}

/// True when `at` answers a stat from a file system other than its parent's: something
/// live is mounted there (the directory under a mount, or a dead daemon's mount, is not).
fn answers_as_a_mount(at: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = at.parent().expect("a mount point has a parent");
    match (fs::metadata(at), fs::metadata(parent)) {
        (Ok(a), Ok(p)) => a.dev() != p.dev(),
        _ => false,
    }
}

fn xattr(path: &Path, name: &str) -> String {
    try_xattr(path, name).expect("getxattr")
}

fn try_xattr(path: &Path, name: &str) -> rustix::io::Result<String> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::getxattr(path, name, &mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// A workspace with `a.txt` materialized and `docs/*.txt` remote-only.
fn setup() -> (Env, PathBuf) {
    let env = Env::with_remote(&[
        ("a.txt", "alpha\n"),
        ("docs/c.txt", "charlie\n"),
        ("docs/d.txt", "delta\n"),
        ("docs/e.txt", "echo echo\n"),
        ("docs/f.txt", "foxtrot\n"),
    ]);
    env.clone_ws();
    env.ok(&["drop", "docs"]);
    env.ok(&["gc"]); // their content leaves the store: only the share has it
    let at = env.root().join("view");
    fs::create_dir(&at).expect("mount point");
    (env, at)
}

#[test]
fn the_view_lists_remote_only_files_and_fetches_them_when_read() {
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    let mut names: Vec<String> = fs::read_dir(m.p("docs"))
        .expect("list docs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["c.txt", "d.txt", "e.txt", "f.txt"]);
    let md = fs::metadata(m.p("docs/c.txt")).expect("stat a remote-only file");
    assert_eq!(md.len(), 8, "its listed size");
    assert!(!env.w("docs/c.txt").exists(), "nothing fetched by a stat");
    assert_eq!(
        xattr(&m.p("docs/c.txt"), "user.cachesync.state"),
        "remote-only"
    );
    assert_eq!(xattr(&m.p("a.txt"), "user.cachesync.state"), "materialized");
    assert_eq!(fs::read_to_string(m.p("a.txt")).expect("read"), "alpha\n");

    assert_eq!(
        fs::read_to_string(m.p("docs/c.txt")).expect("a remote-only file reads"),
        "charlie\n"
    );
    assert_eq!(
        xattr(&m.p("docs/c.txt"), "user.cachesync.state"),
        "materialized"
    );
    assert_eq!(
        common::read(env.w("docs/c.txt")),
        "charlie\n",
        "fetched into the workspace"
    );

    // Pinning through the attribute fetches the file (the share is there) and records the pin.
    assert_eq!(xattr(&m.p("docs/d.txt"), "user.cachesync.pinned"), "0");
    rustix::fs::setxattr(
        m.p("docs/d.txt"),
        "user.cachesync.pinned",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("pin through the view");
    assert_eq!(xattr(&m.p("docs/d.txt"), "user.cachesync.pinned"), "1");
    assert_eq!(
        common::read(env.w("docs/d.txt")),
        "delta\n",
        "a pin fetches"
    );
    let refused = rustix::fs::setxattr(
        m.p("docs/d.txt"),
        "user.cachesync.state",
        b"remote-only",
        rustix::fs::XattrFlags::empty(),
    );
    assert!(refused.is_err(), "the state is not set by hand");
    assert!(
        fs::read_dir(&at)
            .expect("list root")
            .all(|e| e.expect("entry").file_name() != ".cachesync"),
        "the workspace's own directory is not shown"
    );
    m.stop();
    env.assert_noop_sync();
}

#[test]
fn with_the_share_gone_cached_files_work_and_remote_only_ones_fail_with_enodata() {
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    let away = env.root().join("remote-away");
    fs::rename(env.r(""), &away).expect("the share goes");

    let start = Instant::now();
    let err = fs::read(m.p("docs/d.txt")).expect_err("no content offline");
    assert_eq!(errno(&err), libc::ENODATA, "EDISCONDATA's errno: {err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "at once, not after a hang"
    );
    assert!(
        fs::metadata(m.p("docs/d.txt")).is_ok(),
        "it still exists (not ENOENT)"
    );
    let partial = fs::OpenOptions::new()
        .write(true)
        .open(m.p("docs/d.txt"))
        .expect_err("a partial write needs the content");
    assert_eq!(errno(&partial), libc::ENODATA);

    assert_eq!(fs::read_to_string(m.p("a.txt")).expect("cached"), "alpha\n");
    fs::write(m.p("new.txt"), "made offline\n").expect("create offline");
    assert_eq!(
        fs::read_to_string(m.p("new.txt")).expect("reads back"),
        "made offline\n"
    );
    assert_eq!(
        xattr(&m.p("new.txt"), "user.cachesync.state"),
        "provisional"
    );

    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p("docs/e.txt"))
        .expect("O_TRUNC needs no content");
    f.write_all(b"replaced\n").expect("write");
    drop(f);
    assert_eq!(
        xattr(&m.p("docs/e.txt"), "user.cachesync.state"),
        "modified"
    );
    fs::remove_file(m.p("docs/f.txt")).expect("unlink a remote-only file offline");
    assert!(!m.p("docs/f.txt").exists());
    fs::rename(m.p("a.txt"), m.p("a2.txt")).expect("rename a cached file");
    m.stop();

    let events = fs::read_to_string(env.w(".cachesync/events.jsonl")).unwrap_or_default();
    assert!(
        events.contains("\"not-cached\""),
        "an event says so: {events}"
    );
    fs::rename(&away, env.r("")).expect("the share comes back");
    env.ok(&["sync"]);
    assert_eq!(common::read(env.r("new.txt")), "made offline\n");
    assert_eq!(common::read(env.r("docs/e.txt")), "replaced\n");
    assert!(
        !env.r("docs/f.txt").exists(),
        "the deletion reached the share"
    );
    assert_eq!(common::read(env.r("a2.txt")), "alpha\n");
    assert!(!env.r("a.txt").exists());
    assert_eq!(common::read(env.r("docs/d.txt")), "delta\n", "untouched");
}

#[test]
fn posix_calls_through_the_view_behave_as_on_a_local_disk() {
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    // Rename over an existing file replaces it.
    fs::write(m.p("x"), "x\n").expect("write");
    fs::write(m.p("y"), "y\n").expect("write");
    fs::rename(m.p("x"), m.p("y")).expect("rename over");
    assert_eq!(fs::read_to_string(m.p("y")).expect("read"), "x\n");
    assert!(!m.p("x").exists());
    // An unlinked open file stays readable through its descriptor.
    let mut open = fs::File::open(m.p("y")).expect("open");
    fs::remove_file(m.p("y")).expect("unlink while open");
    let mut s = String::new();
    open.read_to_string(&mut s).expect("read after unlink");
    assert_eq!(s, "x\n");
    drop(open);
    // O_APPEND appends.
    fs::write(m.p("log"), "1\n").expect("write");
    let mut ap = fs::OpenOptions::new()
        .append(true)
        .open(m.p("log"))
        .expect("open append");
    ap.write_all(b"2\n").expect("append");
    drop(ap);
    assert_eq!(fs::read_to_string(m.p("log")).expect("read"), "1\n2\n");
    // A sparse write leaves zeros in the hole.
    let sparse = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(m.p("sparse"))
        .expect("create");
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"end", 4096).expect("write at 4096");
    drop(sparse);
    let got = fs::read(m.p("sparse")).expect("read sparse");
    assert_eq!(got.len(), 4099);
    assert!(got[..4096].iter().all(|&b| b == 0) && &got[4096..] == b"end");
    // Directories, symlinks, hard links, modes and times.
    fs::create_dir_all(m.p("d1/d2")).expect("mkdir -p");
    std::os::unix::fs::symlink("../log", m.p("d1/link")).expect("symlink");
    assert_eq!(
        fs::read_to_string(m.p("d1/link")).expect("follow"),
        "1\n2\n"
    );
    fs::hard_link(m.p("log"), m.p("d1/hard")).expect("hard link");
    assert_eq!(fs::read_to_string(m.p("d1/hard")).expect("read"), "1\n2\n");
    common::chmod(m.p("log"), 0o640);
    assert_eq!(common::mode(env.w("log")), 0o640);
    assert_eq!(
        fs::remove_dir(m.p("docs"))
            .expect_err("remote-only files are in it")
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    fs::remove_dir(m.p("d1/d2")).expect("rmdir");
    common::mkfifo(m.p("d1/fifo"));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(env.w("d1/fifo"))
            .expect("in the workspace")
            .file_type()
    ));
    fs::remove_file(m.p("d1/fifo")).expect("unlink the fifo");
    m.stop();
    env.ok(&["sync"]);
    assert_eq!(common::read(env.r("log")), "1\n2\n");
    assert_eq!(common::read(env.r("d1/hard")), "1\n2\n");
    assert_eq!(common::mode(env.r("log")), 0o640);
    assert!(!env.r("y").exists() && !env.r("x").exists());
    assert_eq!(common::read(env.r("docs/c.txt")), "charlie\n");
}

/// What a conformance suite (pjdfstest, run by hand against the view) found wrong, kept
/// here: modes exactly as asked whatever the daemon's umask, hard links as one inode, fstat
/// of an open file with no name left, paths longer than PATH_MAX counted from the
/// workspace, and a mapped read.
#[test]
fn modes_hard_links_unlinked_open_files_deep_paths_and_mmap_behave_as_on_a_disk() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    // With the caller's umask 0, the modes asked for, set-user-ID included.
    let sh = Command::new("sh")
        .arg("-c")
        .arg("umask 0 && : > f && mkdir d && chmod 4777 f")
        .current_dir(&at)
        .status()
        .expect("sh");
    assert!(sh.success());
    assert_eq!(common::mode(m.p("f")), 0o4777);
    assert_eq!(common::mode(m.p("d")), 0o777);
    let made = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o640)
        .open(m.p("g"))
        .expect("create");
    drop(made);
    assert_eq!(common::mode(m.p("g")), 0o640 & !current_umask());

    // Hard links: one inode, its link count and mode through every name.
    fs::write(m.p("h1"), "h\n").expect("write");
    let one = fs::symlink_metadata(m.p("h1")).expect("stat");
    assert_eq!(one.nlink(), 1);
    fs::hard_link(m.p("h1"), m.p("h2")).expect("link");
    let (a, b) = (
        fs::symlink_metadata(m.p("h1")).expect("stat"),
        fs::symlink_metadata(m.p("h2")).expect("stat"),
    );
    assert_eq!(a.ino(), b.ino(), "one inode");
    assert_eq!((a.nlink(), b.nlink()), (2, 2));
    fs::set_permissions(m.p("h2"), fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(common::mode(m.p("h1")), 0o600, "the mode of both names");
    fs::remove_file(m.p("h1")).expect("unlink one name");
    assert_eq!(fs::symlink_metadata(m.p("h2")).expect("stat").nlink(), 1);

    // fstat of an open file whose last name went.
    let open = fs::File::open(m.p("h2")).expect("open");
    fs::remove_file(m.p("h2")).expect("unlink");
    assert_eq!(open.metadata().expect("fstat").nlink(), 0);
    drop(open);

    // A path whose workspace file is further than PATH_MAX from / (each call here names
    // one level, relative to the one above).
    use rustix::fs::{Mode, OFlags};
    let name = "n".repeat(250);
    let mut dir = rustix::fs::open(&at, OFlags::DIRECTORY, Mode::empty()).expect("open root");
    for _ in 0..17 {
        rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).expect("mkdir");
        dir = rustix::fs::openat(&dir, name.as_str(), OFlags::DIRECTORY, Mode::empty())
            .expect("open level");
    }
    assert!(env.ws.as_os_str().len() + 17 * 251 + 5 > 4096);
    let fd = rustix::fs::openat(
        &dir,
        "file",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .expect("create deep");
    rustix::io::write(&fd, b"deep\n").expect("write deep");
    drop(fd);
    rustix::fs::renameat(&dir, "file", &dir, "moved").expect("rename deep");
    let fd = rustix::fs::openat(&dir, "moved", OFlags::RDONLY, Mode::empty()).expect("open");
    let mut buf = [0u8; 16];
    let n = rustix::io::read(&fd, &mut buf).expect("read deep");
    assert_eq!(&buf[..n], b"deep\n");
    drop(fd);
    rustix::fs::unlinkat(&dir, "moved", rustix::fs::AtFlags::empty()).expect("unlink deep");
    drop(dir);

    // A mapped read sees the content.
    fs::write(m.p("mapped"), "mapped content\n").expect("write");
    let f = fs::File::open(m.p("mapped")).expect("open");
    #[allow(unsafe_code)]
    // SAFETY: nothing changes the file while it is mapped; the map is read and dropped here.
    let map = unsafe { memmap2::Mmap::map(&f) }.expect("mmap");
    assert_eq!(&map[..], b"mapped content\n");
    drop((map, f));
    m.stop();
    // The sync leaves the deep directories out, saying so, and syncs the rest.
    let r = env.run(["sync"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.to_string().contains("longer than the system allows"),
        "{r}"
    );
    assert_eq!(common::mode(env.r("f")), 0o4777);
    assert!(env.r("d").is_dir() && !env.r("h2").exists());
}

/// The kernel keeps what it cached of a file from one open to the next only while the file
/// is unchanged: a same-size rewrite behind the view's back is read at the next open.
#[test]
fn a_file_rewritten_behind_the_views_back_is_read_anew_at_the_next_open() {
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    for _ in 0..2 {
        assert_eq!(fs::read_to_string(m.p("a.txt")).expect("read"), "alpha\n");
    }
    fs::write(env.w("a.txt"), "ALPHA\n").expect("rewrite, same size");
    assert_eq!(fs::read_to_string(m.p("a.txt")).expect("read"), "ALPHA\n");
    fs::write(m.p("a.txt"), "beta!\n").expect("write through the view");
    assert_eq!(fs::read_to_string(m.p("a.txt")).expect("read"), "beta!\n");
    m.stop();
}

/// The kernel keeps the view's answers long (a warm `stat` of a big tree never reaches the
/// view), and forgets each one that a change behind the view's back or a command makes
/// wrong: the change shows through the view at once.
#[test]
fn changes_behind_the_views_back_show_through_it_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    let seen = |p: &str| fs::symlink_metadata(m.p(p));
    // Cached: the entry, its attributes and its directory's.
    assert_eq!(common::mode(m.p("a.txt")), 0o644);
    assert!(seen("docs/c.txt").is_ok(), "remote-only, listed");
    fs::set_permissions(env.w("a.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(env.w("new.txt"), "new\n").expect("write");
    let shows = |what: &str, f: &dyn Fn() -> bool| {
        assert!(
            cachesync_testutils::poll_until(Duration::from_secs(5), f),
            "{what} shows through the view"
        );
    };
    let listed = |name: &str| {
        fs::read_dir(&at)
            .expect("list")
            .flatten()
            .any(|e| e.file_name() == name)
    };
    assert!(listed("a.txt"), "a listing the kernel keeps");
    shows("the new mode", &|| common::mode(m.p("a.txt")) == 0o600);
    shows("the new file", &|| seen("new.txt").is_ok());
    shows("the new file, listed", &|| listed("new.txt"));
    fs::remove_file(env.w("a.txt")).expect("rm");
    shows("the removal", &|| seen("a.txt").is_err());
    shows("the removal, listed", &|| !listed("a.txt"));
    // A command brings a remote-only file here: it shows with its content's size.
    env.ok(&["get", "docs/c.txt"]);
    assert_eq!(
        fs::read_to_string(m.p("docs/c.txt")).expect("read"),
        "charlie\n"
    );
    // A command makes a file remote-only: it is still listed, not removed.
    env.ok(&["sync"]);
    env.ok(&["drop", "new.txt"]);
    // From the moment `drop` returns, not a moment later: the command waits until the view
    // knows it is done, and the view's next answer follows the store as `drop` left it (a
    // lookup right after it once found nothing, in a loaded `make test`).
    assert_eq!(
        try_xattr(&m.p("new.txt"), "user.cachesync.state").as_deref(),
        Ok("remote-only"),
        "the dropped file, right after drop"
    );
    m.stop();
}

/// A directory made through the view stays a working directory: the kernel is not told to
/// forget a name that still stands (it would cut the directory off from its path).
#[test]
fn a_directory_made_through_the_view_stays_a_working_directory() {
    use std::io::BufRead;
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    fs::create_dir(m.p("made")).expect("mkdir");
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg("read go && /bin/pwd")
        .current_dir(m.p("made"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh in the new directory");
    // A change to the directory itself, while it is sh's working directory.
    common::chmod(m.p("made"), 0o750);
    // Changes reach the kernel in order: once a later one shows, those before have been
    // handled.
    fs::write(env.w("a.txt"), "a later change\n").expect("write");
    assert!(
        cachesync_testutils::poll_until(Duration::from_secs(5), || {
            fs::metadata(m.p("a.txt")).is_ok_and(|md| md.len() == 15)
        }),
        "the later change shows"
    );
    sh.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let out = sh.wait_with_output().expect("sh ends");
    assert!(
        out.status.success(),
        "pwd in the new directory: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pwd = out.stdout.lines().next().expect("a line").expect("utf-8");
    assert_eq!(Path::new(&pwd), m.p("made"));
    m.stop();
}

/// This process's umask (read from /proc: setting it to read it would race other tests).
fn current_umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask line");
    u32::from_str_radix(line.trim(), 8).expect("octal")
}

#[test]
fn a_killed_daemon_leaves_nothing_lost_and_mount_recovers_the_mount_point() {
    let (env, at) = setup();
    let mut m = Mounted::start(&env, &at);
    fs::write(m.p("kept.txt"), "written before the kill\n").expect("write");
    m.child.kill().expect("kill -9");
    m.child.wait().expect("reap");
    let stale = fs::metadata(&at).expect_err("a dead daemon's mount");
    assert_eq!(errno(&stale), libc::ENOTCONN);
    let again = Mounted::start(&env, &at);
    assert_eq!(
        fs::read_to_string(again.p("kept.txt")).expect("still there"),
        "written before the kill\n"
    );
    again.stop();
    drop(m);
    env.ok(&["sync"]);
    assert_eq!(common::read(env.r("kept.txt")), "written before the kill\n");
}

#[test]
fn mount_refuses_a_mount_point_inside_the_workspace_and_runs_in_the_background() {
    let (env, at) = setup();
    fs::create_dir(env.w("inside")).expect("mkdir");
    let r = env.run(["mount", "inside"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("outside the workspace"), "{r}");

    let r = env.run(["mount".as_ref(), at.as_os_str()]);
    assert_eq!(r.code, 0, "{r}");
    assert!(mounted(&at));
    assert_eq!(
        fs::read_to_string(at.join("a.txt")).expect("read"),
        "alpha\n"
    );
    let r = env.run(["umount".as_ref(), at.as_os_str()]);
    assert_eq!(r.code, 0, "{r}");
    assert!(!mounted(&at));
    // umount returns once the daemon has let go: the workspace is free at once, for a
    // command and for another mount.
    env.ok(&["status"]);
    let r = env.run(["mount".as_ref(), at.as_os_str()]);
    assert_eq!(r.code, 0, "mounted again at once: {r}");
    let r = env.run(["umount".as_ref(), at.as_os_str()]);
    assert_eq!(r.code, 0, "{r}");
    env.ok(&["status"]);
    let r = env.run(["umount".as_ref(), at.as_os_str()]);
    assert_ne!(r.code, 0, "nothing mounted there: {r}");
}

#[test]
fn a_conflicts_variants_are_files_and_writing_resolved_settles_it() {
    let env = Env::with_remote(&[("notes/c.txt", "one\n")]);
    env.clone_ws();
    common::write_changed(&env.w("notes/c.txt"), b"mine\n");
    common::write_changed(&env.r("notes/c.txt"), b"theirs\n");
    let r = env.run(["sync"]);
    assert_eq!(r.code, 7, "a conflict: {r}");
    let at = env.root().join("view");
    fs::create_dir(&at).expect("mount point");
    let m = Mounted::start(&env, &at);
    let v = |side: &str| m.p(&format!(".cachesync-variants/{side}/notes/c.txt"));
    assert_eq!(fs::read_to_string(v("server")).expect("server"), "theirs\n");
    assert_eq!(fs::read_to_string(v("client")).expect("client"), "mine\n");
    assert_eq!(fs::read_to_string(v("base")).expect("base"), "one\n");
    assert_eq!(
        xattr(&m.p("notes/c.txt"), "user.cachesync.state"),
        "conflicted"
    );
    let err = fs::write(v("server"), "no").expect_err("variants are read-only");
    assert_eq!(errno(&err), libc::EROFS);
    assert!(fs::read_dir(m.p(".cachesync-variants/server/notes"))
        .expect("list")
        .any(|e| e.expect("entry").file_name() == "c.txt"));

    fs::write(v("resolved"), "both\n").expect("writing resolved settles the conflict");
    assert_eq!(
        fs::read_to_string(m.p("notes/c.txt")).expect("read"),
        "both\n"
    );
    assert_ne!(
        xattr(&m.p("notes/c.txt"), "user.cachesync.state"),
        "conflicted"
    );
    assert!(!v("server").exists(), "no open conflict there any more");
    m.stop();
    env.ok(&["sync"]);
    assert_eq!(common::read(env.r("notes/c.txt")), "both\n");
    assert!(
        !env.w(".cachesync-variants").exists(),
        "the variants never reach the workspace"
    );
    assert!(!env.r(".cachesync-variants").exists(), "nor the share");
}

#[test]
fn real_programs_work_through_the_view_with_the_share_gone() {
    let env = Env::with_remote(&[
        (
            "proj/hello.c",
            "#include <stdio.h>\nint main(void) { puts(\"hello from the view\"); return 0; }\n",
        ),
        ("proj/Makefile", "hello: hello.c\n\tcc -o hello hello.c\n"),
    ]);
    env.clone_ws();
    let at = env.root().join("view");
    fs::create_dir(&at).expect("mount point");
    let m = Mounted::start(&env, &at);
    let away = env.root().join("remote-away");
    fs::rename(env.r(""), &away).expect("the share goes");

    let run = |dir: &Path, prog: &str, args: &[&str]| {
        let out = Command::new(prog)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &env.home)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("the program runs");
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let proj = m.p("proj");
    // make and cc write, rename and exec files; git links objects into place, renames its
    // lock files and mmaps its index (a read through a closed descriptor's mapping).
    run(&proj, "make", &[]);
    assert_eq!(run(&proj, "./hello", &[]), "hello from the view\n");
    run(&proj, "git", &["init", "-q"]);
    run(&proj, "git", &["add", "-A"]);
    run(&proj, "git", &["commit", "-q", "-m", "offline"]);
    assert!(run(&proj, "git", &["log", "--oneline"]).contains("offline"));
    assert_eq!(run(&proj, "git", &["status", "--porcelain"]), "");
    m.stop();

    fs::rename(&away, env.r("")).expect("the share comes back");
    env.ok(&["sync"]);
    assert!(
        env.r("proj/hello").is_file(),
        "the build's output reached the share"
    );
    assert!(env.r("proj/.git/HEAD").is_file(), "and the repository");
    let out = Command::new("git")
        .args(["log", "--oneline"])
        .current_dir(env.r("proj"))
        .env("HOME", &env.home)
        .output()
        .expect("git on the share");
    assert!(String::from_utf8_lossy(&out.stdout).contains("offline"));
}

#[test]
fn commands_work_while_the_view_runs_and_the_view_follows_what_they_did() {
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    let st = env.run(["status", "--json"]);
    assert_eq!(st.code, 0, "status beside a running view: {st}");
    // A sync run by hand while mounted: it records a conflict; the view shows its variants.
    fs::write(m.p("a.txt"), "mine\n").expect("edit through the view");
    common::write_changed(&env.r("a.txt"), b"theirs\n");
    let r = env.run(["sync"]);
    assert_eq!(r.code, 7, "a conflict: {r}");
    let server = m.p(".cachesync-variants/server/a.txt");
    wait_until("the view reads the store again", MOUNT_WAIT, || {
        server.exists()
    });
    assert_eq!(fs::read_to_string(&server).expect("server"), "theirs\n");
    // The view took the workspace back: a remote-only file is still fetched on open.
    assert_eq!(
        fs::read_to_string(m.p("docs/c.txt")).expect("fetch"),
        "charlie\n"
    );
    m.stop();
}

#[test]
fn the_view_syncs_by_itself_on_its_interval() {
    let (env, at) = setup();
    configure(&env.ws, &[("view_sync_seconds", serde_json::json!(1))]);
    let m = Mounted::start(&env, &at);
    env.put_remote("from-server.txt", "pulled by the view\n");
    fs::write(m.p("from-view.txt"), "pushed by the view\n").expect("write");
    wait_until("the view pulled and pushed", MOUNT_WAIT, || {
        env.w("from-server.txt").exists() && env.r("from-view.txt").exists()
    });
    assert_eq!(
        fs::read_to_string(m.p("from-server.txt")).expect("read"),
        "pulled by the view\n"
    );
    assert_eq!(common::read(env.r("from-view.txt")), "pushed by the view\n");
    m.stop();
}

#[test]
fn over_sshfs_with_sshd_killed_the_view_works_offline_and_syncs_when_it_is_back() {
    let mut share = SshfsRemote::start();
    let served = share.served().to_path_buf();
    fs::create_dir_all(served.join("docs")).expect("mkdir");
    fs::write(served.join("keep.txt"), "kept here\n").expect("write");
    fs::write(served.join("docs/a.txt"), "alpha\n").expect("write");
    fs::write(served.join("docs/b.txt"), "bravo\n").expect("write");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ws, home, at) = (
        tmp.path().join("ws"),
        tmp.path().join("home"),
        tmp.path().join("view"),
    );
    fs::create_dir(&home).expect("home");
    fs::create_dir(&at).expect("mount point");
    let run = |dir: &Path, args: &[&str]| {
        let out = common::cachesync(dir, args, &[("HOME", home.to_str().expect("utf-8"))]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mnt = share.mnt().to_str().expect("utf-8").to_string();
    run(
        tmp.path(),
        &["clone", &mnt, ws.to_str().expect("utf-8"), "--timeout", "3"],
    );
    run(&ws, &["drop", "docs/b.txt"]);
    run(&ws, &["gc"]);
    configure(&ws, &[("view_sync_seconds", serde_json::json!(1))]);
    let m = Mounted::start_in(&ws, &home, &at);

    share.kill_server();
    let mut names: Vec<String> = fs::read_dir(m.p("docs"))
        .expect("list offline")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a.txt", "b.txt"],
        "remote-only files are listed offline"
    );
    assert_eq!(fs::metadata(m.p("docs/b.txt")).expect("stat").len(), 6);
    assert_eq!(
        fs::read_to_string(m.p("keep.txt")).expect("cached"),
        "kept here\n"
    );
    let start = Instant::now();
    let err = fs::read(m.p("docs/b.txt")).expect_err("not cached, share gone");
    assert_eq!(errno(&err), libc::ENODATA, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "within the timeout"
    );
    fs::write(m.p("new.txt"), "written offline\n").expect("write offline");
    assert_eq!(
        xattr(&m.p("new.txt"), "user.cachesync.state"),
        "provisional"
    );

    share.restart_server();
    wait_until("the view synced by itself", Duration::from_secs(60), || {
        served.join("new.txt").is_file()
            && xattr(&m.p("new.txt"), "user.cachesync.state") == "materialized"
    });
    assert_eq!(
        fs::read_to_string(served.join("new.txt")).expect("pushed"),
        "written offline\n"
    );
    assert_eq!(
        fs::read_to_string(m.p("docs/b.txt")).expect("fetched now"),
        "bravo\n"
    );
    m.stop();
}

#[test]
fn with_allow_other_a_file_another_user_creates_is_theirs() {
    let (env, at) = setup();
    // The test's directories must be reachable by that user.
    common::chmod(env.root(), 0o755);
    let m = Mounted::start_with(&env.ws, &env.home, &at, &["--allow-other"]);
    fs::create_dir(m.p("shared")).expect("mkdir");
    common::chmod(m.p("shared"), 0o777);
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .status()
            .expect("setpriv runs")
    };
    let made = m.p("shared/theirs.txt");
    assert!(as_nobody(&["sh", "-c", &format!("echo hi > '{}'", made.display())]).success());
    let md = fs::metadata(&made).expect("made");
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&md),
            std::os::unix::fs::MetadataExt::gid(&md)
        ),
        (65534, 65534)
    );
    let mine = m.p("mine.txt");
    fs::write(&mine, "root's\n").expect("write");
    common::chmod(&mine, 0o600);
    assert!(
        !as_nobody(&["cat", mine.to_str().expect("utf-8")]).success(),
        "the kernel checks permissions"
    );
    m.stop();
}

#[test]
fn commands_run_inside_the_view_work_on_the_workspace_behind_it() {
    let (env, at) = setup();
    let m = Mounted::start(&env, &at);
    let r = env.run_in(&m.p("docs"), ["get", "c.txt"]);
    assert_eq!(r.code, 0, "a relative path inside the view: {r}");
    assert_eq!(common::read(env.w("docs/c.txt")), "charlie\n");
    let st = env.run_in(&at, ["status", "--json"]);
    assert_eq!(st.code, 0, "{st}");
    assert!(
        fs::read_dir(&at)
            .expect("list")
            .all(|e| e.expect("entry").file_name() != ".cachesync-view"),
        "the marker is found by name, not listed"
    );
    m.stop();
}

/// Sets keys of the workspace's config.
fn configure(ws: &Path, set: &[(&str, serde_json::Value)]) {
    let config = ws.join(".cachesync/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config).expect("config")).expect("json");
    for (k, v) in set {
        c[*k] = v.clone();
    }
    fs::write(&config, c.to_string()).expect("write config");
}

#[test]
fn a_fetch_the_budget_cannot_hold_fails_with_enospc_unless_culling_makes_room() {
    let env = Env::new();
    env.put_remote("one.bin", common::noise(1, 50_000));
    env.put_remote("two.bin", common::noise(2, 50_000));
    env.clone_ws();
    env.ok(&["drop", "one.bin", "two.bin"]);
    env.ok(&["gc"]);
    let used = env.json(0, &["status", "--json"])["cache"]["used"]
        .as_u64()
        .expect("cache.used");
    let budget = serde_json::json!(used + 120_000);
    configure(
        &env.ws,
        &[
            ("budget_bytes", budget),
            ("culling", serde_json::json!(false)),
        ],
    );
    let at = env.root().join("view");
    fs::create_dir(&at).expect("mount point");

    let m = Mounted::start(&env, &at);
    assert_eq!(fs::read(m.p("one.bin")).expect("fits").len(), 50_000);
    let err = fs::read(m.p("two.bin")).expect_err("does not fit, culling off");
    assert_eq!(errno(&err), libc::ENOSPC, "EDISCONFULL's errno: {err}");
    m.stop();
    let events = fs::read_to_string(env.w(".cachesync/events.jsonl")).unwrap_or_default();
    assert!(events.contains("\"cache-full\""), "{events}");

    configure(&env.ws, &[("culling", serde_json::json!(true))]);
    let m = Mounted::start(&env, &at);
    assert_eq!(fs::read(m.p("two.bin")).expect("room made").len(), 50_000);
    assert_eq!(
        xattr(&m.p("one.bin"), "user.cachesync.state"),
        "remote-only",
        "culled"
    );
    m.stop();
}

/// A small deterministic generator for the random changes below.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// One random change to the workspace, through the view (`side` 0) or behind its back.
fn random_change(rng: &mut Lcg, env: &Env, at: &Path, outside: &Path, n: usize) {
    use std::os::unix::fs::PermissionsExt;
    let on_view = rng.below(2) == 0;
    let base = if on_view { at } else { env.ws.as_path() };
    let now = common::tree(&env.ws);
    let files: Vec<&Vec<u8>> = now
        .iter()
        .filter(|(_, v)| matches!(v, common::Node::File(..)))
        .map(|(k, _)| k)
        .collect();
    let mut dirs: Vec<PathBuf> = vec![PathBuf::new()];
    dirs.extend(
        now.iter()
            .filter(|(_, v)| matches!(v, common::Node::Dir(_)))
            .map(|(k, _)| PathBuf::from(String::from_utf8_lossy(k).into_owned())),
    );
    let pick_dir = |rng: &mut Lcg| dirs[rng.below(dirs.len())].clone();
    let pick_file = |rng: &mut Lcg| {
        (!files.is_empty()).then(|| {
            PathBuf::from(String::from_utf8_lossy(files[rng.below(files.len())]).into_owned())
        })
    };
    let op = rng.below(12);
    match op {
        0 => fs::write(
            base.join(pick_dir(rng)).join(format!("f{n}")),
            format!("new {n}\n"),
        )
        .expect("create"),
        1 => {
            if let Some(f) = pick_file(rng) {
                // Same length as before sometimes: only the content says it changed.
                let old = fs::read(base.join(&f)).expect("read");
                let mut body = vec![b'x'; old.len()];
                if rng.below(2) == 0 {
                    body.extend_from_slice(format!("{n}\n").as_bytes());
                }
                fs::write(base.join(&f), body).expect("overwrite");
            }
        }
        2 => {
            if let Some(f) = pick_file(rng) {
                fs::remove_file(base.join(f)).expect("rm");
            }
        }
        3 => fs::create_dir(base.join(pick_dir(rng)).join(format!("d{n}"))).expect("mkdir"),
        4 => {
            if let Some(f) = pick_file(rng) {
                let to = pick_dir(rng).join(format!("r{n}"));
                fs::rename(base.join(f), base.join(to)).expect("rename file");
            }
        }
        5 => {
            let d = pick_dir(rng);
            if !d.as_os_str().is_empty() {
                fs::rename(base.join(d), base.join(format!("m{n}"))).expect("rename dir");
            }
        }
        6 => {
            if let Some(f) = pick_file(rng) {
                let mode = if rng.below(2) == 0 { 0o600 } else { 0o644 };
                fs::set_permissions(base.join(f), fs::Permissions::from_mode(mode)).expect("chmod");
            }
        }
        7 => {
            // A tree made elsewhere and moved in whole (behind the view's back: a move
            // into a FUSE mount from outside is a copy).
            let made = outside.join(format!("t{n}"));
            fs::create_dir_all(made.join("in/deeper")).expect("mkdir outside");
            fs::write(made.join("in/deeper/leaf"), format!("leaf {n}\n")).expect("write");
            fs::write(made.join("top"), format!("top {n}\n")).expect("write");
            fs::rename(&made, env.ws.join(pick_dir(rng)).join(format!("t{n}"))).expect("move in");
        }
        8 => {
            let d = pick_dir(rng);
            if !d.as_os_str().is_empty() {
                fs::remove_dir_all(base.join(d)).expect("rm -r");
            }
        }
        9 => {
            let (a, b) = (pick_dir(rng), pick_dir(rng));
            exchange(&base.join(&a), &base.join(&b), &a, &b);
        }
        10 => {
            if let Some(f) = pick_file(rng) {
                let second = pick_dir(rng).join(format!("h{n}"));
                link_and_append(&base.join(&f), &base.join(second), n);
            }
        }
        _ => std::os::unix::fs::symlink(
            format!("target{n}"),
            base.join(pick_dir(rng)).join(format!("l{n}")),
        )
        .expect("symlink"),
    }
}

/// Two directories swap places (RENAME_EXCHANGE; `a` and `b` relative, unless one holds
/// the other or either is the root): both moves are reported before either directory is
/// seen where it went.
fn exchange(abs_a: &Path, abs_b: &Path, a: &Path, b: &Path) {
    let unrelated = !a.starts_with(b) && !b.starts_with(a);
    if a.as_os_str().is_empty() || b.as_os_str().is_empty() || !unrelated {
        return;
    }
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        abs_a,
        rustix::fs::CWD,
        abs_b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .expect("exchange");
}

/// A second name for `file`, then a write through the first: the second name's directory
/// hears nothing of it.
fn link_and_append(file: &Path, second: &Path, n: usize) {
    fs::hard_link(file, second)
        .unwrap_or_else(|e| panic!("link {} {}: {e}", file.display(), second.display()));
    let mut w = fs::OpenOptions::new()
        .append(true)
        .open(file)
        .expect("open");
    w.write_all(format!("more {n}\n").as_bytes())
        .expect("append");
}

/// Status and sync of a mounted workspace look again only at what changed (the view watches
/// the workspace directory), and miss nothing: random changes through the view and behind
/// its back, then a sync, in rounds; both sides must be equal after each, and a walk of the
/// whole tree once the view is gone finds nothing left to push.
#[test]
fn a_mounted_workspace_is_scanned_from_what_changed_and_nothing_is_missed() {
    let env = Env::with_remote(&[
        ("a.txt", "alpha\n"),
        ("d/b.txt", "bravo\n"),
        ("d/e/c.txt", "charlie\n"),
    ]);
    env.clone_ws();
    let at = env.root().join("view");
    let outside = env.root().join("outside");
    fs::create_dir(&at).expect("mount point");
    fs::create_dir(&outside).expect("outside");
    let m = Mounted::start(&env, &at);
    let scan = |env: &Env| env.json(0, &["status", "--json"])["local_scan"].clone();
    scan(&env); // the first command walks the whole tree
    let quiet = scan(&env);
    assert_eq!(quiet["monitored"], true, "{quiet}");
    assert_eq!(quiet["rechecked"], 0, "nothing changed: {quiet}");
    let mut rng = Lcg(std::env::var("CS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14));
    let mut n = 0;
    for round in 0..8 {
        for _ in 0..12 {
            n += 1;
            random_change(&mut rng, &env, &at, &outside, n);
        }
        let s = scan(&env);
        assert_eq!(s["monitored"], true, "round {round}: {s}");
        // Random removals can pass the mass-deletion guard's share.
        env.ok(&["sync", "--force"]);
        env.assert_in_sync();
    }
    // A hand-over no command consumed, left behind by a view that is gone, is no start
    // for a scan: what changed after it would be missed.
    {
        use std::io::BufRead;
        let mut conn = std::os::unix::net::UnixStream::connect(env.w(".cachesync/view.sock"))
            .expect("the view's socket");
        conn.write_all(b"release\n").expect("ask");
        let mut answer = String::new();
        std::io::BufReader::new(&conn)
            .read_line(&mut answer)
            .expect("answer");
        assert!(answer.starts_with("released "), "{answer}");
    }
    assert!(env.w(".cachesync/fsmonitor").exists(), "left unconsumed");
    m.stop();
    fs::write(
        env.w("after-the-view.txt"),
        "written once the view was gone\n",
    )
    .expect("write");
    let full = env.json(0, &["status", "--json"]);
    assert_eq!(full["local_scan"]["monitored"], false, "{full}");
    assert_eq!(
        common::paths_of(&full["local_changes"]),
        vec!["after-the-view.txt".to_string()],
        "{full}"
    );
}
