use std::path::PathBuf;

use cachesync_engine::presence;
use serde_json::json;

use crate::app::CmdResult;
use crate::output::{bytes, note, open_workspace, print_json, print_out, rel_paths, OrFail};

/// Bring remote-only files into the workspace.
///
/// From the cache when their content is there, else from the remote; offline and not cached:
/// exit 4, EDISCONDATA.
#[derive(clap::Args)]
pub struct GetArgs {
    /// Files or directories (default: everything remote-only).
    paths: Vec<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Make clean files remote-only.
///
/// They leave the workspace, their metadata stays (ls, stat, diff offline) and `get` brings them
/// back. A file with changes not pushed is never dropped.
#[derive(clap::Args)]
pub struct DropArgs {
    /// Files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn show(verb: &str, r: &presence::Outcome, json: bool) -> i32 {
    let d = cachesync_engine::paths::display;
    if json {
        print_json(&json!({
            "done": r.done.iter().map(|p| d(p)).collect::<Vec<_>>(),
            "refused": r.refused.iter().map(|(p, why)| json!({"path": d(p), "reason": why})).collect::<Vec<_>>(),
            "bytes_read": r.bytes_read,
        }));
    } else {
        let mut out = String::new();
        for p in &r.done {
            out.push_str(&format!("  {verb} {}\n", d(p)));
        }
        out.push_str(&format!("{verb}: {} file(s)", r.done.len()));
        if r.bytes_read > 0 {
            out.push_str(&format!(", {} read from the remote", bytes(r.bytes_read)));
        }
        out.push('\n');
        print_out(&out);
        for (p, why) in &r.refused {
            note(&format!("cachesync: {} left as it is: {why}", d(p)));
        }
    }
    if r.refused.is_empty() {
        0
    } else {
        1
    }
}

pub fn cmd_get(args: GetArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let paths = rel_paths(&ws, &args.paths, args.json)?;
    let record = presence::Record::of(cachesync_engine::journal::OpKind::Get);
    let r = presence::get_recorded(&ws, &paths, record).or_fail(args.json)?;
    Ok(show("got", &r, args.json))
}

pub fn cmd_drop(args: DropArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let paths = rel_paths(&ws, &args.paths, args.json)?;
    let r = presence::drop_paths(&ws, &paths).or_fail(args.json)?;
    Ok(show("dropped", &r, args.json))
}

/// Pin files or directories: always kept here, never culled.
///
/// Pinned paths are always in the workspace (fetched now if remote-only) and never culled.
#[derive(clap::Args)]
pub struct PinArgs {
    /// Files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Unpin files or directories.
///
/// They stay where they are; culling may drop them later.
#[derive(clap::Args)]
pub struct UnpinArgs {
    /// Files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn cmd_pin(args: PinArgs) -> CmdResult {
    let mut ws = open_workspace(false)?;
    let paths = rel_paths(&ws, &args.paths, false)?;
    let (added, fetched) = presence::pin(&mut ws, &paths).or_fail(false)?;
    for p in &added {
        print_out(&format!("pinned {p}\n"));
    }
    match fetched {
        Ok(r) => Ok(show("got", &r, false)),
        Err(e) => {
            note(&format!(
                "cachesync: pinned, but not fetched yet: {e}; the next `cachesync get` or prefetch brings it"
            ));
            Ok(e.code().exit_code())
        }
    }
}

pub fn cmd_unpin(args: UnpinArgs) -> CmdResult {
    let mut ws = open_workspace(false)?;
    let paths = rel_paths(&ws, &args.paths, false)?;
    let removed = presence::unpin(&mut ws, &paths).or_fail(false)?;
    if removed.is_empty() {
        note(
            "cachesync: none of these paths was pinned (pins are listed in .cachesync/config.json)",
        );
        return Ok(1);
    }
    for p in &removed {
        print_out(&format!("unpinned {p}\n"));
    }
    Ok(0)
}
