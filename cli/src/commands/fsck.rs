use serde_json::json;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace, print_json, print_out, OrFail};

/// Verify every object in the store.
///
/// Every chunk is hashed again; exit 1 if anything is damaged.
#[derive(clap::Args)]
pub struct FsckArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Write damaged or missing content again from an intact copy in the workspace or on
    /// the remote (a copy is used only if it hashes to the id the store names), then check.
    #[arg(long)]
    repair: bool,
}

pub fn cmd_fsck(args: FsckArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let repair = if args.repair {
        Some(cachesync_engine::repair::run(&ws).or_fail(args.json)?)
    } else {
        None
    };
    let report = cachesync_engine::fsck::run(&ws).or_fail(args.json)?;
    let code = if report.is_clean() { 0 } else { 1 };
    if args.json {
        print_json(&json!({
            "repair": repair.as_ref().map(|r| json!({
                "repaired": r.repaired.iter().map(|(p, from)| json!({"path": p, "from": from})).collect::<Vec<_>>(),
                "unrepaired": r.unrepaired.iter().map(|(p, why)| json!({"path": p, "reason": why})).collect::<Vec<_>>(),
                "remote_error": r.remote_error,
            })),
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
    if let Some(r) = &repair {
        for (p, from) in &r.repaired {
            out.push_str(&format!("repaired {p} (from the {from})\n"));
        }
        for (p, why) in &r.unrepaired {
            out.push_str(&format!("could not repair {p}: {why}\n"));
        }
        if r.repaired.is_empty() && r.unrepaired.is_empty() {
            out.push_str("no damaged content to repair\n");
        }
    }
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
