//! What notification channel plugins reach the world through: outgoing HTTP under the
//! [`egress`] policy and email through the server's SMTP relay. Plugin calls run on blocking
//! threads; these bridge into the async clients and never outlive the call's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_runtime::{Capabilities, EmailMessage, HttpError, HttpRequest, HttpResponse};

use crate::Mailer;

/// Recipients one email may have.
const MAX_RECIPIENTS: usize = 20;

pub struct ChannelCapabilities {
    egress: egress::Egress,
    mailer: Option<Arc<dyn Mailer>>,
    runtime: tokio::runtime::Handle,
}

impl ChannelCapabilities {
    /// Must be called inside the server's tokio runtime (it keeps a handle to it).
    pub fn new(policy: egress::Policy, mailer: Option<Arc<dyn Mailer>>) -> ChannelCapabilities {
        ChannelCapabilities {
            egress: egress::Egress::new(policy),
            mailer,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl Capabilities for ChannelCapabilities {
    fn http(
        &self,
        plugin: &str,
        req: HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, HttpError> {
        let request = egress::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        let out = self
            .runtime
            .block_on(self.egress.send(request, Some(deadline)));
        match out {
            Ok(r) => Ok(HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => {
                tracing::info!(%plugin, error = %e, "a plugin's HTTP request failed");
                Err(match e {
                    egress::EgressError::Blocked(m) => HttpError::Blocked(m),
                    egress::EgressError::Timeout => HttpError::Timeout,
                    egress::EgressError::Connection(m) => HttpError::Connection(m),
                    egress::EgressError::InvalidRequest(m) => HttpError::InvalidRequest(m),
                })
            }
        }
    }

    fn email(&self, plugin: &str, msg: EmailMessage, deadline: Instant) -> Result<(), String> {
        let Some(mailer) = &self.mailer else {
            return Err("this server has no SMTP relay configured (smtp_url)".into());
        };
        if msg.to.is_empty() || msg.to.len() > MAX_RECIPIENTS {
            return Err(format!("an email needs 1 to {MAX_RECIPIENTS} recipients"));
        }
        let html = msg
            .html
            .unwrap_or_else(|| format!("<pre>{}</pre>", crate::mail::html_escape(&msg.text)));
        let left = deadline.saturating_duration_since(Instant::now());
        let send = async {
            for to in &msg.to {
                mailer.send(to, &msg.subject, &msg.text, &html).await?;
            }
            Ok::<(), String>(())
        };
        let out = self
            .runtime
            .block_on(async { tokio::time::timeout(left, send).await })
            .map_err(|_| "the SMTP relay did not answer in time".to_string())
            .and_then(|r| r);
        if let Err(e) = &out {
            tracing::info!(%plugin, error = %e, "a plugin's email failed");
        }
        out
    }
}
