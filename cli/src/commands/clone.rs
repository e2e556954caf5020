use std::path::PathBuf;

use cachesync_engine::plan::Direction;
use cachesync_engine::sync::SyncOptions;
use cachesync_engine::Workspace;

use crate::app::CmdResult;
use crate::output::{bytes, note, print_out, Bars, OrFail};

/// Make a new workspace from a remote directory and copy it (the first snapshot).
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
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
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
    })
    .or_fail(false)?;
    let opts = SyncOptions {
        command: "clone".into(),
        direction: Direction::Pull,
        paths: Vec::new(),
        dry_run: false,
        force: true,
    };
    let report = ws.sync(&opts, &Bars::new(args.quiet)).or_fail(false)?;
    for w in &report.warnings {
        note(&format!("warning: {w}"));
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
    if ws.identity.marker.is_none() {
        note("note: the remote is not writable, so no marker file was left there; its mount identifies it");
    }
    Ok(0)
}
