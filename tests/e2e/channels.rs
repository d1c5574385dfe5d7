//! Notification channel plugins reach the network only through the host's policy: a hostile
//! channel is refused loopback, private, link-local and cloud-metadata addresses (checked after
//! DNS), never follows a redirect, gets truncated bodies, bounded time and a capped number of
//! requests; email goes through the server's SMTP relay. Fake services listen on loopback, so
//! most cases run with the test-only loopback switch on, and one proves it is off by default.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::support::{Api, SmtpCapture, TestServer};

fn component() -> Vec<u8> {
    crate::guests::guest(
        "hostile-channel",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
}

/// A fake service on loopback: `/hit` counts requests, `/redirect` answers 302 to `location`,
/// `/big` sends 2 MiB, `/slow` answers after 3 s.
struct Fake {
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn fake(location: String) -> Fake {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new()
        .route(
            "/hit",
            axum::routing::any(move || {
                let hits = Arc::clone(&counted);
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "hit"
                }
            }),
        )
        .route(
            "/redirect",
            axum::routing::any(move || {
                let location = location.clone();
                async move {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, location)],
                    )
                        .into_response()
                }
            }),
        )
        .route("/big", axum::routing::any(|| async { vec![b'x'; 2 << 20] }))
        .route(
            "/slow",
            axum::routing::any(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fake { port, hits }
}

async fn upload(api: &Api, token: &str) -> String {
    let resp = api
        .client
        .post(format!(
            "{}/api/v1/plugins?kind=notification-channel",
            api.base
        ))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(component())
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], json!("notification-channel"));
    body["plugin_id"].as_str().expect("id").to_string()
}

async fn send(api: &Api, token: &str, id: &str, config: Value) -> Value {
    let (status, body) = api
        .post(
            &format!("/api/v1/plugins/{id}/run"),
            Some(token),
            json!({ "config": config }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn refused(out: &Value, why: &str) {
    assert_eq!(out["sent"], json!(false), "{out}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("blocked") && message.contains(why),
        "expected a refusal naming {why:?}: {out}"
    );
}

#[tokio::test]
async fn by_default_a_channel_reaches_no_internal_address() {
    let target = fake(String::new()).await;
    let (srv, api, admin) = TestServer::with_admin().await;
    let id = upload(&api, &admin).await;
    let port = target.port;
    for (url, why) in [
        (format!("http://127.0.0.1:{port}/hit"), "loopback"),
        (format!("https://127.0.0.1:{port}/hit"), "loopback"),
        (
            format!("http://localhost:{port}/hit"),
            "localhost resolves to",
        ),
        (format!("http://[::ffff:127.0.0.1]:{port}/hit"), "loopback"),
        (format!("http://[::1]:{port}/hit"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "cloud metadata",
        ),
        ("https://10.0.0.7/hook".into(), "private"),
        ("https://192.168.1.1/hook".into(), "private"),
        ("https://100.64.0.1/hook".into(), "carrier-grade NAT"),
        ("https://[fd00:ec2::254]/".into(), "unique local"),
        ("https://0.0.0.0/".into(), "unspecified"),
        ("gopher://example.com/".into(), "scheme"),
    ] {
        refused(&send(&api, &admin, &id, json!({"url": url})).await, why);
    }
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the fake"
    );
    assert_eq!(api.get("/healthz", &admin).await.0, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn with_the_test_switch_loopback_works_and_the_rest_of_the_policy_holds() {
    let inner = fake(String::new()).await;
    let outer = fake(format!("http://127.0.0.1:{}/hit", inner.port)).await;
    let metadata = fake("http://169.254.169.254/latest/meta-data/".into()).await;
    let smtp = SmtpCapture::start();
    let smtp_url = smtp.url();
    let (srv, api, admin) = TestServer::with_admin_tuned(move |c| {
        c.plugin_http.allow_loopback_for_tests = true;
        c.smtp_url = Some(smtp_url);
    })
    .await;
    let id = upload(&api, &admin).await;

    let ok = send(
        &api,
        &admin,
        &id,
        json!({"url": format!("http://127.0.0.1:{}/hit", inner.port)}),
    )
    .await;
    assert_eq!(ok["sent"], json!(true), "{ok}");
    assert_eq!(ok["detail"], json!("status 200 body 3 bytes"));
    assert_eq!(inner.hits.load(Ordering::SeqCst), 1);

    // A redirect comes back as it is: never followed, to loopback or to the metadata service.
    for (fake, to) in [
        (&outer, format!("http://127.0.0.1:{}/hit", inner.port)),
        (&metadata, "http://169.254.169.254/latest/meta-data/".into()),
    ] {
        let r = send(
            &api,
            &admin,
            &id,
            json!({"url": format!("http://127.0.0.1:{}/redirect", fake.port)}),
        )
        .await;
        assert_eq!(r["sent"], json!(true), "{r}");
        assert_eq!(r["detail"], json!("status 302 body 0 bytes"), "{r}");
        assert_eq!(
            r["message_id"],
            json!(to),
            "the plugin saw the Location header"
        );
    }
    assert_eq!(
        inner.hits.load(Ordering::SeqCst),
        1,
        "the redirect was not followed"
    );

    // The switch lets loopback through, nothing else.
    refused(
        &send(
            &api,
            &admin,
            &id,
            json!({"url": "http://169.254.169.254/latest/meta-data/"}),
        )
        .await,
        "cloud metadata",
    );
    refused(
        &send(&api, &admin, &id, json!({"url": "https://10.1.1.1/"})).await,
        "private",
    );

    // Bodies are capped at 1 MiB; time at what the plugin asked for; requests per call at 8.
    let big = send(
        &api,
        &admin,
        &id,
        json!({"url": format!("http://127.0.0.1:{}/big", inner.port)}),
    )
    .await;
    assert_eq!(
        big["detail"],
        json!("status 200 body 1048576 bytes"),
        "{big}"
    );
    let slow = send(
        &api,
        &admin,
        &id,
        json!({"url": format!("http://127.0.0.1:{}/slow", inner.port), "timeout_ms": 300}),
    )
    .await;
    assert_eq!(slow["error"]["message"], json!("timeout"), "{slow}");
    let flood = send(
        &api,
        &admin,
        &id,
        json!({"mode": "flood", "url": format!("http://127.0.0.1:{}/hit", inner.port)}),
    )
    .await;
    assert!(
        flood["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 8 requests")),
        "{flood}"
    );
    assert_eq!(inner.hits.load(Ordering::SeqCst), 1 + 8);

    // Email goes through the server's SMTP relay.
    let mail = send(
        &api,
        &admin,
        &id,
        json!({"mode": "email", "url": "oncall@example.com"}),
    )
    .await;
    assert_eq!(mail["sent"], json!(true), "{mail}");
    let got = smtp.wait_for("oncall@example.com", "1 alerts").await;
    assert!(got.has_html, "text mail gets an HTML part too");
    srv.shutdown().await;
}
