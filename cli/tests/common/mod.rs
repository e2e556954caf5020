//! The binary tests' helpers live in `cachesync_testutils::cli` (shared with any crate's
//! tests); this module only brings them in.

pub use cachesync_testutils::cli::*;
