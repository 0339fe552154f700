//! The `wicket` command-line interface. Each subcommand lives in its own module under
//! `src/cmd/`; `main` only parses arguments and maps results to exit codes.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than the system allocator: the edge and the agent allocate and free a few
/// dozen small buffers per proxied request, often on another worker thread than the one that
/// allocated them; jemalloc cut the tunnel's CPU per request by 4–5 % (mimalloc made it worse;
/// see `runtime/BENCHMARK.md`, round 3).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Check traffic policy files and agent configs.
    Lint(cmd::lint::LintArgs),
    /// Print the JSON Schema of traffic policy files.
    Schema {
        /// Print the Markdown reference of actions and diagnostic codes instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Rewrite traffic policy files canonically.
    Fmt(cmd::fmt::FmtArgs),
    /// Manage fleet credentials (authtokens).
    Tokens(cmd::tokens::TokensArgs),
    /// List or disconnect live agent sessions.
    Sessions(cmd::sessions::SessionsArgs),
    /// Read the audit log.
    Audit(cmd::audit::AuditArgs),
    /// Evaluate a CEL expression and print its value and type.
    Expr(cmd::expr::ExprArgs),
    /// Evaluate a policy against one request and print each phase's decision.
    Eval(cmd::eval::EvalArgs),
    /// Run policy unit tests (requests with expected decisions) from a YAML file.
    Test(cmd::test::TestArgs),
    /// Run the edge: tunnel listener and public HTTP/HTTPS/TCP/TLS listeners.
    Edge(Box<cmd::edge::EdgeArgs>),
    /// Run an agent: serve local services through an edge.
    Agent(cmd::agent::AgentArgs),
    /// Start an edge, an agent and a demo upstream with an example policy, and print curl
    /// commands that show each rule at work.
    Quickstart(cmd::quickstart::QuickstartArgs),
}

/// Exit status for usage and I/O errors (clap also uses 2).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("wicket {}", env!("CARGO_PKG_VERSION"));
            Ok(true)
        }
        Command::Lint(args) => cmd::lint::run(&args).map(|o| o == cmd::lint::Outcome::Clean),
        Command::Schema { markdown } => cmd::schema::run(markdown).map(|()| true),
        Command::Fmt(args) => cmd::fmt::run(&args),
        Command::Tokens(args) => cmd::tokens::run(&args).map(|()| true),
        Command::Sessions(args) => cmd::sessions::run(&args).map(|()| true),
        Command::Audit(args) => cmd::audit::run(&args).map(|()| true),
        Command::Expr(args) => Ok(cmd::expr::run(&args)),
        Command::Eval(args) => cmd::eval::run(&args),
        Command::Test(args) => cmd::test::run(&args),
        Command::Edge(args) => cmd::edge::run(&args).map(|()| true),
        Command::Agent(args) => cmd::agent::run(&args),
        Command::Quickstart(args) => cmd::quickstart::run(&args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
