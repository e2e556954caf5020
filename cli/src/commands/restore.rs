use std::path::PathBuf;

use cachesync_engine::restore;
use serde_json::json;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace, print_json, print_out, rel_paths, OrFail};

/// Write paths as an operation left them, into the workspace or elsewhere.
///
/// Each PATH (a file, or a directory and everything in it) is written as it was in the state
/// both sides agreed on after operation OP: into the workspace, where the next `sync` sends
/// it, or under DEST (as DEST/PATH) with `--to`. `cachesync log PATH` lists the operations
/// that changed a path. Files that were not there then are left alone. Nothing is lost: a
/// workspace path holding a change not yet sent is not written over, nor is a file under
/// DEST; the restore is refused and names them.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Files or directories (relative to the current directory).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The operation, by its number in `cachesync log`.
    #[arg(long, value_name = "OP")]
    at: u64,
    /// Write under this directory instead of into the workspace.
    #[arg(long, value_name = "DEST")]
    to: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn cmd_restore(args: RestoreArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let paths = rel_paths(&ws, &args.paths, args.json)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let to = args.to.as_ref().map(|d| cwd.join(d));
    let r = restore::run(
        &ws,
        &restore::Options {
            paths,
            at: args.at,
            to: to.clone(),
        },
    )
    .or_fail(args.json)?;
    if args.json {
        print_json(&json!({
            "at": args.at,
            "to": to.as_ref().map(|d| d.display().to_string()),
            "written": r.written,
            "left": r.left,
            "bytes": r.bytes,
        }));
        return Ok(if r.left.is_empty() { 0 } else { 7 });
    }
    let mut out = String::new();
    for p in &r.written {
        out.push_str(&format!("restored {p}\n"));
    }
    for p in &r.left {
        out.push_str(&format!(
            "left     {p}: changed here while the restore ran\n"
        ));
    }
    out.push_str(&format!(
        "{} path(s), {} as after operation {}{}\n",
        r.written.len(),
        bytes(r.bytes),
        args.at,
        match &to {
            Some(d) => format!(", under {}", d.display()),
            None => "; `cachesync sync` sends them".to_string(),
        }
    ));
    print_out(&out);
    Ok(if r.left.is_empty() { 0 } else { 7 })
}
