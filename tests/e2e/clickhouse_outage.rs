//! ClickHouse slow or down: ingest answers 429 or 503 with Retry-After and acknowledges nothing
//! ClickHouse did not confirm; once it is back, every batch a client sent (and retried) is
//! stored exactly once.
//!
//! The test runs its own ClickHouse (the chdb-core front) so it can stop and kill it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::clickhouse_env::require_or_skip;
use crate::support::{
    Reaped, TestServer, build, clickhouse_settings, free_port, now_nanos, post_protobuf, python,
};

fn chdb_available() -> bool {
    Command::new(python())
        .args(["-c", "import chdb"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts the front on `port` over the data in `dir` and waits until it listens.
fn start_front(dir: &Path, port: u16) -> Reaped {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clickhouse/front.py");
    let mut child = Reaped(
        Command::new(python())
            .arg(script)
            .arg("--dir")
            .arg(dir)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the ClickHouse front"),
    );
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("front output");
    assert!(line.starts_with("listening"), "front said {line:?}");
    child
}

fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    #[allow(unsafe_code)]
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{} without a Retry-After header", r.status()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_backs_off_while_clickhouse_is_slow_or_down_and_loses_nothing() {
    if !chdb_available() {
        require_or_skip(
            "chdb-core is not installed in the test Python (tests/clickhouse/requirements.txt)",
        );
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut front = start_front(data.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    let (srv, api, admin) = TestServer::with_admin_tuned(|c| {
        let mut ch = clickhouse_settings(&url);
        ch.insert_timeout = Duration::from_secs(1);
        ch.retry_budget = Duration::from_secs(2);
        ch.max_concurrent_inserts = 1;
        c.clickhouse = Some(ch);
    })
    .await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    // The audit log shares ClickHouse's one insert slot here: wait until the key's creation is
    // written, so no audit flush holds the slot when ClickHouse stops below.
    let mut audited = false;
    for _ in 0..100 {
        let (status, body) = api
            .get("/api/v1/audit-logs?action=iam.api_key_create", &admin)
            .await;
        if status == 200 && body["rows"].as_array().is_some_and(|r| !r.is_empty()) {
            audited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(audited, "the key's creation reached the audit log");
    let t0 = now_nanos();
    let batch = |marker: &str| build::logs("outage", marker, 3, t0);
    let send = |marker: &'static str| {
        let client = srv.client.clone();
        let base = srv.otlp_http.clone();
        let key = key.clone();
        let req = batch(marker);
        async move { post_protobuf(&client, &base, "/v1/logs", &key, &req).await }
    };

    // Healthy: acknowledged.
    assert_eq!(send("a").await.status(), 200);

    // Slow: ClickHouse stops answering. The write holding the only insert slot times out and
    // fails as unavailable; one arriving meanwhile finds no slot and is told to slow down.
    signal(&front, libc::SIGSTOP);
    let b = tokio::spawn(send("b"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = send("c").await;
    let b = b.await.expect("join");
    // One write held the slot and timed out (503); the other found no slot (429). Normally
    // that is b then c, but on a loaded machine c may reach the slot first.
    let mut statuses = vec![b.status().as_u16(), c.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [429, 503], "b and c while ClickHouse is stopped");
    assert!(retry_after(&b) >= 1);
    assert!(retry_after(&c) >= 1);

    // Down: the stalled inserts may still land when it resumes; then it dies.
    signal(&front, libc::SIGCONT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    front.kill().expect("kill the front");
    front.wait().expect("reap");
    let d = send("d").await;
    assert_eq!(d.status(), 503, "{:?}", d.text().await);
    assert!(retry_after(&d) >= 1);

    // Back: the client retries what was not acknowledged, with the same bytes.
    let mut front = start_front(data.path(), port);
    for marker in ["b", "c", "d"] {
        let mut status = 0;
        for _ in 0..20 {
            status = send(marker).await.status().as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(status, 200, "retry of {marker}");
    }
    let rows = api
        .sql(
            &admin,
            "SELECT body, count(*) AS n FROM logs_v3 GROUP BY body ORDER BY body",
        )
        .await;
    let got: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={}", r[0].as_str().unwrap_or_default(), r[1]))
        .collect();
    let want: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .flat_map(|m| (0..3).map(move |i| format!("{m}-{i}=1")))
        .collect();
    assert_eq!(got, want, "every batch exactly once");
    srv.shutdown().await;
    let _ = front.kill();
    let _ = front.wait();
}
