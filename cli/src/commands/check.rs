use serde_json::json;

use crate::app::CmdResult;
use crate::output::{open_workspace, print_json, print_out, NoBars, OrFail};

/// Exit 0 only when clean, reachable and conflict-free (for scripts and CI).
///
/// Else it prints one line per problem and exits with the matching code (7 conflicts, 3
/// disconnected, 1 unsynced changes or remote entries that cannot be read).
#[derive(clap::Args)]
pub struct CheckArgs {
    /// Print one JSON object listing every problem.
    #[arg(long)]
    json: bool,
}

pub fn cmd_check(args: CheckArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let cachesync_engine::check::Outcome { problems, code } =
        cachesync_engine::check::run(&ws, &NoBars).or_fail(args.json)?;
    let exit = code.map_or(0, |c| c.exit_code());
    if args.json {
        print_json(&json!({
            "clean": code.is_none(),
            "code": code.map(|c| c.name()),
            "exit": exit,
            "problems": problems,
        }));
    } else if problems.is_empty() {
        print_out("clean: connected, nothing to pull or push, no conflicts\n");
    } else {
        let mut out = String::new();
        for p in &problems {
            out.push_str(&format!("{}: {}\n", p.kind, p.message));
        }
        print_out(&out);
    }
    Ok(exit)
}
