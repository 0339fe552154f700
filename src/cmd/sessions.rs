//! `wicket sessions`: list and disconnect live agent sessions of a running edge.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

use super::tokens::{Format, Target, print_json, table};

/// `wicket sessions` arguments.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: SessionsCommand,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List live agent sessions and their endpoints.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Disconnect a session.
    Kill {
        /// Session id (`ss_…`).
        id: String,
    },
}

/// Runs `wicket sessions`.
pub fn run(args: &SessionsArgs) -> Result<()> {
    if args.target.data_dir.is_some() {
        bail!(
            "sessions live in a running edge: use the admin API (`--admin-url`), not `--data-dir`"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &SessionsArgs) -> Result<()> {
    let client = args.target.client()?;
    match &args.command {
        SessionsCommand::List { format } => {
            let list = client.sessions().await?;
            if *format == Format::Json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .sessions
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        s.credential_id.to_string(),
                        s.source.to_string(),
                        s.started_at.to_string(),
                        s.closing
                            .map_or_else(|| "open".to_owned(), |r| format!("closing: {r}")),
                        if s.endpoints.is_empty() {
                            "-".to_owned()
                        } else {
                            s.endpoints.join(" ")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ID",
                        "CREDENTIAL",
                        "SOURCE",
                        "STARTED",
                        "STATE",
                        "ENDPOINTS"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        SessionsCommand::Kill { id } => {
            let killed = client.kill_session(id).await?;
            println!(
                "Disconnecting session {} (credential {}).",
                killed.session.id, killed.session.credential_id
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wicket_runtime::admin::{AdminKey, AdminState, serve};
    use wicket_runtime::credentials::{
        Actor, CredentialService, KillReason, NewCredential, SqliteStore,
    };

    use super::*;

    fn parse(args: &[&str]) -> SessionsArgs {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            sessions: SessionsArgs,
        }
        let argv = std::iter::once("sessions").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .sessions
    }

    #[tokio::test]
    async fn sessions_list_and_kill_over_the_api() {
        const KEY: &str = "cli-test-admin-key-0123";
        let dir = tempfile::tempdir().unwrap();
        let service = CredentialService::new(Arc::new(SqliteStore::open(dir.path()).unwrap()));
        let issued = service
            .store()
            .create(NewCredential::default(), &Actor::new("test", None))
            .unwrap();
        let (_, mut session) = service
            .connect(issued.token.expose(), "127.0.0.1:9".parse().unwrap())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = AdminState::new(service.clone(), AdminKey::new(KEY).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let target = ["--admin-url", url.as_str(), "--admin-key", KEY];
        let with = |rest: &[&str]| parse(&[&target[..], rest].concat());

        run_async(&with(&["list"])).await.unwrap();
        run_async(&with(&["list", "--format", "json"]))
            .await
            .unwrap();
        run_async(&with(&["kill", session.id().as_str()]))
            .await
            .unwrap();
        assert_eq!(session.killed().await, KillReason::Disconnected);
        assert!(run_async(&with(&["kill", "ss_nope"])).await.is_err());
        // Sessions are live state: the data directory cannot answer.
        let data = dir.path().to_str().unwrap();
        assert!(run(&parse(&["--data-dir", data, "list"])).is_err());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
