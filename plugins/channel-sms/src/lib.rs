//! `sms`: a text message per recipient through Twilio's Messages API (`POST
//! /2010-04-01/Accounts/<SID>/Messages.json`, basic authentication, form fields `To` (E.164),
//! `From`, `Body` ≤ 1600). 201 is success; 429 and 5xx are retried; 400 is permanent.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::channel::{
    Channel, Host, Notification, Receipt, Request, SendFailure, base64, classify, form, truncate,
};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::Describe;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    "https://api.twilio.com".into()
}

fn e164(s: &str) -> bool {
    s.len() >= 8
        && s.len() <= 16
        && s.starts_with('+')
        && s[1..].bytes().all(|b| b.is_ascii_digit())
}

pub struct Sms;

impl Describe for Sms {
    const NAME: &'static str = "sms";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "SMS through Twilio's Messages API.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["account_sid", "auth_token", "from", "to"],
  "properties": {
    "account_sid": {"type": "string", "pattern": "^AC[0-9a-fA-F]{32}$"},
    "auth_token": {"type": "string", "x-secret": true},
    "from": {"type": "string", "description": "E.164, e.g. +15551234567"},
    "to": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"type": "string"}},
    "api_url": {"type": "string", "format": "uri", "default": "https://api.twilio.com"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        let bad = |path: String, message: &str| ConfigProblem {
            path,
            message: message.into(),
        };
        if !(c.account_sid.len() == 34 && c.account_sid.starts_with("AC")) {
            return Err(bad(
                "/account_sid".into(),
                "a Twilio account SID is AC followed by 32 hex digits",
            ));
        }
        if !e164(&c.from) {
            return Err(bad("/from".into(), "an E.164 number such as +15551234567"));
        }
        if c.to.is_empty() || c.to.len() > 10 {
            return Err(bad("/to".into(), "1 to 10 recipients"));
        }
        if let Some(i) = c.to.iter().position(|t| !e164(t)) {
            return Err(bad(
                format!("/to/{i}"),
                "an E.164 number such as +15551234567",
            ));
        }
        Ok(c)
    }
}

impl Channel for Sms {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            c.api_url.trim_end_matches('/'),
            c.account_sid
        );
        let body = truncate(&n.text(), 1600);
        let auth = format!(
            "Basic {}",
            base64(format!("{}:{}", c.account_sid, c.auth_token).as_bytes())
        );
        let mut ids = Vec::new();
        for to in &c.to {
            let r = host.http(Request {
                method: "POST",
                url: url.clone(),
                headers: vec![
                    (
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ),
                    ("authorization".into(), auth.clone()),
                ],
                body: form(&[("To", to), ("From", &c.from), ("Body", &body)]).into_bytes(),
                timeout_ms: None,
            })?;
            classify(&r, "Twilio")?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if let Some(sid) = v["sid"].as_str() {
                ids.push(sid.to_string());
            }
        }
        Ok(Receipt {
            message_id: ids.first().cloned(),
            detail: format!("{} message(s) queued", c.to.len()),
        })
    }
}

plugin_sdk::export_channel!(Sms, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, Status, sample};

    use super::*;

    #[test]
    fn one_form_post_per_recipient() {
        let sid = format!("AC{}", "0".repeat(32));
        let c = Sms::config(&format!(
            r#"{{"account_sid":"{sid}","auth_token":"tok","from":"+15550000000","to":["+15551111111","+15552222222"]}}"#
        ))
        .expect("c");
        let host = FakeHost::answering(201, r#"{"sid":"SM1"}"#);
        let r = Sms::send(&c, &sample(Status::Firing), &host).expect("sent");
        assert_eq!(r.message_id.as_deref(), Some("SM1"));
        let reqs = host.requests.borrow();
        assert_eq!(reqs.len(), 2);
        assert!(
            reqs[0]
                .url
                .ends_with(&format!("/2010-04-01/Accounts/{sid}/Messages.json"))
        );
        let body = String::from_utf8_lossy(&reqs[0].body).to_string();
        assert!(
            body.starts_with("To=%2B15551111111&From=%2B15550000000&Body="),
            "{body}"
        );
        assert!(
            reqs[0]
                .headers
                .iter()
                .any(|(k, v)| k == "authorization" && v.starts_with("Basic "))
        );
        assert_eq!(
            Sms::config(r#"{"account_sid":"x","auth_token":"t","from":"+1","to":[]}"#)
                .expect_err("bad")
                .path,
            "/account_sid"
        );
    }
}
