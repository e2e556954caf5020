use std::path::PathBuf;

use cachesync_engine::restore;
use serde_json::json;

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace, print_json, print_out, rel_paths, OrFail};

/// Write paths as an operation left them, into the workspace or elsewhere.
///
/// Each PATH (a file, or a directory and everything in it) is written as it was in the state
/// both sides agreed on after operation OP: into the workspace, where the next `sync` sends
/// it, or under DEST (as DEST/PATH) with `--to`. `cachesync log PATH` lists the operations
/// that changed a path. Files that were not there then are left alone. Nothing is lost: a
/// workspace path holding a change not yet sent is not written over, nor is a file under
/// DEST; the restore is refused and names them.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Files or directories (relative to the current directory).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The operation, by its number in `cachesync log`; or a time, and the paths are as the
    /// last operation finished by then left them: `YYYY-MM-DD HH:MM:SS` (UTC, as `log`
    /// prints it), `YYYY-MM-DD` (the end of that day, UTC) or RFC 3339 (`2026-12-05T12:00:00+01:00`).
    #[arg(long, value_name = "OP|DATE", value_parser = parse_at)]
    at: At,
    /// Write under this directory instead of into the workspace.
    #[arg(long, value_name = "DEST")]
    to: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// What `--at` names.
#[derive(Clone, Copy, Debug)]
pub enum At {
    /// An operation's number.
    Op(u64),
    /// A time, ns since the epoch.
    Time(i64),
}

fn parse_at(s: &str) -> Result<At, String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    if let Ok(op) = s.parse::<u64>() {
        return Ok(At::Op(op));
    }
    let at = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            time::PrimitiveDateTime::parse(
                s,
                format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
            )
            .map(time::PrimitiveDateTime::assume_utc)
        })
        .or_else(|_| {
            time::Date::parse(s, format_description!("[year]-[month]-[day]"))
                .map(|d| d.with_hms(23, 59, 59).map_or(d.midnight(), |t| t).assume_utc())
        })
        .map_err(|_| {
            format!("{s:?} is neither an operation's number nor a time (YYYY-MM-DD HH:MM:SS in UTC, YYYY-MM-DD, or RFC 3339)")
        })?;
    i64::try_from(at.unix_timestamp_nanos())
        .map(At::Time)
        .map_err(|_| format!("{s:?} is out of range"))
}

pub fn cmd_restore(args: RestoreArgs) -> CmdResult {
    let ws = open_workspace(args.json)?;
    let paths = rel_paths(&ws, &args.paths, args.json)?;
    let at = match args.at {
        At::Op(op) => op,
        At::Time(ns) => restore::op_at(&ws, ns).or_fail(args.json)?,
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let to = args.to.as_ref().map(|d| cwd.join(d));
    let r = restore::run(
        &ws,
        &restore::Options {
            paths,
            at,
            to: to.clone(),
        },
    )
    .or_fail(args.json)?;
    if args.json {
        print_json(&json!({
            "at": at,
            "to": to.as_ref().map(|d| d.display().to_string()),
            "written": r.written,
            "left": r.left,
            "bytes": r.bytes,
        }));
        return Ok(if r.left.is_empty() { 0 } else { 7 });
    }
    let mut out = String::new();
    for p in &r.written {
        out.push_str(&format!("restored {p}\n"));
    }
    for p in &r.left {
        out.push_str(&format!(
            "left     {p}: changed here while the restore ran\n"
        ));
    }
    out.push_str(&format!(
        "{} path(s), {} as after operation {}{}\n",
        r.written.len(),
        bytes(r.bytes),
        at,
        match &to {
            Some(d) => format!(", under {}", d.display()),
            None => "; `cachesync sync` sends them".to_string(),
        }
    ));
    print_out(&out);
    Ok(if r.left.is_empty() { 0 } else { 7 })
}
