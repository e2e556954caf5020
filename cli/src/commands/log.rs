use cachesync_engine::journal;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace_for_reading, print_json, print_out, time, OrFail};

/// Show the journal: every operation, what it did and how it ended.
///
/// With PATH: the operations that changed it (for a directory, anything in it), each with
/// the version it left (kind, size, mode, content id), to give to `cachesync restore PATH
/// --at OP`.
#[derive(clap::Args)]
pub struct LogArgs {
    /// Only the operations that changed this path.
    path: Option<std::path::PathBuf>,
    /// Print a JSON array of operations (with their planned steps), or with PATH of its
    /// versions.
    #[arg(long)]
    json: bool,
    /// Only the last N operations.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// In JSON, leave out each operation's planned steps (a first copy plans one per file).
    #[arg(long)]
    no_plan: bool,
}

/// `log PATH`: the versions the journal's snapshots still hold.
fn versions(ws: &cachesync_engine::Workspace, path: &std::path::Path, json: bool) -> CmdResult {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let rel = ws.rel_path(&cwd, path).or_fail(json)?;
    let list = cachesync_engine::restore::history(ws, &rel).or_fail(json)?;
    if json {
        print_json(&list);
        return Ok(0);
    }
    let mut out = String::new();
    for v in list.iter().rev() {
        let what = match (v.kind, v.size) {
            (None, _) => String::new(),
            (Some("dir"), _) => "dir".to_string(),
            (Some(k), Some(n)) => format!("{k} {}", bytes(n)),
            (Some(k), None) => k.to_string(),
        };
        out.push_str(&format!(
            "op {:<4} {}  {:<8} {:<8} {:<16} {}\n",
            v.op,
            time(v.started_ns),
            v.command,
            v.change,
            what,
            v.hash.as_deref().map_or("", |h| &h[..16])
        ));
    }
    if list.is_empty() {
        out.push_str(&format!(
            "no operation the store still holds changed {}\n",
            cachesync_engine::paths::display(&rel)
        ));
    }
    print_out(&out);
    Ok(0)
}

pub fn cmd_log(args: LogArgs) -> CmdResult {
    let ws = open_workspace_for_reading(args.json)?;
    if let Some(path) = &args.path {
        return versions(&ws, path, args.json);
    }
    let mut ops = journal::all(&ws.store).or_fail(args.json)?;
    if let Some(n) = args.limit {
        ops.drain(..ops.len().saturating_sub(n));
    }
    if args.json {
        let ops = if args.no_plan {
            ops
        } else {
            ops.into_iter()
                .map(|op| journal::with_plan(&ws.store, op))
                .collect::<Result<Vec<_>, _>>()
                .or_fail(args.json)?
        };
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
