use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use cachesync_engine::events::{self, Event, EVENTS_FILE};
use cachesync_engine::Workspace;

use crate::app::CmdResult;
use crate::output::{print_out, time, OrFail};

/// Show the events: mode switches, conflicts, cache warnings.
///
/// `--follow` keeps streaming new ones (it does not lock the workspace, so other commands run
/// meanwhile).
#[derive(clap::Args)]
pub struct EventsArgs {
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Wait for new events and print them as they come.
    #[arg(long, short)]
    follow: bool,
}

fn line(e: &Event, json: bool) -> String {
    if json {
        return serde_json::to_string(e).expect("events serialize") + "\n";
    }
    let mut s = format!("{}  {:<13}", time(e.time_ns), e.kind);
    if let Some(p) = &e.path {
        s.push_str(&format!(" {p}"));
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(" ({r})"));
    }
    if e.manual == Some(true) {
        s.push_str(" [by hand]");
    }
    s + "\n"
}

pub fn cmd_events(args: EventsArgs) -> CmdResult {
    let cwd = std::env::current_dir()
        .map_err(|e| cachesync_engine::SyncError::Usage(format!("current directory: {e}")))
        .or_fail(args.json)?;
    let root = Workspace::find(&cwd).or_fail(args.json)?;
    let meta = root.join(cachesync_engine::ignore_rules::META_DIR);
    let all = events::read_all(&meta).or_fail(args.json)?;
    let mut out = String::new();
    for e in &all {
        out.push_str(&line(e, args.json));
    }
    if !args.follow && all.is_empty() && !args.json {
        out.push_str("no events yet\n");
    }
    print_out(&out);
    if !args.follow {
        return Ok(0);
    }
    // Follow: read what is appended, line by line, as `tail -f` does.
    let path = meta.join(EVENTS_FILE);
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut pending = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // replaced: start over
        }
        if len == offset {
            continue;
        }
        if f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            continue;
        }
        offset += buf.len() as u64;
        pending.extend_from_slice(&buf);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let l: Vec<u8> = pending.drain(..=i).collect();
            if let Ok(e) = serde_json::from_slice::<Event>(&l) {
                print_out(&line(&e, args.json));
            }
        }
    }
}
