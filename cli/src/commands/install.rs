//! What an install puts beside the binary, made from the command-line grammar itself: shell
//! completions (`cachesync completions SHELL`) and man pages (`cachesync man-pages DIR`,
//! hidden: `make install` runs it).

use std::path::Path;

use clap::CommandFactory;

use crate::app::Cli;
use crate::output::write_out;

/// Print a completion script for SHELL on stdout.
///
/// `make install` installs those for bash, zsh and fish. By hand, for bash: `cachesync
/// completions bash > ~/.local/share/bash-completion/completions/cachesync`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// `cachesync completions SHELL`.
pub fn cmd_completions(args: &CompletionsArgs) -> i32 {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cachesync", &mut script);
    write_out(&script);
    0
}

/// `cachesync man-pages DIR`: exit 1, said on stderr, when they cannot be written.
pub fn cmd_man_pages(dir: &Path) -> i32 {
    match clap_mangen::generate_to(Cli::command(), dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "cachesync: error: cannot write the man pages into {}: {e}",
                dir.display()
            );
            1
        }
    }
}
