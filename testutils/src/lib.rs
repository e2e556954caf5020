//! Test fixtures for cachesync's scenario tests.
//!
//! This crate owns the *real network file system* that tests run against: [`SshfsRemote`]
//! starts a private `sshd` and mounts the directory it serves through `sshfs`. A test writes
//! "on the server" in [`SshfsRemote::served`] (as another client of the share would), works
//! through the share in [`SshfsRemote::mnt`], and makes outages as users meet them:
//!
//! - [`SshfsRemote::kill_server`] / [`SshfsRemote::restart_server`]: the server dies (TCP
//!   connections are reset) and comes back;
//! - [`SshfsRemote::freeze_server`] / [`SshfsRemote::thaw_server`]: the server stops answering
//!   while TCP stays up (SIGSTOP / SIGCONT);
//! - [`SshfsRemote::cut_link`] / [`SshfsRemote::restore_link`]: the network goes away (only in
//!   the network-namespace mode of [`SshfsRemote::start_in_netns`]).
//!
//! [`SshfsOptions`] chooses between sshfs options that turn outages into EIO (the default) and
//! sshfs's own defaults, under which a frozen server or a cut link makes every call hang. A
//! call stuck in FUSE cannot be killed, so a test must never make such a call on its own
//! thread: run it in a child process and poll that (bounded). [`SshfsRemote::abort_connection`]
//! ends all stuck calls, and dropping the fixture always does.
//!
//! [`cli`] holds the helpers of the tests that run the `cachesync` binary as a user does (a
//! temporary remote and workspace, hermetic runs, tree views).
//!
//! The crate also owns [`wait_until`] and [`poll_until`], the bounded polling that tests use
//! instead of fixed sleeps, and the test doubles of the engine's `Remote` trait, which tests
//! give a workspace through its `RemoteFactory`: [`FaultRemote`] (hangs or fails chosen calls)
//! and [`FoldRemote`] (a remote that folds case). They live here, not in the engine, so that
//! the shipped library holds no test code; the engine's integration tests (`engine/tests/`)
//! use them, its unit tests cannot (they would see two builds of the engine).
//!
//! Needs root, `/usr/sbin/sshd`, `ssh-keygen`, `sshfs`, `/dev/fuse`, and for the namespace
//! mode `ip` (iproute2) and `nsenter` (util-linux) (`make deps` installs them). Tests that need
//! sshfs never skip: the constructors panic and say what is missing.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod cli;
mod delay;
mod fault_remote;
mod fold_remote;
mod rng;
pub use delay::DelayProxy;
pub use fault_remote::{Fault, FaultRemote};
pub use fold_remote::FoldRemote;
pub use rng::Rng;

/// How often [`wait_until`] and the fixture's own waits poll.
const POLL: Duration = Duration::from_millis(20);
/// Bound on starting sshd (port listening) and on the mount appearing.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on processes going away after a kill, stopping or continuing after a signal, sshfs
/// exiting after an unmount, and a link changing state.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports `start` tries: another process may take the port between our probe
/// and sshd's bind.
const PORT_ATTEMPTS: usize = 3;
/// Where the kernel's FUSE control file system is mounted (if it is).
const FUSECTL: &str = "/sys/fs/fuse/connections";
/// The name of the veth end in the client namespace and of its peer in the server namespace.
/// Each lives in a namespace of its own fixture, so the names never clash.
const CLIENT_VETH: &str = "cs-cli";
/// See [`CLIENT_VETH`].
const SERVER_VETH: &str = "cs-srv";
/// The port sshd listens on in the namespace mode: the namespace is ours, so it is free.
const NETNS_PORT: u16 = 22;

/// Numbers the network namespaces (and their subnets) of this process's fixtures.
static NETNS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Polls `f` every 20 ms until it returns true; panics with `what` if `timeout` passes first.
///
/// `f` is always called at least once, and once more at the deadline.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    if !poll_until(timeout, f) {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

/// The non-panicking form of [`wait_until`]: polls `f` every 20 ms and returns true as soon
/// as it holds, false if `timeout` passes first.
///
/// `f` is always called at least once, and once more at the deadline.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
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
    mounts()
        .expect("read /proc/self/mountinfo")
        .iter()
        .any(|m| m.point == path)
}

/// True if a `cachesync mount` view is mounted at `path` (type `fuse`, source `cachesync`),
/// read from `/proc/self/mountinfo` as [`is_mount_point`] does.
pub fn is_cachesync_view(path: &Path) -> bool {
    mounts()
        .expect("read /proc/self/mountinfo")
        .iter()
        .any(|m| m.point == path && m.fstype == "fuse" && m.source == "cachesync")
}

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug)]
struct MountInfo {
    /// The device number of the mounted file system (field 3, `major:minor`), as the
    /// kernel's internal `dev_t` (`major << 20 | minor`), which names FUSE control dirs.
    dev: u64,
    /// The mount point (field 5, octal escapes decoded).
    point: PathBuf,
    /// The file system type (first field after the ` - ` separator).
    fstype: String,
    /// The mount source (the field after the type).
    source: String,
}

/// The mounts listed in `/proc/self/mountinfo`.
fn mounts() -> io::Result<Vec<MountInfo>> {
    let info = fs::read("/proc/self/mountinfo")?;
    Ok(info
        .split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .collect())
}

/// Parses one line of `/proc/self/mountinfo`; None if it is malformed (or empty).
fn parse_mountinfo_line(line: &[u8]) -> Option<MountInfo> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let (major, minor) = std::str::from_utf8(fields.get(2)?).ok()?.split_once(':')?;
    let major: u64 = major.parse().ok()?;
    let minor: u64 = minor.parse().ok()?;
    let point = PathBuf::from(OsString::from_vec(unescape_octal(fields.get(4)?)));
    let separator = fields.iter().position(|&f| f == b"-")?;
    let fstype = String::from_utf8_lossy(fields.get(separator + 1)?).into_owned();
    let source =
        String::from_utf8_lossy(fields.get(separator + 2).unwrap_or(&&b""[..])).into_owned();
    Some(MountInfo {
        dev: (major << 20) | minor,
        point,
        fstype,
        source,
    })
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

/// How [`SshfsRemote`] mounts and where it runs; built with [`SshfsRemote::builder`] (or
/// [`SshfsOptions::default`]) and started with [`SshfsOptions::start`].
///
/// The default is what [`SshfsRemote::start`] uses: resilient options, `dir_cache=no`, on
/// loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "options do nothing until started"]
pub struct SshfsOptions {
    resilient: bool,
    dir_cache: bool,
    netns: bool,
    delay: Duration,
}

impl Default for SshfsOptions {
    fn default() -> Self {
        SshfsOptions {
            resilient: true,
            dir_cache: false,
            netns: false,
            delay: Duration::ZERO,
        }
    }
}

impl SshfsOptions {
    /// With `true` (the default), mounts with `reconnect,ServerAliveInterval=1,
    /// ServerAliveCountMax=1,ConnectTimeout=2`: a dead, frozen or unreachable server gives
    /// EIO within seconds, and the mount reconnects once it is back. With `false`, uses
    /// sshfs's own defaults (none of those): a killed server makes sshfs exit and unmount, and
    /// a frozen server or a cut link makes every call hang until the outage ends.
    pub fn resilient(mut self, resilient: bool) -> Self {
        self.resilient = resilient;
        self
    }

    /// With `false` (the default), mounts with `dir_cache=no`, so changes made in `served/`
    /// show through the mount at once (apart from the kernel's attribute cache of about 1 s).
    /// With `true`, sshfs caches listings and attributes for about 20 s, as a user's mount
    /// would.
    pub fn dir_cache(mut self, dir_cache: bool) -> Self {
        self.dir_cache = dir_cache;
        self
    }

    /// With `true`, runs sshd and sshfs in two network namespaces of their own joined by a
    /// veth pair (link-local addresses, no default route), so that
    /// [`SshfsRemote::cut_link`] can take the network away. Default `false`: loopback.
    pub fn netns(mut self, netns: bool) -> Self {
        self.netns = netns;
        self
    }

    /// With a non-zero `one_way`, sshfs reaches sshd through a [`DelayProxy`] that holds each
    /// direction's bytes that long, so every round trip grows by twice `one_way` (a distant
    /// server, without netem). Loopback only. Default zero: no proxy.
    pub fn delay(mut self, one_way: Duration) -> Self {
        self.delay = one_way;
        self
    }

    /// Starts the remote with these options: [`SshfsRemote::start_with`].
    pub fn start(self) -> SshfsRemote {
        SshfsRemote::start_with(self)
    }

    /// The `-o` options of sshfs, apart from the ones that reach the server.
    fn mount_options(&self) -> String {
        let mut options = String::new();
        if self.resilient {
            options.push_str(
                ",reconnect,ServerAliveInterval=1,ServerAliveCountMax=1,ConnectTimeout=2",
            );
        }
        if !self.dir_cache {
            options.push_str(",dir_cache=no");
        }
        options
    }
}

/// The two network namespaces of [`SshfsRemote::start_in_netns`] and the veth pair between
/// them. Records what was created, so that tearing down removes exactly that.
#[derive(Debug)]
struct Netns {
    /// The server's namespace (sshd runs in it).
    server: String,
    /// The client's namespace (sshfs and its ssh run in it).
    client: String,
    server_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
    server_created: bool,
    client_created: bool,
    veth_created: bool,
}

impl Netns {
    /// Creates the namespaces (names unique to this process and fixture), the veth pair with
    /// `169.254.x.1/30` (server) and `169.254.x.2/30` (client), both ends up. Stores the
    /// record in `slot` before creating anything, so that a panic half-way leaves the rest
    /// to the owner's Drop.
    fn create(slot: &mut Option<Netns>) {
        let pid = std::process::id();
        let mut n;
        loop {
            n = NETNS_COUNTER.fetch_add(1, Ordering::Relaxed);
            let server = format!("cs-srv-{pid}-{n}");
            let client = format!("cs-cli-{pid}-{n}");
            // A leftover of an earlier process with our pid: leave it alone, take the next.
            if !Path::new("/run/netns").join(&server).exists()
                && !Path::new("/run/netns").join(&client).exists()
            {
                // x in 1..=254, different for each fixture of this process (up to 254 at a
                // time). The namespaces are private, so equal subnets in two fixtures (of two
                // processes) could not clash anyway.
                let x = u8::try_from((pid.wrapping_mul(31).wrapping_add(n)) % 254 + 1)
                    .expect("x is below 255");
                *slot = Some(Netns {
                    server,
                    client,
                    server_ip: Ipv4Addr::new(169, 254, x, 1),
                    client_ip: Ipv4Addr::new(169, 254, x, 2),
                    server_created: false,
                    client_created: false,
                    veth_created: false,
                });
                break;
            }
        }
        let ns = slot.as_mut().expect("just stored");
        run(Command::new("ip").args(["netns", "add", &ns.server]))
            .expect("create the server's network namespace (is iproute2 installed?)");
        ns.server_created = true;
        run(Command::new("ip").args(["netns", "add", &ns.client]))
            .expect("create the client's network namespace");
        ns.client_created = true;
        // Create both ends in place: nothing ever appears in our own namespace.
        run(Command::new("ip").args([
            "-n",
            &ns.client,
            "link",
            "add",
            CLIENT_VETH,
            "type",
            "veth",
            "peer",
            "name",
            SERVER_VETH,
            "netns",
            &ns.server,
        ]))
        .expect("create the veth pair between the namespaces");
        ns.veth_created = true;
        for (netns, dev, ip) in [
            (&ns.server, SERVER_VETH, ns.server_ip),
            (&ns.client, CLIENT_VETH, ns.client_ip),
        ] {
            run(Command::new("ip").args([
                "-n",
                netns,
                "addr",
                "add",
                &format!("{ip}/30"),
                "dev",
                dev,
            ]))
            .expect("address a veth end");
            run(Command::new("ip").args(["-n", netns, "link", "set", "lo", "up"]))
                .expect("bring lo up");
            run(Command::new("ip").args(["-n", netns, "link", "set", dev, "up"]))
                .expect("bring a veth end up");
        }
        for (netns, dev) in [(&ns.server, SERVER_VETH), (&ns.client, CLIENT_VETH)] {
            wait_until(&format!("{dev} in {netns} is up"), STOP_TIMEOUT, || {
                link_state(netns, dev).as_deref() == Some("UP")
            });
        }
    }

    /// `/run/netns/<client>`, for `nsenter --net=`.
    fn client_path(&self) -> String {
        format!("--net=/run/netns/{}", self.client)
    }

    /// `/run/netns/<server>`, for `nsenter --net=`.
    fn server_path(&self) -> String {
        format!("--net=/run/netns/{}", self.server)
    }

    /// Deletes the veth pair and the namespaces that were created. Call once no process runs
    /// in them any more. Never panics; says on stderr what failed.
    fn teardown(&mut self) {
        if self.veth_created {
            // Deleting one end deletes the pair, at once (a namespace is destroyed only once
            // its last process has gone, asynchronously).
            match run(Command::new("ip").args(["-n", &self.client, "link", "del", CLIENT_VETH])) {
                Ok(()) => self.veth_created = false,
                Err(e) => eprintln!("SshfsRemote: delete the veth pair: {e}"),
            }
        }
        for (name, created) in [
            (&self.client, &mut self.client_created),
            (&self.server, &mut self.server_created),
        ] {
            if *created {
                match run(Command::new("ip").args(["netns", "del", name])) {
                    Ok(()) => *created = false,
                    Err(e) => eprintln!("SshfsRemote: delete network namespace {name}: {e}"),
                }
            }
        }
    }
}

/// The operational state (`UP`, `DOWN`, ...) of `dev` in network namespace `netns`.
fn link_state(netns: &str, dev: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "link", "show", "dev", dev])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_ascii_whitespace();
    words.find(|&w| w == "state")?;
    words.next().map(str::to_owned)
}

/// Runs a command to completion; its stderr in the error if it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The fixture's temporary directory and its canonical path. Panics unless we run as root
/// (the fixture runs its own sshd and logs in as root) and the path can go into sshfs `-o`
/// options (no comma, no space).
fn fixture_dir() -> (TempDir, PathBuf) {
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
    (dir, root)
}

/// A directory served by a private sshd and mounted through sshfs.
///
/// Everything lives in one temporary directory: `served/` (what sshd serves: the server's
/// side of the share), `mnt/` (the sshfs mount point: the client's side), keys, the sshd
/// configuration and the logs of sshd and sshfs. By default sshd listens on a free loopback
/// port, and the mount uses `reconnect`, `ServerAliveInterval=1`, `ServerAliveCountMax=1`,
/// `ConnectTimeout=2` (an outage gives EIO instead of a hang) and `dir_cache=no` (changes made
/// in `served/` show through the mount at once, apart from the kernel's attribute cache of
/// about 1 s); [`SshfsOptions`] changes that.
///
/// Dropping it thaws a frozen server, unmounts (lazily, aborting the FUSE connection, if
/// something still uses the mount: that ends calls stuck in it), stops sshfs and sshd,
/// deletes the network namespaces, and removes the directory; it never panics.
#[derive(Debug)]
pub struct SshfsRemote {
    /// The temporary directory; `None` once Drop decided to leave it in place.
    dir: Option<TempDir>,
    options: SshfsOptions,
    served: PathBuf,
    mnt: PathBuf,
    /// The address sshd listens on: 127.0.0.1 or the server's end of the veth pair.
    server_ip: Ipv4Addr,
    port: u16,
    config: PathBuf,
    sshd_log: PathBuf,
    sshfs_log: PathBuf,
    /// The sshd listener (`sshd -D`), while the server runs.
    sshd: Option<Child>,
    /// The sshfs process (run in the foreground with `-f`), while mounted.
    sshfs: Option<Child>,
    /// The mount's device number (kernel `dev_t`), read from the mount table right after
    /// mounting: it names the FUSE connection in `/sys/fs/fuse/connections`.
    fuse_dev: Option<u64>,
    /// The processes that [`Self::freeze_server`] stopped (listener first).
    frozen: Vec<u32>,
    /// The namespaces and veth pair of the namespace mode.
    netns: Option<Netns>,
    /// The delaying proxy between sshfs and sshd, with [`SshfsOptions::delay`].
    proxy: Option<DelayProxy>,
    /// The key sshfs logs in with.
    client_key: PathBuf,
    /// True while [`Self::cut_link`] holds the link down.
    link_cut: bool,
}

impl SshfsRemote {
    /// Starts sshd on a free loopback port and mounts its `served/` directory on `mnt/`, with
    /// the default [`SshfsOptions`] (resilient, `dir_cache=no`).
    ///
    /// Returns once the mount is in the mount table. Panics, with the relevant log, if
    /// anything needed is missing or does not come up within 10 s.
    pub fn start() -> SshfsRemote {
        SshfsRemote::start_with(SshfsOptions::default())
    }

    /// Options to start a remote with: `SshfsRemote::builder().resilient(false).start()`.
    pub fn builder() -> SshfsOptions {
        SshfsOptions::default()
    }

    /// Starts the remote in two network namespaces joined by a veth pair, with the default
    /// (resilient) options: `SshfsRemote::builder().netns(true).start()`. See
    /// [`Self::cut_link`].
    pub fn start_in_netns() -> SshfsRemote {
        SshfsRemote::start_with(SshfsOptions::default().netns(true))
    }

    /// Starts sshd and mounts its `served/` directory on `mnt/` as `options` say.
    ///
    /// On loopback sshd listens on a free port of 127.0.0.1. In the namespace mode it listens
    /// on port 22 of `169.254.x.1` in a namespace of its own (`ip netns` name
    /// [`Self::server_netns`]) and sshfs runs in another one ([`Self::client_netns`], address
    /// `169.254.x.2`), entered with `nsenter --net` only, so that the mount is in our mount
    /// namespace. Returns once the mount is in the mount table. Panics, with the relevant
    /// log, if anything needed is missing or does not come up within 10 s.
    pub fn start_with(options: SshfsOptions) -> SshfsRemote {
        let (dir, root) = fixture_dir();
        let netns = options.netns;
        assert!(
            !netns || options.delay.is_zero(),
            "SshfsOptions: a delay is for loopback only, not with netns"
        );
        let mut remote = SshfsRemote {
            dir: Some(dir),
            options,
            served: root.join("served"),
            mnt: root.join("mnt"),
            server_ip: Ipv4Addr::LOCALHOST,
            port: 0,
            config: root.join("sshd_config"),
            sshd_log: root.join("sshd.log"),
            sshfs_log: root.join("sshfs.log"),
            sshd: None,
            sshfs: None,
            fuse_dev: None,
            frozen: Vec::new(),
            netns: None,
            proxy: None,
            client_key: root.join("client_ed25519"),
            link_cut: false,
        };
        // From here on, a panic drops `remote`, which cleans up whatever was started.
        fs::create_dir(&remote.served).expect("create served/");
        fs::create_dir(&remote.mnt).expect("create mnt/");
        let (host_key, authorized_keys) = remote.make_keys(&root);
        if netns {
            Netns::create(&mut remote.netns);
            remote.server_ip = remote.netns.as_ref().expect("just created").server_ip;
        }
        remote.start_sshd(&host_key, &authorized_keys);
        if !remote.options.delay.is_zero() {
            let upstream = SocketAddr::from((remote.server_ip, remote.port));
            remote.proxy = Some(
                DelayProxy::start(upstream, remote.options.delay)
                    .expect("start the delaying proxy"),
            );
        }
        remote.mount();
        remote
    }

    /// Makes the server's host key and the client's key, authorizes the client's, and makes
    /// sure sshd's privilege-separation directory exists. Returns the host key and the
    /// `authorized_keys` file, for the sshd configuration.
    fn make_keys(&self, root: &Path) -> (PathBuf, PathBuf) {
        let host_key = root.join("host_ed25519");
        ssh_keygen(&host_key);
        ssh_keygen(&self.client_key);
        let authorized_keys = root.join("authorized_keys");
        fs::copy(self.client_key.with_extension("pub"), &authorized_keys)
            .expect("write authorized_keys from the client's public key");
        // sshd refuses to start without its privilege-separation directory. Every sshd on the
        // machine shares it: create it if missing, never remove it.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd")
            .expect("create /run/sshd");
        (host_key, authorized_keys)
    }

    /// Writes sshd's configuration and starts it. On loopback the port is a free one, taken
    /// again (up to [`PORT_ATTEMPTS`] times) if another process grabbed it first; in the
    /// namespace mode it is [`NETNS_PORT`]. Panics with the last error if sshd never came up.
    fn start_sshd(&mut self, host_key: &Path, authorized_keys: &Path) {
        let netns = self.options.netns;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = if netns { NETNS_PORT } else { free_port() };
            let config = format!(
                "Port {port}\n\
                 ListenAddress {address}\n\
                 HostKey {host_key}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {authorized_keys}\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 Subsystem sftp internal-sftp\n",
                port = self.port,
                address = self.server_ip,
                host_key = host_key.display(),
                authorized_keys = authorized_keys.display(),
            );
            fs::write(&self.config, config).expect("write sshd_config");
            match self.spawn_sshd() {
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
    }

    /// Unmounts and mounts again, with a new sshfs process: nothing cached, inodes numbered
    /// anew (as after a reboot or a remount by the user). Panics if the mount is in use or
    /// does not come back within 10 s.
    pub fn remount(&mut self) {
        let unmounted = self.unmount();
        assert!(
            unmounted == Unmounted::Cleanly,
            "remount: {} was in use ({unmounted:?})",
            self.mnt.display()
        );
        self.stop_sshfs(unmounted);
        self.mount();
    }

    /// The directory sshd serves: the server's side of the share.
    pub fn served(&self) -> &Path {
        &self.served
    }

    /// The sshfs mount point: the client's side of the share.
    pub fn mnt(&self) -> &Path {
        &self.mnt
    }

    /// The port sshd listens on (the same across [`Self::restart_server`]): a free loopback
    /// port, or 22 in the namespace mode.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address sshd listens on: `127.0.0.1:<port>`, or in the namespace mode
    /// `169.254.x.1:22`, reachable only from [`Self::client_netns`].
    pub fn server_addr(&self) -> SocketAddr {
        SocketAddr::from((self.server_ip, self.port))
    }

    /// The `ip netns` name of the server's network namespace, in the namespace mode.
    pub fn server_netns(&self) -> Option<&str> {
        self.netns.as_ref().map(|ns| ns.server.as_str())
    }

    /// The `ip netns` name of the client's network namespace (where sshfs runs), in the
    /// namespace mode.
    pub fn client_netns(&self) -> Option<&str> {
        self.netns.as_ref().map(|ns| ns.client.as_str())
    }

    /// The pids of the server: the sshd listener and all its descendants (the sessions that
    /// serve the mount). Empty while the server is down.
    pub fn server_pids(&self) -> Vec<u32> {
        match &self.sshd {
            Some(listener) if alive(listener.id()) => {
                let mut pids = vec![listener.id()];
                pids.extend(descendants(listener.id()));
                pids
            }
            _ => Vec::new(),
        }
    }

    /// Kills the server: the sshd listener *and* its session children (killing only the
    /// listener leaves the established sftp session working). Returns once they are gone.
    ///
    /// The mount stays (with the default, resilient options); calls through it then fail
    /// with EIO. Also ends a freeze. Does nothing if the server is already down. Panics if the
    /// processes do not go away within 10 s.
    pub fn kill_server(&mut self) {
        if let Err(e) = self.stop_server() {
            panic!("kill_server: {e}");
        }
    }

    /// Starts sshd again on the same address with the same configuration (killing it first
    /// if it is running) and returns once it listens.
    ///
    /// sshfs reconnects on the next call through the mount. Panics if sshd does not come up
    /// within 10 s.
    pub fn restart_server(&mut self) {
        self.kill_server();
        if let Err(e) = self.spawn_sshd() {
            panic!("restart_server: {e}");
        }
    }

    /// Freezes the server: SIGSTOP to the sshd listener and all its session children, so
    /// that TCP connections stay up but nothing answers (new connections are accepted by the
    /// kernel, and wait). Returns once all of them are stopped.
    ///
    /// With the resilient options calls through the mount then fail with EIO after a second
    /// or two; with sshfs's defaults every call hangs until [`Self::thaw_server`] (or Drop).
    /// Never touch the mount from the test's own thread while frozen. Calling it again
    /// stops any process the server started since. Panics if the server is not running or
    /// its processes do not stop within 10 s.
    pub fn freeze_server(&mut self) {
        let running = self
            .sshd
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        let listener = match self.sshd.as_ref() {
            Some(child) if running => child.id(),
            _ => panic!("freeze_server: the server is not running"),
        };
        if !self.frozen.contains(&listener) {
            if let Err(e) = send_signal(listener, libc::SIGSTOP) {
                panic!("freeze_server: SIGSTOP the sshd listener (pid {listener}): {e}");
            }
            self.frozen.push(listener);
        }
        // The listener, once stopped, forks no new session; a session may still fork (a
        // session's monitor starts its user process), so stop until no new process shows up
        // and all are stopped.
        let frozen = &mut self.frozen;
        let settled = poll_until(STOP_TIMEOUT, || {
            let mut new = false;
            for pid in descendants(listener) {
                if !frozen.contains(&pid) {
                    // It may have exited since the scan: ESRCH is fine.
                    let _ = send_signal(pid, libc::SIGSTOP);
                    frozen.push(pid);
                    new = true;
                }
            }
            !new && frozen.iter().all(|&p| !alive(p) || stopped(p))
        });
        if !settled {
            panic!(
                "freeze_server: sshd processes {:?} did not stop within {STOP_TIMEOUT:?}",
                self.frozen
                    .iter()
                    .filter(|&&p| alive(p) && !stopped(p))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Thaws the server that [`Self::freeze_server`] froze: SIGCONT to all the processes it
    /// stopped. Returns once none of them is stopped; sshfs carries on (or, with the
    /// resilient options, reconnects on the next call). Does nothing if not frozen. Panics if
    /// they do not continue within 10 s.
    pub fn thaw_server(&mut self) {
        if let Err(e) = self.thaw() {
            panic!("thaw_server: {e}");
        }
    }

    /// Cuts the link between client and server (namespace mode only): sets the client's end
    /// of the veth pair down and returns once it is down. TCP connections stay open but
    /// nothing gets through; with the resilient options calls through the mount fail with
    /// EIO after about a second, with sshfs's defaults they hang until
    /// [`Self::restore_link`]. Panics if the remote is not in the namespace mode, or the link
    /// does not go down within 10 s.
    pub fn cut_link(&mut self) {
        self.set_link(false);
        self.link_cut = true;
    }

    /// Restores the link that [`Self::cut_link`] cut and returns once the client's end is up
    /// again (carrier and route back). Panics if the remote is not in the namespace mode, or
    /// the link does not come up within 10 s.
    pub fn restore_link(&mut self) {
        self.set_link(true);
        self.link_cut = false;
    }

    /// True while the link is cut.
    pub fn is_link_cut(&self) -> bool {
        self.link_cut
    }

    /// Aborts the mount's FUSE connection: every call waiting in it, and every later one,
    /// fails at once (`ECONNABORTED` or `ENOTCONN`), and sshfs exits (unmounting, or leaving
    /// a dead mount that Drop removes). The way out of calls that would otherwise hang for
    /// good; after it only Drop is useful.
    ///
    /// Mounts the FUSE control file system on `/sys/fs/fuse/connections` if it is not
    /// mounted (and leaves it: it is shared), then writes `1` to `<dev>/abort`, where `<dev>`
    /// is the mount's device number as recorded right after mounting (the mount point itself
    /// is never touched, so this cannot hang). Does nothing if the mount is gone. Panics if
    /// the control file system cannot be mounted or written.
    pub fn abort_connection(&self) {
        if let Err(e) = self.try_abort_connection() {
            panic!("abort_connection: {e}");
        }
    }

    /// [`Self::abort_connection`] without the panic: true if it aborted, false if there was
    /// nothing to abort.
    fn try_abort_connection(&self) -> Result<bool, String> {
        let Some(dev) = self.fuse_dev else {
            return Ok(false);
        };
        // Only while our mount is in the table with the recorded number is that number ours
        // (once it is gone the kernel may give it to another test's mount).
        let ours = |mounts: &[MountInfo]| {
            mounts
                .iter()
                .any(|m| m.point == self.mnt && m.dev == dev && m.fstype.starts_with("fuse"))
        };
        let table = mounts().map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
        if !ours(&table) {
            return Ok(false);
        }
        if !table
            .iter()
            .any(|m| m.point == Path::new(FUSECTL) && m.fstype == "fusectl")
        {
            run(Command::new("mount").args(["-t", "fusectl", "none", FUSECTL]))?;
        }
        let abort = Path::new(FUSECTL).join(dev.to_string()).join("abort");
        match fs::write(&abort, b"1") {
            Ok(()) => Ok(true),
            // The connection went away since we looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("write 1 to {}: {e}", abort.display())),
        }
    }

    /// Sets the client's end of the veth pair up or down and waits (bounded) until it is so.
    fn set_link(&mut self, up: bool) {
        let ns = self
            .netns
            .as_ref()
            .expect("cut_link and restore_link need the namespace mode (start_in_netns)");
        let (word, state) = if up { ("up", "UP") } else { ("down", "DOWN") };
        if let Err(e) =
            run(Command::new("ip").args(["-n", &ns.client, "link", "set", CLIENT_VETH, word]))
        {
            panic!("set the link {word}: {e}");
        }
        wait_until(
            &format!("{CLIENT_VETH} in {} is {state}", ns.client),
            STOP_TIMEOUT,
            || link_state(&ns.client, CLIENT_VETH).as_deref() == Some(state),
        );
    }

    /// SIGCONT to every process that the freeze stopped, then waits (bounded) until none is
    /// stopped. Never panics.
    fn thaw(&mut self) -> Result<(), String> {
        if self.frozen.is_empty() {
            return Ok(());
        }
        for &pid in &self.frozen {
            // One may have been killed since: ESRCH is fine.
            let _ = send_signal(pid, libc::SIGCONT);
        }
        let frozen = std::mem::take(&mut self.frozen);
        if poll_until(STOP_TIMEOUT, || {
            frozen.iter().all(|&p| !alive(p) || !stopped(p))
        }) {
            Ok(())
        } else {
            Err(format!(
                "sshd processes {:?} still stopped {STOP_TIMEOUT:?} after SIGCONT",
                frozen
                    .iter()
                    .filter(|&&p| alive(p) && stopped(p))
                    .collect::<Vec<_>>()
            ))
        }
    }

    /// Spawns `sshd -D -e -f <config>` (stderr appended to `sshd.log`), in the server's
    /// namespace in the namespace mode, and waits until it listens. On failure nothing is
    /// left running.
    fn spawn_sshd(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.sshd_log)
            .map_err(|e| format!("open {}: {e}", self.sshd_log.display()))?;
        // Not `ip netns exec`: it would also give sshd a copy of our mount namespace, which
        // pins every mount that exists at that moment (other tests' sshfs mounts included)
        // for as long as sshd runs. `nsenter` execs sshd, so the child's pid is sshd's.
        let mut command = match &self.netns {
            None => Command::new("/usr/sbin/sshd"),
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(ns.server_path()).arg("/usr/sbin/sshd");
                c
            }
        };
        let child = command
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("run {command:?} (is openssh-server installed?): {e}"))?;
        let pid = child.id();
        self.sshd = Some(child);
        let addr = self.server_addr();
        let mut exited = None;
        let up = poll_until(START_TIMEOUT, || {
            if let Some(child) = self.sshd.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            // Read in sshd's own network namespace, so this works in both modes.
            listens(pid, addr)
        });
        let problem = match exited {
            Some(status) => {
                self.sshd = None;
                format!("sshd exited ({status}) before listening on {addr}")
            }
            None if !up => {
                // Best effort: the error below is what matters.
                let _ = self.stop_server();
                format!("sshd did not listen on {addr} within {START_TIMEOUT:?}")
            }
            None => return Ok(()),
        };
        Err(format!(
            "{problem}; {}:\n{}",
            self.sshd_log.display(),
            log_tail(&self.sshd_log)
        ))
    }

    /// Mounts `served/` on `mnt/` with sshfs in the foreground (in the client's namespace in
    /// the namespace mode), waits for the mount and records its device number.
    fn mount(&mut self) {
        let log = File::create(&self.sshfs_log).expect("create sshfs.log");
        let (ip, port) = match &self.proxy {
            Some(proxy) => (Ipv4Addr::LOCALHOST, proxy.addr().port()),
            None => (self.server_ip, self.port),
        };
        let options = format!(
            "port={port},IdentityFile={key},IdentitiesOnly=yes,StrictHostKeyChecking=no,\
             UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes{rest}",
            key = self.client_key.display(),
            rest = self.options.mount_options(),
        );
        let mut source = OsString::from(format!("root@{ip}:"));
        source.push(&self.served);
        // `nsenter --net` only: `ip netns exec` would mount in a mount namespace of its own,
        // invisible to us.
        let mut command = match &self.netns {
            None => Command::new("sshfs"),
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(ns.client_path()).arg("sshfs");
                c
            }
        };
        let child = command
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
        let mut dev = None;
        let mounted = poll_until(START_TIMEOUT, || {
            if let Some(child) = self.sshfs.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            dev = mounts().ok().and_then(|table| {
                table
                    .into_iter()
                    .rev()
                    .find(|m| m.point == self.mnt)
                    .map(|m| m.dev)
            });
            dev.is_some()
        });
        let problem = match exited {
            Some(status) => {
                self.sshfs = None;
                format!("sshfs exited ({status}) without mounting")
            }
            None if !mounted => format!("sshfs did not mount within {START_TIMEOUT:?}"),
            None => {
                // Recorded now, while nothing can hang: later the mount point must not be
                // touched (a stat of it hangs while the server is frozen).
                self.fuse_dev = dev;
                return;
            }
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
        // Killed processes need no thawing (SIGKILL ends stopped processes too).
        self.frozen.clear();
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

    /// True if `mnt/` is in the mount table (or the table cannot be read).
    fn mounted(&self) -> bool {
        mounts().map_or(true, |table| table.iter().any(|m| m.point == self.mnt))
    }

    /// Unmounts `mnt/`: a plain unmount; else (the mount is busy: a file left open through
    /// it, or a call stuck in it) aborts the FUSE connection, which ends stuck calls, and
    /// detaches the mount (`umount -l`). Never touches the mount point itself, never panics.
    fn unmount(&mut self) -> Unmounted {
        if !self.mounted() {
            return Unmounted::Cleanly;
        }
        if umount(&self.mnt, 0).is_ok() || !self.mounted() {
            return Unmounted::Cleanly;
        }
        // Abort while the mount is still in the table: then its device number is surely
        // ours (see try_abort_connection).
        if let Err(e) = self.try_abort_connection() {
            eprintln!(
                "SshfsRemote: abort the FUSE connection of {}: {e}",
                self.mnt.display()
            );
        }
        // After the abort sshfs may unmount by itself: either way is fine.
        let _ = umount(&self.mnt, libc::MNT_DETACH);
        if self.mounted() {
            Unmounted::Not
        } else {
            Unmounted::Lazily
        }
    }

    /// Stops sshfs and its ssh: after a clean unmount sshfs exits by itself (waited for,
    /// bounded); after a lazy one it would serve the open files for as long as they stay
    /// open, so it is killed. Never panics.
    fn stop_sshfs(&mut self, unmounted: Unmounted) {
        let Some(mut sshfs) = self.sshfs.take() else {
            return;
        };
        // Collected before sshfs exits, while they are still its children.
        let helpers = descendants(sshfs.id());
        let exited = |c: &mut Child| c.try_wait().ok().flatten().is_some();
        if unmounted != Unmounted::Cleanly || !poll_until(STOP_TIMEOUT, || exited(&mut sshfs)) {
            let _ = sshfs.kill();
            poll_until(STOP_TIMEOUT, || exited(&mut sshfs));
        }
        // ssh normally exits with sshfs (its pipes close), but not necessarily at once; in
        // the namespace mode it must be gone before the namespace is deleted.
        for &pid in &helpers {
            if alive(pid) {
                let _ = send_signal(pid, libc::SIGKILL);
            }
        }
        if !poll_until(STOP_TIMEOUT, || helpers.iter().all(|&p| !alive(p))) {
            eprintln!(
                "SshfsRemote: sshfs's helpers {helpers:?} did not exit within {STOP_TIMEOUT:?}"
            );
        }
    }
}

/// How [`SshfsRemote::unmount`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unmounted {
    /// Not mounted any more, and nothing used the mount.
    Cleanly,
    /// Detached from the tree (after aborting the connection), but it was in use.
    Lazily,
    /// Still mounted.
    Not,
}

impl Drop for SshfsRemote {
    fn drop(&mut self) {
        // First of all: nothing may stay stopped, whatever happens next.
        if let Err(e) = self.thaw() {
            eprintln!("SshfsRemote: {e}");
        }
        let unmounted = self.unmount();
        self.stop_sshfs(unmounted);
        self.proxy = None;
        if let Err(e) = self.stop_server() {
            eprintln!("SshfsRemote: {e}");
        }
        if let Some(ns) = self.netns.as_mut() {
            ns.teardown();
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

/// True if a TCP socket of `pid`'s network namespace listens on `addr`: reads
/// `/proc/<pid>/net/tcp`, which shows the namespace of that process.
fn listens(pid: u32, addr: SocketAddr) -> bool {
    let SocketAddr::V4(addr) = addr else {
        return false;
    };
    // The kernel prints the address as the in-memory u32, and the port in host order.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    fs::read_to_string(format!("/proc/{pid}/net/tcp")).is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let mut fields = line.split_ascii_whitespace();
            // "sl local_address rem_address st ...", LISTEN is 0A.
            fields.nth(1) == Some(local.as_str()) && fields.nth(1) == Some("0A")
        })
    })
}

/// True if `pid` is stopped (by a signal).
fn stopped(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state == b'T')
}

/// umount2(2) on `path` with `flags` (and `UMOUNT_NOFOLLOW`). Unlike `umount` and
/// `fusermount3`, never canonicalizes or stats the path's last component, which would hang
/// on a frozen mount.
#[allow(unsafe_code)]
fn umount(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), flags | libc::UMOUNT_NOFOLLOW) } == 0 {
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
    fn parses_mountinfo_lines() {
        let m = parse_mountinfo_line(
            b"612 27 0:105 / /tmp/a\\040b/mnt rw,nosuid,nodev,relatime shared:1 - fuse.sshfs \
              root@127.0.0.1:/x rw,user_id=0,group_id=0",
        )
        .expect("a valid line");
        assert_eq!(m.dev, 105);
        assert_eq!(m.point, Path::new("/tmp/a b/mnt"));
        assert_eq!(m.fstype, "fuse.sshfs");
        let m = parse_mountinfo_line(b"27 1 254:3 / / rw,relatime - ext4 /dev/vda rw")
            .expect("a valid line");
        assert_eq!(m.dev, (254 << 20) | 3);
        assert_eq!(m.fstype, "ext4");
        assert!(parse_mountinfo_line(b"").is_none());
    }

    #[test]
    fn sees_its_own_listening_socket() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("its address");
        assert!(listens(std::process::id(), addr));
        drop(listener);
        assert!(!listens(std::process::id(), addr));
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
        send_signal(child.id(), libc::SIGSTOP).expect("stop sleep");
        wait_until("sleep is stopped", Duration::from_secs(10), || {
            stopped(child.id())
        });
        send_signal(child.id(), libc::SIGCONT).expect("continue sleep");
        wait_until("sleep runs again", Duration::from_secs(10), || {
            !stopped(child.id())
        });
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
