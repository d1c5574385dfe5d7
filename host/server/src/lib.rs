//! The `telemetryflow` binary's library half: configuration, backend selection, wiring, and a
//! graceful lifecycle. This is the only crate that names concrete storage backends.

pub mod cli;
pub mod config;
mod plugin_cli;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use api::{AppState, IngestLimits};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use storage::{AlertStore, DashboardStore, MetaStore, TelemetryStore};
use storage_clickhouse::ClickHouseStore;
use storage_embedded::{EmbeddedConfig, EmbeddedStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, MetaBackend, ServeArgs, TelemetryBackend};
pub use storage_clickhouse::ClickHouseConfig;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// A running server.
pub struct Server {
    pub http_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    /// Set when this start created the admin with a generated password: `(email, password)`.
    pub generated_admin: Option<(String, String)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    telemetry: Telemetry,
    state: Arc<AppState>,
}

/// The telemetry store this server opened.
enum Telemetry {
    Embedded(Arc<EmbeddedStore>),
    ClickHouse(Arc<ClickHouseStore>),
}

impl Telemetry {
    fn port(&self) -> Arc<dyn TelemetryStore> {
        match self {
            Telemetry::Embedded(s) => Arc::clone(s) as Arc<dyn TelemetryStore>,
            Telemetry::ClickHouse(s) => Arc::clone(s) as Arc<dyn TelemetryStore>,
        }
    }
}

/// The ClickHouse store settings of `config`, with its retention (`None`: embedded store).
pub fn clickhouse_config(config: &Config) -> Option<ClickHouseConfig> {
    let mut c = config.clickhouse.clone()?;
    c.retention_days = config
        .retention_days
        .iter()
        .map(|(t, d)| (t.name().to_string(), *d))
        .collect();
    Some(c)
}

/// Opens the configured metadata store and applies its pending migrations.
///
/// # Errors
/// When the store cannot be opened or a migration fails.
pub async fn open_meta(config: &Config) -> anyhow::Result<Metadata> {
    let store = Arc::new(match &config.postgres_url {
        Some(url) => storage_postgres::connect(url)
            .await
            .context("cannot open the PostgreSQL metadata store")?,
        None => storage_sqlite::open(&config.data_dir.join("metadata.db"))
            .await
            .context("cannot open the metadata store")?,
    });
    Ok(Metadata {
        meta: store.clone(),
        alerts: store.clone(),
        dashboards: store,
    })
}

/// The metadata store, seen through its three ports.
pub struct Metadata {
    pub meta: Arc<dyn MetaStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub dashboards: Arc<dyn DashboardStore>,
}

async fn open_telemetry(config: &Config, limits: &IngestLimits) -> anyhow::Result<Telemetry> {
    if let Some(ch) = clickhouse_config(config) {
        let store = ClickHouseStore::connect(ch.clone())
            .await
            .with_context(|| format!("cannot open the ClickHouse telemetry store at {}", ch.url))?;
        tracing::info!(url = %ch.url, database = %ch.database, cluster = ?ch.cluster, "telemetry store: ClickHouse");
        return Ok(Telemetry::ClickHouse(store));
    }
    let mut tcfg = EmbeddedConfig::new(config.data_dir.join("telemetry"));
    tcfg.flush_interval = config.flush_interval;
    tcfg.retention_days = config.retention_days.clone();
    tcfg.max_unflushed_bytes = config.max_unflushed_bytes;
    tcfg.hot_bytes = config.hot_bytes;
    let (telemetry, recovery) = EmbeddedStore::open(tcfg, Some(api::reconvert(limits.item)))
        .context("cannot open the telemetry store")?;
    if recovery.replayed_entries > 0 || recovery.truncated_bytes > 0 {
        tracing::info!(
            replayed = recovery.replayed_entries,
            truncated_bytes = recovery.truncated_bytes,
            orphans = recovery.removed_orphan_files,
            "recovered the write-ahead log"
        );
    }
    Ok(Telemetry::Embedded(telemetry))
}

fn random_secret(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Reads `<data-dir>/secrets/<name>`, creating it (mode 0600) with `make()` at first start.
fn secret_file(data_dir: &Path, name: &str, make: impl Fn() -> Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let dir = data_dir.join("secrets");
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir)?;
            let secret = make();
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, &secret)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The JWT signing secret: `TELEMETRYFLOW_JWT_SECRET`, else a key file created at first start.
fn jwt_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(s) = std::env::var("TELEMETRYFLOW_JWT_SECRET") {
        anyhow::ensure!(
            s.len() >= 32,
            "TELEMETRYFLOW_JWT_SECRET must be at least 32 bytes"
        );
        return Ok(s.into_bytes());
    }
    let secret = secret_file(data_dir, "jwt.key", || random_secret(48).into_bytes())?;
    anyhow::ensure!(
        secret.len() >= 32,
        "secrets/jwt.key is shorter than 32 bytes"
    );
    Ok(secret)
}

/// The root key that seals secrets at rest (MFA secrets): `TELEMETRYFLOW_SECRET_KEY` (32 bytes
/// as base64 or hex), else a key file created at first start. Never stored in the database.
fn root_key(data_dir: &Path) -> anyhow::Result<iam::SecretBox> {
    let text = match std::env::var("TELEMETRYFLOW_SECRET_KEY") {
        Ok(s) => s,
        Err(_) => String::from_utf8(secret_file(data_dir, "root.key", || {
            iam::SecretBox::generate_key_text().into_bytes()
        })?)
        .context("secrets/root.key is not text")?,
    };
    iam::SecretBox::from_text(&text)
        .context("the root key (TELEMETRYFLOW_SECRET_KEY or secrets/root.key)")
}

/// Authentication settings from the configuration.
fn auth_settings(config: &Config, http_addr: SocketAddr) -> anyhow::Result<api::AuthSettings> {
    let mut auth = api::AuthSettings::new(root_key(&config.data_dir)?);
    auth.registration = match config.registration {
        config::RegistrationMode::Closed => api::Registration::Closed,
        config::RegistrationMode::Invite => api::Registration::Invite,
        config::RegistrationMode::Open => api::Registration::Open,
    };
    auth.lockout_threshold = config.lockout_threshold;
    auth.lockout_duration = chrono::Duration::from_std(config.lockout_duration)
        .unwrap_or(chrono::Duration::minutes(15));
    auth.public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    if let Some(url) = &config.smtp_url {
        let mailer = api::SmtpMailer::new(url, &config.smtp_from)
            .map_err(|e| anyhow::anyhow!(e))
            .context("--smtp-url / --smtp-from")?;
        auth.mailer = Some(Arc::new(mailer));
    }
    Ok(auth)
}

async fn bootstrap_admin(
    meta: &dyn MetaStore,
    config: &Config,
) -> anyhow::Result<Option<(String, String)>> {
    let email = config.admin_email.clone();
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.clone(), false),
        None => (random_secret(18), true),
    };
    iam::validate_password(&password).context("admin password (TELEMETRYFLOW_ADMIN_PASSWORD)")?;
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || iam::hash_password(&p)).await??
    };
    let created = meta.bootstrap(&email, &hash).await?;
    if created {
        tracing::info!(%email, "created the default organization, workspace, tenant and admin user");
    }
    Ok((created && generated).then_some((email, password)))
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Serves `router` on `listener` until `signal`, then lets in-flight requests finish.
fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    what: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::error!(error = %e, server = what, "server failed");
        }
    })
}

impl Server {
    /// Opens the stores, bootstraps the first admin, binds the three listeners and starts serving.
    ///
    /// # Errors
    /// When a store cannot be opened or an address cannot be bound.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let Metadata {
            meta,
            alerts,
            dashboards,
        } = open_meta(&config).await?;
        api::install_dashboard_templates(dashboards.as_ref())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot install the shipped dashboard templates: {}",
                    e.message
                )
            })?;
        let generated_admin = bootstrap_admin(meta.as_ref(), &config).await?;

        let limits = IngestLimits {
            max_in_flight: config.ingest_max_in_flight,
            ..IngestLimits::default()
        };
        let telemetry = open_telemetry(&config, &limits).await?;

        let tokens = iam::TokenKeys::new(
            &jwt_secret(&config.data_dir)?,
            "telemetryflow",
            "telemetryflow-api",
        );
        let render: Box<dyn Fn() -> String + Send + Sync> = match prometheus() {
            Some(h) => Box::new(move || h.render()),
            None => Box::new(String::new),
        };
        let api_listener = bind(config.http_addr, "the API").await?;
        let auth = auth_settings(&config, api_listener.local_addr()?)?;
        let runtime = plugin_runtime::PluginRuntime::new(plugin_runtime::RuntimeConfig::default())
            .map_err(|e| anyhow::anyhow!(e))
            .context("cannot start the plugin runtime")?;
        let capabilities: Arc<dyn plugin_runtime::Capabilities> = Arc::new(
            api::ChannelCapabilities::new(config.plugin_http.clone(), auth.mailer.clone()),
        );
        let plugins = Arc::new(api::PluginService::new(
            runtime,
            Some(config.data_dir.join("plugins").join("cache")),
            builtin_plugins::ALL,
            Arc::clone(&capabilities),
        ));
        let state = AppState::new(
            Arc::clone(&meta),
            alerts,
            dashboards,
            telemetry.port(),
            tokens,
            limits,
            auth,
            plugins,
            render,
            config.query_cache_bytes,
        );

        let otlp_http_listener = bind(config.otlp_http_addr, "OTLP/HTTP").await?;
        let otlp_grpc_listener = bind(config.otlp_grpc_addr, "OTLP/gRPC").await?;
        let http_addr = api_listener.local_addr()?;
        let otlp_http_addr = otlp_http_listener.local_addr()?;
        let otlp_grpc_addr = otlp_grpc_listener.local_addr()?;

        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        tasks.push(serve_http(
            api_listener,
            api::api_router(Arc::clone(&state)),
            until_stopped(stopped.clone()),
            "API",
        ));
        tasks.push(serve_http(
            otlp_http_listener,
            api::otlp_router(Arc::clone(&state)),
            until_stopped(stopped.clone()),
            "OTLP/HTTP",
        ));
        let (traces, logs, metrics) = api::grpc_services(Arc::clone(&state));
        tasks.push(tokio::spawn({
            let signal = until_stopped(stopped.clone());
            async move {
                let incoming = tonic::transport::server::TcpIncoming::from(otlp_grpc_listener);
                if let Err(e) = tonic::transport::Server::builder()
                    .add_service(traces)
                    .add_service(logs)
                    .add_service(metrics)
                    .serve_with_incoming_shutdown(incoming, signal)
                    .await
                {
                    tracing::error!(error = %e, "OTLP/gRPC server failed");
                }
            }
        }));
        tasks.push(tokio::spawn({
            let state = Arc::clone(&state);
            let mut stopped = stopped.clone();
            async move {
                loop {
                    let stop = tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(10)) => false,
                        r = stopped.changed() => r.is_err() || *stopped.borrow(),
                    };
                    if stop {
                        break;
                    }
                    state.keys.flush_usage().await;
                }
            }
        }));
        tasks.push(tokio::spawn({
            let state = Arc::clone(&state);
            let mut stopped = stopped.clone();
            async move {
                loop {
                    let stop = tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                        r = stopped.changed() => r.is_err() || *stopped.borrow(),
                    };
                    if stop {
                        break;
                    }
                    state.audit.flush(&state.telemetry).await;
                }
            }
        }));
        let alert_plugins: Arc<dyn alerting::Plugins> = Arc::new(api::AlertPlugins {
            service: Arc::clone(&state.plugins),
            meta: Arc::clone(&meta),
        });
        let (notifier, notifier_task) = alerting::Notifier {
            alerts: Arc::clone(&state.alerts),
            plugins: Arc::clone(&alert_plugins),
            capabilities,
            secrets: state.auth.secrets.clone(),
            external_url: state.auth.public_url.clone(),
            retry: alert::delivery::RetryPolicy::default(),
            tick: Duration::from_millis(200),
            drain: config.delivery_drain,
        }
        .spawn(stopped.clone());
        tasks.push(notifier_task);
        let evaluator = Arc::new(alerting::Evaluator::new(
            Arc::clone(&state.alerts),
            Arc::clone(&state.telemetry),
            alert_plugins,
            state.query_limits,
        ));
        let forwarder = match &config.alertmanager_url {
            Some(url) => Some(
                alerting::Forwarder::new(url, &state.auth.public_url)
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("cannot set up forwarding to Alertmanager")?,
            ),
            None => None,
        };
        let on_evaluated: alerting::OnEvaluated = Arc::new(move |rule, done| {
            let rule = Arc::new(rule.clone());
            let alerts = alerting::alerts_of(&done.state);
            if let Some(f) = forwarder.clone() {
                let (rule, alerts) = (Arc::clone(&rule), alerts.clone());
                tokio::spawn(async move { f.forward(&rule, &alerts).await });
            }
            notifier.send(alerting::RuleAlerts { rule, alerts });
        });
        tasks.push(
            alerting::Scheduler::new(
                evaluator,
                alerting::SchedulerConfig::default(),
                Some(on_evaluated),
            )
            .spawn(stopped.clone()),
        );
        tasks.push(tokio::spawn({
            let meta = Arc::clone(&meta);
            let days = i64::from(config.purge_after_days);
            let mut stopped = stopped.clone();
            async move {
                loop {
                    let now = chrono::Utc::now();
                    match meta.purge(now - chrono::Duration::days(days), now).await {
                        Ok(r) => tracing::info!(?r, "purged soft-deleted and expired metadata"),
                        Err(e) => tracing::warn!(error = %e, "metadata purge failed; will retry"),
                    }
                    let stop = tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(6 * 3600)) => false,
                        r = stopped.changed() => r.is_err() || *stopped.borrow(),
                    };
                    if stop {
                        break;
                    }
                }
            }
        }));
        Ok(Server {
            http_addr,
            otlp_http_addr,
            otlp_grpc_addr,
            generated_admin,
            stop,
            tasks,
            telemetry,
            state,
        })
    }

    /// Stops accepting, lets in-flight requests finish, then flushes acknowledged data.
    ///
    /// # Errors
    /// When the final flush fails (the data stays in the WAL and is replayed at next start).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .is_err()
            {
                tracing::warn!("a listener did not stop within 30 s");
            }
        }
        self.state.keys.flush_usage().await;
        self.state.audit.flush(&self.state.telemetry).await;
        match &self.telemetry {
            Telemetry::Embedded(s) => s.close().await?,
            Telemetry::ClickHouse(s) => s.flush().await?,
        }
        tracing::info!("telemetry flushed; goodbye");
        Ok(())
    }
}
