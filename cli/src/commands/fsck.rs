use serde_json::json;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace, print_json, print_out, OrFail};

/// Verify every object in the store (every chunk re-hashed); exit 1 if anything is damaged.
#[derive(clap::Args)]
pub struct FsckArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn cmd_fsck(args: FsckArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let report = ws.fsck().or_fail(args.json)?;
    let code = if report.is_clean() { 0 } else { 1 };
    if args.json {
        print_json(&json!({
            "clean": report.is_clean(),
            "snapshots": report.snapshots,
            "trees": report.trees,
            "files": report.files,
            "chunks": report.chunks,
            "bytes": report.bytes,
            "problems": report.problems.iter().map(|p| json!({
                "object": p.object, "id": p.id, "context": p.context, "detail": p.detail,
            })).collect::<Vec<_>>(),
        }));
        return Ok(code);
    }
    let mut out = String::new();
    for p in &report.problems {
        out.push_str(&format!(
            "damaged {} {} ({}): {}\n",
            p.object, p.id, p.context, p.detail
        ));
    }
    out.push_str(&format!(
        "checked {} snapshots, {} trees, {} files, {} chunks ({}): {}\n",
        report.snapshots,
        report.trees,
        report.files,
        report.chunks,
        bytes(report.bytes),
        if report.is_clean() {
            "clean".to_string()
        } else {
            format!("{} problem(s)", report.problems.len())
        }
    ));
    print_out(&out);
    Ok(code)
}
