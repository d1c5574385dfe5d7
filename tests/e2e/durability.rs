//! Acknowledged means durable: `kill -9` right after the last ack loses nothing and duplicates
//! nothing, whether the data was still in the write-ahead log or already flushed to Parquet.
//! SIGTERM shuts down cleanly and flushes.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{
    ADMIN_PASSWORD, Api, build, free_port, now_nanos, post_protobuf, wait_healthy,
};

struct Proc {
    child: crate::support::Reaped,
    api: String,
    otlp_http: String,
}

async fn spawn(data: &Path) -> Proc {
    let (api, http, grpc) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_telemetryflow-e2e"))
        .args(["serve", "--flush-interval-secs", "1", "--data-dir"])
        .arg(data)
        .args(["--http-addr", &format!("127.0.0.1:{api}")])
        .args(["--otlp-http-addr", &format!("127.0.0.1:{http}")])
        .args(["--otlp-grpc-addr", &format!("127.0.0.1:{grpc}")])
        .env("TELEMETRYFLOW_ADMIN_EMAIL", crate::support::ADMIN_EMAIL)
        .env("TELEMETRYFLOW_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TELEMETRYFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn server");
    let child = crate::support::Reaped(child);
    let api = format!("http://127.0.0.1:{api}");
    wait_healthy(&format!("{api}/healthz")).await;
    Proc {
        child,
        api,
        otlp_http: format!("http://127.0.0.1:{http}"),
    }
}

fn signal(p: &Proc, sig: i32) {
    let pid = i32::try_from(p.child.id()).expect("pid");
    // SAFETY-free: libc::kill is a plain syscall wrapper.
    let rc = unsafe_kill(pid, sig);
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) }
}

async fn send_batches(p: &Proc, key: &str, range: std::ops::Range<usize>, per: usize) {
    let client = reqwest::Client::new();
    for b in range {
        let req = build::logs("durable", &format!("batch{b}"), per, now_nanos());
        let r = post_protobuf(&client, &p.otlp_http, "/v1/logs", key, &req).await;
        assert_eq!(r.status(), 200, "batch {b}");
    }
}

async fn counts(p: &Proc) -> (i64, i64) {
    let api = Api::new(&p.api);
    let admin = api.admin().await;
    let total = api.count(&admin, "SELECT COUNT(*) FROM logs_v3").await;
    let distinct = api
        .count(&admin, "SELECT COUNT(DISTINCT body) FROM logs_v3")
        .await;
    (total, distinct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_last_ack_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (batches, per) = (40usize, 50usize);
    let expected = (batches * per) as i64;

    let mut p = spawn(dir.path()).await;
    let api = Api::new(&p.api);
    let admin = api.admin().await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    send_batches(&p, &key, 0..batches / 2, per).await;
    // Let the first half reach Parquet (flush interval is 1 s), then crash with the second
    // half acknowledged but only in the write-ahead log.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    send_batches(&p, &key, batches / 2..batches, per).await;
    signal(&p, libc::SIGKILL);
    let _ = p.child.wait();

    let mut p = spawn(dir.path()).await;
    assert_eq!(counts(&p).await, (expected, expected), "after kill -9");

    // SIGTERM: graceful, exit 0, everything flushed to Parquet.
    signal(&p, libc::SIGTERM);
    let status = p.child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("telemetry/wal"))
        .expect("wal dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(wal_bytes, 0, "a clean shutdown leaves nothing to replay");

    let mut p = spawn(dir.path()).await;
    assert_eq!(
        counts(&p).await,
        (expected, expected),
        "after a clean restart"
    );
    signal(&p, libc::SIGTERM);
    assert!(p.child.wait().expect("wait").success());
}
