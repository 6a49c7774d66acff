//! The `zoo` command line.
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "zoo", version, about = "The classic convolutional networks, from LeNet-5 to ShuffleNet, on libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the models (name, family, parameters, input size), optionally matching a glob.
    List { glob: Option<String> },
    /// Describe one model: paper, input, parameters, feature stages.
    Info { model: String },
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List { glob } => print!("{}", zoo::commands::list::list(glob.as_deref())?),
        Command::Info { model } => print!("{}", zoo::commands::list::info(&model)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
