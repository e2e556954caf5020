use std::path::PathBuf;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace, print_json, print_out, time, OrFail};

/// List a directory from the cache, online or offline.
///
/// For each entry: kind, mode, owner, size, mtime, and whether it is synced, modified,
/// provisional (created here) or deleted here.
#[derive(clap::Args)]
pub struct LsArgs {
    /// The directory (default: the current one).
    path: Option<PathBuf>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

pub fn cmd_ls(args: LsArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let dir = ws
        .rel_path(
            &cwd,
            args.path.as_deref().unwrap_or(std::path::Path::new(".")),
        )
        .or_fail(args.json)?;
    let entries = cachesync_engine::ls::run(&ws, &cachesync_engine::ls::Options { dir })
        .or_fail(args.json)?;
    if args.json {
        print_json(&entries);
        return Ok(0);
    }
    let mut out = String::new();
    for e in &entries {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        out.push_str(&format!(
            "{:<7} {:04o} {:>5}:{:<5} {:>10}  {}  {:<11} {}{}\n",
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            bytes(e.size),
            time(e.mtime_ns),
            e.state,
            name,
            e.target
                .as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default()
        ));
    }
    print_out(&out);
    Ok(0)
}
