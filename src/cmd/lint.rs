//! `wicket lint`: check policy files and agent configs.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render, summary};
use wicket_policy::source::SourceMap;

/// Arguments of `wicket lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Policy files, agent configs or directories (recursing into *.yml, *.yaml, *.json); `-` reads stdin.
    #[arg(default_value = "-")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
    /// Exit with status 1 when there are warnings.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Cloud-endpoint mode: `on_http_request` must always end in a terminating action.
    #[arg(long)]
    pub require_terminal: bool,
    /// When to colour human output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Rustc-like text.
    Human,
    /// JSON array of diagnostics.
    Json,
    /// GitHub Actions workflow commands.
    Github,
    /// SARIF 2.1.0.
    Sarif,
}

/// Colour choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Outcome of a lint run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No errors (and no warnings under `--deny-warnings`).
    Clean,
    /// Problems found.
    Problems,
}

/// Runs `wicket lint`. I/O errors on the inputs are returned as errors (exit 2).
pub fn run(args: &LintArgs) -> Result<Outcome> {
    if args.paths.iter().any(|p| p.as_os_str() == "-") && std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no input: give policy files or directories, or pipe a policy into `wicket lint -`"
        );
    }
    let files = super::expand(&args.paths)?;
    let mut map = SourceMap::new();
    let opts = LintOptions {
        require_terminal: args.require_terminal,
    };
    let mut diags = Vec::new();
    for path in &files {
        let (name, text) = super::read_input(path)?;
        let id = map.add(name, text);
        diags.extend(lint(&mut map, id, opts).diagnostics);
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let format = match args.format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
        OutputFormat::Github => Format::Github,
        OutputFormat::Sarif => Format::Sarif,
    };
    let stdout = std::io::stdout();
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = stdout.lock();
    out.write_all(render(&map, &diags, format, color).as_bytes())?;
    if format == Format::Human {
        let checked = files.len();
        let noun = if checked == 1 { "file" } else { "files" };
        writeln!(
            out,
            "{checked} {noun} checked: {}",
            summary(errors, warnings)
        )?;
    }
    out.flush()?;
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed {
        Outcome::Problems
    } else {
        Outcome::Clean
    })
}
