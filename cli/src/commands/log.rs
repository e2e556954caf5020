use cachesync_engine::journal;

use crate::app::CmdResult;
use crate::output::{open_workspace_for_reading, print_json, print_out, time, OrFail};

/// Show the journal: every operation, what it did and how it ended.
#[derive(clap::Args)]
pub struct LogArgs {
    /// Print a JSON array of operations (with their planned steps).
    #[arg(long)]
    json: bool,
}

pub fn cmd_log(args: LogArgs) -> CmdResult {
    let ws = open_workspace_for_reading(args.json)?;
    let ops = journal::all(&ws.store).or_fail(args.json)?;
    if args.json {
        let ops = ops
            .into_iter()
            .map(|op| journal::with_plan(&ws.store, op))
            .collect::<Result<Vec<_>, _>>()
            .or_fail(args.json)?;
        print_json(&ops);
        return Ok(0);
    }
    let mut out = String::new();
    for op in ops.iter().rev() {
        let state = serde_json::to_value(op.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "op {:<4} {}  {:<10} {:<9} {}\n",
            op.id,
            time(op.started_ns),
            op.command,
            state,
            op.summary
        ));
        if let Some(e) = &op.error {
            out.push_str(&format!("        error: {e}\n"));
        }
    }
    if ops.is_empty() {
        out.push_str("the journal is empty\n");
    }
    print_out(&out);
    Ok(0)
}
