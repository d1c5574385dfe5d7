//! The `telemetryflow` entry point, built inside the test package so the end-to-end tests can
//! start it as a separate process (for `kill -9` and signal tests).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::cli::main().await
}
