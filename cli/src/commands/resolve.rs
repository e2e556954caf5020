use std::path::PathBuf;

use cachesync_engine::resolve::{self, Resolution};
use cachesync_engine::variants::Which;
use cachesync_engine::SyncError;

use crate::app::CmdResult;
use crate::output::{open_workspace, print_out, OrFail};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Take {
    /// The server's version.
    Server,
    /// Your version.
    Client,
    /// The last agreed version.
    Base,
    /// The three-way merge (only when the edits do not overlap).
    Merged,
}

/// Settle a conflict with the version you choose.
///
/// The chosen version is written into the workspace; the next `sync` sends it to the server
/// (checking the server still holds the version the conflict recorded).
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("how").required(true).args(["take", "with", "edit", "mark"]))]
pub struct ResolveArgs {
    /// The conflicted path.
    path: PathBuf,
    /// Take one version.
    #[arg(long, value_enum)]
    take: Option<Take>,
    /// Take this file's content (your own resolution).
    #[arg(long, value_name = "FILE")]
    with: Option<PathBuf>,
    /// Write the merge with git-style conflict markers into the workspace file, to edit.
    #[arg(long)]
    edit: bool,
    /// Take the workspace file as it is now (after --edit).
    #[arg(long)]
    mark: bool,
}

pub fn cmd_resolve(args: ResolveArgs) -> CmdResult {
    let ws = open_workspace(false)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let rel = ws.rel_path(&cwd, &args.path).or_fail(false)?;
    let how = if let Some(t) = args.take {
        match t {
            Take::Server => Resolution::Take(Which::Server),
            Take::Client => Resolution::Take(Which::Client),
            Take::Base => Resolution::Take(Which::Base),
            Take::Merged => Resolution::Merged,
        }
    } else if let Some(f) = &args.with {
        let bytes = std::fs::read(f)
            .map_err(|e| SyncError::Io {
                path: f.clone(),
                source: e,
            })
            .or_fail(false)?;
        Resolution::With(bytes)
    } else if args.edit {
        Resolution::Edit
    } else {
        Resolution::Mark
    };
    let r = resolve::run(&ws, &resolve::Options { path: rel, how }).or_fail(false)?;
    print_out(&format!("{}\n", r.message));
    Ok(0)
}
