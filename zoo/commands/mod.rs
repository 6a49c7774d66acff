//! What the `zoo` command line runs, one file per subcommand; `bin/zoo.rs` only parses flags.
pub mod classify;
pub mod features;
pub mod list;
pub mod preprocess;
pub mod summary;
pub mod train;
pub mod weights;
