use cachesync_engine::undo;
use cachesync_engine::ErrorCode;
use serde_json::json;

use crate::app::CmdResult;
use crate::commands::sync::{finish_code, human, report_json};
use crate::output::{exit, note, open_workspace, print_json, print_out, Bars, OrFail};

/// Take an operation back on both sides.
///
/// Every path operation OP changed (default: the last operation that changed anything)
/// returns, in the workspace and on the share, to the version both sides agreed on before
/// it: what it removed or overwrote comes back, what it created goes. A path changed since,
/// by a later operation or here and not yet sent, is left as it is and reported (exit 7); a
/// path someone changed on the share since becomes a conflict, both versions kept (exit 7).
/// Undo is an operation of its own in the journal: `undo` of it puts OP's changes back. What
/// OP brought stays in the store: `cachesync restore PATH --at OP` gives a path back as OP
/// left it.
///
/// An operation that changed this workspace alone is taken back here alone: files a `get`
/// brought go back to remote-only, files a `drop` or `cull` let go come back, and a conflict
/// a `resolve` settled is open again, with what the workspace held before.
#[derive(clap::Args)]
pub struct UndoArgs {
    /// The operation, by its number in `cachesync log` (default: the last that changed
    /// anything).
    op: Option<u64>,
    /// Print what would be done, change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn cmd_undo(args: UndoArgs) -> CmdResult {
    let mut ws = open_workspace(args.json)?;
    let opts = undo::Options {
        op: args.op,
        dry_run: args.dry_run,
    };
    let mut r =
        undo::run(&mut ws, &opts, &Bars::new(args.quiet || args.json)).or_fail(args.json)?;
    let left = r.left();
    let failed = r.push.as_mut().and_then(|p| p.failed.take());
    let conflicted = r.push.as_ref().is_some_and(|p| !p.conflicts.is_empty());
    if args.json {
        print_json(&json!({
            "undone": r.undone,
            "command": r.command,
            "dry_run": args.dry_run,
            "paths": r.paths,
            "push": r.push.as_ref().map(|p| report_json("undo", false, p)),
            "error": failed.as_ref().map(|e| json!({
                "error": e.to_string(), "code": e.code().name(), "exit": e.code().exit_code(),
            })),
        }));
    } else {
        print_out(&text(&r, args.dry_run));
    }
    let code = finish_code(conflicted, None, failed, args.json);
    if code == 0 && left > 0 {
        if !args.json {
            note(&format!(
                "cachesync: {left} path(s) changed since operation {} were left as they are",
                r.undone
            ));
        }
        return Ok(exit(ErrorCode::Conflicted));
    }
    Ok(code)
}

fn text(r: &undo::Outcome, dry_run: bool) -> String {
    let mut out = format!(
        "{} operation {} ({}):\n",
        if dry_run { "would undo" } else { "undo of" },
        r.undone,
        r.command
    );
    for p in &r.paths {
        match &p.reason {
            Some(why) => out.push_str(&format!("  left     {}: {why}\n", p.path)),
            None => out.push_str(&format!("  {:<8} {}\n", p.action, p.path)),
        }
    }
    if r.paths.is_empty() {
        out.push_str("  nothing: it changed no path\n");
    }
    if let Some(push) = &r.push {
        out.push_str(&human("undo", false, push));
    }
    if r.both_sides && !dry_run && r.paths.iter().any(|p| p.action != "left") {
        out.push_str(&format!(
            "what operation {} left stays in the store: `cachesync restore PATH --at {}` gives a path back as it was\n",
            r.undone, r.undone
        ));
    }
    out
}
