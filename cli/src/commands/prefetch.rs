use cachesync_engine::ErrorCode;

use crate::app::CmdResult;
use crate::output::{bytes, note, open_workspace, print_json, print_out, Bars, OrFail};

/// Refresh, pull and fetch the working set within the budget (for cron).
///
/// It refreshes the remote metadata, pulls, and fetches the working set (pinned files, then the
/// hoard profile by priority) within the cache budget. Silent with --quiet unless something needs
/// attention. Exit codes: 0 done, 3 remote unreachable (recorded, nothing else done), 6 cache
/// budget reached, 7 conflicts, 1 another run holds the workspace.
#[derive(clap::Args)]
pub struct PrefetchArgs {
    /// Print nothing unless something needs attention (for cron).
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn cmd_prefetch(args: PrefetchArgs) -> CmdResult {
    let mut ws = match open_workspace(args.json) {
        Ok(ws) => ws,
        Err(f) => return Ok(f.report()),
    };
    let r = match cachesync_engine::prefetch::run(&mut ws, &Bars::new(args.quiet || args.json)) {
        Ok(r) => r,
        Err(e) if e.code() == ErrorCode::Disconnected && args.quiet => {
            // Recorded in the workspace (mode, event); cron stays quiet.
            return Ok(e.code().exit_code());
        }
        Err(e) => return Err(e).or_fail(args.json),
    };
    if args.json {
        print_json(&r);
    } else if !args.quiet {
        let mut out = String::new();
        for p in &r.fetched {
            out.push_str(&format!("  got {p}\n"));
        }
        out.push_str(&format!(
            "prefetch: {} file(s) fetched ({}); {} left remote-only for the budget\n",
            r.fetched.len(),
            bytes(r.bytes_read),
            r.left_for_budget
        ));
        print_out(&out);
    }
    if r.conflicts > 0 {
        note(&format!(
            "cachesync prefetch: {} conflict(s) need attention (`cachesync conflicts`)",
            r.conflicts
        ));
        return Ok(ErrorCode::Conflicted.exit_code());
    }
    if r.cache_full {
        note("cachesync prefetch: the cache budget is exhausted; some files were left remote-only");
        return Ok(ErrorCode::DisconFull.exit_code());
    }
    Ok(0)
}
