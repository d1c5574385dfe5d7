//! Starting servers, making tenants, keys and users, sending OTLP and reading SQL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use server::{ClickHouseConfig, Config, Server};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn test_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        http_addr: loopback(),
        otlp_http_addr: loopback(),
        otlp_grpc_addr: loopback(),
        admin_email: ADMIN_EMAIL.into(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        ..Config::default()
    }
}

/// A child process killed and reaped when dropped, so a failing test never leaves one behind
/// (a stray child would keep the test's output pipe open, and a stopped one would never exit).
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A fresh PostgreSQL database and the ClickHouse URL, for a scenario's second run on that
/// stack; `None` (saying so) where either is missing.
pub async fn postgres_and_clickhouse(what: &str) -> Option<(String, String)> {
    match (
        crate::postgres_env::fresh_postgres().await,
        crate::clickhouse_env::clickhouse_url(),
    ) {
        (Some(pg), Some(ch)) => Some((pg, ch)),
        _ => {
            eprintln!("SKIPPED: the PostgreSQL + ClickHouse run of {what}");
            None
        }
    }
}

/// ClickHouse store settings for tests: a fresh database at `url`.
pub fn clickhouse_settings(url: &str) -> ClickHouseConfig {
    let mut c = ClickHouseConfig::new(url);
    c.database = crate::clickhouse_env::fresh_database("tf_e2e");
    c
}

/// What an alerting test server needs, the same at every (re)start: channel plugins may reach
/// loopback receivers over plain HTTP; SQLite + embedded (`None`) or the given PostgreSQL +
/// ClickHouse stack.
pub fn alerts_config(c: &mut Config, stack: Option<&(String, ClickHouseConfig)>) {
    c.plugin_http.allow_loopback_for_tests = true;
    c.plugin_http.allow_plain_http = true;
    if let Some((pg, ch)) = stack {
        c.postgres_url = Some(pg.clone());
        c.clickhouse = Some(ch.clone());
    }
}

/// A server running inside the test process on ephemeral ports.
pub struct TestServer {
    pub server: Option<Server>,
    pub api: String,
    pub otlp_http: String,
    pub otlp_grpc: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// POSTs an OTLP/JSON body to `path` (`/v1/logs`, …) with `key`; it must be acknowledged.
    pub async fn send_json(&self, key: &str, path: &str, body: &Value) {
        let r = post_otlp(
            &self.client,
            &format!("{}{path}", self.otlp_http),
            Some(key),
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }

    /// A server whose channel plugins may reach loopback receivers over plain HTTP, on SQLite +
    /// embedded (`None`) or on the given PostgreSQL + ClickHouse stack; `tune` sets the rest.
    pub async fn for_alerts(
        stack: Option<&(String, String)>,
        tune: impl FnOnce(&mut Config),
    ) -> (TestServer, Api, String) {
        let stack = stack.map(|(pg, ch)| (pg.clone(), clickhouse_settings(ch)));
        TestServer::with_admin_tuned(|c| {
            alerts_config(c, stack.as_ref());
            tune(c);
        })
        .await
    }

    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tune(&mut config);
        let server = Server::start(config).await.expect("server starts");
        TestServer {
            api: format!("http://{}", server.http_addr),
            otlp_http: format!("http://{}", server.otlp_http_addr),
            otlp_grpc: format!("http://{}", server.otlp_grpc_addr),
            server: Some(server),
            client: reqwest::Client::new(),
            dir,
        }
    }

    /// Stops the server and starts it again on the same data directory (new ports); returns
    /// an API client for the new one.
    pub async fn restart(&mut self, tune: impl FnOnce(&mut Config)) -> Api {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        let mut config = test_config(self.dir.path());
        config.admin_password = None;
        tune(&mut config);
        let server = Server::start(config).await.expect("server restarts");
        self.api = format!("http://{}", server.http_addr);
        self.otlp_http = format!("http://{}", server.otlp_http_addr);
        self.otlp_grpc = format!("http://{}", server.otlp_grpc_addr);
        self.server = Some(server);
        Api::new(&self.api)
    }

    /// A default server, an API client for it and the admin's access token.
    pub async fn with_admin() -> (TestServer, Api, String) {
        TestServer::with_admin_tuned(|_| {}).await
    }

    /// [`TestServer::with_admin`] with its config tuned first.
    pub async fn with_admin_tuned(tune: impl FnOnce(&mut Config)) -> (TestServer, Api, String) {
        let srv = TestServer::start_with(tune).await;
        let api = Api::new(&srv.api);
        let admin = api.admin().await;
        (srv, api, admin)
    }

    /// [`TestServer::with_admin`] keeping metadata in PostgreSQL (a fresh database), or `None`
    /// when no PostgreSQL is configured (announced; CI makes it a failure).
    pub async fn with_admin_on_postgres() -> Option<(TestServer, Api, String)> {
        let url = crate::postgres_env::fresh_postgres().await?;
        Some(TestServer::with_admin_tuned(|c| c.postgres_url = Some(url)).await)
    }

    /// [`TestServer::with_admin`] storing telemetry in ClickHouse (a fresh database), or `None`
    /// when no ClickHouse is configured (the skip is announced; CI makes it a failure).
    pub async fn with_admin_on_clickhouse() -> Option<(TestServer, Api, String)> {
        let url = crate::clickhouse_env::clickhouse_url()?;
        Some(TestServer::with_admin_tuned(|c| c.clickhouse = Some(clickhouse_settings(&url))).await)
    }

    /// The same scenario's servers on each metadata store: SQLite always, PostgreSQL when
    /// configured (a skip is announced; CI makes it a failure).
    pub async fn on_each_meta_store(
        tune: impl Fn(&mut Config),
    ) -> Vec<(&'static str, TestServer, Api, String)> {
        let mut out = Vec::new();
        let (srv, api, admin) = TestServer::with_admin_tuned(&tune).await;
        out.push(("sqlite", srv, api, admin));
        if let Some(url) = crate::postgres_env::fresh_postgres().await {
            let (srv, api, admin) = TestServer::with_admin_tuned(|c| {
                tune(c);
                c.postgres_url = Some(url);
            })
            .await;
            out.push(("postgres", srv, api, admin));
        }
        out
    }

    /// The JWT signing key this server made at first start.
    pub fn jwt_key(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("secrets/jwt.key")).expect("jwt.key")
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

/// An API client for one server (in-process or not).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Any method; `(status, JSON or text body, headers)`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, b, _) = self.call("GET", path, Some(token), None).await;
        (s, b)
    }

    /// Logs in; the whole answer (tokens, or an MFA challenge).
    pub async fn login_body(&self, email: &str, password: &str) -> (u16, Value) {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        body["access_token"].as_str().expect("token").to_string()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates an ingest key; returns `(token, body)`.
    pub async fn key(
        &self,
        admin: &str,
        permissions: &[&str],
        tenant: Option<&str>,
    ) -> (String, Value) {
        let mut body = json!({"name": "test key", "permissions": permissions});
        if let Some(t) = tenant {
            body["tenant_id"] = json!(t);
        }
        let (status, body) = self.post("/api/v1/api-keys", Some(admin), body).await;
        assert_eq!(status, 201, "create key: {body}");
        (body["key"].as_str().expect("key").to_string(), body)
    }

    /// Creates tenant `code` with a viewer user; returns `(tenant_id, viewer_token)`.
    pub async fn tenant_with_viewer(&self, admin: &str, code: &str) -> (String, String) {
        let (status, t) = self
            .post(
                "/api/v1/tenants",
                Some(admin),
                json!({"name": code, "code": code}),
            )
            .await;
        assert_eq!(status, 201, "create tenant: {t}");
        let tenant_id = t["tenant_id"].as_str().expect("tenant id").to_string();
        let email = format!("viewer-{code}@example.com");
        let (status, u) = self
            .post(
                "/api/v1/users",
                Some(admin),
                json!({"email": email, "password": "viewer-password", "tenant_id": tenant_id, "role": "viewer"}),
            )
            .await;
        assert_eq!(status, 201, "create user: {u}");
        let token = self.login(&email, "viewer-password").await;
        (tenant_id, token)
    }

    /// Runs SQL; panics unless it succeeds. Returns the rows.
    pub async fn sql(&self, token: &str, sql: &str) -> Vec<Vec<Value>> {
        let (status, body) = self
            .post("/api/v1/query/sql", Some(token), json!({"sql": sql}))
            .await;
        assert_eq!(status, 200, "{sql}: {body}");
        body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_array().expect("row").clone())
            .collect()
    }

    /// Runs SQL expecting one row with one integer.
    pub async fn count(&self, token: &str, sql: &str) -> i64 {
        let rows = self.sql(token, sql).await;
        rows[0][0].as_i64().expect("count")
    }
}

/// A raw OTLP/HTTP POST.
pub async fn post_otlp(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = client
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().await.expect("otlp request")
}

/// POSTs a protobuf OTLP message to `base` + `path` with `key`.
pub async fn post_protobuf(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
    message: &impl prost::Message,
) -> reqwest::Response {
    let url = format!("{base}{path}");
    let body = message.encode_to_vec();
    post_otlp(
        client,
        &url,
        Some(key),
        "application/x-protobuf",
        None,
        body,
    )
    .await
}

/// An OTLP/JSON metrics request: one `queue_depth` gauge point per service, all at now.
pub fn queue_depth(points: &[(&str, f64)]) -> Value {
    let now = now_nanos().to_string();
    let resources: Vec<Value> = points
        .iter()
        .map(|(service, depth)| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeMetrics": [{"scope": {"name": "e2e"}, "metrics": [{"name": "queue_depth",
                    "gauge": {"dataPoints": [{"timeUnixNano": now, "asDouble": depth}]}}]}],
            })
        })
        .collect();
    json!({ "resourceMetrics": resources })
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Waits until `url` answers 200.
pub async fn wait_healthy(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became healthy");
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The Python interpreter with the OpenTelemetry SDK installed.
///
/// `TELEMETRYFLOW_TEST_PYTHON` names one; otherwise a virtualenv is made once under Cargo's
/// target tmp dir from `tests/python/requirements.txt` (this needs PyPI the first time).
/// Never skips: without Python the test fails and says why.
pub fn python() -> PathBuf {
    static PY: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut guard = PY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    let path = match std::env::var_os("TELEMETRYFLOW_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pyenv");
            let py = venv.join("bin/python");
            let reqs = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/requirements.txt");
            let marker = venv.join(".requirements");
            let wanted = std::fs::read_to_string(&reqs).expect("requirements.txt");
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
                let ok = std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                assert!(
                    ok,
                    "python3 -m venv failed: install Python 3 with venv, or set TELEMETRYFLOW_TEST_PYTHON"
                );
                let ok = std::process::Command::new(&py)
                    .args(["-m", "pip", "install", "-q", "-r"])
                    .arg(&reqs)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                assert!(ok, "pip install -r {} failed", reqs.display());
                std::fs::write(&marker, wanted).expect("marker");
            }
            py
        }
    };
    *guard = Some(path.clone());
    path
}

pub mod build {
    //! OTLP requests built in Rust, the way a protobuf client would send them.

    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    pub fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    pub fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        })
    }

    /// `n` log records with bodies `"{marker}-{i}"`.
    pub fn logs(service: &str, marker: &str, n: usize, t0: u64) -> ExportLogsServiceRequest {
        let records = (0..n)
            .map(|i| LogRecord {
                time_unix_nano: t0 + i as u64,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(format!("{marker}-{i}"))),
                }),
                attributes: vec![kv("i", &i.to_string())],
                ..Default::default()
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(service),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// `n` spans of one trace; span `i` has id `i + 1`.
    pub fn spans(service: &str, n: usize, t0: u64) -> ExportTraceServiceRequest {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![0xab; 16],
                span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
                name: format!("op-{i}"),
                kind: 2,
                start_time_unix_nano: t0,
                end_time_unix_nano: t0 + 1_000,
                attributes: vec![kv("i", &i.to_string())],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

/// A real SMTP server (`tests/smtp/capture.py`, aiosmtpd) that keeps what it receives.
pub struct SmtpCapture {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

/// One captured message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub has_html: bool,
    pub text: String,
}

impl Mail {
    /// The first URL in the text with `?<param>=`, and that parameter's value.
    pub fn link_param(&self, param: &str) -> Option<String> {
        let key = format!("{param}=");
        let start = self.text.find(&key)? + key.len();
        Some(
            self.text[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '&')
                .collect(),
        )
    }
}

impl SmtpCapture {
    pub fn start() -> SmtpCapture {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/capture.py");
        let mut child = std::process::Command::new(python())
            .arg(&script)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the SMTP capture server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the SMTP capture server did not start (printed {line:?}); is aiosmtpd installed?"
            )
        });
        SmtpCapture { port, dir, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn read_all(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        for n in 1.. {
            let txt = self.dir.path().join(format!("{n}.txt"));
            let Ok(body) = std::fs::read_to_string(&txt) else {
                break;
            };
            let to = std::fs::read_to_string(self.dir.path().join(format!("{n}.to")))
                .unwrap_or_default();
            let (head, text) = body.split_once("\n\n").unwrap_or((&body, ""));
            let subject = head
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string();
            let has_html = head.contains("Has-Html: True");
            out.push(Mail {
                to,
                subject,
                has_html,
                text: text.to_string(),
            });
        }
        out
    }

    /// Waits (up to 10 s) for a message to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str) -> Mail {
        for _ in 0..100 {
            if let Some(m) = self
                .read_all()
                .into_iter()
                .rev()
                .find(|m| m.to.eq_ignore_ascii_case(to) && m.subject.contains(subject))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no message to {to} about {subject:?}; got {:?}",
            self.read_all()
        );
    }
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpCapture {
    /// Whether any message went to `to` so far.
    pub fn sent_to(&self, to: &str) -> bool {
        self.read_all()
            .iter()
            .any(|m| m.to.eq_ignore_ascii_case(to))
    }
}
