//! `telegram`: the Bot API's `sendMessage` (`POST /bot<token>/sendMessage`, `chat_id`, `text` ≤
//! 4096) in HTML (the default) or MarkdownV2, each escaped as Telegram requires. 429 carries
//! `parameters.retry_after`.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::channel::{
    Channel, Host, Notification, Receipt, Request, SendFailure, classify, truncate,
};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::Describe;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum ParseMode {
    #[default]
    #[serde(rename = "HTML")]
    Html,
    MarkdownV2,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bot_token: String,
    /// A numeric chat id or `@channelname`.
    pub chat_id: String,
    #[serde(default)]
    pub parse_mode: ParseMode,
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    "https://api.telegram.org".into()
}

/// HTML mode: `&`, `<`, `>` as entities.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// MarkdownV2: every one of `_*[]()~`>#+-=|{}.!` and `\` preceded by a backslash.
pub fn escape_markdown_v2(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "_*[]()~`>#+-=|{}.!\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn text(c: &Config, n: &Notification) -> String {
    type Format = fn(&str) -> String;
    let (bold, esc): (Format, Format) = match c.parse_mode {
        ParseMode::Html => (|s| format!("<b>{s}</b>"), escape_html),
        ParseMode::MarkdownV2 => (|s| format!("*{s}*"), escape_markdown_v2),
    };
    let mut out = bold(&esc(&n.title()));
    if let Some(s) = n.summary() {
        out.push('\n');
        out.push_str(&esc(s));
    }
    for a in &n.alerts {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push('\n');
        out.push_str(&esc(&format!(
            "- {} {}",
            a.status.as_str(),
            labels.join(" ")
        )));
    }
    // Cut on the escaped text, so an escape sequence is never split.
    if out.chars().count() > 4096 {
        let mut cut: String = out.chars().take(4000).collect();
        while cut.ends_with('\\') {
            cut.pop();
        }
        if c.parse_mode == ParseMode::Html
            && let Some(open) = cut.rfind('&')
            && !cut[open..].contains(';')
        {
            cut.truncate(open);
        }
        cut.push_str(&esc("\n… (cut)"));
        return cut;
    }
    out
}

pub struct Telegram;

impl Describe for Telegram {
    const NAME: &'static str = "telegram";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Telegram Bot API sendMessage, HTML or MarkdownV2.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["bot_token", "chat_id"],
  "properties": {
    "bot_token": {"type": "string", "x-secret": true},
    "chat_id": {"type": "string"},
    "parse_mode": {"enum": ["HTML", "MarkdownV2"], "default": "HTML"},
    "api_url": {"type": "string", "format": "uri", "default": "https://api.telegram.org"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        let token_ok = c.bot_token.split_once(':').is_some_and(|(id, secret)| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !secret.is_empty()
        });
        if !token_ok {
            return Err(ConfigProblem {
                path: "/bot_token".into(),
                message: "a bot token looks like 123456:ABC-DEF…".into(),
            });
        }
        Ok(c)
    }
}

impl Channel for Telegram {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let url = format!(
            "{}/bot{}/sendMessage",
            c.api_url.trim_end_matches('/'),
            c.bot_token
        );
        let body = json!({
            "chat_id": c.chat_id,
            "text": truncate(&text(c, n), 4096),
            "parse_mode": match c.parse_mode { ParseMode::Html => "HTML", ParseMode::MarkdownV2 => "MarkdownV2" },
            "disable_web_page_preview": true,
        });
        let r = host.http(Request::post_json(&url, &body))?;
        classify(&r, "Telegram")?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if v["ok"] != json!(true) {
            return Err(SendFailure::Permanent(format!(
                "Telegram did not accept the message: {}",
                v["description"].as_str().unwrap_or("no description")
            )));
        }
        Ok(Receipt {
            message_id: v["result"]["message_id"].as_i64().map(|i| i.to_string()),
            detail: "sent".into(),
        })
    }
}

plugin_sdk::export_channel!(Telegram, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, Status, sample};

    use super::*;

    #[test]
    fn escaping_and_the_request() {
        assert_eq!(escape_markdown_v2("a_b*c.d!(x)"), r"a\_b\*c\.d\!\(x\)");
        assert_eq!(escape_html("<p>&"), "&lt;p&gt;&amp;");
        let c = Telegram::config(r#"{"bot_token":"123:ABC","chat_id":"-100"}"#).expect("c");
        let host = FakeHost::answering(200, r#"{"ok":true,"result":{"message_id":42}}"#);
        let r = Telegram::send(&c, &sample(Status::Firing), &host).expect("sent");
        assert_eq!(r.message_id.as_deref(), Some("42"));
        assert!(
            host.requests.borrow()[0]
                .url
                .ends_with("/bot123:ABC/sendMessage")
        );
        let body = host.last_json();
        assert_eq!(body["parse_mode"], "HTML");
        assert!(
            body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("<b>[FIRING:2]"))
        );
        let md = Telegram::config(r#"{"bot_token":"1:x","chat_id":"1","parse_mode":"MarkdownV2"}"#)
            .expect("c");
        let t = text(&md, &sample(Status::Firing));
        assert!(t.contains(r"\[FIRING:2\]"), "{t}");
        assert!(t.contains(r"\- firing"), "{t}");
        assert_eq!(
            Telegram::config(r#"{"bot_token":"nope","chat_id":"1"}"#)
                .expect_err("bad")
                .path,
            "/bot_token"
        );
        let limited = FakeHost::answering(429, r#"{"ok":false,"parameters":{"retry_after":5}}"#);
        assert!(matches!(
            Telegram::send(&c, &sample(Status::Firing), &limited),
            Err(SendFailure::RateLimited {
                retry_after_ms: 5000,
                ..
            })
        ));
    }
}
