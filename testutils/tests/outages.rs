//! Outages that hang rather than fail: a frozen server (TCP up, nothing answers) and a cut
//! link (network namespaces), with sshfs's resilient options (EIO within seconds) and with its
//! defaults (calls hang until the outage ends). Every call that may hang runs in a child
//! process (`cat`) that the test polls with a bound: a call stuck in FUSE cannot be killed,
//! and the test's own thread must never be the one stuck.
//!
//! Each test prints what it measured (run with `--nocapture` to see it).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cachesync_testutils::{is_mount_point, poll_until, wait_until, SshfsRemote};

/// Generous bound on an outage showing (EIO) or ending (reads work again): the environment
/// measured 1–4 s.
const BOUND: Duration = Duration::from_secs(10);
/// How long a read must stay unfinished to count as hanging.
const HANGS: Duration = Duration::from_secs(2);
/// What the tests read through the mount.
const DATA: &[u8] = b"served data\n";

/// `cat <path>` in a child process: a read through the mount that may hang without taking
/// the test with it.
struct Cat {
    child: Child,
    started: Instant,
}

/// How a [`Cat`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// It printed this.
    Ok(Vec<u8>),
    /// It failed with EIO.
    Eio,
    /// It failed otherwise: its stderr.
    Failed(String),
}

impl Cat {
    fn spawn(path: &Path) -> Cat {
        let child = Command::new("cat")
            .arg(path)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cat");
        Cat {
            child,
            started: Instant::now(),
        }
    }

    /// Polls until cat exits, at most `bound`: its status, or None if it still runs.
    fn exited_within(&mut self, bound: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(bound, || {
            status = self.child.try_wait().expect("poll cat");
            status.is_some()
        });
        status
    }

    /// What cat read, and how long it took; call once it has exited. (Its output is tiny, so
    /// the pipes never filled while it ran.)
    fn result(self) -> (Read, Duration) {
        let took = self.started.elapsed();
        let out = self.child.wait_with_output().expect("collect cat's output");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let read = if out.status.success() {
            Read::Ok(out.stdout)
        } else if stderr.contains("Input/output error") {
            Read::Eio
        } else {
            Read::Failed(stderr)
        };
        (read, took)
    }

    /// Reads `path` in a child that must finish within what is left of `deadline`.
    fn read_by(path: &Path, deadline: Instant, what: &str) -> (Read, Duration) {
        let mut cat = Cat::spawn(path);
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            cat.exited_within(left).is_some(),
            "{what}: a read through the mount did not finish within the bound"
        );
        cat.result()
    }
}

/// Reads in a child, which must fail with EIO within `BOUND`. Returns how long it took.
fn eio_within_bound(path: &Path, what: &str) -> Duration {
    let (read, took) = Cat::read_by(path, Instant::now() + BOUND, what);
    assert_eq!(
        read,
        Read::Eio,
        "{what}: a read through the mount fails with EIO"
    );
    took
}

/// Reads in children until one returns `DATA` (failures are expected meanwhile), within
/// `BOUND`. Returns the time to the first good read and the number of reads.
fn until_ok(path: &Path, what: &str) -> (Duration, usize) {
    let t = Instant::now();
    let deadline = t + BOUND;
    let mut reads = 0;
    loop {
        reads += 1;
        let (read, _) = Cat::read_by(path, deadline, what);
        match read {
            Read::Ok(data) => {
                assert_eq!(data, DATA, "{what}: read {reads}");
                return (t.elapsed(), reads);
            }
            Read::Eio | Read::Failed(_) => assert!(
                Instant::now() < deadline,
                "{what}: reads still fail after {BOUND:?} ({read:?})"
            ),
        }
    }
}

/// Writes `DATA` in served/f.txt and waits until it reads through the mount (the server is
/// up: the test's thread may touch the mount).
/// A server frozen under sshfs's default options, and a read through it that hangs.
struct Hanging {
    remote: SshfsRemote,
    mnt: std::path::PathBuf,
    /// The fixture's temporary directory (mnt's parent).
    root: std::path::PathBuf,
    /// The server's processes, taken while frozen.
    pids: Vec<u32>,
    cat: Cat,
}

fn hanging_read() -> Hanging {
    let mut remote = SshfsRemote::builder().resilient(false).start();
    let f = serve_file(&remote);
    let mnt = remote.mnt().to_path_buf();
    let root = mnt.parent().expect("mnt/ has a parent").to_path_buf();
    remote.freeze_server();
    let pids = remote.server_pids();
    let mut cat = Cat::spawn(&f);
    assert!(
        cat.exited_within(HANGS).is_none(),
        "a read through a frozen server hangs"
    );
    Hanging {
        remote,
        mnt,
        root,
        pids,
        cat,
    }
}

fn serve_file(remote: &SshfsRemote) -> std::path::PathBuf {
    fs::write(remote.served().join("f.txt"), DATA).expect("write in served/");
    let f = remote.mnt().join("f.txt");
    wait_until("f.txt reads through the mount", BOUND, || {
        fs::read(&f).is_ok_and(|c| c == DATA)
    });
    f
}

/// The state letter of `pid` from `/proc/<pid>/stat` (`T` for stopped), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn gone(pid: u32) -> bool {
    matches!(state(pid), None | Some('Z' | 'X'))
}

#[test]
fn frozen_server_gives_eio_with_resilient_options_and_thaw_recovers() {
    let mut remote = SshfsRemote::start();
    let f = serve_file(&remote);

    remote.freeze_server();
    let pids = remote.server_pids();
    assert!(pids.len() >= 2, "a listener and a session: {pids:?}");
    assert!(
        pids.iter().all(|&p| state(p) == Some('T')),
        "all server processes are stopped: {:?}",
        pids.iter().map(|&p| (p, state(p))).collect::<Vec<_>>()
    );

    let first_eio = eio_within_bound(&f, "frozen, resilient");
    let next_eio = eio_within_bound(&f, "frozen, resilient, next read");

    let t = Instant::now();
    remote.thaw_server();
    let thaw_took = t.elapsed();
    assert!(remote.server_pids().iter().all(|&p| state(p) != Some('T')));
    let (recovered, tries) = until_ok(&f, "thawed");
    eprintln!(
        "frozen, resilient: first EIO after {first_eio:?}; next failing read \
         {next_eio:?}; thaw_server {thaw_took:?}; reads work again after {recovered:?} \
         ({tries} reads)"
    );
}

#[test]
fn frozen_server_hangs_with_default_options_until_thawed() {
    let mut remote = SshfsRemote::builder().resilient(false).start();
    let f = serve_file(&remote);

    remote.freeze_server();
    let mut cat = Cat::spawn(&f);
    assert!(
        cat.exited_within(HANGS).is_none(),
        "with sshfs's default options a read through a frozen server hangs"
    );

    let t = Instant::now();
    remote.thaw_server();
    assert!(
        cat.exited_within(BOUND).is_some(),
        "the hanging read finishes once the server is thawed"
    );
    let thaw_to_done = t.elapsed();
    let (read, took) = cat.result();
    assert_eq!(read, Read::Ok(DATA.to_vec()), "the hanging read succeeds");
    eprintln!(
        "frozen, default options: the read hung {:?}, finished {thaw_to_done:?} after the thaw",
        took.saturating_sub(thaw_to_done)
    );
    // And the mount goes on working.
    let (ok_after, _) = until_ok(&f, "after the thaw");
    assert!(ok_after < BOUND);
}

#[test]
fn abort_connection_ends_a_hanging_read_and_drop_cleans_up() {
    let Hanging {
        remote,
        mnt,
        root,
        pids,
        mut cat,
    } = hanging_read();
    let t = Instant::now();
    remote.abort_connection();
    assert!(
        cat.exited_within(BOUND).is_some(),
        "abort_connection ends the hanging read"
    );
    let abort_to_done = t.elapsed();
    let (read, _) = cat.result();
    assert!(
        matches!(&read, Read::Failed(e) if e.contains("connect")),
        "the aborted read fails with ECONNABORTED or ENOTCONN: {read:?}"
    );

    let t = Instant::now();
    drop(remote);
    let drop_took = t.elapsed();
    assert!(!is_mount_point(&mnt));
    assert!(!root.exists(), "{} is removed", root.display());
    assert!(
        pids.iter().all(|&p| gone(p)),
        "the server's processes are gone"
    );
    eprintln!(
        "abort_connection: the hanging read ended {abort_to_done:?} later ({read:?}); \
         drop took {drop_took:?}"
    );
}

#[test]
fn drop_thaws_a_frozen_server_and_frees_a_hanging_read() {
    let Hanging {
        remote,
        mnt,
        root,
        pids,
        mut cat,
    } = hanging_read();
    let t = Instant::now();
    drop(remote);
    let drop_took = t.elapsed();
    assert!(
        cat.exited_within(BOUND).is_some(),
        "the hanging read ends once the fixture is dropped"
    );
    let (read, _) = cat.result();
    assert!(!is_mount_point(&mnt));
    assert!(!root.exists(), "{} is removed", root.display());
    assert!(
        pids.iter().all(|&p| gone(p)),
        "no server process stays (stopped or not): {:?}",
        pids.iter().map(|&p| (p, state(p))).collect::<Vec<_>>()
    );
    eprintln!("drop while frozen took {drop_took:?}; the hanging read gave {read:?}");
}

#[test]
fn cut_link_gives_eio_and_restore_recovers() {
    let mut remote = SshfsRemote::start_in_netns();
    let (server_ns, client_ns) = (
        remote.server_netns().expect("namespace mode").to_owned(),
        remote.client_netns().expect("namespace mode").to_owned(),
    );
    assert!(Path::new("/run/netns").join(&server_ns).exists());
    assert!(Path::new("/run/netns").join(&client_ns).exists());
    assert!(remote
        .server_addr()
        .ip()
        .to_string()
        .starts_with("169.254."));
    let f = serve_file(&remote);
    let mnt = remote.mnt().to_path_buf();

    let t = Instant::now();
    remote.cut_link();
    let cut_took = t.elapsed();
    assert!(remote.is_link_cut());
    let first_eio = eio_within_bound(&f, "link cut");
    let next_eio = eio_within_bound(&f, "link cut, next read");

    let t = Instant::now();
    remote.restore_link();
    let restore_took = t.elapsed();
    let (recovered, tries) = until_ok(&f, "link restored");
    eprintln!(
        "cut_link {cut_took:?}; first EIO after {first_eio:?}; next failing read \
         {next_eio:?}; restore_link {restore_took:?}; reads work again after \
         {recovered:?} ({tries} reads)"
    );

    drop(remote);
    assert!(!is_mount_point(&mnt));
    assert!(!Path::new("/run/netns").join(&server_ns).exists());
    assert!(!Path::new("/run/netns").join(&client_ns).exists());
}

#[test]
fn kill_and_restart_work_in_netns() {
    let mut remote = SshfsRemote::start_in_netns();
    let f = serve_file(&remote);

    remote.kill_server();
    assert!(remote.server_pids().is_empty());
    let first_eio = eio_within_bound(&f, "server killed in netns");
    remote.restart_server();
    let (recovered, tries) = until_ok(&f, "server restarted in netns");
    eprintln!(
        "netns kill_server: first EIO after {first_eio:?}; after restart \
         reads work again after {recovered:?} ({tries} reads)"
    );
}

#[test]
fn drop_frees_a_read_hanging_on_a_cut_link() {
    let mut remote = SshfsRemote::builder().netns(true).resilient(false).start();
    let f = serve_file(&remote);
    let mnt = remote.mnt().to_path_buf();
    let root = mnt.parent().expect("mnt/ has a parent").to_path_buf();
    let namespaces = [
        remote.server_netns().expect("namespace mode").to_owned(),
        remote.client_netns().expect("namespace mode").to_owned(),
    ];
    let pids = remote.server_pids();

    remote.cut_link();
    let mut cat = Cat::spawn(&f);
    assert!(
        cat.exited_within(HANGS).is_none(),
        "with sshfs's default options a read over a cut link hangs"
    );
    // The link stays cut: only the abort in Drop can end this read.
    let t = Instant::now();
    drop(remote);
    let drop_took = t.elapsed();
    assert!(
        cat.exited_within(BOUND).is_some(),
        "the hanging read ends once the fixture is dropped"
    );
    let (read, _) = cat.result();
    assert!(
        matches!(&read, Read::Failed(_)),
        "the read over the cut link fails: {read:?}"
    );
    assert!(!is_mount_point(&mnt));
    assert!(!root.exists(), "{} is removed", root.display());
    assert!(
        pids.iter().all(|&p| gone(p)),
        "the server's processes are gone"
    );
    for ns in &namespaces {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} is deleted"
        );
    }
    eprintln!("drop with a read hanging on a cut link took {drop_took:?}; the read gave {read:?}");
}
