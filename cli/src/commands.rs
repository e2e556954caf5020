//! One module per command: its arguments (clap derive; the doc comment is the help) and its
//! `cmd_xxx`, which calls the engine and prints.

pub mod check;
pub mod clone;
pub mod conflicts;
pub mod connect;
pub mod cull;
pub mod diff;
pub mod events;
pub mod fsck;
pub mod gc;
pub mod install;
pub mod log;
pub mod ls;
pub mod mount;
pub mod prefetch;
pub mod presence;
pub mod resolve;
pub mod restore;
pub mod show;
pub mod status;
pub mod sync;
pub mod ui;
pub mod undo;
