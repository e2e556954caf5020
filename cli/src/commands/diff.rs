use std::path::PathBuf;

use crate::app::CmdResult;
use crate::output::{open_workspace, print_out, rel_paths, OrFail};

/// Show local changes as a diff, or two versions of one path.
///
/// Local changes against the last synced state (the base snapshot), as a unified diff; or, with
/// two --variant options, the difference between two versions of one path (e.g. a conflict's
/// server and client versions). Works offline.
#[derive(clap::Args)]
pub struct DiffArgs {
    /// Only these paths (and what is under them).
    paths: Vec<PathBuf>,
    /// Two versions to compare (give it twice): server, client, base, resolved.
    #[arg(long, value_enum, num_args = 1)]
    variant: Vec<super::show::VariantArg>,
}

pub fn cmd_diff(args: DiffArgs) -> CmdResult {
    let ws = open_workspace(false)?;
    let paths = rel_paths(&ws, &args.paths, false)?;
    if args.variant.is_empty() {
        print_out(
            &cachesync_engine::diff::run(&ws, &cachesync_engine::diff::Options { paths })
                .or_fail(false)?,
        );
        return Ok(0);
    }
    let (&[a, b], [path]) = (args.variant.as_slice(), paths.as_slice()) else {
        return Err(cachesync_engine::SyncError::Usage(
            "--variant takes two versions (--variant A --variant B) and one PATH".into(),
        ))
        .or_fail(false);
    };
    print_out(&cachesync_engine::variants::diff(&ws, path, a.which(), b.which()).or_fail(false)?);
    Ok(0)
}
