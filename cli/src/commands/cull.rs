use cachesync_engine::cull;
use serde_json::json;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace, print_json, print_out, OrFail};

/// Drop the least wanted clean files until the cache fits its budget.
///
/// The least wanted go first: lowest hoard priority, then least recently used; never pinned,
/// modified, provisional or conflicted ones. It stops once the cache is under 80% of its budget,
/// and removes their content from the store.
#[derive(clap::Args)]
pub struct CullArgs {
    /// Only say what would be dropped.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn cmd_cull(args: CullArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let opts = cull::Options {
        dry_run: args.dry_run,
        by_hand: true,
    };
    let r = cull::run(&ws, &opts).or_fail(args.json)?;
    if args.json {
        print_json(&json!({ "dry_run": args.dry_run, "report": r }));
        return Ok(0);
    }
    let mut out = String::new();
    for p in &r.dropped {
        out.push_str(&format!(
            "  {} {p}\n",
            if args.dry_run {
                "would drop"
            } else {
                "dropped"
            }
        ));
    }
    match (&r.note, r.budget) {
        (Some(n), _) => out.push_str(&format!("cull: nothing to do: {n}\n")),
        (None, Some(b)) => out.push_str(&format!(
            "cull: {} file(s); the cache used {} and uses {} of its {} budget\n",
            r.dropped.len(),
            bytes(r.used_before),
            bytes(r.used_after),
            bytes(b)
        )),
        (None, None) => {}
    }
    print_out(&out);
    Ok(0)
}
