//! Running one command and measuring it: wall time, CPU time and peak memory (from `wait4`).

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One run of one command.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Wall-clock seconds.
    pub secs: f64,
    /// User + system CPU seconds of the process itself.
    pub cpu: f64,
    /// Peak resident set of the process itself, in bytes.
    pub max_rss: u64,
}

/// Runs `command` to completion, its output appended to `log`; fails if it exits non-zero,
/// unless `allowed` holds that code.
///
/// The peak memory is the child's own, from `wait4`; a child starts as a copy of this
/// process, so this process must stay small for the figure to mean anything.
///
/// # Errors
/// Spawning, waiting, or an exit code not in `allowed` (0 always is).
pub fn run(command: &mut Command, log: &File, allowed: &[i32]) -> Result<Sample> {
    run_to(command, log.try_clone()?, log, allowed)
}

/// [`run`], with the command's standard output going to `stdout`.
///
/// # Errors
/// As [`run`].
pub fn run_to(command: &mut Command, stdout: File, log: &File, allowed: &[i32]) -> Result<Sample> {
    let described = format!("{command:?}");
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log.try_clone()?)
        .spawn()
        .with_context(|| format!("spawn {described}"))?;
    let (code, usage) = wait4(child.id())?;
    let secs = started.elapsed().as_secs_f64();
    // wait4 reaped it: the Child handle has nothing left to wait for.
    drop(child);
    if code != 0 && !allowed.contains(&code) {
        bail!("{described} exited with {code}");
    }
    Ok(Sample {
        secs,
        cpu: usage.0,
        max_rss: usage.1,
    })
}

/// Waits for `pid`; its exit code (128 + signal if killed), CPU seconds and peak RSS bytes.
#[allow(unsafe_code)]
fn wait4(pid: u32) -> Result<(i32, (f64, u64))> {
    let pid = libc::pid_t::try_from(pid).context("pid")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills; zeroed is a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, exclusively borrowed out-parameters.
        let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    #[allow(clippy::cast_precision_loss)]
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok((code, (cpu, rss)))
}

/// The median of `xs` (the mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Bytes under `path` (apparent sizes of regular files, symlinks not followed).
pub fn du(path: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
        assert!(median(&[]).abs() < 1e-9);
    }

    #[test]
    fn run_reports_memory_and_failure() {
        let log = tempfile::tempfile().expect("log");
        // A shell that holds a 20 MB string: its peak is at least that.
        let s = run(
            Command::new("sh").args([
                "-c",
                "x=$(head -c 20000000 /dev/zero | tr '\\0' a); : \"$x\"",
            ]),
            &log,
            &[],
        )
        .expect("run the shell");
        assert!(s.max_rss >= 20_000_000, "peak {} bytes", s.max_rss);
        assert!(s.secs > 0.0);
        assert!(run(Command::new("sh").args(["-c", "exit 3"]), &log, &[]).is_err());
        assert!(run(Command::new("sh").args(["-c", "exit 3"]), &log, &[3]).is_ok());
    }
}
