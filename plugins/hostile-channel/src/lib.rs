//! A hostile notification channel for the test suite: it sends an HTTP request to whatever URL
//! its config names (loopback, private, cloud metadata, a redirect to one of them), floods the
//! host with requests, or sends email, and reports what the host let through. The host's
//! policy, not this plugin, decides what happens.

// The bindings are generated code with unsafe glue; the fixture's own code has none.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "notification-channel",
});

use exports::telemetryflow::plugin::channel::{Guest as Channel, Notification, Receipt, SendError};
use exports::telemetryflow::plugin::metadata::Guest as Metadata;
use telemetryflow::plugin::types::{ConfigError, PluginMetadata};
use telemetryflow::plugin::{email, http};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    url: String,
    #[serde(default)]
    timeout_ms: Option<u32>,
}

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Http,
    Flood,
    Email,
}

pub struct Plugin;

fn describe(e: &http::HttpError) -> String {
    match e {
        http::HttpError::Blocked(m) => format!("blocked: {m}"),
        http::HttpError::Timeout => "timeout".into(),
        http::HttpError::Connection(m) => format!("connection: {m}"),
        http::HttpError::InvalidRequest(m) => format!("invalid request: {m}"),
    }
}

impl Metadata for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "hostile-channel".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Requests any URL; a test fixture.".into(),
            config_schema: r#"{"type":"object","properties":{"mode":{"enum":["http","flood","email"]},"url":{"type":"string"},"timeout_ms":{"type":"integer"}}}"#.into(),
        }
    }

    fn validate_config(config: String) -> Vec<ConfigError> {
        match serde_json::from_str::<Config>(&config) {
            Ok(_) => Vec::new(),
            Err(e) => vec![ConfigError {
                path: String::new(),
                message: e.to_string(),
            }],
        }
    }
}

impl Channel for Plugin {
    fn send(n: Notification) -> Result<Receipt, SendError> {
        let c: Config =
            serde_json::from_str(&n.config).map_err(|e| SendError::Permanent(e.to_string()))?;
        let request = || http::Request {
            method: "POST".into(),
            url: c.url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("idempotency-key".into(), n.idempotency_key.clone()),
            ],
            body: format!("{{\"alerts\":{}}}", n.alerts.len()).into_bytes(),
            timeout_ms: c.timeout_ms,
        };
        match c.mode {
            Mode::Http => match http::send(&request()) {
                Ok(resp) => {
                    let location = resp
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                        .map(|(_, v)| v.clone());
                    Ok(Receipt {
                        message_id: location,
                        detail: format!("status {} body {} bytes", resp.status, resp.body.len()),
                    })
                }
                Err(e) => Err(SendError::Permanent(describe(&e))),
            },
            Mode::Flood => {
                let mut last = String::new();
                for i in 0..100 {
                    if let Err(e) = http::send(&request()) {
                        last = format!("request {i}: {}", describe(&e));
                        if matches!(e, http::HttpError::Blocked(_)) {
                            break;
                        }
                    }
                }
                Err(SendError::Transient(last))
            }
            Mode::Email => email::send(&email::Message {
                to: vec![c.url.clone()],
                subject: format!("{} alerts", n.alerts.len()),
                text: "text".into(),
                html: None,
            })
            .map(|()| Receipt {
                message_id: None,
                detail: "sent".into(),
            })
            .map_err(SendError::Permanent),
        }
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);
