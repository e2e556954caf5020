//! The page does what a person would type: each action runs `cachesync -C WORKSPACE ...`,
//! the same binary, with the same locks, checks and exit codes as on the command line. The
//! page can then never do what the command line would refuse, and a long sync runs in its own
//! process (it goes on when the browser tab closes).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long a look (status, a version of a file, a listing) may take: those never touch the
/// share, so a minute means something is wrong.
pub const LOOK_LIMIT: Duration = Duration::from_secs(60);

/// One finished run.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (-1: killed by a signal).
    pub code: i32,
    /// Its standard output.
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
}

/// The binary the page runs (its own, normally).
#[derive(Clone)]
pub struct Cachesync {
    exe: PathBuf,
}

impl Cachesync {
    /// Runs `exe` for every action.
    pub fn new(exe: PathBuf) -> Cachesync {
        Cachesync { exe }
    }

    /// Runs `cachesync -C ws ARGS` and waits for it; with a `limit`, a run past it is killed
    /// and reported as an error.
    ///
    /// # Errors
    /// The binary cannot be started, or the run outlived `limit`.
    pub async fn run(
        &self,
        ws: &Path,
        args: &[OsString],
        limit: Option<Duration>,
    ) -> Result<Ran, String> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("-C")
            .arg(ws)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        let waited = child.wait_with_output();
        let out = match limit {
            Some(limit) => tokio::time::timeout(limit, waited)
                .await
                .map_err(|_| format!("no answer within {} s", limit.as_secs()))?,
            None => waited.await,
        }
        .map_err(|e| format!("waiting for cachesync: {e}"))?;
        Ok(Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// [`Cachesync::run`] for an action that changes something: it runs in a task of its own,
    /// so that it finishes even when the request that started it is gone.
    ///
    /// # Errors
    /// As [`Cachesync::run`].
    pub async fn act(&self, ws: &Path, args: Vec<OsString>) -> Result<Ran, String> {
        let me = self.clone();
        let ws = ws.to_path_buf();
        tokio::spawn(async move { me.run(&ws, &args, None).await })
            .await
            .map_err(|e| format!("the action's task failed: {e}"))?
    }
}
