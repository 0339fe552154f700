//! `wicket fmt`: rewrite policies canonically, optionally migrating the legacy format.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use wicket_policy::format::format;

/// Arguments of `wicket fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Policy files or directories; `-` reads stdin and writes stdout.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Rewrite legacy `inbound`/`outbound` to `on_http_request`/`on_http_response` (and
    /// `custom-response.content` to `body`).
    #[arg(long)]
    pub migrate: bool,
    /// Do not write; exit 1 if any file would change.
    #[arg(long)]
    pub check: bool,
    /// Overwrite files even though their comments will be lost.
    #[arg(long)]
    pub force: bool,
}

/// Runs `wicket fmt`; returns whether everything was (or, with `--check`, already is) formatted.
pub fn run(args: &FmtArgs) -> Result<bool> {
    let mut ok = true;
    for path in super::expand(&args.paths)? {
        let (name, text) = super::read_input(&path)?;
        let f = format(&text, args.migrate).with_context(|| format!("cannot format `{name}`"))?;
        if f.legacy {
            eprintln!(
                "note: `{name}` uses the legacy inbound/outbound format; `wicket fmt --migrate` rewrites it"
            );
        }
        if path.as_os_str() == "-" {
            print!("{}", f.text);
            continue;
        }
        if f.text == text {
            continue;
        }
        if args.check {
            eprintln!("`{name}` is not formatted");
            ok = false;
            continue;
        }
        if f.had_comments && !args.force {
            bail!(
                "`{name}` has comments, and the YAML library wicket uses cannot keep them: formatting would delete them. \
                 Rerun with `--force` to format anyway, or print the result with `wicket fmt - < {name}`"
            );
        }
        std::fs::write(&path, &f.text).with_context(|| format!("cannot write `{name}`"))?;
        eprintln!(
            "formatted `{name}`{}",
            if f.had_comments {
                " (comments removed)"
            } else {
                ""
            }
        );
    }
    Ok(ok)
}
