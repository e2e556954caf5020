use std::path::PathBuf;

use cachesync_engine::plan::Direction;
use cachesync_engine::sync;
use cachesync_engine::Workspace;

use crate::app::CmdResult;
use crate::output::{bytes, note, print_out, Bars, OrFail};

/// Make a new workspace from a remote directory, and copy it.
///
/// The copy is the workspace's first snapshot: what both sides agree on.
#[derive(clap::Args)]
pub struct CloneArgs {
    /// The remote directory (a mounted share: sshfs, NFS, SMB, ...).
    remote: PathBuf,
    /// The new workspace directory (must not exist, or be empty).
    workspace: PathBuf,
    /// Seconds one remote call may take before the remote counts as disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    /// The deletion guard: most files (percent) one run may delete without --force.
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    max_delete: u32,
    /// The cache budget (store plus workspace files), e.g. `500M`, `20G`; files that do not
    /// fit stay remote-only (listed, fetched with `get`); only pinned files that do not fit
    /// are an error (EDISCONFULL, exit 6).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    budget: Option<u64>,
    /// Pin a path (relative to the remote root; repeat for more): always kept here.
    #[arg(long = "pin", value_name = "PATH")]
    pins: Vec<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Parses `123`, `64K`, `500M`, `1.5G`, `2T` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], s[i..].to_ascii_uppercase()),
        None => (s, String::new()),
    };
    let factor: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in {s:?}: use K, M, G or T")),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?} (e.g. 500M, 20G)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("not a positive size: {s:?}"));
    }
    Ok((n * factor as f64) as u64)
}

pub fn cmd_clone(args: CloneArgs) -> CmdResult {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err(cachesync_engine::SyncError::Usage(
            "--timeout must be a positive number of seconds".into(),
        ))
        .or_fail(false);
    }
    let mut ws = Workspace::init(&args.remote, &args.workspace, |c| {
        c.timeout_ms = (args.timeout * 1000.0) as u64;
        c.max_delete_percent = args.max_delete;
        c.budget_bytes = args.budget;
        c.pins = args
            .pins
            .iter()
            .map(|p| p.trim_matches('/').to_string())
            .collect();
    })
    .or_fail(false)?;
    let opts = sync::Options {
        command: cachesync_engine::journal::OpKind::Clone,
        direction: Direction::Pull,
        paths: Vec::new(),
        dry_run: false,
        force: true,
        exact_paths: false,
    };
    let mut report = sync::run(&mut ws, &opts, &Bars::new(args.quiet)).or_fail(false)?;
    for w in &report.warnings {
        note(&format!("warning: {w}"));
    }
    for p in &report.culled {
        note(&format!(
            "culled {p} (the cache was above its threshold; `cachesync get` brings it back)"
        ));
    }
    let files = report
        .plan
        .steps
        .iter()
        .filter(|s| s.op == cachesync_engine::plan::Op::Write)
        .count();
    print_out(&format!(
        "cloned {} into {}: {} entries, {} files, {} read\n",
        ws.config.remote.display(),
        ws.root.display(),
        report.applied,
        files,
        bytes(report.bytes_down)
    ));
    if report.cache_exhausted().is_none() {
        if let Some(n) = super::sync::budget_notice(&report) {
            note(&n);
        }
    }
    if ws.identity.marker.is_none() {
        note("note: the remote is not writable, so no marker file was left there; its mount identifies it");
    }
    Ok(super::sync::finish_code(
        !report.conflicts.is_empty(),
        report.cache_exhausted(),
        report.failed.take(),
        false,
    ))
}
