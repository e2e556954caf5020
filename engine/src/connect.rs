//! `connect`: end a disconnection by hand, and sync if the config asks for it.

use crate::error::{Result, SyncError};
use crate::mode::{Mode, ModeState};
use crate::progress::Progress;
use crate::workspace::Workspace;

/// What the user asked for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Sync after reconnecting when `on_reconnect` is `sync` (false: only switch).
    pub sync: bool,
}

/// What `connect` did.
#[derive(Debug)]
pub struct Outcome {
    /// True when the workspace was disconnected before.
    pub switched: bool,
    /// The sync that followed, when the config asks for one.
    pub sync: Option<crate::sync::Outcome>,
}

/// Checks that the remote answers and is the same remote, switches to connected and, if
/// `on_reconnect` is `sync` (and [`Options::sync`] is true), syncs.
///
/// # Errors
/// [`SyncError::Disconnected`] / [`SyncError::RemoteIdentity`] when the remote is not
/// back (the workspace then stays disconnected, no longer by hand: later commands will try
/// the remote again).
pub fn run(ws: &mut Workspace, opts: Options, progress: &dyn Progress) -> Result<Outcome> {
    let before = ws.mode()?;
    let probe = ws
        .remote()
        .and_then(|r| crate::identity::check(&r, &ws.config.remote, &ws.identity));
    if let Err(e) = probe {
        let reason = match &e {
            SyncError::Disconnected { reason } => reason.clone(),
            other => other.to_string(),
        };
        if before.manual {
            let state = ModeState {
                mode: Mode::Disconnected,
                since_ns: before.since_ns,
                reason: Some(reason),
                manual: false,
            };
            ws.switch(&state, crate::journal::OpKind::Connect)?;
        } else {
            ws.set_disconnected(&reason, false)?;
        }
        return Err(e);
    }
    let switched = ws.set_connected(if before.manual {
        "connected by hand"
    } else {
        "the remote answered again"
    })?;
    let sync = if opts.sync && ws.config.on_reconnect == "sync" {
        let opts = crate::sync::Options {
            command: crate::journal::OpKind::Sync,
            direction: crate::plan::Direction::Both,
            paths: Vec::new(),
            dry_run: false,
            force: false,
            exact_paths: false,
        };
        Some(crate::sync::run(ws, &opts, progress)?)
    } else {
        None
    };
    Ok(Outcome { switched, sync })
}
