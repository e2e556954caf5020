use std::path::PathBuf;

use crate::app::CmdResult;
use crate::output::{open_workspace, print_out, OrFail};

/// Show local changes against the last synced state (the base snapshot) as a unified diff.
/// Works offline.
#[derive(clap::Args)]
pub struct DiffArgs {
    /// Only these paths (and what is under them).
    paths: Vec<PathBuf>,
}

pub fn cmd_diff(args: DiffArgs) -> CmdResult {
    let ws = open_workspace(false)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let paths = args
        .paths
        .iter()
        .map(|p| ws.rel_path(&cwd, p))
        .collect::<Result<Vec<_>, _>>()
        .or_fail(false)?;
    print_out(&ws.diff(&paths).or_fail(false)?);
    Ok(0)
}
