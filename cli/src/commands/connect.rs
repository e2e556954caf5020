use cachesync_engine::{registry, SyncError, Workspace};

use crate::app::CmdResult;
use crate::output::{note, open_workspace, print_out, Bars, OrFail};

/// Which workspaces a mode switch applies to.
#[derive(clap::Args)]
pub struct Selection {
    /// Every workspace of this user (from the registry `clone` keeps).
    #[arg(long, conflicts_with = "server")]
    all: bool,
    /// Every workspace whose share is served by HOST (the host in the mount's source, e.g.
    /// `user@HOST:/dir` for sshfs, `HOST:/export` for NFS).
    #[arg(long, value_name = "HOST")]
    server: Option<String>,
}

/// Reconnect: check the remote is back and the same, then sync.
///
/// It checks that the remote answers and is the same remote, then syncs, unless the config's
/// `on_reconnect` is `none` or `--no-sync` is given.
#[derive(clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    which: Selection,
    /// Only switch the mode; do not sync.
    #[arg(long)]
    no_sync: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Work offline: nothing touches the remote until `cachesync connect`.
#[derive(clap::Args)]
pub struct DisconnectArgs {
    #[command(flatten)]
    which: Selection,
}

/// The workspaces selected: the current one, or those of the registry that match. `f`
/// returns a line to print and an exit code (0, or 7 when conflicts remain).
fn each(
    which: &Selection,
    mut f: impl FnMut(&mut Workspace) -> Result<(String, i32), SyncError>,
) -> CmdResult {
    if !which.all && which.server.is_none() {
        let mut ws = open_workspace(false)?;
        let (line, code) = f(&mut ws).or_fail(false)?;
        print_out(&format!("{line}\n"));
        return Ok(code);
    }
    let mut worst = 0;
    let mut matched = 0;
    for root in registry::list().or_fail(false)? {
        let mut ws = match Workspace::open(&root) {
            Ok(ws) => ws,
            Err(e) => {
                note(&format!("{}: skipped: {e}", root.display()));
                worst = worst.max(1);
                continue;
            }
        };
        if let Some(host) = &which.server {
            if ws.server().as_deref() != Some(host.as_str()) {
                continue;
            }
        }
        matched += 1;
        match f(&mut ws) {
            Ok((line, code)) => {
                print_out(&format!("{}: {line}\n", root.display()));
                worst = worst.max(code);
            }
            Err(e) => {
                note(&format!("{}: {e}", root.display()));
                worst = worst.max(e.code().exit_code());
            }
        }
    }
    if matched == 0 {
        note(
            match &which.server {
                Some(h) => format!("cachesync: no registered workspace is served by {h}"),
                None => "cachesync: no registered workspace".into(),
            }
            .as_str(),
        );
    }
    Ok(worst)
}

pub fn cmd_connect(args: ConnectArgs) -> CmdResult {
    let bars = Bars::new(args.quiet);
    each(&args.which, |ws| {
        let r = cachesync_engine::connect::run(
            ws,
            cachesync_engine::connect::Options {
                sync: !args.no_sync,
            },
            &bars,
        )?;
        let mut line = if r.switched {
            "connected".to_string()
        } else {
            "already connected".to_string()
        };
        let mut code = 0;
        if let Some(s) = &r.sync {
            line.push_str(&format!(
                "; synced: {} of {} step(s) ({} to the workspace, {} to the remote)",
                s.applied,
                s.plan.steps.len(),
                s.applied_local,
                s.applied_remote
            ));
            for p in &s.culled {
                line.push_str(&format!("\n  culled {p}"));
            }
            for (p, why) in &s.skipped {
                line.push_str(&format!(
                    "\n  skipped {}: {why}",
                    cachesync_engine::paths::display(p)
                ));
            }
            if let Some((needed, budget, refused)) = s.cache_exhausted() {
                line.push_str(&format!(
                    "\n  the cache budget is exhausted ({needed} bytes needed, budget {budget}): {refused} file(s) not brought in"
                ));
                code = cachesync_engine::ErrorCode::DisconFull.exit_code();
            }
            if !s.conflicts.is_empty() {
                line.push_str(&format!(
                    "\n  {} conflict(s) remain (`cachesync conflicts`)",
                    s.conflicts.len()
                ));
                code = cachesync_engine::ErrorCode::Conflicted.exit_code();
            }
            if let Some(e) = &s.failed {
                line.push_str(&format!("\n  error: {e}"));
                if let Some(h) = e.hint() {
                    line.push_str(&format!("\n  hint: {h}"));
                }
                code = e.code().exit_code();
            }
        }
        Ok((line, code))
    })
}

pub fn cmd_disconnect(args: DisconnectArgs) -> CmdResult {
    each(&args.which, |ws| {
        let switched = ws.set_disconnected("disconnected by hand", true)?;
        let line = if switched {
            "disconnected: nothing touches the remote until `cachesync connect`"
        } else {
            "already disconnected by hand"
        };
        Ok((line.to_string(), 0))
    })
}
