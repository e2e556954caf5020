use serde_json::json;

use crate::app::CmdResult;
use crate::output::{open_workspace, print_json, print_out, OrFail};

/// Remove store objects nothing refers to (old snapshots and the content only they held).
/// Conflict variants and unpushed local content are kept.
#[derive(clap::Args)]
pub struct GcArgs {
    /// Print one JSON object with the counts removed.
    #[arg(long)]
    json: bool,
}

pub fn cmd_gc(args: GcArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let r = ws.gc().or_fail(args.json)?;
    if args.json {
        print_json(&json!({
            "snapshots": r.snapshots, "trees": r.trees, "files": r.files, "chunks": r.chunks,
        }));
    } else {
        print_out(&format!(
            "removed {} snapshots, {} trees, {} files, {} chunks\n",
            r.snapshots, r.trees, r.files, r.chunks
        ));
    }
    Ok(0)
}
