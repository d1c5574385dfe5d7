//! `telemetryflow`: one binary for the whole back end.

// Ingest allocates many small strings and buffers per request; mimalloc keeps that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::cli::main().await
}
