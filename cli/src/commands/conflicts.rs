use cachesync_engine::conflict::{self, ConflictState};

use crate::app::CmdResult;
use crate::output::{open_workspace_for_reading, print_json, print_out, time, OrFail};

/// List conflicts: path, kind, since when, which variants exist.
#[derive(clap::Args)]
pub struct ConflictsArgs {
    /// Print a JSON array of conflict records.
    #[arg(long)]
    json: bool,
    /// Include resolved conflicts (their variants stay in the store).
    #[arg(long)]
    all: bool,
}

pub fn cmd_conflicts(args: ConflictsArgs) -> CmdResult {
    let ws = open_workspace_for_reading(args.json)?;
    let mut records = conflict::all(&ws.store).or_fail(args.json)?;
    if !args.all {
        records.retain(|r| r.state == ConflictState::Open);
    }
    if args.json {
        print_json(&records);
        return Ok(0);
    }
    let mut out = String::new();
    for r in &records {
        let variants: Vec<&str> = [
            ("base", &r.base),
            ("client", &r.client),
            ("server", &r.server),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(n, _)| *n)
        .collect();
        out.push_str(&format!(
            "{:<8} {}  since {}  variants: {}{}\n",
            r.kind,
            r.path,
            time(r.since_ns),
            variants.join(", "),
            if r.state == ConflictState::Resolved {
                "  (resolved)"
            } else {
                ""
            }
        ));
        if let Some(how) = &r.resolution {
            out.push_str(&format!("         {how}\n"));
        }
    }
    if records.is_empty() {
        out.push_str("no conflicts\n");
    }
    print_out(&out);
    Ok(0)
}
