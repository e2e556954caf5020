//! Helpers for the tests that run the `cachesync` binary as a user runs it: a temporary
//! remote directory and workspace ([`Env`]), the binary run in a hermetic environment, views
//! of both trees and the JSON reports.
//!
//! The binary is the one cargo built beside the running test (see [`binary`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The `cachesync` binary cargo built for the running test: integration tests run from
/// `target/<profile>/deps/`, the binary is in `target/<profile>/`. Panics, saying where it
/// looked, when it is not there (run the tests of the `cachesync` package, which builds it).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile_dir.join("cachesync");
    assert!(
        bin.is_file(),
        "the cachesync binary is not at {} (run the cachesync package's tests)",
        bin.display()
    );
    bin
}

/// One run of the binary.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Raw standard output.
    pub stdout: Vec<u8>,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Run {
    /// Standard output, lossily decoded.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.out(),
                self.stderr
            )
        })
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code,
            self.out(),
            self.stderr
        )
    }
}

/// A test's world: a temporary directory holding the remote, the workspace and a HOME.
pub struct Env {
    tmp: tempfile::TempDir,
    /// The remote directory.
    pub remote: PathBuf,
    /// The workspace (not created until [`Env::clone_ws`]).
    pub ws: PathBuf,
    /// A private HOME for the binary.
    pub home: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    /// An empty remote directory, no workspace yet.
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().expect("create a temporary directory");
        let remote = tmp.path().join("remote");
        let home = tmp.path().join("home");
        fs::create_dir(&remote).expect("create the remote directory");
        fs::create_dir(&home).expect("create HOME");
        let ws = tmp.path().join("ws");
        Env {
            tmp,
            remote,
            ws,
            home,
        }
    }

    /// A remote holding `files` (path, content); parents are created.
    pub fn with_remote(files: &[(&str, &str)]) -> Env {
        let env = Env::new();
        for (path, body) in files {
            env.put_remote(path, body);
        }
        env
    }

    /// The temporary root (holds remote/, ws/, home/).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs `cachesync ARGS` in `dir` with a cleared environment (PATH and HOME only).
    pub fn run_in<I, S>(&self, dir: &Path, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with(dir, args, &[])
    }

    /// [`Env::run_in`] with `extra` environment variables (a crash point, a trace file).
    pub fn run_with<I, S>(&self, dir: &Path, args: I, extra: &[(&str, &OsStr)]) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = Command::new(binary())
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .envs(extra.iter().copied())
            .output()
            .expect("the cachesync binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            signal: std::os::unix::process::ExitStatusExt::signal(&out.status),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Hands the workspace and HOME to the unprivileged user `nobody` (65534) and returns a
    /// copy of the binary that user can run (the build directory under /root is out of its
    /// reach): [`Env::run_as_nobody`] runs it.
    pub fn hand_to_nobody(&self) -> PathBuf {
        for entry in walk(&self.ws).into_iter().chain([self.home.clone()]) {
            std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        fs::set_permissions(self.root(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let bin = self.root().join("cachesync");
        fs::copy(binary(), &bin).expect("copy the binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    }

    /// Runs `bin ARGS` (see [`Env::hand_to_nobody`]) inside the workspace as `nobody`.
    pub fn run_as_nobody(&self, bin: &Path, args: &[&str]) -> Run {
        use std::os::unix::process::CommandExt;
        let out = Command::new(bin)
            .args(args)
            .current_dir(&self.ws)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run as nobody");
        Run {
            code: out.status.code().unwrap_or(-1),
            signal: std::os::unix::process::ExitStatusExt::signal(&out.status),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `cachesync ARGS` inside the workspace.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_in(&self.ws, args)
    }

    /// Runs `cachesync ARGS` inside the workspace and asserts the exit code.
    pub fn expect_code(&self, code: i32, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, code, "cachesync {args:?}: {r}");
        r
    }

    /// Runs `cachesync ARGS` inside the workspace and asserts it succeeds.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.expect_code(0, args)
    }

    /// Runs a `--json` command inside the workspace, asserts the exit code, parses stdout.
    pub fn json(&self, code: i32, args: &[&str]) -> serde_json::Value {
        self.expect_code(code, args).json()
    }

    /// `cachesync clone REMOTE WS`, run from the temporary root; asserts success.
    pub fn clone_ws(&self) -> Run {
        let r = self.run_in(
            self.root(),
            [
                OsStr::new("clone"),
                self.remote.as_os_str(),
                self.ws.as_os_str(),
            ],
        );
        assert_eq!(r.code, 0, "clone: {r}");
        r
    }

    /// `cachesync clone REMOTE WS EXTRA...`, run from the temporary root; the exit code is
    /// the caller's to check.
    pub fn clone_with(&self, extra: &[&str]) -> Run {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("clone"),
            self.remote.as_os_str(),
            self.ws.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        self.run_in(self.root(), args)
    }

    /// Runs `sync --json` and asserts it planned no step: both sides were settled.
    pub fn assert_noop_sync(&self) {
        let again = self.json(0, &["sync", "--json"]);
        assert_eq!(steps(&again).len(), 0, "{again}");
    }

    /// Changes the workspace's `config.json` with `f`.
    pub fn set_config(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let path = self.w(".cachesync/config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&read(&path)).expect("the config is JSON");
        f(&mut c);
        std::fs::write(&path, c.to_string()).expect("write the config");
    }

    /// The remote path of `rel`.
    pub fn r(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.remote.join(rel)
    }

    /// The workspace path of `rel`.
    pub fn w(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.ws.join(rel)
    }

    /// Writes a remote file (parents created), making sure its mtime differs from the one
    /// it had, so the remote scan (which trusts size and mtime) sees the change.
    pub fn put_remote(&self, rel: impl AsRef<Path>, body: impl AsRef<[u8]>) {
        write_changed(&self.r(rel), body.as_ref());
    }

    /// Writes a workspace file (parents created).
    pub fn put_local(&self, rel: impl AsRef<Path>, body: impl AsRef<[u8]>) {
        write_changed(&self.w(rel), body.as_ref());
    }

    /// The workspace as a tree (cachesync's own files left out).
    pub fn local_tree(&self) -> Tree {
        tree(&self.ws)
    }

    /// The remote as a tree (cachesync's own files left out).
    pub fn remote_tree(&self) -> Tree {
        tree(&self.remote)
    }

    /// Asserts both sides hold the same entries, contents, modes and targets.
    pub fn assert_in_sync(&self) {
        let (l, r) = (self.local_tree(), self.remote_tree());
        assert_eq!(
            l,
            r,
            "workspace (left) and remote (right) differ:\n{}",
            diff(&l, &r)
        );
    }
}

/// Writes `path` (parents created); when it existed, makes sure the mtime changed.
pub fn write_changed(path: &Path, body: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    let before = fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok());
    fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    if let Some(before) = before {
        let after = fs::metadata(path)
            .and_then(|m| m.modified())
            .expect("stat after write");
        if after <= before {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open to set mtime");
            f.set_modified(before + Duration::from_secs(1))
                .expect("set mtime");
        }
    }
}

/// Dates every file under `root` an hour back: a file written just before a scan is racy,
/// and the next scan reads it again (as git does), which a test counting bytes read must
/// not see.
pub fn age_files(root: &Path) {
    for (path, node) in tree(root) {
        if let Node::File(..) = node {
            age(&root.join(OsStr::from_bytes(&path)));
        }
    }
}

/// Dates the file at `path` an hour back (see [`age_files`]).
pub fn age(path: &Path) {
    let then = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(then))
        .unwrap_or_else(|e| panic!("date {}: {e}", path.display()));
}

/// Reads a file as a string.
pub fn read(path: impl AsRef<Path>) -> String {
    let p = path.as_ref();
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Permission bits of `path` (not following symlinks).
pub fn mode(path: impl AsRef<Path>) -> u32 {
    let p = path.as_ref();
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Sets permission bits.
pub fn chmod(path: impl AsRef<Path>, mode: u32) {
    let p = path.as_ref();
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// True when something (even a dangling symlink) is at `path`.
pub fn exists(path: impl AsRef<Path>) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Creates a fifo with `mkfifo`.
pub fn mkfifo(path: impl AsRef<Path>) {
    let p = path.as_ref();
    let st = Command::new("mkfifo").arg(p).status().expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", p.display());
}

/// A path from raw bytes.
pub fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What one path holds, for comparing the two sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A regular file: permission bits and content.
    File(u32, Vec<u8>),
    /// A directory and its permission bits.
    Dir(u32),
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A fifo and its permission bits.
    Fifo(u32),
    /// Anything else.
    Other,
}

/// Path (bytes) → node.
pub type Tree = BTreeMap<Vec<u8>, Node>;

/// Walks `root`, leaving out `.cachesync/`, the remote marker and temporary files.
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for item in fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            let item = item.expect("directory entry");
            let name = item.file_name();
            let child = rel.join(&name);
            if rel.as_os_str().is_empty() && (name == ".cachesync" || name == ".cachesync-remote") {
                continue;
            }
            if name.as_bytes().starts_with(b".cachesync-tmp.") {
                continue;
            }
            let p = item.path();
            let md = fs::symlink_metadata(&p).expect("stat");
            let ft = md.file_type();
            let bits = md.permissions().mode() & 0o7777;
            let node = if ft.is_symlink() {
                Node::Symlink(
                    fs::read_link(&p)
                        .expect("readlink")
                        .into_os_string()
                        .into_vec(),
                )
            } else if ft.is_dir() {
                stack.push(child.clone());
                Node::Dir(bits)
            } else if ft.is_file() {
                Node::File(bits, fs::read(&p).expect("read file"))
            } else if ft.is_fifo() {
                Node::Fifo(bits)
            } else {
                Node::Other
            };
            out.insert(child.into_os_string().into_vec(), node);
        }
    }
    out
}

/// Lines naming the paths where two trees differ.
pub fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            out.push_str(&format!(
                "  {:?}: {:?} vs {:?}\n",
                String::from_utf8_lossy(k),
                x.map(short),
                y.map(short)
            ));
        }
    }
    out
}

fn short(n: &Node) -> String {
    match n {
        Node::File(m, c) => format!("file {m:o} {:?}", String::from_utf8_lossy(c)),
        other => format!("{other:?}"),
    }
}

/// The `steps` array of a `pull/push/sync --json` report.
pub fn steps(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps array in {report}"))
        .clone()
}

/// True when `report` has a step with these side, op and path.
pub fn has_step(report: &serde_json::Value, side: &str, op: &str, path: &str) -> bool {
    steps(report)
        .iter()
        .any(|s| s["side"] == side && s["op"] == op && s["path"] == path)
}

/// The `path` fields of a JSON array of objects.
pub fn paths_of(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| v["path"].as_str().expect("path is a string").to_string())
        .collect()
}

/// The unprivileged user's id (and its group's).
pub const NOBODY: u32 = 65534;

/// Every path under `root` (itself included), symlinks not followed.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if p.is_dir() && !p.is_symlink() {
            for e in fs::read_dir(&p).expect("read_dir") {
                out.push(e.expect("entry").path());
            }
        }
        i += 1;
    }
    out
}

/// A path as an `OsStr` argument.
pub fn arg(p: &Path) -> &OsStr {
    p.as_os_str()
}

/// Runs the binary in `dir` with only `PATH` and the `extra` variables set (for tests that
/// keep their own directories, such as a mounted share or a crash point).
pub fn cachesync(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(extra.iter().copied())
        .output()
        .expect("the cachesync binary runs")
}

/// Starts `cachesync ARGS` in `dir` (HOME `home`, nothing else from the environment), to
/// pause at the crash point `point`: there it creates `pause` and waits (at most two minutes)
/// until the test removes it. Standard output and error are piped.
pub fn spawn_paused(
    dir: &Path,
    home: &Path,
    args: &[&str],
    point: &str,
    pause: &Path,
) -> std::process::Child {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("CACHESYNC_PAUSE", point)
        .env("CACHESYNC_PAUSE_FILE", pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the cachesync binary starts")
}

/// `len` pseudo-random bytes (xorshift from `seed`): incompressible, so the store holds as
/// much as the workspace.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// cachesync's temporary files under `root`, and files staged for an apply in its
/// `.cachesync/incoming/` (the rest of `.cachesync/` left out: the scenario trees skip it).
pub fn leftovers(root: &Path) -> Vec<String> {
    let mut out = staged(root);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            if dir == root && name == ".cachesync" {
                continue;
            }
            if name.as_bytes().starts_with(b".cachesync-tmp.") {
                out.push(e.path().display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

/// The files staged for an apply in the workspace `root` (`.cachesync/incoming/`): none
/// once a run is over.
pub fn staged(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(".cachesync").join("incoming")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// A tmpfs of a given size mounted at a directory for the length of a test.
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `dir` (made if need be).
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).expect("mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            st.success(),
            "mount a tmpfs at {} (needs root)",
            dir.display()
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Gives it `size` instead.
    pub fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("mount runs");
        assert!(st.success(), "remount {}", self.dir.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
