//! `wicket quickstart`: an edge, an agent and a demo upstream in one process, with a development
//! CA and an example policy; prints `curl` commands that show each rule at work.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use wicket_runtime::quickstart::{Quickstart, QuickstartOptions};

use super::edge::LogArgs;

/// The example policy, also shipped as `examples/quickstart-policy.yml`.
const POLICY: &str = include_str!("../../examples/quickstart-policy.yml");

/// Arguments of `wicket quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Data directory for the development CA, certificates and policy.
    #[arg(long, default_value = ".wicket-quickstart")]
    pub data_dir: PathBuf,
    /// Public HTTP port on 127.0.0.1 (an OS-chosen port when busy; 0 always lets the OS choose).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Public HTTPS port on 127.0.0.1 (an OS-chosen port when busy; 0 always lets the OS choose).
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// Stop when standard input closes instead of waiting for Ctrl-C (for scripts and tests).
    #[arg(long)]
    pub until_stdin_closes: bool,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Runs the quickstart until Ctrl-C (or the end of stdin), then drains and stops.
pub fn run(args: &QuickstartArgs) -> Result<()> {
    args.log.init()?;
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("cannot resolve `{}`", args.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let qs = Quickstart::start(QuickstartOptions {
            data_dir,
            http_port: args.http_port,
            https_port: args.https_port,
            policy: POLICY.to_owned(),
        })
        .await
        .context("cannot start the quickstart")?;
        println!("{}", qs.banner());
        if args.until_stdin_closes {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            // A plain thread: blocking stdin reads must not hold a runtime worker.
            std::thread::spawn(move || {
                let mut sink = [0u8; 1024];
                let mut stdin = std::io::stdin();
                while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
            tokio::select! {
                _ = rx => {}
                r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
            }
        } else {
            tokio::signal::ctrl_c()
                .await
                .context("cannot wait for Ctrl-C")?;
        }
        eprintln!("draining…");
        qs.shutdown().await;
        eprintln!("stopped");
        Ok(())
    })
}
