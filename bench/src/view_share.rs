//! The `view-share` suite: `cachesync mount` over sshfs at +20 ms, side by side with
//! `rclone mount --vfs-cache-mode full` of the same sshfs path. The first byte of a 1 GiB
//! file the workspace does not hold; a warm `ls -lR` and `grep -r` of a 1,000-file tree; and
//! with the share gone (sshd killed), what each does: starts, lists, reads a file it read
//! before, reads one it does not hold (`big.bin`, of which only the first bytes were read
//! through the view, and none through rclone), writes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{tree, Bench, Link, Tool};

/// How long an offline probe may take before it counts as hanging.
const PROBE: Duration = Duration::from_secs(20);

/// A FUSE mount run by a child process: unmounted and stopped when dropped.
pub(crate) struct Mounted {
    child: Child,
    at: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.at)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `within` for a mount at `at` to answer; false if the child exited first or
/// the time ran out.
fn comes_up(child: &mut Child, at: &Path, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if cachesync_testutils::is_mount_point(at) && fs::metadata(at).is_ok() {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    false
}

/// What one offline probe did.
fn verdict(ok: bool, secs: f64, what: &str) -> Value {
    let said = if secs >= PROBE.as_secs_f64() {
        format!("hangs (stopped after {} s)", PROBE.as_secs())
    } else if ok {
        "yes".to_owned()
    } else {
        format!("no ({what})")
    };
    json!({ "answer": said, "secs": (secs * 1000.0).round() / 1000.0 })
}

/// Runs `sh -c script` with the probe's time limit; (exit 0, seconds, its stderr's last line).
fn probe(script: &str) -> (bool, f64, String) {
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["-k", "5", &PROBE.as_secs().to_string(), "sh", "-c", script])
        .stdin(Stdio::null())
        .output();
    let secs = start.elapsed().as_secs_f64();
    match out {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("").trim().to_owned();
            (o.status.success(), secs, last)
        }
        Err(e) => (false, secs, e.to_string()),
    }
}

impl Bench {
    /// Runs the mount command `c` (serving at `at`, in the foreground); `None` when the
    /// mount does not come up within [`PROBE`] (it is then stopped).
    fn spawn_mount(&self, mut c: Command, at: &Path, what: &str) -> Result<Option<Mounted>> {
        fs::create_dir_all(at)?;
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log.try_clone()?);
        self.env(&mut c);
        let mut child = c.spawn().context(what.to_owned())?;
        let up = comes_up(&mut child, at, PROBE);
        let m = Mounted {
            child,
            at: at.to_path_buf(),
        };
        Ok(up.then_some(m))
    }

    /// `cachesync mount --foreground AT` in the workspace `ws`, once it answers.
    pub(crate) fn mount_view(&self, ws: &Path, at: &Path) -> Result<Mounted> {
        let mut c = self.cachesync();
        c.args(["mount", "--foreground"]).arg(at).current_dir(ws);
        match self.spawn_mount(c, at, "cachesync mount")? {
            Some(m) => Ok(m),
            None => bail!("the view did not come up at {}", at.display()),
        }
    }

    /// `rclone mount SRC AT --vfs-cache-mode full`; `None` when it does not come up.
    fn mount_rclone(&self, src: &Path, at: &Path, cache: &Path) -> Result<Option<Mounted>> {
        let mut c = Command::new("rclone");
        c.arg("mount")
            .arg(src)
            .arg(at)
            .args(["--vfs-cache-mode", "full", "--cache-dir"])
            .arg(cache);
        self.spawn_mount(c, at, "rclone mount")
    }

    /// Sets keys of the workspace's config.json.
    pub(crate) fn configure(ws: &Path, set: &[(&str, Value)]) -> Result<()> {
        let path = ws.join(".cachesync/config.json");
        let mut config: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
        for (k, v) in set {
            config[*k] = v.clone();
        }
        fs::write(&path, serde_json::to_string_pretty(&config)?)?;
        Ok(())
    }

    pub(crate) fn view_share(&mut self) -> Result<()> {
        let suite = "view-share";
        let (size, files, bytes) = if self.args.quick {
            (64u64 << 20, 100, 4_000_000)
        } else {
            (1u64 << 30, 1000, 40_000_000)
        };
        let mut link = Link::sshfs(Duration::from_millis(10));
        self.note(suite, "link", json!(link.name));
        eprintln!(
            "{suite}: {files} files and one of {size} bytes, over {}",
            link.name
        );
        tree::generate(&link.served.join("tree"), files, bytes, self.args.seed)?;
        let base = self.work.path().join(suite);
        let ws = base.join("ws");
        let mut clone = self.cachesync();
        clone.arg("clone").arg(&link.src).arg(&ws).arg("--quiet");
        self.env(&mut clone);
        self.sample(&mut clone)?;
        // The big file comes after the clone and is left on the share: the sync defers a new
        // file the budget cannot hold (listed, not read); the budget then goes.
        tree::generate_one(&link.served.join("big.bin"), size, self.args.seed)?;
        link.cold(); // sshfs's directory cache would hide the new file for a while
        Bench::configure(&ws, &[("budget_bytes", json!(size / 2))])?;
        let mut sync = self.cachesync();
        sync.args(["sync", "--quiet"]).current_dir(&ws);
        self.env(&mut sync);
        self.sample(&mut sync)?;
        // The view alone: its own syncs would run amid the timings.
        Bench::configure(
            &ws,
            &[
                ("budget_bytes", Value::Null),
                ("view_sync_seconds", json!(0)),
            ],
        )?;
        let at = base.join("view");
        let rc_at = base.join("rclone");
        let rc_cache = base.join("rclone-cache");
        let mib = size >> 20;
        {
            let view = self.mount_view(&ws, &at)?;
            let mut first = Command::new("dd");
            first
                .arg(format!("if={}", view.at.join("big.bin").display()))
                .args(["of=/dev/null", "bs=4k", "count=1"]);
            let s = self.sample(&mut first)?;
            self.push(
                suite,
                &format!("first byte of a remote-only {mib} MiB file"),
                Tool::Cachesync,
                s,
            );
        }
        let Some(rclone) = self.mount_rclone(&link.src, &rc_at, &rc_cache)? else {
            bail!("rclone mount did not come up at {}", rc_at.display());
        };
        let view = self.mount_view(&ws, &at)?;
        for (tool, root) in [(Tool::Cachesync, &at), (Tool::RcloneMount, &rc_at)] {
            let tree = root.join("tree");
            let mut ls = Command::new("ls");
            ls.arg("-lR").arg(&tree).stdout(Stdio::null());
            let mut grep = Command::new("grep");
            grep.args(["-r", "-c", "-e", ""])
                .arg(&tree)
                .stdout(Stdio::null());
            self.sample(&mut ls)?; // warm
            self.sample(&mut grep)?; // warm (rclone: the files come into its cache)
            for _ in 0..self.args.runs {
                let s = self.sample(&mut ls)?;
                self.push(suite, &format!("ls -lR, {files} files, warm"), tool, s);
                let s = self.sample(&mut grep)?;
                self.push(suite, &format!("grep -r, {files} files, warm"), tool, s);
            }
        }
        let offline = self.share_gone(link, &ws, view, rclone, &rc_cache)?;
        self.note(suite, "offline", offline);
        Ok(())
    }

    /// Kills the share's server, then asks each mount (and a fresh one of each) what it
    /// still does.
    fn share_gone(
        &mut self,
        mut link: Link,
        ws: &Path,
        view: Mounted,
        rclone: Mounted,
        rc_cache: &Path,
    ) -> Result<Value> {
        let Some(share) = link.sshfs.as_mut() else {
            bail!("the view-share suite needs an sshfs link");
        };
        let read_before = first_file(&view.at.join("tree"))?;
        share.kill_server();
        let mut table = json!({});
        for (tool, m) in [(Tool::Cachesync, &view), (Tool::RcloneMount, &rclone)] {
            let at = m.at.display().to_string();
            let mut row = json!({});
            let (ok, secs, why) = probe(&format!("ls -lR '{at}/tree' | grep -q ."));
            row["lists"] = verdict(ok, secs, &why);
            let (ok, secs, why) = probe(&format!("cat '{at}/{read_before}' >/dev/null"));
            row["reads a file read before"] = verdict(ok, secs, &why);
            let (ok, secs, why) = probe(&format!("head -c 4096 '{at}/big.bin' >/dev/null"));
            row["reads a file not cached"] = verdict(ok, secs, &why);
            let (ok, secs, why) = probe(&format!(
                "echo offline > '{at}/tree/written-offline.txt' && grep -q offline \
                 '{at}/tree/written-offline.txt'"
            ));
            row["writes"] = verdict(ok, secs, &why);
            table[tool.name()] = row;
        }
        let (view_at, rc_at) = (view.at.clone(), rclone.at.clone());
        drop(view);
        drop(rclone);
        let start = Instant::now();
        let again = self.mount_view(ws, &view_at);
        table[Tool::Cachesync.name()]["starts"] =
            verdict(again.is_ok(), start.elapsed().as_secs_f64(), "no mount");
        drop(again);
        let start = Instant::now();
        let again = self.mount_rclone(&link.src, &rc_at, rc_cache)?;
        table[Tool::RcloneMount.name()]["starts"] =
            verdict(again.is_some(), start.elapsed().as_secs_f64(), "no mount");
        drop(again);
        Ok(table)
    }
}

/// The path (relative to the mount) of the first file found under `dir`.
fn first_file(dir: &Path) -> Result<String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir.parent().unwrap_or(dir))?
                    .display()
                    .to_string();
                return Ok(rel);
            }
        }
    }
    bail!("no file under {}", dir.display())
}
