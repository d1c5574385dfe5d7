//! Each built-in notification channel against a fake of its service on loopback (the test-only
//! egress switch on): the request's method, path, headers and body fields as the service
//! documents them, and the service's answers scripted: success, 429 with a retry hint, 5xx, a
//! permanent 4xx, and a timeout. Email goes to a real SMTP server. Secrets in URLs never show
//! up in an error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::support::{Api, SmtpCapture, TestServer};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Fake {
    fn next(&self, a: Answer) {
        self.script.lock().expect("lock").push_back(a);
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request arrived")
    }
}

async fn serve(
    State(f): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    f.seen.lock().expect("lock").push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    let a = f
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| answer(200, "ok"));
    tokio::time::sleep(a.delay).await;
    let mut resp = (
        axum::http::StatusCode::from_u16(a.status).expect("status"),
        a.body,
    )
        .into_response();
    for (k, v) in a.headers {
        resp.headers_mut()
            .insert(k, v.parse().expect("header value"));
    }
    resp
}

async fn start_fake() -> (Fake, u16) {
    let fake = Fake::default();
    let app = axum::Router::new().fallback(serve).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, port)
}

async fn test_send(api: &Api, token: &str, channel: &str, config: &Value) -> Value {
    let (status, body) = api
        .post(
            &format!("/api/v1/plugins/builtin-{channel}/run"),
            Some(token),
            json!({ "config": config }),
        )
        .await;
    assert_eq!(status, 200, "{channel}: {body}");
    body
}

#[tokio::test]
async fn each_built_in_channel_speaks_its_services_wire_format() {
    let (fake, port) = start_fake().await;
    let smtp = SmtpCapture::start();
    let smtp_url = smtp.url();
    let (srv, api, admin) = TestServer::with_admin_tuned(move |c| {
        c.plugin_http.allow_loopback_for_tests = true;
        c.plugin_http.max_timeout = Duration::from_millis(700);
        c.smtp_url = Some(smtp_url);
    })
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let sid = format!("AC{}", "0".repeat(32));
    type Check = Box<dyn Fn(&Seen)>;
    let cases: Vec<(&str, Value, Answer, Check)> = vec![
        (
            "webhook",
            json!({"url": format!("{base}/hook")}),
            answer(200, ""),
            Box::new(|s: &Seen| {
                assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/hook"));
                assert_eq!(s.header("content-type"), "application/json");
                let b = s.json();
                assert_eq!(b["version"], "4");
                assert_eq!(b["status"], "firing");
                assert_eq!(
                    b["alerts"][0]["labels"]["alertname"],
                    "TelemetryFlowTestNotification"
                );
                assert!(b["groupKey"].is_string() && b["externalURL"].is_string());
            }),
        ),
        (
            "slack",
            json!({"webhook_url": format!("{base}/services/T0/B0/secret")}),
            answer(200, "ok"),
            Box::new(|s: &Seen| {
                assert_eq!(s.path, "/services/T0/B0/secret");
                let b = s.json();
                assert!(
                    b["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("TelemetryFlowTestNotification"))
                );
                assert!(b["blocks"].is_array());
            }),
        ),
        (
            "pagerduty",
            json!({"routing_key": "RK123", "url": format!("{base}/v2/enqueue")}),
            answer(
                202,
                r#"{"status":"success","message":"Event processed","dedup_key":"dk"}"#,
            ),
            Box::new(|s: &Seen| {
                assert_eq!(s.path, "/v2/enqueue");
                let b = s.json();
                assert_eq!(b["routing_key"], "RK123");
                assert_eq!(b["event_action"], "trigger");
                assert_eq!(b["payload"]["severity"], "info");
                assert!(
                    b["payload"]["summary"]
                        .as_str()
                        .is_some_and(|x| !x.is_empty() && x.len() <= 1024)
                );
                assert!(
                    b["dedup_key"]
                        .as_str()
                        .is_some_and(|k| !k.is_empty() && k.len() <= 255)
                );
            }),
        ),
        (
            "telegram",
            json!({"bot_token": "123:SECRET", "chat_id": "42", "api_url": base}),
            answer(200, r#"{"ok":true,"result":{"message_id":7}}"#),
            Box::new(|s: &Seen| {
                assert_eq!(s.path, "/bot123:SECRET/sendMessage");
                let b = s.json();
                assert_eq!(b["chat_id"], "42");
                assert_eq!(b["parse_mode"], "HTML");
                assert!(
                    b["text"]
                        .as_str()
                        .is_some_and(|t| t.len() <= 4096 && t.starts_with("<b>"))
                );
            }),
        ),
        (
            "msteams",
            json!({"url": format!("{base}/workflows/abc/triggers/manual/paths/invoke")}),
            answer(202, ""),
            Box::new(|s: &Seen| {
                let b = s.json();
                assert_eq!(b["type"], "message");
                assert_eq!(
                    b["attachments"][0]["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
                assert_eq!(b["attachments"][0]["content"]["type"], "AdaptiveCard");
            }),
        ),
        (
            "discord",
            json!({"webhook_url": format!("{base}/api/webhooks/1/tok")}),
            answer(204, ""),
            Box::new(|s: &Seen| {
                assert_eq!(s.path, "/api/webhooks/1/tok");
                let b = s.json();
                assert!(b["content"].as_str().is_some_and(|c| c.len() <= 2000));
                assert!(b["embeds"].as_array().is_some_and(|e| e.len() <= 10));
            }),
        ),
        (
            "sms",
            json!({"account_sid": sid, "auth_token": "tok", "from": "+15550000000", "to": ["+15551111111"], "api_url": base}),
            answer(201, r#"{"sid":"SM1","status":"queued"}"#),
            Box::new(|s: &Seen| {
                assert!(
                    s.path.starts_with("/2010-04-01/Accounts/AC")
                        && s.path.ends_with("/Messages.json")
                );
                assert_eq!(
                    s.header("content-type"),
                    "application/x-www-form-urlencoded"
                );
                assert!(s.header("authorization").starts_with("Basic "));
                let form = String::from_utf8_lossy(&s.body).to_string();
                assert!(
                    form.starts_with("To=%2B15551111111&From=%2B15550000000&Body="),
                    "{form}"
                );
            }),
        ),
    ];
    for (channel, config, ok, check) in &cases {
        fake.next(ok.clone());
        let sent = test_send(&api, &admin, channel, config).await;
        assert_eq!(sent["sent"], json!(true), "{channel}: {sent}");
        check(&fake.last());

        let mut limited = answer(429, r#"{"retry_after": 7}"#);
        limited.headers.push(("retry-after", "7".into()));
        fake.next(limited);
        let r = test_send(&api, &admin, channel, config).await;
        assert_eq!(r["error"]["kind"], json!("rate_limited"), "{channel}: {r}");
        assert_eq!(r["error"]["retry_after_ms"], json!(7000), "{channel}: {r}");

        fake.next(answer(503, "busy"));
        let r = test_send(&api, &admin, channel, config).await;
        assert_eq!(r["error"]["kind"], json!("transient"), "{channel}: {r}");

        fake.next(answer(400, r#"{"error":"bad request"}"#));
        let r = test_send(&api, &admin, channel, config).await;
        assert_eq!(r["error"]["kind"], json!("permanent"), "{channel}: {r}");
        assert!(
            !r.to_string().contains("SECRET"),
            "{channel} leaked a secret: {r}"
        );

        let mut slow = answer(200, "ok");
        slow.delay = Duration::from_secs(2);
        fake.next(slow);
        let r = test_send(&api, &admin, channel, config).await;
        assert_eq!(r["error"]["kind"], json!("transient"), "{channel}: {r}");
    }

    // Email through the server's SMTP relay.
    let r = test_send(
        &api,
        &admin,
        "email",
        &json!({"to": ["oncall@example.com"]}),
    )
    .await;
    assert_eq!(r["sent"], json!(true), "{r}");
    let mail = smtp
        .wait_for("oncall@example.com", "TelemetryFlowTestNotification")
        .await;
    assert!(mail.has_html);
    // A bad config is a 200 with a permanent error naming the field (nothing was sent).
    let r = test_send(&api, &admin, "pagerduty", &json!({"routing_key": ""})).await;
    assert_eq!(r["error"]["kind"], json!("permanent"), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/routing_key")),
        "{r}"
    );
    srv.shutdown().await;
}
