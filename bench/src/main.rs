//! `cachesync-bench`: cachesync and its peers (rsync, rclone sync, unison, rclone bisync; git
//! status for local status) on the same generated trees, over the same links, in the same
//! run, alternating, with medians, spreads and ratios. `make bench` runs it; the figures go
//! to `docs/benchmarks.md`.
//!
//! Links: a local directory, and an sshfs mount on loopback (testutils' private sshd), with
//! no added delay or with +20 ms round trip through testutils' delaying proxy. Every timed
//! run over sshfs starts on a fresh mount (no listing or attribute cached).

mod measure;
mod tree;
mod view;
mod view_share;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cachesync_testutils::SshfsRemote;
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use measure::{du, median, run, Sample};
use tree::Made;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks cachesync against rsync, rclone and unison on the same trees")]
struct Args {
    /// The cachesync binary to measure (build it with --release).
    #[arg(long)]
    cachesync: PathBuf,
    /// Suites to run (default: all).
    #[arg(long, value_delimiter = ',')]
    suites: Vec<Suite>,
    /// Timed runs of each re-sync and status, per tool.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Timed first copies per tool (the serial peers take minutes each at +20 ms).
    #[arg(long, default_value_t = 1)]
    first_runs: usize,
    /// Trees a tenth of the size: a quick check of the harness itself.
    #[arg(long)]
    quick: bool,
    /// Where the tables (markdown) and figures (JSON) go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Where the trees, copies and workspaces are made (a directory on the file system to
    /// measure, e.g. one that shares blocks on copy).
    #[arg(long, default_value = "/var/tmp")]
    work: PathBuf,
    /// The seed of the generated trees.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Peers to leave out.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<Tool>,
    /// A command to run cachesync under, for profiling: `--wrap "strace -f -tt -o trace"`.
    #[arg(long)]
    wrap: Option<String>,
    /// Starts the +20 ms sshfs link with the 1,000-file tree, prints where, remounts at each
    /// line read from stdin and stops at its end: for profiling by hand.
    #[arg(long)]
    hold: bool,
    /// The linux-source tarball for the `linux` suite.
    #[arg(long, default_value = "/usr/src/linux-source-6.1.tar.xz")]
    linux_tarball: PathBuf,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// 5,000 files / 200 MB in a local directory.
    Local,
    /// 5,000 files / 200 MB over sshfs on loopback.
    Sshfs,
    /// 1,000 files / 40 MB over sshfs with +20 ms round trip.
    Sshfs20,
    /// 100,000 small files (and 10,000 for the growth per file), local.
    Many,
    /// One 2 GB file, local: first copy and a one-byte change.
    Big,
    /// 1,000,000 small files, local: first copy, no-change re-sync and status, each with its
    /// peak memory, to see how time and memory grow per file past 100,000.
    Million,
    /// The Linux kernel source from Debian's linux-source, local.
    Linux,
    /// Through `cachesync mount` against the workspace directly: a 1 GiB file read and
    /// written, 100,000 files stat'ed.
    View,
    /// Through `cachesync mount` over sshfs at +20 ms, against `rclone mount
    /// --vfs-cache-mode full` of the same sshfs path: the first byte of a remote-only 1 GiB
    /// file, a warm `ls -lR` and `grep -r`, and what each does with the share gone.
    ViewShare,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Tool {
    Cachesync,
    Rsync,
    Rclone,
    Unison,
    Bisync,
    Git,
    /// The same files in the workspace directory (the `view` suite's reference).
    Direct,
    /// `rclone mount --vfs-cache-mode full` (the `view-share` suite's peer).
    RcloneMount,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Cachesync => "cachesync",
            Tool::Rsync => "rsync -a",
            Tool::Rclone => "rclone sync",
            Tool::Unison => "unison",
            Tool::Bisync => "rclone bisync",
            Tool::Git => "git status",
            Tool::Direct => "direct (no view)",
            Tool::RcloneMount => "rclone mount, vfs full",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Tool::Cachesync => "cachesync",
            Tool::Rsync => "rsync",
            Tool::Rclone => "rclone",
            Tool::Unison => "unison",
            Tool::Bisync => "bisync",
            Tool::Git => "git",
            Tool::Direct => "direct",
            Tool::RcloneMount => "rclone-mount",
        }
    }
}

/// The timed runs of one operation by one tool.
#[derive(Debug)]
struct Row {
    op: String,
    tool: Tool,
    samples: Vec<Sample>,
}

/// Where the remote is: a plain directory, or an sshfs mount of it.
struct Link {
    name: String,
    /// Where generated trees and changes are written ("on the server").
    served: PathBuf,
    /// Where the tools read the remote.
    src: PathBuf,
    sshfs: Option<SshfsRemote>,
}

impl Link {
    fn local(work: &Path) -> Result<Link> {
        let dir = work.join("remote");
        fs::create_dir_all(&dir)?;
        Ok(Link {
            name: "local directory".into(),
            served: dir.clone(),
            src: dir,
            sshfs: None,
        })
    }

    fn sshfs(one_way: Duration) -> Link {
        // sshfs's own caching as a user's mount has it; every timed run remounts first.
        let remote = SshfsRemote::builder()
            .dir_cache(true)
            .delay(one_way)
            .start();
        Link {
            name: if one_way.is_zero() {
                "sshfs, loopback".into()
            } else {
                format!("sshfs, +{} ms RTT", 2 * one_way.as_millis())
            },
            served: remote.served().to_path_buf(),
            src: remote.mnt().to_path_buf(),
            sshfs: Some(remote),
        }
    }

    /// A cold start: a fresh mount (nothing cached, inodes renumbered).
    fn cold(&mut self) {
        if let Some(r) = self.sshfs.as_mut() {
            r.remount();
        }
    }
}

struct Bench {
    args: Args,
    work: tempfile::TempDir,
    log: File,
    rows: BTreeMap<String, Vec<Row>>,
    extra: BTreeMap<String, Value>,
    rclone_conf: PathBuf,
    /// Set by SIGINT or SIGTERM: the tool being run gets the signal too (Ctrl-C) and the
    /// harness stops starting new runs, so that every fixture is dropped (unmounted).
    interrupted: Arc<AtomicBool>,
}

impl Bench {
    fn env(&self, c: &mut Command) {
        let home = self.work.path().join("home");
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("RCLONE_CONFIG", &self.rclone_conf)
            .env_remove("CACHESYNC_FAILPOINT")
            .env_remove("CACHESYNC_PAUSE");
    }

    fn tools(&self, all: &[Tool]) -> Vec<Tool> {
        all.iter()
            .copied()
            .filter(|t| !self.args.skip.contains(t))
            .collect()
    }

    /// The command that copies or re-syncs `src` into `dst` with `tool` (`first`: a first
    /// copy, which for cachesync is a clone and for bisync a --resync).
    fn command(&self, tool: Tool, src: &Path, dst: &Path, state: &Path, first: bool) -> Command {
        let mut c;
        match tool {
            Tool::Cachesync if first => {
                c = self.cachesync();
                c.arg("clone").arg(src).arg(dst).arg("--quiet");
            }
            Tool::Cachesync => {
                c = self.cachesync();
                c.arg("sync").arg("--quiet").current_dir(dst);
            }
            Tool::Rsync => {
                c = Command::new("rsync");
                c.arg("-a").arg(slash(src)).arg(slash(dst));
            }
            Tool::Rclone => {
                c = Command::new("rclone");
                c.arg("sync").arg(src).arg(dst);
            }
            Tool::Unison => {
                c = Command::new("unison");
                c.env("UNISON", state)
                    .arg(src)
                    .arg(dst)
                    .args(["-batch", "-auto", "-silent", "-times", "-ui", "text"]);
            }
            Tool::Bisync => {
                c = Command::new("rclone");
                c.arg("bisync")
                    .arg(src)
                    .arg(dst)
                    .arg("--workdir")
                    .arg(state);
                if first {
                    c.arg("--resync");
                }
            }
            Tool::Git => {
                c = Command::new("git");
                c.arg("status").current_dir(dst);
            }
            Tool::Direct | Tool::RcloneMount => {
                unreachable!("the view suites run their own commands")
            }
        }
        self.env(&mut c);
        c
    }

    /// A command that runs cachesync (under `--wrap`, if given).
    fn cachesync(&self) -> Command {
        let mut words = self.args.wrap.iter().flat_map(|w| w.split_whitespace());
        match words.next() {
            Some(first) => {
                let mut c = Command::new(first);
                c.args(words).arg(&self.args.cachesync);
                c
            }
            None => Command::new(&self.args.cachesync),
        }
    }

    fn sample(&self, c: &mut Command) -> Result<Sample> {
        if self.interrupted.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        run(c, &self.log, &[])
    }

    fn push(&mut self, suite: &str, op: &str, tool: Tool, s: Sample) {
        let rows = self.rows.entry(suite.to_owned()).or_default();
        match rows.iter_mut().find(|r| r.op == op && r.tool == tool) {
            Some(r) => r.samples.push(s),
            None => rows.push(Row {
                op: op.to_owned(),
                tool,
                samples: vec![s],
            }),
        }
        eprintln!("  {suite} / {op} / {}: {:.3} s", tool.name(), s.secs);
    }

    fn note(&mut self, suite: &str, key: &str, v: Value) {
        eprintln!("  {suite} / {key}: {v}");
        let e = self
            .extra
            .entry(suite.to_owned())
            .or_insert_with(|| json!({}));
        e[key] = v;
    }

    fn dirs(&self, suite: &str, tool: Tool) -> (PathBuf, PathBuf) {
        let base = self.work.path().join(suite).join(tool.key());
        (base.join("data"), base.join("state"))
    }

    /// Puts `tool`'s copy and state aside, leaving an empty destination (cachesync's clone
    /// creates its own). Aside, not removed: they go with the work directory at the end.
    /// On ext4 without a journal (these machines) a new inode is never one freed in the
    /// last 60 s (300 more while its inode table block is dirty), and each allocation steps
    /// over every such inode: right after 100,000 files were removed, a first copy of
    /// 100,000 files took three times as long, whichever tool made it.
    fn reset(&self, suite: &str, tool: Tool) -> Result<()> {
        let (dst, state) = self.dirs(suite, tool);
        let trash = self.work.path().join("trash");
        fs::create_dir_all(&trash)?;
        for d in [&dst, &state] {
            if d.exists() {
                let aside = tempfile::Builder::new().tempdir_in(&trash)?.keep();
                fs::rename(d, aside.join("d"))
                    .with_context(|| format!("put {} aside", d.display()))?;
            }
        }
        fs::create_dir_all(&state)?;
        if tool != Tool::Cachesync {
            fs::create_dir_all(&dst)?;
        }
        Ok(())
    }

    /// First copies of `link.src` by each tool, `runs` times, alternating.
    fn first_copies(
        &mut self,
        suite: &str,
        link: &mut Link,
        tools: &[Tool],
        runs: usize,
    ) -> Result<()> {
        for r in 0..runs {
            for tool in rotated(tools, r) {
                self.reset(suite, tool)?;
                link.cold();
                // What the tree's making or the tool before left dirty is written back now,
                // untimed: it was written back during the next tool's run, which was always
                // cachesync's with one run (the first tool).
                settle_disks()?;
                let (dst, state) = self.dirs(suite, tool);
                let s = self.sample(&mut self.command(tool, &link.src, &dst, &state, true))?;
                self.push(suite, "first copy", tool, s);
            }
        }
        Ok(())
    }

    /// Re-syncs by each tool, `runs` times, alternating, each on a cold link; with
    /// `changes`, `changes` files are rewritten on the remote before each round, and every
    /// tool's copy is checked to hold them afterwards.
    fn resyncs(
        &mut self,
        suite: &str,
        link: &mut Link,
        tools: &[Tool],
        made: &Made,
        changes: usize,
    ) -> Result<()> {
        let op = if changes == 0 {
            "re-sync, no change".to_owned()
        } else {
            format!("re-sync, {changes} files changed")
        };
        for r in 0..self.args.runs {
            let changed = if changes > 0 {
                tree::change_files(
                    &link.served,
                    made,
                    changes,
                    self.args.seed + r as u64,
                    r as u64,
                )?
            } else {
                Vec::new()
            };
            for tool in rotated(tools, r) {
                link.cold();
                let (dst, state) = self.dirs(suite, tool);
                let s = self.sample(&mut self.command(tool, &link.src, &dst, &state, false))?;
                self.push(suite, &op, tool, s);
                for rel in &changed {
                    if fs::read(dst.join(rel)).ok() != fs::read(link.served.join(rel)).ok() {
                        bail!(
                            "{}: {} did not bring {} over",
                            suite,
                            tool.name(),
                            rel.display()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies, no-change and 10-changed re-syncs of a generated tree over `link`.
    fn tree_suite(&mut self, suite: &str, mut link: Link, files: usize, bytes: u64) -> Result<()> {
        eprintln!("{suite}: {files} files, {bytes} bytes, over {}", link.name);
        let made = tree::generate(&link.served, files, bytes, self.args.seed)?;
        self.note(suite, "link", json!(link.name));
        self.note(
            suite,
            "tree",
            json!({"files": made.files.len(), "dirs": made.dirs, "bytes": made.bytes}),
        );
        let tools = self.tools(&[
            Tool::Cachesync,
            Tool::Rsync,
            Tool::Rclone,
            Tool::Unison,
            Tool::Bisync,
        ]);
        self.first_copies(suite, &mut link, &tools, self.args.first_runs)?;
        self.resyncs(suite, &mut link, &tools, &made, 0)?;
        self.resyncs(suite, &mut link, &tools, &made, 10)?;
        self.verify_cost(suite, &mut link, &made, 10)?;
        let (ws, _) = self.dirs(suite, Tool::Cachesync);
        self.store_overhead(suite, &ws, du_files(&ws));
        Ok(())
    }

    /// What `verify_before_overwrite` costs: a push of `n` files edited in cachesync's
    /// workspace, with the setting on (the default: each remote file is read and hashed
    /// before it is written over) and off, alternating which goes first.
    fn verify_cost(&mut self, suite: &str, link: &mut Link, made: &Made, n: usize) -> Result<()> {
        if self.args.skip.contains(&Tool::Cachesync) {
            return Ok(());
        }
        let (ws, _) = self.dirs(suite, Tool::Cachesync);
        let config = ws.join(".cachesync/config.json");
        let set_verify = |on: bool| -> Result<()> {
            let mut c: Value = serde_json::from_str(&fs::read_to_string(&config)?)?;
            c["verify_before_overwrite"] = json!(on);
            fs::write(&config, c.to_string())?;
            Ok(())
        };
        let mut round = 1_000;
        for r in 0..self.args.runs {
            let order = if r % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for on in order {
                set_verify(on)?;
                round += 1;
                tree::change_files(&ws, made, n, self.args.seed + round, round)?;
                link.cold();
                let mut c = self.cachesync();
                c.args(["push", "--quiet"]).current_dir(&ws);
                self.env(&mut c);
                let s = self.sample(&mut c)?;
                let op = format!(
                    "push, {n} files edited here, verify_before_overwrite {}",
                    if on { "on" } else { "off" }
                );
                self.push(suite, &op, Tool::Cachesync, s);
            }
        }
        set_verify(true)
    }

    fn store_overhead(&mut self, suite: &str, ws: &Path, working_set: u64) {
        let store = du(&ws.join(".cachesync"));
        #[allow(clippy::cast_precision_loss)]
        let ratio = store as f64 / working_set.max(1) as f64;
        self.note(
            suite,
            "store",
            json!({"store_bytes": store, "working_set_bytes": working_set, "ratio": ratio}),
        );
    }

    /// Local status against git status on the copy of `src` that rsync made.
    fn status(&mut self, suite: &str, ws: &Path, git_copy: &Path) -> Result<()> {
        let git = |args: &[&str]| -> Result<()> {
            let mut c = Command::new("git");
            c.args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@example.invalid",
            ])
            .args(args)
            .current_dir(git_copy);
            self.env(&mut c);
            run(&mut c, &self.log, &[]).map(|_| ())
        };
        git(&["init", "-q"])?;
        // -f: the tree's own .gitignore must not leave files out (the kernel's ignores
        // dotfiles and build products); git is to look at every file, as cachesync does.
        git(&["add", "-A", "-f"])?;
        git(&["commit", "-qm", "bench"])?;
        let listed = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(git_copy)
            .output()?;
        let tracked = listed.stdout.iter().filter(|&&b| b == 0).count();
        self.note(suite, "git_tracked_files", json!(tracked));
        // A file both trees hold, touched before each "one file touched" sample.
        let touched = listed
            .stdout
            .split(|&b| b == 0)
            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
            .find(|p| ws.join(p).is_file())
            .context("git lists no file the workspace holds")?;
        // A plain status answers from the last look at the share, as git's from the last
        // fetch; --refresh walks the share too (no git counterpart: git fetch talks to a
        // server), measured beside it.
        let mut cs = self.cachesync();
        cs.arg("status").arg("--json").current_dir(ws);
        self.env(&mut cs);
        let mut refresh = self.cachesync();
        refresh
            .arg("status")
            .arg("--refresh")
            .arg("--json")
            .current_dir(ws);
        self.env(&mut refresh);
        let mut gs = self.command(Tool::Git, git_copy, git_copy, git_copy, false);
        // Warm both (page cache, git's index refresh), untimed.
        self.sample(&mut refresh)?;
        self.sample(&mut cs)?;
        self.sample(&mut gs)?;
        for r in 0..self.args.runs {
            for tool in rotated(&[Tool::Cachesync, Tool::Git], r) {
                let s = if tool == Tool::Git {
                    self.sample(&mut gs)?
                } else {
                    self.sample(&mut cs)?
                };
                self.push(suite, "status, no change", tool, s);
            }
        }
        // A stat changed, the content not: the last answer cannot stand, and each tool
        // hashes the file again (git refreshes its index entry, cachesync its own).
        let touch = |root: &Path| -> Result<()> {
            fs::File::options()
                .write(true)
                .open(root.join(&touched))?
                .set_modified(std::time::SystemTime::now())?;
            Ok(())
        };
        for r in 0..self.args.runs {
            for tool in rotated(&[Tool::Cachesync, Tool::Git], r) {
                let s = if tool == Tool::Git {
                    touch(git_copy)?;
                    self.sample(&mut gs)?
                } else {
                    touch(ws)?;
                    self.sample(&mut cs)?
                };
                self.push(suite, "status, one file touched", tool, s);
            }
        }
        for _ in 0..self.args.runs {
            let s = self.sample(&mut refresh)?;
            self.push(suite, "status --refresh, no change", Tool::Cachesync, s);
        }
        Ok(())
    }

    /// 100,000 small files (and 10,000, for the growth per file): copies, re-sync, status and
    /// memory.
    fn many(&mut self) -> Result<()> {
        let full = if self.args.quick { 10_000 } else { 100_000 };
        for (suite, files) in [("many-small", full / 10), ("many", full)] {
            let mut link = Link::local(&self.work.path().join(suite))?;
            eprintln!("{suite}: {files} small files, local");
            let made = tree::generate_small(&link.served, files, self.args.seed)?;
            self.note(
                suite,
                "tree",
                json!({"files": made.files.len(), "dirs": made.dirs, "bytes": made.bytes}),
            );
            let tools = self.tools(&[Tool::Cachesync, Tool::Rsync, Tool::Rclone]);
            self.first_copies(suite, &mut link, &tools, 1)?;
            self.resyncs(suite, &mut link, &tools, &made, 0)?;
            let (ws, _) = self.dirs(suite, Tool::Cachesync);
            self.store_overhead(suite, &ws, made.bytes);
            let (git_copy, _) = self.dirs(suite, Tool::Rsync);
            self.status(suite, &ws, &git_copy)?;
        }
        Ok(())
    }

    /// 1,000,000 small files (a tenth with `--quick`): a first copy and no-change re-syncs
    /// against rsync, status against git. rclone is left out here: the 100,000-file suite
    /// compares it, and at a million files its copy alone takes longer than the rest.
    fn million(&mut self) -> Result<()> {
        let suite = "million";
        let files = if self.args.quick { 100_000 } else { 1_000_000 };
        let mut link = Link::local(&self.work.path().join(suite))?;
        eprintln!("{suite}: {files} small files, local");
        let made = tree::generate_small(&link.served, files, self.args.seed)?;
        self.note(
            suite,
            "tree",
            json!({"files": made.files.len(), "dirs": made.dirs, "bytes": made.bytes}),
        );
        let tools = self.tools(&[Tool::Cachesync, Tool::Rsync]);
        self.first_copies(suite, &mut link, &tools, 1)?;
        self.resyncs(suite, &mut link, &tools, &made, 0)?;
        let (ws, _) = self.dirs(suite, Tool::Cachesync);
        self.store_overhead(suite, &ws, made.bytes);
        let (git_copy, _) = self.dirs(suite, Tool::Rsync);
        self.status(suite, &ws, &git_copy)
    }

    /// One 2 GB file: first copies, then one byte changed in cachesync's workspace (a push:
    /// the local side re-reads the file, stores a chunk or two) and in the source of the one-way
    /// peers.
    fn big(&mut self) -> Result<()> {
        let suite = "big";
        let size: u64 = if self.args.quick { 200 << 20 } else { 2 << 30 };
        let mut link = Link::local(&self.work.path().join(suite))?;
        eprintln!("{suite}: one file of {size} bytes, local");
        let file = Path::new("big.bin");
        tree::generate_one(&link.served.join(file), size, self.args.seed)?;
        let tools = self.tools(&[Tool::Cachesync, Tool::Rsync, Tool::Rclone]);
        self.first_copies(suite, &mut link, &tools, 1)?;
        let (ws, _) = self.dirs(suite, Tool::Cachesync);
        for r in 0..self.args.runs {
            let at = size / 2 + r as u64 * 4096;
            for tool in rotated(&tools, r) {
                let (dst, state) = self.dirs(suite, tool);
                if tool == Tool::Cachesync {
                    // The share here is a local disk, which copies without a network: the
                    // default patches a copy and renames it (atomic). The in-place patch
                    // (what sshfs gets) is measured too, on another byte.
                    for (mode, op, at) in [
                        ("auto", "one byte changed, re-sync", at),
                        ("in-place", "one byte changed, re-sync (in place)", at + 1),
                    ] {
                        set_config(&ws, "patch_big_files", json!(mode))?;
                        tree::flip_byte(&ws.join(file), at)?;
                        tree::stamp(&ws.join(file), r as u64)?;
                        let store_before = du(&ws.join(".cachesync"));
                        let mut c = self.cachesync();
                        c.args(["sync", "--json"]).current_dir(&ws);
                        self.env(&mut c);
                        let (s, out) = run_json(&mut c, &self.log)?;
                        self.push(suite, op, tool, s);
                        let grown = du(&ws.join(".cachesync")).saturating_sub(store_before);
                        self.note(
                            suite,
                            &format!("{op}, run {r}"),
                            json!({
                                "read_and_hashed": out.get("bytes_ingested"),
                                "read_from_remote": out.get("bytes_read"),
                                "stored_new": out.get("bytes_stored"),
                                "sent_to_remote": out.get("bytes_written"),
                                "patched": out.get("patched"),
                                "store_grew": grown,
                            }),
                        );
                        // Compared around the change: the harness never holds the file (its
                        // memory would count in the next child's peak, which starts as a
                        // copy).
                        if tree::window(&ws.join(file), at)?
                            != tree::window(&link.served.join(file), at)?
                        {
                            bail!("big: cachesync did not push the change ({mode})");
                        }
                    }
                    set_config(&ws, "patch_big_files", json!("auto"))?;
                } else {
                    // One-way peers: the byte changes in their source, a copy of the remote.
                    let src = self
                        .work
                        .path()
                        .join(suite)
                        .join(format!("{}-src", tool.key()));
                    if !src.exists() {
                        fs::create_dir_all(&src)?;
                        fs::copy(link.served.join(file), src.join(file))?;
                        let mut prime = self.command(tool, &src, &dst, &state, false);
                        self.sample(&mut prime)?;
                    }
                    tree::flip_byte(&src.join(file), at)?;
                    tree::stamp(&src.join(file), r as u64)?;
                    let s = self.sample(&mut self.command(tool, &src, &dst, &state, false))?;
                    self.push(suite, "one byte changed, re-sync", tool, s);
                    if tree::window(&dst.join(file), at)? != tree::window(&src.join(file), at)? {
                        bail!("big: {} did not bring the changed byte over", tool.name());
                    }
                }
            }
        }
        self.store_overhead(suite, &ws, size);
        Ok(())
    }

    /// The Linux kernel source: copies, no-change re-sync, status against git.
    fn linux(&mut self) -> Result<()> {
        let suite = "linux";
        let mut link = Link::local(&self.work.path().join(suite))?;
        eprintln!("{suite}: unpacking {}", self.args.linux_tarball.display());
        let mut tar = Command::new("tar");
        tar.arg("-xf")
            .arg(&self.args.linux_tarball)
            .arg("-C")
            .arg(&link.served);
        self.sample(&mut tar)
            .context("unpack the linux-source tarball (make bench installs linux-source)")?;
        let (files, bytes) = count_tree(&link.served);
        self.note(suite, "tree", json!({"files": files, "bytes": bytes}));
        let made = Made::default();
        let tools = self.tools(&[Tool::Cachesync, Tool::Rsync, Tool::Rclone]);
        self.first_copies(suite, &mut link, &tools, 1)?;
        self.resyncs(suite, &mut link, &tools, &made, 0)?;
        let (ws, _) = self.dirs(suite, Tool::Cachesync);
        self.store_overhead(suite, &ws, bytes);
        let (git_copy, _) = self.dirs(suite, Tool::Rsync);
        self.status(suite, &ws, &git_copy)
    }

    fn write(&self) -> Result<()> {
        fs::create_dir_all(&self.args.out)?;
        let mut md = String::new();
        for (suite, rows) in &self.rows {
            md.push_str(&format!("\n### {suite}\n\n"));
            if let Some(e) = self.extra.get(suite) {
                md.push_str(&format!(
                    "```json\n{}\n```\n\n",
                    serde_json::to_string_pretty(e)?
                ));
            }
            let mut ops: Vec<&str> = Vec::new();
            for r in rows {
                if !ops.contains(&r.op.as_str()) {
                    ops.push(&r.op);
                }
            }
            for op in ops {
                md.push_str(&format!(
                    "**{op}**\n\n| tool | median s | min s | max s | runs | × cachesync | CPU s | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
                ));
                let ours = rows
                    .iter()
                    .find(|r| r.op == op && r.tool == Tool::Cachesync)
                    .map(|r| median(&secs(&r.samples)));
                for r in rows.iter().filter(|r| r.op == op) {
                    let s = secs(&r.samples);
                    let m = median(&s);
                    let ratio = match ours {
                        Some(o) if o > 0.0 => format!("{:.2}", m / o),
                        _ => "-".into(),
                    };
                    let cpu = median(&r.samples.iter().map(|x| x.cpu).collect::<Vec<_>>());
                    #[allow(clippy::cast_precision_loss)]
                    let rss = r.samples.iter().map(|x| x.max_rss).max().unwrap_or(0) as f64 / 1e6;
                    md.push_str(&format!(
                        "| {} | {m:.3} | {:.3} | {:.3} | {} | {ratio} | {cpu:.2} | {rss:.0} |\n",
                        r.tool.name(),
                        s.iter().copied().fold(f64::INFINITY, f64::min),
                        s.iter().copied().fold(0.0, f64::max),
                        s.len(),
                    ));
                }
                md.push('\n');
            }
        }
        for (suite, e) in &self.extra {
            if !self.rows.contains_key(suite) {
                md.push_str(&format!(
                    "\n### {suite}\n\n```json\n{}\n```\n",
                    serde_json::to_string_pretty(e)?
                ));
            }
        }
        let path = self.args.out.join("results.md");
        fs::write(&path, md)?;
        let raw: Value = self
            .rows
            .iter()
            .map(|(suite, rows)| {
                let v: Vec<Value> = rows
                    .iter()
                    .map(|r| {
                        json!({"op": r.op, "tool": r.tool.key(),
                        "secs": secs(&r.samples),
                        "cpu": r.samples.iter().map(|x| x.cpu).collect::<Vec<_>>(),
                        "max_rss": r.samples.iter().map(|x| x.max_rss).collect::<Vec<_>>()})
                    })
                    .collect();
                (suite.clone(), json!(v))
            })
            .collect::<serde_json::Map<String, Value>>()
            .into();
        fs::write(
            self.args.out.join("results.json"),
            serde_json::to_string_pretty(&json!({"runs": raw, "notes": self.extra}))?,
        )?;
        eprintln!("wrote {}", path.display());
        Ok(())
    }
}

fn secs(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| s.secs).collect()
}

/// Writes back every dirty page (`sync`).
fn settle_disks() -> Result<()> {
    let st = Command::new("sync").status().context("run sync")?;
    ensure!(st.success(), "sync failed: {st}");
    Ok(())
}

/// `tools` rotated by `r`: alternating who goes first.
fn rotated(tools: &[Tool], r: usize) -> Vec<Tool> {
    let mut v = tools.to_vec();
    if !v.is_empty() {
        let n = r % v.len();
        v.rotate_left(n);
    }
    v
}

/// `path` with a trailing slash (rsync: the contents, not the directory).
fn slash(path: &Path) -> String {
    format!("{}/", path.display())
}

/// Runs a command that prints JSON on stdout; its sample and the JSON.
fn run_json(c: &mut Command, log: &File) -> Result<(Sample, Value)> {
    let out = tempfile::NamedTempFile::new()?;
    let described = format!("{c:?}");
    let s = measure::run_to(c, out.reopen()?, log, &[])?;
    let text = fs::read_to_string(out.path())?;
    let v =
        serde_json::from_str(&text).with_context(|| format!("{described}: not JSON: {text}"))?;
    Ok((s, v))
}

/// Bytes in the regular files under `root`, cachesync's own directory left out.
fn du_files(root: &Path) -> u64 {
    let total = du(root);
    total - du(&root.join(".cachesync"))
}

fn count_tree(root: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                files += 1;
                bytes += md.len();
            }
        }
    }
    (files, bytes)
}

fn versions() -> String {
    let mut out = String::new();
    for (name, args) in [
        ("uname", &["-srm"][..]),
        ("rsync", &["--version"][..]),
        ("rclone", &["version"][..]),
        ("unison", &["-version"][..]),
        ("git", &["--version"][..]),
        ("sshfs", &["--version"][..]),
    ] {
        let line = Command::new(name)
            .args(args)
            .output()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                // The line naming the tool (sshfs prints fusermount's version first).
                let lines: Vec<&str> = text.lines().collect();
                lines
                    .iter()
                    .find(|l| l.to_lowercase().contains(name))
                    .or(lines.first())
                    .map_or_else(String::new, |l| (*l).to_owned())
            })
            .unwrap_or_else(|e| format!("{name}: {e}"));
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str(&format!(
        "- {} CPUs\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    ));
    out
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.suites.is_empty() {
        args.suites = Suite::value_variants().to_vec();
    }
    args.cachesync = args
        .cachesync
        .canonicalize()
        .context("the cachesync binary")?;
    let work = tempfile::Builder::new()
        .prefix("cachesync-bench-")
        .tempdir_in(&args.work)
        .with_context(|| format!("a work directory in {}", args.work.display()))?;
    fs::create_dir_all(&args.out)?;
    let log = File::create(args.out.join("bench.log"))?;
    File::create(args.out.join("machine.md"))?.write_all(versions().as_bytes())?;
    let rclone_conf = work.path().join("rclone.conf");
    File::create(&rclone_conf)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))?;
    }
    let mut b = Bench {
        args,
        work,
        log,
        rows: BTreeMap::new(),
        extra: BTreeMap::new(),
        rclone_conf,
        interrupted,
    };
    let scale = if b.args.quick { 10 } else { 1 };
    if b.args.hold {
        let mut link = Link::sshfs(Duration::from_millis(10));
        tree::generate(
            &link.served,
            1000 / scale,
            40_000_000 / scale as u64,
            b.args.seed,
        )?;
        println!(
            "served {}\nmnt {}",
            link.served.display(),
            link.src.display()
        );
        for _ in std::io::stdin().lines() {
            link.cold();
            println!("remounted");
        }
        return Ok(());
    }
    for suite in b.args.suites.clone() {
        let work = b.work.path().join(format!("{suite:?}").to_lowercase());
        let result = match suite {
            Suite::Local => Link::local(&work)
                .and_then(|l| b.tree_suite("local", l, 5000 / scale, 200_000_000 / scale as u64)),
            Suite::Sshfs => b.tree_suite(
                "sshfs",
                Link::sshfs(Duration::ZERO),
                5000 / scale,
                200_000_000 / scale as u64,
            ),
            Suite::Sshfs20 => b.tree_suite(
                "sshfs20",
                Link::sshfs(Duration::from_millis(10)),
                1000 / scale,
                40_000_000 / scale as u64,
            ),
            Suite::Many => b.many(),
            Suite::Big => b.big(),
            Suite::Million => b.million(),
            Suite::Linux => b.linux(),
            Suite::View => b.view(),
            Suite::ViewShare => b.view_share(),
        };
        if let Err(e) = result {
            eprintln!("{suite:?}: {e:#}");
            b.note(
                &format!("{suite:?}").to_lowercase(),
                "failed",
                json!(format!("{e:#}")),
            );
        }
        // Each suite's figures are written as soon as it ends.
        b.write()?;
        if b.interrupted.load(Ordering::SeqCst) {
            bail!(
                "interrupted; the figures so far are in {}",
                b.args.out.display()
            );
        }
    }
    Ok(())
}

/// Sets one key of a workspace's config.
fn set_config(ws: &Path, key: &str, value: Value) -> Result<()> {
    let path = ws.join(".cachesync/config.json");
    let mut c: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
    c[key] = value;
    fs::write(&path, c.to_string())?;
    Ok(())
}
