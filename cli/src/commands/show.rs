use std::path::PathBuf;

use cachesync_engine::variants::{self, Which};
use cachesync_engine::{ErrorCode, SyncError};
use cachesync_objects::EntryKind;

use crate::app::CmdResult;
use crate::output::{exit, note, open_workspace_for_reading, write_out, OrFail};

/// A variant's name on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VariantArg {
    /// The remote's version, as last seen.
    Server,
    /// Your version (the workspace's).
    Client,
    /// The last version both sides agreed on.
    Base,
    /// The version that settled a conflict.
    Resolved,
}

impl VariantArg {
    /// The engine's name for it.
    pub fn which(self) -> Which {
        match self {
            VariantArg::Server => Which::Server,
            VariantArg::Client => Which::Client,
            VariantArg::Base => Which::Base,
            VariantArg::Resolved => Which::Resolved,
        }
    }
}

/// Write one version of a path to stdout.
///
/// For a conflict: the server's, yours, the base or the resolved one; otherwise the last synced
/// (base), last seen on the server, or local.
#[derive(clap::Args)]
pub struct ShowArgs {
    /// The path (relative to the current directory).
    path: PathBuf,
    /// Which version.
    #[arg(long, value_enum, default_value = "server")]
    variant: VariantArg,
}

pub fn cmd_show(args: ShowArgs) -> CmdResult {
    let ws = open_workspace_for_reading(false)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let rel = ws.rel_path(&cwd, &args.path).or_fail(false)?;
    let shown = cachesync_engine::paths::display(&rel);
    match variants::read(&ws, &rel, args.variant.which()) {
        Ok(Some(v)) if v.kind == EntryKind::Symlink => {
            let mut line = v.bytes;
            line.push(b'\n');
            write_out(&line);
            Ok(0)
        }
        Ok(Some(v)) if v.kind == EntryKind::File => {
            write_out(&v.bytes);
            Ok(0)
        }
        Ok(Some(v)) => {
            note(&format!(
                "cachesync: {shown} is a {} in that version, not a file",
                v.kind.as_str()
            ));
            Ok(1)
        }
        Ok(None) => {
            note(&format!(
                "cachesync: {shown} has no such version (absent on that side)"
            ));
            Ok(1)
        }
        Err(SyncError::Store(
            cachesync_objects::ObjectError::MissingFile(_)
            | cachesync_objects::ObjectError::MissingChunk(_),
        )) => {
            note(&format!(
                "cachesync: error: that version of {shown} is not in the cache (EDISCONDATA)"
            ));
            Ok(exit(ErrorCode::DisconData))
        }
        Err(e) => Err(e).or_fail(false),
    }
}
