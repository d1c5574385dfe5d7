//! `telemetryflow`: one binary for the whole back end.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::cli::main().await
}
