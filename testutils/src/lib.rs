//! Test fixtures for cachesync's scenario tests.
//!
//! This crate owns the *real network file system* that tests run against: [`SshfsRemote`]
//! starts a private `sshd` on a free loopback port and mounts the directory it serves through
//! `sshfs`. A test writes "on the server" in [`SshfsRemote::served`] (as another client of the
//! share would), works through the share in [`SshfsRemote::mnt`], and makes an outage with
//! [`SshfsRemote::kill_server`] and [`SshfsRemote::restart_server`]. It also owns
//! [`wait_until`], the bounded polling that tests use instead of fixed sleeps.
//!
//! Needs root, `/usr/sbin/sshd`, `ssh-keygen`, `sshfs`, `fusermount3` and `/dev/fuse`
//! (`make deps` installs them). Tests that need sshfs never skip: [`SshfsRemote::start`]
//! panics and says what is missing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How often [`wait_until`] and the fixture's own waits poll.
const POLL: Duration = Duration::from_millis(20);
/// Bound on starting sshd (port accepting connections) and on the mount appearing.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on processes going away after a kill, and on sshfs exiting after an unmount.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports `start` tries: another process may take the port between our probe
/// and sshd's bind.
const PORT_ATTEMPTS: usize = 3;

/// Polls `f` every 20 ms until it returns true; panics with `what` if `timeout` passes first.
///
/// `f` is always called at least once, and once more at the deadline.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    if !poll_until(timeout, f) {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

/// The non-panicking form of [`wait_until`]: true if `f` held before `timeout`.
fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// True if `path` is a mount point in this process's mount namespace.
///
/// Reads `/proc/self/mountinfo` and never touches the file system at `path` itself, so it
/// cannot hang on a dead or frozen network mount. Compare with the path as mounted (the
/// paths of [`SshfsRemote`] are canonical).
pub fn is_mount_point(path: &Path) -> bool {
    mount_points()
        .expect("read /proc/self/mountinfo")
        .iter()
        .any(|p| p == path)
}

/// The mount points listed in `/proc/self/mountinfo` (field 5, octal escapes decoded).
fn mount_points() -> io::Result<Vec<PathBuf>> {
    let info = fs::read("/proc/self/mountinfo")?;
    Ok(info
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape_octal(field))))
        .collect())
}

/// Decodes the `\ooo` escapes that the kernel writes for spaces, tabs, newlines and
/// backslashes in mount table fields.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits = field.get(i + 1..i + 4);
        match digits {
            Some(d) if field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// A directory served by a private sshd on 127.0.0.1 and mounted through sshfs.
///
/// Everything lives in one temporary directory: `served/` (what sshd serves: the server's
/// side of the share), `mnt/` (the sshfs mount point: the client's side), keys, the sshd
/// configuration and the logs of sshd and sshfs. The mount uses `reconnect`,
/// `ServerAliveInterval=1`, `ServerAliveCountMax=1`, `ConnectTimeout=2` (an outage gives EIO
/// instead of a hang) and `dir_cache=no` (changes made in `served/` show through the mount
/// at once, apart from the kernel's attribute cache of about 1 s).
///
/// Dropping it unmounts, stops sshfs and sshd, and removes the directory; it never panics.
#[derive(Debug)]
pub struct SshfsRemote {
    /// The temporary directory; `None` once Drop decided to leave it in place.
    dir: Option<TempDir>,
    served: PathBuf,
    mnt: PathBuf,
    port: u16,
    config: PathBuf,
    sshd_log: PathBuf,
    sshfs_log: PathBuf,
    /// The sshd listener (`sshd -D`), while the server runs.
    sshd: Option<Child>,
    /// The sshfs process (run in the foreground with `-f`), while mounted.
    sshfs: Option<Child>,
}

impl SshfsRemote {
    /// Starts sshd on a free loopback port and mounts its `served/` directory on `mnt/`.
    ///
    /// Returns once the mount is in the mount table. Panics, with the relevant log, if
    /// anything needed is missing or does not come up within 10 s.
    pub fn start() -> SshfsRemote {
        let uid = fs::metadata("/proc/self")
            .expect("stat /proc/self to learn the effective uid")
            .uid();
        assert!(
            uid == 0,
            "SshfsRemote needs root (uid {uid} here): it runs its own sshd and logs in as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("cachesync-sshfs-")
            .tempdir()
            .expect("create a temporary directory for the sshfs remote");
        let root = dir
            .path()
            .canonicalize()
            .expect("canonicalize the temporary directory");
        assert!(
            !root.to_string_lossy().contains([',', ' ']),
            "the temporary directory {} contains a comma or a space, which sshfs -o options \
             cannot carry; set TMPDIR to a plainer path",
            root.display()
        );
        let mut remote = SshfsRemote {
            dir: Some(dir),
            served: root.join("served"),
            mnt: root.join("mnt"),
            port: 0,
            config: root.join("sshd_config"),
            sshd_log: root.join("sshd.log"),
            sshfs_log: root.join("sshfs.log"),
            sshd: None,
            sshfs: None,
        };
        // From here on, a panic drops `remote`, which cleans up whatever was started.
        fs::create_dir(&remote.served).expect("create served/");
        fs::create_dir(&remote.mnt).expect("create mnt/");
        let host_key = root.join("host_ed25519");
        let client_key = root.join("client_ed25519");
        ssh_keygen(&host_key);
        ssh_keygen(&client_key);
        let authorized_keys = root.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized_keys)
            .expect("write authorized_keys from the client's public key");
        // sshd refuses to start without its privilege-separation directory. Every sshd on the
        // machine shares it: create it if missing, never remove it.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd")
            .expect("create /run/sshd");

        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            remote.port = free_port();
            let config = format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {authorized_keys}\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 Subsystem sftp internal-sftp\n",
                port = remote.port,
                host_key = host_key.display(),
                authorized_keys = authorized_keys.display(),
            );
            fs::write(&remote.config, config).expect("write sshd_config");
            match remote.spawn_sshd() {
                Ok(()) => {
                    last_error.clear();
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        assert!(
            last_error.is_empty(),
            "could not start sshd in {PORT_ATTEMPTS} attempts: {last_error}"
        );
        remote.mount(&client_key);
        remote
    }

    /// The directory sshd serves: the server's side of the share.
    pub fn served(&self) -> &Path {
        &self.served
    }

    /// The sshfs mount point: the client's side of the share.
    pub fn mnt(&self) -> &Path {
        &self.mnt
    }

    /// The loopback port sshd listens on (the same across [`Self::restart_server`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server: the sshd listener *and* its session children (killing only the
    /// listener leaves the established sftp session working). Returns once they are gone.
    ///
    /// The mount stays; calls through it then fail with EIO. Does nothing if the server is
    /// already down. Panics if the processes do not go away within 10 s.
    pub fn kill_server(&mut self) {
        if let Err(e) = self.stop_server() {
            panic!("kill_server: {e}");
        }
    }

    /// Starts sshd again on the same port with the same configuration (killing it first if it
    /// is running) and returns once the port accepts connections.
    ///
    /// sshfs reconnects on the next call through the mount. Panics if sshd does not come up
    /// within 10 s.
    pub fn restart_server(&mut self) {
        self.kill_server();
        if let Err(e) = self.spawn_sshd() {
            panic!("restart_server: {e}");
        }
    }

    /// Spawns `sshd -D -e -f <config>` (stderr appended to `sshd.log`) and waits until its
    /// port accepts connections. On failure nothing is left running.
    fn spawn_sshd(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.sshd_log)
            .map_err(|e| format!("open {}: {e}", self.sshd_log.display()))?;
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("run /usr/sbin/sshd (is openssh-server installed?): {e}"))?;
        self.sshd = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut exited = None;
        let up = poll_until(START_TIMEOUT, || {
            if let Some(child) = self.sshd.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        let problem = match exited {
            Some(status) => {
                self.sshd = None;
                format!("sshd exited ({status}) before listening on {addr}")
            }
            None if !up => {
                // Best effort: the error below is what matters.
                let _ = self.stop_server();
                format!("sshd did not accept connections on {addr} within {START_TIMEOUT:?}")
            }
            None => return Ok(()),
        };
        Err(format!(
            "{problem}; {}:\n{}",
            self.sshd_log.display(),
            log_tail(&self.sshd_log)
        ))
    }

    /// Mounts `served/` on `mnt/` with sshfs in the foreground and waits for the mount.
    fn mount(&mut self, client_key: &Path) {
        let log = File::create(&self.sshfs_log).expect("create sshfs.log");
        let options = format!(
            "port={port},IdentityFile={key},IdentitiesOnly=yes,StrictHostKeyChecking=no,\
             UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes,reconnect,\
             ServerAliveInterval=1,ServerAliveCountMax=1,ConnectTimeout=2,dir_cache=no",
            port = self.port,
            key = client_key.display(),
        );
        let mut source = OsString::from("root@127.0.0.1:");
        source.push(&self.served);
        let child = Command::new("sshfs")
            .arg(source)
            .arg(&self.mnt)
            .arg("-f")
            // Ignore the user's ~/.ssh/config: the mount must not depend on it.
            .arg("-F")
            .arg("/dev/null")
            .arg("-o")
            .arg(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run sshfs (are sshfs and fuse3 installed? `make deps` installs them)");
        self.sshfs = Some(child);
        let mut exited = None;
        let mounted = poll_until(START_TIMEOUT, || {
            if let Some(child) = self.sshfs.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            is_mount_point(&self.mnt)
        });
        let problem = match exited {
            Some(status) => {
                self.sshfs = None;
                format!("sshfs exited ({status}) without mounting")
            }
            None if !mounted => format!("sshfs did not mount within {START_TIMEOUT:?}"),
            None => return,
        };
        panic!(
            "{problem} {} on {}; {}:\n{}\n{}:\n{}",
            self.served.display(),
            self.mnt.display(),
            self.sshfs_log.display(),
            log_tail(&self.sshfs_log),
            self.sshd_log.display(),
            log_tail(&self.sshd_log)
        );
    }

    /// Kills the sshd listener and all its descendants and waits (bounded) until they are
    /// gone. Never panics.
    fn stop_server(&mut self) -> Result<(), String> {
        let Some(mut listener) = self.sshd.take() else {
            return Ok(());
        };
        let pid = listener.id();
        if listener.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        // Freeze the listener first, so that it forks no new session while we collect the
        // ones it has (once it dies they are reparented and no longer found by parent pid).
        let _ = send_signal(pid, libc::SIGSTOP);
        let sessions = descendants(pid);
        let _ = listener.kill();
        for &child in &sessions {
            // A session may already have exited on its own: ESRCH is fine.
            let _ = send_signal(child, libc::SIGKILL);
        }
        let reaped = poll_until(STOP_TIMEOUT, || {
            listener.try_wait().ok().flatten().is_some()
        });
        // Killed sessions are reparented to init; a zombie waiting for init to reap it is
        // gone for our purposes (it holds no socket).
        let gone = poll_until(STOP_TIMEOUT, || sessions.iter().all(|&p| !alive(p)));
        match (reaped, gone) {
            (true, true) => Ok(()),
            (false, _) => Err(format!(
                "the sshd listener (pid {pid}) did not exit within {STOP_TIMEOUT:?}"
            )),
            (true, false) => Err(format!(
                "sshd sessions {:?} did not exit within {STOP_TIMEOUT:?}",
                sessions.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
            )),
        }
    }

    /// Unmounts `mnt/`: `fusermount3 -u`, else (mount busy, e.g. a file left open through
    /// it) `umount -l`. Never panics.
    fn unmount(&mut self) -> Unmounted {
        let mounted = |mnt: &Path| mount_points().map_or(true, |m| m.iter().any(|p| p == mnt));
        if !mounted(&self.mnt) {
            return Unmounted::Cleanly;
        }
        for (program, flag, outcome) in [
            ("fusermount3", "-u", Unmounted::Cleanly),
            ("umount", "-l", Unmounted::Lazily),
        ] {
            let _ = Command::new(program)
                .arg(flag)
                .arg(&self.mnt)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !mounted(&self.mnt) {
                return outcome;
            }
        }
        Unmounted::Not
    }

    /// Stops sshfs: after a clean unmount it exits by itself (waited for, bounded); after a
    /// lazy one it would serve the open files for as long as they stay open, so it is killed.
    fn stop_sshfs(&mut self, unmounted: Unmounted) {
        let Some(mut sshfs) = self.sshfs.take() else {
            return;
        };
        let exited = |c: &mut Child| c.try_wait().ok().flatten().is_some();
        if unmounted != Unmounted::Cleanly || !poll_until(STOP_TIMEOUT, || exited(&mut sshfs)) {
            let _ = sshfs.kill();
            poll_until(STOP_TIMEOUT, || exited(&mut sshfs));
        }
    }
}

/// How [`SshfsRemote::unmount`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unmounted {
    /// Not mounted any more, and nothing used the mount.
    Cleanly,
    /// Detached from the tree, but still in use by open files.
    Lazily,
    /// Still mounted.
    Not,
}

impl Drop for SshfsRemote {
    fn drop(&mut self) {
        let unmounted = self.unmount();
        self.stop_sshfs(unmounted);
        if let Err(e) = self.stop_server() {
            eprintln!("SshfsRemote: {e}");
        }
        if unmounted == Unmounted::Not {
            // Removing the directory would recurse into the share (deleting served files, or
            // hanging on a dead server): leave it for the machine's tmp cleaning instead.
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "SshfsRemote: could not unmount {}; left {} in place",
                    self.mnt.display(),
                    kept.display()
                );
            }
        }
    }
}

/// Generates an ed25519 key pair at `path` and `path.pub`, without a passphrase.
fn ssh_keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "cachesync-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen (is openssh-client installed? `make deps` installs it)");
    assert!(
        out.status.success(),
        "ssh-keygen {} failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// All descendants of `pid`, found by scanning `/proc/*/stat` for parent pids.
fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((_, ppid)) = proc_stat(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            found.push(c);
            queue.push(c);
        }
    }
    found
}

/// The state letter and parent pid of `pid` from `/proc/<pid>/stat`, if it exists.
fn proc_stat(pid: u32) -> Option<(u8, u32)> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the
    // last ')'.
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let text = std::str::from_utf8(after).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True if `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != b'Z' && state != b'X')
}

/// Sends `signal` to `pid`.
#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The last lines of a log file, for panic messages.
fn log_tail(path: &Path) -> String {
    const LINES: usize = 40;
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape_octal(br"/a\040b\011c\134d"), b"/a b\tc\\d");
        assert_eq!(unescape_octal(br"/plain\0x"), br"/plain\0x");
    }

    #[test]
    fn root_is_a_mount_point_and_a_tempdir_is_not() {
        assert!(is_mount_point(Path::new("/")));
        let dir = tempfile::tempdir().expect("create a temporary directory");
        assert!(!is_mount_point(
            &dir.path().canonicalize().expect("canonicalize it")
        ));
    }

    #[test]
    fn finds_own_children() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("run sleep");
        let me = std::process::id();
        assert!(descendants(me).contains(&child.id()));
        assert!(alive(child.id()));
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert!(!alive(child.id()));
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting until never")]
    fn wait_until_panics_with_what() {
        wait_until("never", Duration::from_millis(50), || false);
    }
}
