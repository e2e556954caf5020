//! The `cachesync` command: argument parsing and output only; the engine does the work.

mod app;
mod commands;
mod output;

fn main() {
    std::process::exit(app::run());
}
