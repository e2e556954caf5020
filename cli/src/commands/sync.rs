use std::path::PathBuf;

use cachesync_engine::journal::OpKind;
use cachesync_engine::plan::Direction;
use cachesync_engine::sync;
use cachesync_engine::ErrorCode;
use serde_json::json;

use crate::app::CmdResult;
use crate::output::{
    bytes, exit, note, open_workspace, print_json, print_out, rel_paths, Bars, OrFail,
};

#[derive(clap::Args)]
struct Common {
    /// Print the plan (every step with its precondition) and change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Run even if it deletes more files than the deletion guard allows.
    #[arg(long)]
    force: bool,
    /// Print one JSON object with the plan and the outcome.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Bring remote changes into the workspace.
///
/// Three-way against the base snapshot.
#[derive(clap::Args)]
pub struct PullArgs {
    /// Only these paths (and what is under them).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Send workspace changes to the remote.
///
/// Each write is checked against what the base recorded.
#[derive(clap::Args)]
pub struct PushArgs {
    /// Only these paths (and what is under them).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Pull and push in one run.
#[derive(clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    common: Common,
}

pub fn cmd_pull(a: PullArgs) -> CmdResult {
    run(OpKind::Pull, Direction::Pull, a.paths, a.common)
}

pub fn cmd_push(a: PushArgs) -> CmdResult {
    run(OpKind::Push, Direction::Push, a.paths, a.common)
}

pub fn cmd_sync(a: SyncArgs) -> CmdResult {
    run(OpKind::Sync, Direction::Both, Vec::new(), a.common)
}

fn run(kind: OpKind, direction: Direction, paths: Vec<PathBuf>, c: Common) -> CmdResult {
    let mut ws = open_workspace(c.json)?;
    let paths = rel_paths(&ws, &paths, c.json)?;
    let opts = sync::Options {
        command: kind,
        direction,
        paths,
        dry_run: c.dry_run,
        force: c.force,
        exact_paths: false,
    };
    let mut report = sync::run(&mut ws, &opts, &Bars::new(c.quiet || c.json)).or_fail(c.json)?;
    let conflicted = !report.conflicts.is_empty();
    let full = report.cache_exhausted();
    let failed = report.failed.take();
    if c.json {
        let mut j = to_json(kind.as_str(), &c, &report);
        j["error"] = failed.as_ref().map_or(serde_json::Value::Null, |e| {
            json!({"error": e.to_string(), "code": e.code().name(), "exit": e.code().exit_code(), "hint": e.hint()})
        });
        print_json(&j);
    } else {
        print_out(&human(kind.as_str(), c.dry_run, &report));
        for w in &report.warnings {
            note(&format!("warning: {w}"));
        }
        if let (Some(n), None) = (budget_notice(&report), full) {
            note(&n);
        }
        if conflicted && !c.dry_run {
            note("cachesync: conflicts remain; every version is kept (nothing was lost)");
            note("hint: `cachesync conflicts` lists them, `cachesync show PATH --variant server|client|base` prints a version, `cachesync resolve PATH` settles one");
        }
    }
    Ok(finish_code(conflicted, full, failed, c.json))
}

/// The exit code of a run that finished: a failed step's error's (printed too; in JSON it is
/// the report's `error`), else 7 while conflicts remain, else 6 if the cache budget refused
/// content (its error is printed too), else 0.
pub fn finish_code(
    conflicted: bool,
    full: Option<(u64, u64, usize)>,
    failed: Option<cachesync_engine::SyncError>,
    json: bool,
) -> i32 {
    if let Some(error) = failed {
        if json {
            return error.code().exit_code();
        }
        return crate::output::Failure { error, json: false }.report();
    }
    let full_code = full.map(|(needed, budget, refused)| {
        if json {
            return exit(ErrorCode::DisconFull);
        }
        crate::output::Failure {
            error: cachesync_engine::SyncError::CacheFull {
                needed,
                budget,
                refused,
            },
            json: false,
        }
        .report()
    });
    if conflicted {
        exit(ErrorCode::Conflicted)
    } else {
        full_code.unwrap_or(0)
    }
}

/// The notice for new files the cache budget left remote-only (not an error: the budget
/// working), when there were some.
pub fn budget_notice(r: &sync::Outcome) -> Option<String> {
    let (needed, budget, refused) = r.cache_full?;
    Some(format!(
        "note: {refused} new file(s) stay remote-only: they do not fit the cache budget ({} needed, {} allowed); `cachesync get PATH` brings one here",
        bytes(needed),
        bytes(budget)
    ))
}

/// A run's report as text (`undo` prints its push this way too).
pub fn human(command: &str, dry_run: bool, r: &sync::Outcome) -> String {
    let mut out = String::new();
    for id in &r.recovered {
        out.push_str(&format!("recovered: operation {id} had been interrupted; it was abandoned and its work redone\n"));
    }
    if dry_run {
        if r.plan.steps.is_empty() {
            out.push_str("nothing to do\n");
        } else {
            out.push_str(&format!(
                "{command} would run {} step(s):\n",
                r.plan.steps.len()
            ));
            for s in &r.plan.steps {
                out.push_str(&format!(
                    "  {}   (expects {})\n",
                    s.line(),
                    cachesync_engine::plan::describe_state(s.expect.as_deref())
                ));
            }
        }
    } else {
        for s in &r.plan.steps {
            if !r.skipped.iter().any(|(p, _)| *p == s.path) {
                out.push_str(&format!("  {}\n", s.line()));
            }
        }
        out.push_str(&format!(
            "{command}: {} of {} step(s) applied ({} to the workspace, {} to the remote), {} read, {} written to the remote\n",
            r.applied,
            r.plan.steps.len(),
            r.applied_local,
            r.applied_remote,
            bytes(r.bytes_down),
            bytes(r.bytes_up)
        ));
    }
    for p in &r.patched {
        let how = if p.how == "copy" {
            "copied on the server and patched"
        } else {
            "patched in place"
        };
        out.push_str(&format!(
            "{}: {how}, {} of {} sent\n",
            p.path,
            bytes(p.bytes_sent),
            bytes(p.size)
        ));
    }
    for n in &r.notices {
        out.push_str(&format!("note: {n}\n"));
    }
    for p in &r.culled {
        out.push_str(&format!(
            "culled {p} (the cache was above its threshold; `cachesync get` brings it back)\n"
        ));
    }
    for (p, why) in &r.skipped {
        out.push_str(&format!(
            "skipped {}: {why}\n",
            cachesync_engine::paths::display(p)
        ));
    }
    for c in &r.conflicts {
        out.push_str(&format!("conflict ({}): {}\n", c.kind, c.path));
    }
    out
}

fn to_json(command: &str, c: &Common, r: &sync::Outcome) -> serde_json::Value {
    report_json(command, c.dry_run, r)
}

/// A run's report as `--json` prints it (`undo` prints its push this way too).
pub fn report_json(command: &str, dry_run: bool, r: &sync::Outcome) -> serde_json::Value {
    json!({
        "command": command,
        "dry_run": dry_run,
        "op": r.op,
        "steps": r.plan.steps.iter().map(|s| s.record()).collect::<Vec<_>>(),
        "applied": r.applied,
        "applied_local": r.applied_local,
        "applied_remote": r.applied_remote,
        "skipped": r.skipped.iter().map(|(p, why)| json!({
                "path": cachesync_engine::paths::display(p),
                "path_hex": std::str::from_utf8(p).is_err().then(|| cachesync_engine::paths::hex(p)),
                "reason": why,
            })).collect::<Vec<_>>(),
        "conflicts": r.conflicts,
        "notices": r.notices,
        "warnings": r.warnings,
        "bytes_read": r.bytes_down,
        "bytes_written": r.bytes_up,
        "bytes_ingested": r.bytes_ingested,
        "bytes_stored": r.bytes_stored,
        "recovered": r.recovered,
        "patched": r.patched,
        "culled": r.culled,
        "cache_full": r.cache_full.map(|(needed, budget, refused)| json!({
            "needed": needed, "budget": budget, "refused": refused, "required": r.cache_required,
        })),
    })
}
