//! The command-line grammar and the dispatch to one `cmd_xxx` per command.

use clap::{Parser, Subcommand};

use crate::commands;
use crate::output::Failure;

/// Disconnected operation for network file systems: a local, content-addressed cache of a
/// remote directory that syncs both ways and never loses a change.
#[derive(Parser)]
#[command(name = "cachesync", version, about, long_about = None)]
pub struct Cli {
    /// Run as if cachesync was started in DIR (as `git -C`): the workspace, and every
    /// relative path given, are found from there.
    #[arg(short = 'C', value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Clone(commands::clone::CloneArgs),
    Status(commands::status::StatusArgs),
    Pull(commands::sync::PullArgs),
    Push(commands::sync::PushArgs),
    Sync(commands::sync::SyncArgs),
    Log(commands::log::LogArgs),
    Check(commands::check::CheckArgs),
    Conflicts(commands::conflicts::ConflictsArgs),
    Show(commands::show::ShowArgs),
    Fsck(commands::fsck::FsckArgs),
    Gc(commands::gc::GcArgs),
    Connect(commands::connect::ConnectArgs),
    Disconnect(commands::connect::DisconnectArgs),
    Events(commands::events::EventsArgs),
    Diff(commands::diff::DiffArgs),
    Ls(commands::ls::LsArgs),
    Resolve(commands::resolve::ResolveArgs),
    Restore(commands::restore::RestoreArgs),
    Undo(commands::undo::UndoArgs),
    Get(commands::presence::GetArgs),
    Drop(commands::presence::DropArgs),
    Pin(commands::presence::PinArgs),
    Cull(commands::cull::CullArgs),
    Prefetch(commands::prefetch::PrefetchArgs),
    Unpin(commands::presence::UnpinArgs),
    Mount(commands::mount::MountArgs),
    Umount(commands::mount::UmountArgs),
    Ui(commands::ui::UiArgs),
    Completions(commands::install::CompletionsArgs),
    /// Writes the man pages, `cachesync.1` and one per command, into DIR (`make install`).
    #[command(hide = true)]
    ManPages {
        /// An existing directory.
        dir: std::path::PathBuf,
    },
    /// Serves remote calls for another cachesync process (internal).
    #[command(hide = true)]
    RemoteHelper {
        /// The remote root.
        root: std::path::PathBuf,
    },
}

/// Parses the arguments, runs the command, prints, and returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if let Command::RemoteHelper { root } = &cli.command {
        return match cachesync_engine::remote_process::serve(
            root,
            std::io::stdin().lock(),
            std::io::stdout(),
        ) {
            Ok(()) => 0,
            Err(_) => 1,
        };
    }
    if let Some(dir) = &cli.dir {
        if let Err(e) = std::env::set_current_dir(dir) {
            eprintln!(
                "cachesync: error: cannot change to {}: {e}\nhint: -C names the directory to run in, as with git",
                dir.display()
            );
            return 2;
        }
    }
    // Inside a mounted view, a command works on the workspace behind it: the same directory
    // there, so that relative paths mean the same files.
    if let Some(dir) = std::env::current_dir()
        .ok()
        .and_then(|cwd| cachesync_view::workspace_dir_for(&cwd))
    {
        let _ = std::env::set_current_dir(dir);
    }
    // Remote calls go through a helper process: a hung mount can then never keep this
    // process from answering and exiting.
    if let Ok(exe) = std::env::current_exe() {
        cachesync_engine::remote_process::use_helper_process(exe);
    }
    let result = match cli.command {
        Command::Clone(a) => commands::clone::cmd_clone(a),
        Command::Status(a) => commands::status::cmd_status(a),
        Command::Pull(a) => commands::sync::cmd_pull(a),
        Command::Push(a) => commands::sync::cmd_push(a),
        Command::Sync(a) => commands::sync::cmd_sync(a),
        Command::Log(a) => commands::log::cmd_log(a),
        Command::Check(a) => commands::check::cmd_check(a),
        Command::Conflicts(a) => commands::conflicts::cmd_conflicts(a),
        Command::Show(a) => commands::show::cmd_show(a),
        Command::Fsck(a) => commands::fsck::cmd_fsck(a),
        Command::Gc(a) => commands::gc::cmd_gc(a),
        Command::Connect(a) => commands::connect::cmd_connect(a),
        Command::Disconnect(a) => commands::connect::cmd_disconnect(a),
        Command::Events(a) => commands::events::cmd_events(a),
        Command::Diff(a) => commands::diff::cmd_diff(a),
        Command::Ls(a) => commands::ls::cmd_ls(a),
        Command::Resolve(a) => commands::resolve::cmd_resolve(a),
        Command::Restore(a) => commands::restore::cmd_restore(a),
        Command::Undo(a) => commands::undo::cmd_undo(a),
        Command::Get(a) => commands::presence::cmd_get(a),
        Command::Drop(a) => commands::presence::cmd_drop(a),
        Command::Pin(a) => commands::presence::cmd_pin(a),
        Command::Cull(a) => commands::cull::cmd_cull(a),
        Command::Prefetch(a) => commands::prefetch::cmd_prefetch(a),
        Command::Unpin(a) => commands::presence::cmd_unpin(a),
        Command::Mount(a) => commands::mount::cmd_mount(a),
        Command::Umount(a) => commands::mount::cmd_umount(a),
        Command::Ui(a) => commands::ui::cmd_ui(a),
        Command::Completions(a) => Ok(commands::install::cmd_completions(&a)),
        Command::ManPages { dir } => Ok(commands::install::cmd_man_pages(&dir)),
        Command::RemoteHelper { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}

/// Shorthand for command results: an exit code, or a failure to report.
pub type CmdResult = Result<i32, Failure>;
