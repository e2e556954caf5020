use serde_json::json;

use crate::app::CmdResult;
use crate::output::{open_workspace, print_json, print_out, OrFail};

/// Remove store objects nothing refers to.
///
/// Old snapshots go, with the content only they held. Open conflicts' variants and unpushed local
/// content are kept; resolved conflicts' variants are kept for `keep_resolved_days` (30 by
/// default), then dropped with their records.
#[derive(clap::Args)]
pub struct GcArgs {
    /// Print one JSON object with the counts removed.
    #[arg(long)]
    json: bool,
}

pub fn cmd_gc(args: GcArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let cachesync_engine::gc::Outcome {
        store: r,
        conflict_records: records,
    } = cachesync_engine::gc::run(&ws).or_fail(args.json)?;
    if args.json {
        print_json(&json!({
            "snapshots": r.snapshots, "trees": r.trees, "files": r.files, "chunks": r.chunks,
            "conflict_records": records,
        }));
    } else {
        print_out(&format!(
            "removed {} snapshots, {} trees, {} files, {} chunks; dropped {} resolved conflict record(s)\n",
            r.snapshots, r.trees, r.files, r.chunks, records
        ));
    }
    Ok(0)
}
