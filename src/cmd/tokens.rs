//! `wicket tokens`: create, list, show, update, rotate and revoke fleet credentials, through the
//! edge's admin API or, with `--data-dir`, directly on the edge's database (safe while an edge
//! runs: SQLite WAL with a busy timeout).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use wicket_runtime::admin::{AdminClient, AdminKey};
use wicket_runtime::credentials::{
    Acl, Actor, Credential, CredentialId, CredentialStatus, CredentialStore, CredentialUpdate,
    IpNet, IssuedCredential, Metadata, NewCredential, Rotation, SqliteStore, Timestamp, parse_cidr,
    parse_duration,
};

/// Where the CLI looks for the admin API unless told otherwise.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:4041";

/// How to reach the credentials: the admin API (default) or the data directory.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Admin API base URL.
    #[arg(long, env = "WICKET_ADMIN_URL", default_value = DEFAULT_ADMIN_URL, global = true)]
    pub admin_url: String,
    /// Admin API key.
    #[arg(long, env = "WICKET_ADMIN_KEY", hide_env_values = true, global = true)]
    pub admin_key: Option<String>,
    /// Work on the edge's data directory directly instead of the admin API (when no edge runs,
    /// or alongside one).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// What the target resolves to.
pub enum Backend {
    /// The admin API.
    Api(AdminClient),
    /// The database in a data directory.
    Direct(SqliteStore),
}

impl Target {
    /// Connects to the admin API or opens the data directory.
    pub fn backend(&self) -> Result<Backend> {
        if let Some(dir) = &self.data_dir {
            let store = SqliteStore::open(dir).with_context(|| {
                format!("cannot open the credential store in `{}`", dir.display())
            })?;
            return Ok(Backend::Direct(store));
        }
        Ok(Backend::Api(self.client()?))
    }

    /// An admin API client (for commands that need the live edge).
    pub fn client(&self) -> Result<AdminClient> {
        let Some(key) = &self.admin_key else {
            bail!(
                "no admin key: pass `--admin-key` or set `WICKET_ADMIN_KEY` \
                 (or use `--data-dir` to work on the database directly)"
            );
        };
        let key = AdminKey::new(key.clone()).context("invalid admin key")?;
        Ok(AdminClient::new(&self.admin_url, key)?)
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text or table.
    #[default]
    #[value(alias = "text")]
    Table,
    /// JSON, as the admin API returns it.
    Json,
}

/// `wicket tokens` arguments.
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a credential and print its token (shown only once).
    Create {
        #[command(flatten)]
        fields: Fields,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List credentials.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one credential.
    Show {
        /// Credential id (`cr_…`).
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Change a credential's description, ACL, metadata, allowed CIDRs or session cap.
    Update {
        /// Credential id (`cr_…`).
        id: String,
        #[command(flatten)]
        fields: Fields,
        /// Remove every ACL rule (unrestricted).
        #[arg(long, conflicts_with = "acl")]
        clear_acl: bool,
        /// Remove every allowed CIDR (any source).
        #[arg(long, conflicts_with = "allowed_cidr")]
        clear_allowed_cidrs: bool,
        /// Remove the session cap.
        #[arg(long, conflicts_with = "max_sessions")]
        no_max_sessions: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a credential now (its live sessions are closed).
    Revoke {
        /// Credential id (`cr_…`).
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Issue a replacement token with the same ACL; the old one stops working after the grace.
    Rotate {
        /// Credential id (`cr_…`).
        id: String,
        /// How long the old token keeps working (`0`, `90s`, `15m`, `1h`, `7d`).
        #[arg(long, default_value = "0")]
        grace: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Credential fields settable on create and update.
#[derive(Debug, Args)]
struct Fields {
    /// Description (e.g. the device name).
    #[arg(long)]
    description: Option<String>,
    /// ACL rule (`bind:host`, `bind:*.suffix`, `bind:tcp://host:port[-port]`, `bind:*`);
    /// repeatable. No rule means unrestricted.
    #[arg(long = "acl", value_name = "RULE")]
    acl: Vec<String>,
    /// Metadata as `key=value` (repeatable) or a JSON object.
    #[arg(long = "metadata", value_name = "KEY=VALUE|JSON")]
    metadata: Vec<String>,
    /// Allowed source network for agent sessions (CIDR or address); repeatable.
    #[arg(long = "allowed-cidr", value_name = "CIDR")]
    allowed_cidr: Vec<String>,
    /// Most concurrent sessions for this credential.
    #[arg(long)]
    max_sessions: Option<u32>,
}

impl Fields {
    fn acl(&self) -> Result<Option<Acl>> {
        if self.acl.is_empty() {
            return Ok(None);
        }
        Ok(Some(Acl::parse(&self.acl)?))
    }

    fn metadata(&self) -> Result<Option<Metadata>> {
        if self.metadata.is_empty() {
            return Ok(None);
        }
        let mut metadata = Metadata::new();
        for item in &self.metadata {
            if item.trim_start().starts_with('{') {
                let object: Metadata = serde_json::from_str(item)
                    .with_context(|| format!("`--metadata {item}` is not a JSON object"))?;
                metadata.extend(object);
            } else if let Some((key, value)) = item.split_once('=') {
                if key.is_empty() {
                    bail!("`--metadata {item}` has an empty key");
                }
                metadata.insert(key.to_owned(), value.into());
            } else {
                bail!("`--metadata {item}` is neither `key=value` nor a JSON object");
            }
        }
        Ok(Some(metadata))
    }

    fn cidrs(&self) -> Result<Option<Vec<IpNet>>> {
        if self.allowed_cidr.is_empty() {
            return Ok(None);
        }
        let cidrs = self
            .allowed_cidr
            .iter()
            .map(|text| parse_cidr(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(cidrs))
    }
}

/// Runs `wicket tokens`.
pub fn run(args: &TokensArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &TokensArgs) -> Result<()> {
    let backend = args.target.backend()?;
    let actor = Actor::new("cli", None);
    match &args.command {
        TokensCommand::Create { fields, format } => {
            let new = NewCredential {
                description: fields.description.clone().unwrap_or_default(),
                metadata: fields.metadata()?.unwrap_or_default(),
                acl: fields.acl()?.unwrap_or_default(),
                allowed_cidrs: fields.cidrs()?.unwrap_or_default(),
                max_sessions: fields.max_sessions,
            };
            let issued = match &backend {
                Backend::Api(client) => client.create(&new).await?,
                Backend::Direct(store) => store.create(new, &actor)?,
            };
            print_issued(&issued, *format, "Created")
        }
        TokensCommand::List { format } => {
            let list = match &backend {
                Backend::Api(client) => client.list().await?,
                Backend::Direct(store) => store.list()?,
            };
            match format {
                Format::Json => print_json(&serde_json::json!({ "credentials": list })),
                Format::Table => {
                    print!("{}", credential_table(&list));
                    Ok(())
                }
            }
        }
        TokensCommand::Show { id, format } => {
            let credential = match &backend {
                Backend::Api(client) => client.get(id).await?,
                Backend::Direct(store) => store.get(&parse_id(id)?)?,
            };
            print_credential(&credential, *format)
        }
        TokensCommand::Update {
            id,
            fields,
            clear_acl,
            clear_allowed_cidrs,
            no_max_sessions,
            format,
        } => {
            let update = CredentialUpdate {
                description: fields.description.clone(),
                metadata: fields.metadata()?,
                acl: if *clear_acl {
                    Some(Acl::unrestricted())
                } else {
                    fields.acl()?
                },
                allowed_cidrs: if *clear_allowed_cidrs {
                    Some(Vec::new())
                } else {
                    fields.cidrs()?
                },
                max_sessions: if *no_max_sessions {
                    Some(None)
                } else {
                    fields.max_sessions.map(Some)
                },
            };
            if update.is_empty() {
                bail!("nothing to update: give at least one field to change");
            }
            let credential = match &backend {
                Backend::Api(client) => client.update(id, &update).await?,
                Backend::Direct(store) => store.update(&parse_id(id)?, update, &actor)?,
            };
            print_credential(&credential, *format)
        }
        TokensCommand::Revoke { id, format } => {
            let (credential, closed) = match &backend {
                Backend::Api(client) => {
                    let response = client.revoke(id).await?;
                    (response.credential, Some(response.sessions_closed.len()))
                }
                Backend::Direct(store) => (store.revoke(&parse_id(id)?, &actor)?, None),
            };
            if *format == Format::Json {
                return print_json(&credential);
            }
            println!("Revoked credential {}.", credential.id);
            match closed {
                Some(n) => println!("Closed {n} live session(s)."),
                None => println!(
                    "New sessions are refused now; a running edge closes live sessions at its \
                     next revocation check (about a second)."
                ),
            }
            Ok(())
        }
        TokensCommand::Rotate { id, grace, format } => {
            let duration: Duration = parse_duration(grace)?;
            let rotation = match &backend {
                Backend::Api(client) => client.rotate(id, Some(grace)).await?,
                Backend::Direct(store) => store.rotate(&parse_id(id)?, duration, &actor)?,
            };
            print_rotation(&rotation, *format)
        }
    }
}

fn parse_id(text: &str) -> Result<CredentialId> {
    CredentialId::parse(text).with_context(|| format!("`{text}` is not a credential id (`cr_…`)"))
}

/// Prints a value as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_issued(issued: &IssuedCredential, format: Format, verb: &str) -> Result<()> {
    if format == Format::Json {
        return print_json(issued);
    }
    let c = &issued.credential;
    println!(
        "{verb} credential {} ({}).",
        c.id,
        display_or_dash(&c.description)
    );
    println!("ACL: {}", acl_text(&c.acl));
    println!();
    println!("Token (shown only now, store it safely):");
    println!("{}", issued.token.expose());
    Ok(())
}

fn print_rotation(rotation: &Rotation, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(rotation);
    }
    let old = &rotation.old;
    match (old.revoked_at, old.expires_at) {
        (Some(_), _) => println!("Old credential {} is revoked.", old.id),
        (None, Some(until)) => println!("Old credential {} keeps working until {until}.", old.id),
        (None, None) => println!("Old credential {}.", old.id),
    }
    print_issued(&rotation.new, format, "New")
}

fn print_credential(c: &Credential, format: Format) -> Result<()> {
    if format == Format::Json {
        return print_json(c);
    }
    let opt = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    let id_opt = |i: &Option<CredentialId>| {
        i.as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    };
    println!("id:            {}", c.id);
    println!("status:        {}", c.status(Timestamp::now()));
    println!("description:   {}", display_or_dash(&c.description));
    println!("acl:           {}", acl_text(&c.acl));
    println!("metadata:      {}", serde_json::to_string(&c.metadata)?);
    let cidrs: Vec<String> = c.allowed_cidrs.iter().map(ToString::to_string).collect();
    println!(
        "allowed cidrs: {}",
        if cidrs.is_empty() {
            "any".to_owned()
        } else {
            cidrs.join(", ")
        }
    );
    println!(
        "max sessions:  {}",
        c.max_sessions
            .map_or_else(|| "no cap".to_owned(), |n| n.to_string())
    );
    println!("created:       {}", c.created_at);
    println!("last used:     {}", opt(c.last_used_at));
    println!("revoked:       {}", opt(c.revoked_at));
    println!("expires:       {}", opt(c.expires_at));
    println!("rotated from:  {}", id_opt(&c.rotated_from));
    println!("rotated to:    {}", id_opt(&c.rotated_to));
    Ok(())
}

fn credential_table(list: &[Credential]) -> String {
    let now = Timestamp::now();
    let rows = list
        .iter()
        .map(|c| {
            let status = match c.status(now) {
                CredentialStatus::Grace { .. } => "grace".to_owned(),
                other => other.to_string(),
            };
            vec![
                c.id.to_string(),
                status,
                display_or_dash(&c.description).to_owned(),
                acl_text(&c.acl),
                c.last_used_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                c.created_at.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &["ID", "STATUS", "DESCRIPTION", "ACL", "LAST USED", "CREATED"],
        &rows,
    )
}

fn acl_text(acl: &Acl) -> String {
    if acl.is_unrestricted() {
        "unrestricted".to_owned()
    } else {
        acl.to_strings().join(" ")
    }
}

fn display_or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// Renders rows under headers in aligned columns (the last column is not padded).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < widths.len() {
                let pad = width.saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_accepts_pairs_and_json() {
        let fields = Fields {
            description: None,
            acl: vec![],
            metadata: vec!["site=north".into(), r#"{"rack": 4}"#.into()],
            allowed_cidr: vec![],
            max_sessions: None,
        };
        let metadata = fields.metadata().unwrap().unwrap();
        assert_eq!(metadata["site"], "north");
        assert_eq!(metadata["rack"], 4);
        let bad = Fields {
            metadata: vec!["novalue".into()],
            ..fields
        };
        assert!(bad.metadata().is_err());
    }

    /// Parses `wicket tokens …` arguments.
    fn parse(args: &[&str]) -> TokensArgs {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            tokens: TokensArgs,
        }
        let argv = std::iter::once("tokens").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().tokens
    }

    #[tokio::test]
    async fn tokens_commands_work_over_the_api_and_on_the_data_dir() {
        use std::sync::Arc;
        use wicket_runtime::admin::{AdminState, serve};
        use wicket_runtime::credentials::CredentialService;

        const KEY: &str = "cli-test-admin-key-0123";
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let service = CredentialService::new(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = AdminState::new(service, AdminKey::new(KEY).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let api = |rest: &[&str]| {
            let mut args = vec!["--admin-url", url.as_str(), "--admin-key", KEY];
            args.extend_from_slice(rest);
            parse(&args)
        };

        run_async(&api(&[
            "create",
            "--description",
            "cam-42",
            "--acl",
            "bind:cam-42.fleet.example.test",
            "--metadata",
            "site=north",
        ]))
        .await
        .unwrap();
        let created = store.list().unwrap();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].description, "cam-42");
        assert_eq!(created[0].metadata["site"], "north");
        let id = created[0].id.to_string();
        run_async(&api(&["list", "--format", "json"]))
            .await
            .unwrap();
        run_async(&api(&["update", &id, "--max-sessions", "3"]))
            .await
            .unwrap();
        assert_eq!(store.get(&created[0].id).unwrap().max_sessions, Some(3));
        run_async(&api(&["rotate", &id, "--grace", "1h"]))
            .await
            .unwrap();
        assert!(store.get(&created[0].id).unwrap().expires_at.is_some());
        run_async(&api(&["revoke", &id])).await.unwrap();
        assert!(store.get(&created[0].id).unwrap().revoked_at.is_some());
        assert!(run_async(&api(&["revoke", &id])).await.is_err());
        assert!(run_async(&api(&["show", "cr_nope"])).await.is_err());
        assert!(run_async(&api(&["update", &id])).await.is_err());

        // The same commands straight on the database.
        run_async(&parse(&[
            "--data-dir",
            data,
            "create",
            "--acl",
            "bind:*.site.example",
        ]))
        .await
        .unwrap();
        let all = store.list().unwrap();
        assert_eq!(all.len(), 3);
        // Credentials created in the same millisecond sort by id: find it by its ACL.
        let direct = all
            .iter()
            .find(|c| c.acl.to_strings() == ["bind:*.site.example"])
            .unwrap()
            .id
            .clone();
        run_async(&parse(&["--data-dir", data, "rotate", direct.as_str()]))
            .await
            .unwrap();
        assert!(store.get(&direct).unwrap().revoked_at.is_some());
        let records = store.list_audit(&Default::default()).unwrap();
        assert!(
            records
                .iter()
                .any(|r| r.actor == "cli" && r.action == "credential.rotate")
        );
        assert!(
            records
                .iter()
                .any(|r| r.actor == "admin-api" && r.action == "credential.revoke")
        );

        // Bad input is an error, not a panic.
        assert!(
            run_async(&parse(&["--data-dir", data, "create", "--acl", "cam-42"]))
                .await
                .is_err()
        );
        assert!(
            run_async(&parse(&[
                "--data-dir",
                data,
                "rotate",
                direct.as_str(),
                "--grace",
                "soon"
            ]))
            .await
            .is_err()
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[test]
    fn table_aligns_columns() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "x".into()],
                vec!["long-id".into(), "y".into()],
            ],
        );
        assert_eq!(out, "ID       NAME\na        x\nlong-id  y\n");
    }
}
