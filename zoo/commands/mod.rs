//! What the `zoo` command line runs, one file per subcommand; `bin/zoo.rs` only parses flags.
pub mod classify;
pub mod features;
pub mod list;
pub mod preprocess;
pub mod summary;
pub mod train;
pub mod weights;

/// How a command prints its report: a table for people, or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TextFormat {
    Table,
    Json,
}
