//! The command line: `serve`, `migrate`, `clickhouse-ddl` and `plugin check|run`.

use crate::{Config, ServeArgs, Server};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "telemetryflow",
    version,
    about = "Observability back end: OTLP ingest, storage, query and WASM-extended alerting"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (embedded storage by default: no external service needed).
    Serve(ServeArgs),
    /// Apply pending metadata migrations (SQLite, or PostgreSQL with `--meta-store postgres`;
    /// and ClickHouse ones with
    /// `--telemetry-store clickhouse`) and exit.
    Migrate(ServeArgs),
    /// Print the ClickHouse DDL (every migration, rendered) for review or to run by hand.
    ClickhouseDdl(DdlArgs),
    /// Check or run a plugin component locally.
    #[command(subcommand)]
    Plugin(crate::plugin_cli::PluginCommand),
}

#[derive(clap::Args)]
struct DdlArgs {
    /// Database the tables go in.
    #[arg(long, default_value = "telemetryflow")]
    database: String,
    /// Cluster name: `ON CLUSTER` DDL with ReplicatedMergeTree and Distributed tables.
    #[arg(long)]
    cluster: Option<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TELEMETRYFLOW_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Parses the command line and runs it; what `main` of every `telemetryflow` binary calls.
///
/// # Errors
/// Whatever stopped the command.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(&args)?;
            let server = Server::start(config.clone()).await?;
            if let Some((email, password)) = &server.generated_admin {
                println!(
                    "\nCreated the first admin user (shown once):\n  email:    {email}\n  password: {password}\n"
                );
            }
            tracing::info!(
                data_dir = %config.data_dir.display(),
                api = %server.http_addr,
                otlp_http = %server.otlp_http_addr,
                otlp_grpc = %server.otlp_grpc_addr,
                "telemetryflow is serving"
            );
            wait_for_signal().await;
            tracing::info!("shutting down: draining requests and flushing telemetry");
            server.shutdown().await
        }
        Command::Migrate(args) => {
            let config = Config::resolve(&args)?;
            std::fs::create_dir_all(&config.data_dir)?;
            crate::open_meta(&config).await?;
            match &config.postgres_url {
                Some(_) => println!("metadata migrations applied in PostgreSQL"),
                None => println!(
                    "metadata migrations applied in {}",
                    config.data_dir.display()
                ),
            }
            if let Some(c) = crate::clickhouse_config(&config) {
                let done = storage_clickhouse::migrate_only(&c).await?;
                println!(
                    "clickhouse migrations at {}: applied {:?}, already applied {:?}",
                    c.url, done.applied, done.already
                );
            }
            Ok(())
        }
        Command::Plugin(cmd) => tokio::task::spawn_blocking(move || crate::plugin_cli::run(cmd))
            .await
            .map_err(anyhow::Error::from)?,
        Command::ClickhouseDdl(args) => {
            let mut layout = storage_clickhouse::Layout::single(&args.database);
            layout.cluster = args.cluster;
            for stmt in
                storage_clickhouse::migrate::full_ddl(&layout).map_err(anyhow::Error::msg)?
            {
                println!("{stmt};\n");
            }
            Ok(())
        }
    }
}
