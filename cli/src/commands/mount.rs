use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachesync_engine::{SyncError, Workspace};

use crate::app::CmdResult;
use crate::output::{print_out, OrFail};

/// Serve the workspace as a file system, usable offline.
///
/// The whole tree at MOUNTPOINT, remote-only files included (fetched when opened); every change
/// lands in the workspace. Runs in the background unless --foreground; `cachesync umount
/// MOUNTPOINT` ends it.
#[derive(clap::Args)]
pub struct MountArgs {
    /// An existing empty directory, outside the workspace.
    mountpoint: PathBuf,
    /// Stay in the foreground (for systemd and tests); SIGTERM or Ctrl-C unmounts.
    #[arg(long)]
    foreground: bool,
    /// Let every user of the machine use the view (the kernel still checks each file's
    /// permissions); without it, only you can.
    #[arg(long)]
    allow_other: bool,
}

/// Unmount a view mounted by `cachesync mount`.
#[derive(clap::Args)]
pub struct UmountArgs {
    /// Where it is mounted.
    mountpoint: PathBuf,
    /// Detach it now and finish once no program uses it any more.
    #[arg(long)]
    lazy: bool,
}

/// How long `mount` waits for the background daemon to have mounted.
const START_WAIT: Duration = Duration::from_secs(20);

pub fn cmd_mount(args: MountArgs) -> CmdResult {
    let cwd = std::env::current_dir()
        .map_err(|e| SyncError::io(std::path::Path::new("."), e))
        .or_fail(false)?;
    let root = Workspace::find(&cwd).or_fail(false)?;
    // Not through a running view: a second view of a workspace is refused as locked.
    let ws = Workspace::open(&root).or_fail(false)?;
    let mp = std::path::absolute(&args.mountpoint)
        .map_err(|e| SyncError::io(&args.mountpoint, e))
        .or_fail(false)?;
    let root = ws.root.canonicalize().unwrap_or_else(|_| ws.root.clone());
    let inside = mp
        .canonicalize()
        .unwrap_or_else(|_| mp.clone())
        .starts_with(&root);
    if inside {
        return Err(SyncError::Usage(format!(
            "{}: the mount point must be outside the workspace ({})",
            mp.display(),
            root.display()
        )))
        .or_fail(false);
    }
    if args.foreground {
        let opts = cachesync_view::Options {
            mountpoint: mp,
            sync_with: std::env::current_exe().ok(),
            allow_other: args.allow_other,
        };
        cachesync_view::run(ws, &opts).or_fail(false)?;
        return Ok(0);
    }
    let log = ws.meta_dir().join("mount.log");
    drop(ws);
    start_daemon(&mp, &log, args.allow_other)
}

/// Starts `cachesync mount --foreground` detached, output to `log`, and waits until the view
/// is mounted (or the daemon failed: its log says why).
fn start_daemon(mp: &std::path::Path, log: &std::path::Path, allow_other: bool) -> CmdResult {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map_err(|e| SyncError::io(std::path::Path::new("cachesync"), e))
        .or_fail(false)?;
    let out = std::fs::File::create(log)
        .map_err(|e| SyncError::io(log, e))
        .or_fail(false)?;
    let err = out
        .try_clone()
        .map_err(|e| SyncError::io(log, e))
        .or_fail(false)?;
    let mut child = Command::new(exe)
        .arg("mount")
        .arg("--foreground")
        .args(allow_other.then_some("--allow-other"))
        .arg(mp)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| SyncError::io(std::path::Path::new("cachesync"), e))
        .or_fail(false)?;
    let start = Instant::now();
    while start.elapsed() < START_WAIT {
        if cachesync_view::is_mounted(mp) {
            print_out(&format!("mounted at {}\n", mp.display()));
            return Ok(0);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            eprint!("{said}");
            return Ok(status.code().unwrap_or(1).max(1));
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    let _ = child.kill();
    Err(SyncError::Usage(format!(
        "{}: the view did not come up within {}s (see {})",
        mp.display(),
        START_WAIT.as_secs(),
        log.display()
    )))
    .or_fail(false)
}

pub fn cmd_umount(args: UmountArgs) -> CmdResult {
    let ended = cachesync_view::unmount_and_wait(&args.mountpoint, args.lazy).or_fail(false)?;
    print_out(&format!("unmounted {}\n", args.mountpoint.display()));
    if !ended {
        eprintln!(
            "cachesync: the view's daemon is still finishing; the workspace stays locked until it has"
        );
    }
    Ok(0)
}
