//! The `wicket` command-line interface. Each subcommand lives in its own module under
//! `src/cmd/`; `main` only parses arguments and maps results to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Wicket: a traffic policy engine and self-hosted tunnel.
#[derive(Debug, Parser)]
#[command(name = "wicket", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print version information.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("wicket {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
