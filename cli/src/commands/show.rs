use std::path::PathBuf;

use cachesync_engine::conflict;
use cachesync_engine::{ErrorCode, SyncError};

use crate::app::CmdResult;
use crate::output::{exit, note, open_workspace, write_out, OrFail};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Which {
    Server,
    Client,
    Base,
}

/// Write one version of a path to stdout (for a conflict: the server's, yours, or the base).
#[derive(clap::Args)]
pub struct ShowArgs {
    /// The path (relative to the current directory).
    path: PathBuf,
    /// Which version.
    #[arg(long, value_enum, default_value = "server")]
    variant: Which,
}

pub fn cmd_show(args: ShowArgs) -> CmdResult {
    let ws = open_workspace(false)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    let rel = ws.rel_path(&cwd, &args.path).or_fail(false)?;
    let records = conflict::all(&ws.store).or_fail(false)?;
    let record = records.iter().find(|r| r.path_bytes() == rel);
    let variant = match record {
        Some(r) => match args.variant {
            Which::Server => r.server.clone(),
            Which::Client => r.client.clone(),
            Which::Base => r.base.clone(),
        },
        None => {
            let reference = match args.variant {
                Which::Server => cachesync_objects::keys::REF_REMOTE,
                Which::Base | Which::Client => cachesync_objects::keys::REF_BASE,
            };
            let flat = ws
                .store
                .read_ref_flat(reference)
                .map_err(Into::into)
                .or_fail(false)?;
            if matches!(args.variant, Which::Client) {
                let abs = cachesync_engine::paths::under(&ws.root, &rel);
                if let Ok(target) = std::fs::read_link(&abs) {
                    use std::os::unix::ffi::OsStrExt;
                    let mut line = target.as_os_str().as_bytes().to_vec();
                    line.push(b'\n');
                    write_out(&line);
                    return Ok(0);
                }
                let data = std::fs::read(&abs)
                    .map_err(|e| SyncError::Io {
                        path: abs,
                        source: e,
                    })
                    .or_fail(false)?;
                write_out(&data);
                return Ok(0);
            }
            conflict::Variant::of(flat.get(&rel))
        }
    };
    let Some(variant) = variant else {
        note(&format!(
            "cachesync: {} has no such version (absent on that side)",
            cachesync_engine::paths::display(&rel)
        ));
        return Ok(1);
    };
    if let Some(target) = &variant.target {
        write_out(format!("{target}\n").as_bytes());
        return Ok(0);
    }
    let Some(id) = variant.file_id() else {
        note(&format!(
            "cachesync: that version is a {}, not a file",
            variant.kind
        ));
        return Ok(1);
    };
    match ws.store.read_file_bytes(id) {
        Ok(data) => {
            write_out(&data);
            Ok(0)
        }
        Err(
            cachesync_objects::ObjectError::MissingFile(_)
            | cachesync_objects::ObjectError::MissingChunk(_),
        ) => {
            note("cachesync: error: that version's content is not in the cache");
            Ok(exit(ErrorCode::DisconData))
        }
        Err(e) => Err(SyncError::from(e)).or_fail(false),
    }
}
