use cachesync_engine::status::{self, PathChange};

use crate::app::CmdResult;
use crate::output::{bytes, open_workspace_to_look, print_json, print_out, time, Bars, OrFail};

/// Show local and remote changes, conflicts and cache use.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print one JSON object (see docs/guide.md for its shape).
    #[arg(long)]
    json: bool,
    /// Also list the paths the ignore rules leave out.
    #[arg(long)]
    ignored: bool,
    /// Look at the share now (walk it and read what changed there, as a sync would).
    /// Without it, the remote side is the share as the last sync, pull, push or
    /// `status --refresh` saw it, and the share is not touched.
    #[arg(long)]
    refresh: bool,
}

fn section(out: &mut String, title: &str, changes: &[PathChange]) {
    if changes.is_empty() {
        return;
    }
    out.push_str(&format!("{title}:\n"));
    for c in changes {
        out.push_str(&format!("  {:<9} {}\n", c.change, c.path));
    }
}

pub fn cmd_status(args: StatusArgs) -> CmdResult {
    let ws = open_workspace_to_look(args.json)?;
    let opts = status::Options {
        with_ignored: args.ignored,
        refresh: args.refresh,
    };
    let report = match status::kept(&ws, &opts).or_fail(args.json)? {
        status::Kept::Answer(report) => *report,
        status::Kept::Stale(stale) => {
            let ws = ws.into_writable().or_fail(args.json)?;
            status::whole(&ws, &opts, stale, &Bars::new(args.json)).or_fail(args.json)?
        }
    };
    if args.json {
        print_json(&report);
        return Ok(0);
    }
    let mut out = header(&report);
    section(&mut out, "local changes (to push)", &report.local_changes);
    section(&mut out, "remote changes (to pull)", &report.remote_changes);
    conflicts_and_unreadable(&mut out, &report);
    lists(&mut out, &report);
    if report.local_changes.is_empty()
        && report.remote_changes.is_empty()
        && report.conflicts.is_empty()
        && report.unreadable.is_empty()
    {
        out.push_str(if report.remote_error.is_none() {
            "up to date: nothing to pull or push\n"
        } else {
            "no local changes\n"
        });
    }
    for w in &report.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    cache_lines(&mut out, &report);
    print_out(&out);
    Ok(0)
}

/// The workspace, the remote and its mode (since when, by hand or not), and why the remote
/// could not be reached.
fn header(report: &status::Outcome) -> String {
    let mut out = format!(
        "workspace {}\nremote    {} ({}{})\n",
        report.workspace,
        report.remote,
        report.mode,
        match (report.manual, report.since_ns) {
            (true, s) => format!(" by hand since {}", time(s)),
            (false, 0) => String::new(),
            (false, s) => format!(" since {}", time(s)),
        }
    );
    if let Some(e) = &report.remote_error {
        out.push_str(&format!("  {e}\n"));
    }
    match report.remote_seen_ns {
        _ if report.refreshed => {}
        Some(seen) => out.push_str(&format!(
            "  remote side as of {} ({}), the last look at the share; \
             `cachesync status --refresh` looks again\n",
            time(seen),
            ago(seen)
        )),
        None => out.push_str("  (remote changes unknown; local changes below)\n"),
    }
    out
}

/// How long ago `ns` (since the epoch) was, in the largest unit that fits.
fn ago(ns: i64) -> String {
    let secs = (cachesync_engine::now_ns() - ns).max(0) / 1_000_000_000;
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// What a sync cannot settle by itself: the conflicts, and the remote entries it cannot
/// read, with what to do about them (each remedy once).
fn conflicts_and_unreadable(out: &mut String, report: &status::Outcome) {
    if !report.conflicts.is_empty() {
        out.push_str("conflicts (your local version is kept; the server's is in the store):\n");
        for c in &report.conflicts {
            out.push_str(&format!("  {:<9} {}\n", c.kind, c.path));
        }
    }
    if !report.unreadable.is_empty() {
        out.push_str(
            "unreadable on the remote (left as they are on both sides; each run tries them again):\n",
        );
        for u in &report.unreadable {
            out.push_str(&format!("  {:<9} {}: {}\n", u.kind, u.path, u.reason));
        }
        let mut remedies: Vec<&str> = report
            .unreadable
            .iter()
            .map(|u| u.remedy.as_str())
            .collect();
        remedies.sort_unstable();
        remedies.dedup();
        for r in remedies {
            out.push_str(&format!("  what to do: {r}\n"));
        }
    }
}

/// The provisional paths, the offline changes the server may refuse, and (with
/// `--ignored`) the ignored paths.
fn lists(out: &mut String, report: &status::Outcome) {
    if !report.provisional.is_empty() {
        out.push_str("provisional (created here, not yet on the remote):\n");
        for c in &report.provisional {
            out.push_str(&format!("  {}\n", c.path));
        }
    }
    if !report.permission.is_empty() {
        out.push_str("warning: offline changes the server may refuse (EDISCONPERM):\n");
        for w in &report.permission {
            out.push_str(&format!("  {}: {}\n", w.path, w.reason));
        }
    }
    if let Some(ignored) = &report.ignored {
        out.push_str("ignored:\n");
        for p in ignored {
            out.push_str(&format!("  {p}\n"));
        }
    }
}

/// The cache's use against its budget, how ready the working set is to go offline, and
/// what culling would take next.
fn cache_lines(out: &mut String, report: &status::Outcome) {
    match report.cache.budget {
        Some(b) => out.push_str(&format!(
            "cache     {} of a {} budget (culling {} above {}, down to {})\n",
            bytes(report.cache.used),
            bytes(b),
            if report.cache.culling {
                "starts"
            } else {
                "is off;"
            },
            bytes(report.cache.cull_start.unwrap_or(0)),
            bytes(report.cache.cull_to.unwrap_or(0)),
        )),
        None => out.push_str(&format!(
            "cache     {} (no budget)\n",
            bytes(report.cache.used)
        )),
    }
    let r = &report.readiness;
    if r.working_set_files > 0 {
        out.push_str(&format!(
            "offline   {} of {} working-set files here ({:.0}%), {} still remote-only\n",
            r.present,
            r.working_set_files,
            r.present_share * 100.0,
            bytes(r.missing_bytes)
        ));
    }
    if !r.cull_next.is_empty() && report.cache.budget.is_some() {
        out.push_str(&format!("cull next {}\n", r.cull_next.join(", ")));
    }
}
