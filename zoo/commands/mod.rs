//! What the `zoo` command line runs, one file per subcommand; `bin/zoo.rs` only parses flags.
pub mod list;
