//! `wicket audit`: list audit records (admin actions and session events).

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use wicket_runtime::credentials::{AuditFilter, CredentialStore as _, Timestamp};

use super::tokens::{Backend, Format, Target, print_json, table};

/// `wicket audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audit records, oldest first.
    List {
        /// Only records since this time: RFC 3339 (`2026-11-29T20:00:00Z`) or a duration ago
        /// (`24h`).
        #[arg(long)]
        since: Option<String>,
        /// At most this many (the most recent ones).
        #[arg(long)]
        limit: Option<usize>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Runs `wicket audit`.
pub fn run(args: &AuditArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &AuditArgs) -> Result<()> {
    let AuditCommand::List {
        since,
        limit,
        format,
    } = &args.command;
    let records = match args.target.backend()? {
        Backend::Api(client) => client.audit(since.as_deref(), *limit).await?.records,
        Backend::Direct(store) => {
            let filter = AuditFilter {
                since: since
                    .as_deref()
                    .map(|s| Timestamp::parse_since(s, Timestamp::now()))
                    .transpose()?,
                limit: *limit,
            };
            store.list_audit(&filter)?
        }
    };
    if *format == Format::Json {
        return print_json(&serde_json::json!({ "records": records }));
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.at.to_string(),
                r.actor.clone(),
                r.action.clone(),
                dash(&r.target),
                r.result.clone(),
                dash(&r.source),
                dash(&r.detail),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "SOURCE", "DETAIL"
            ],
            &rows
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use wicket_runtime::credentials::{Actor, CredentialStore as _, NewCredential, SqliteStore};

    use super::*;

    fn parse(args: &[&str]) -> AuditArgs {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            audit: AuditArgs,
        }
        let argv = std::iter::once("audit").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().audit
    }

    #[tokio::test]
    async fn audit_list_reads_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .create(NewCredential::default(), &Actor::new("test", None))
            .unwrap();
        let data = dir.path().to_str().unwrap();
        run_async(&parse(&["--data-dir", data, "list"]))
            .await
            .unwrap();
        run_async(&parse(&[
            "--data-dir",
            data,
            "list",
            "--since",
            "1h",
            "--format",
            "json",
        ]))
        .await
        .unwrap();
        assert!(
            run_async(&parse(&["--data-dir", data, "list", "--since", "whenever"]))
                .await
                .is_err()
        );
    }
}
