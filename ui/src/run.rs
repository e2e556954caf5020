//! The page does what a person would type: each read and each action runs
//! `cachesync -C WORKSPACE ...`, the same binary, with the same locks, checks and exit codes
//! as on the command line. The page can then never do what the command line would refuse,
//! and a sync started from the page is a process of its own: it goes on when the browser tab
//! closes, and when the page itself stops.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// How long a look (status, a version of a file, a listing) may take: those never touch the
/// share, so a minute means something is wrong.
pub const LOOK_LIMIT: Duration = Duration::from_secs(60);

/// How long a look waits for a workspace another command holds (a command of a terminal, or
/// the page's own sync), asking again every [`LOCK_POLL`]; then it says the workspace is busy.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_POLL: Duration = Duration::from_millis(100);

/// What a command says when another holds the workspace.
pub const BUSY: &str = "another cachesync process";

/// One finished run.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (-1: killed by a signal).
    pub code: i32,
    /// Its standard output (for a capped look, at most the cap and one byte more).
    pub stdout: Vec<u8>,
    /// Its standard error, lossily decoded.
    pub stderr: String,
}

impl Ran {
    /// What it said: standard output, else standard error, trimmed.
    pub fn message(&self) -> String {
        let out = String::from_utf8_lossy(&self.stdout);
        let text = if out.trim().is_empty() {
            self.stderr.trim()
        } else {
            out.trim()
        };
        text.to_string()
    }

    /// It found the workspace held by another command (said on standard error, or in the
    /// JSON error on standard output under `--json`).
    pub fn busy(&self) -> bool {
        self.code != 0
            && (self.stderr.contains(BUSY) || String::from_utf8_lossy(&self.stdout).contains(BUSY))
    }
}

/// The binary the page runs (its own, normally), and the page's own looks in each
/// workspace, one at a time (two tabs, or a redraw while one runs, would otherwise take the
/// workspace's lock from each other).
#[derive(Clone)]
pub struct Cachesync {
    exe: PathBuf,
    looks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Cachesync {
    /// Runs `exe` for every read and action.
    pub fn new(exe: PathBuf) -> Cachesync {
        Cachesync {
            exe,
            looks: Arc::default(),
        }
    }

    fn command(&self, ws: &Path, args: &[OsString]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("-C")
            .arg(ws)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// A read: `cachesync -C ws ARGS`, one at a time per workspace, killed past
    /// [`LOOK_LIMIT`] (or when the request is gone), asked again for [`LOCK_WAIT`] while
    /// another command holds the workspace. With `cap`, standard output is read up to `cap`
    /// bytes and one more, then the command is stopped.
    ///
    /// # Errors
    /// The binary cannot be started, or the run outlived [`LOOK_LIMIT`].
    pub async fn look(
        &self,
        ws: &Path,
        args: &[OsString],
        cap: Option<u64>,
    ) -> Result<Ran, String> {
        let turn = {
            let mut looks = self
                .looks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            looks.entry(ws.to_path_buf()).or_default().clone()
        };
        let _turn = turn.lock().await;
        let start = Instant::now();
        loop {
            let ran = tokio::time::timeout(LOOK_LIMIT, self.look_once(ws, args, cap))
                .await
                .map_err(|_| format!("no answer within {} s", LOOK_LIMIT.as_secs()))??;
            if !ran.busy() || start.elapsed() >= LOCK_WAIT {
                return Ok(ran);
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    async fn look_once(
        &self,
        ws: &Path,
        args: &[OsString],
        cap: Option<u64>,
    ) -> Result<Ran, String> {
        let mut child = self
            .command(ws, args)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        let (Some(out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("the command's output is not piped".into());
        };
        // Standard error is read beside: a command stopped at the cap ends it only once
        // killed.
        let stderr = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf).await;
            buf
        });
        let mut stdout = Vec::new();
        let limit = cap.map_or(u64::MAX, |c| c + 1);
        let read_out = out.take(limit).read_to_end(&mut stdout).await;
        if cap.is_some_and(|c| stdout.len() as u64 > c) {
            // Enough to know it is too big to show: the rest is not read.
            let _ = child.kill().await;
        }
        read_out.map_err(|e| format!("reading cachesync's output: {e}"))?;
        let stderr = stderr.await.unwrap_or_default();
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for cachesync: {e}"))?;
        Ok(Ran {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// An action: `cachesync -C ws ARGS` in a task of its own, which finishes even when the
    /// request that started it is gone; the process is never killed by the page. `keep` is
    /// held until the command ends (a file it reads).
    ///
    /// # Errors
    /// The binary cannot be started.
    pub async fn act<K: Send + 'static>(
        &self,
        ws: &Path,
        args: Vec<OsString>,
        keep: K,
    ) -> Result<Ran, String> {
        let child = self
            .command(ws, &args)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        let task = tokio::spawn(async move {
            let out = child.wait_with_output().await;
            drop(keep);
            out
        });
        let out = task
            .await
            .map_err(|e| format!("the action's task failed: {e}"))?
            .map_err(|e| format!("waiting for cachesync: {e}"))?;
        Ok(Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
