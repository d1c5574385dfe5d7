//! A client for ClickHouse's HTTP interface: statements with typed parameters, inserts with a
//! data body, and selects streamed back as Arrow record batches.
//!
//! SQL text never carries a user value: values travel as `param_<name>` URL parameters and the
//! SQL names them as `{name:Type}`; the server parses and types them.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::ipc::reader::StreamDecoder;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Why a request to ClickHouse failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChError {
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach ClickHouse: {0}")]
    Transport(String),
    /// No answer within the request timeout.
    #[error("ClickHouse did not answer within {0:?}")]
    Timeout(Duration),
    /// ClickHouse answered with an error.
    #[error("ClickHouse error {code}: {message}")]
    Server {
        status: u16,
        /// ClickHouse's error code (`Code: N`), 0 when the answer had none.
        code: u32,
        message: String,
    },
    /// The answer could not be decoded.
    #[error("cannot decode ClickHouse's answer: {0}")]
    Decode(String),
}

/// ClickHouse error codes worth retrying: overload, timeouts, network trouble, replicas or Keeper
/// briefly unavailable.
const TRANSIENT_CODES: &[u32] = &[
    3, 159, 164, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 999, 1000,
];

impl ChError {
    /// Whether sending the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ChError::Transport(_) | ChError::Timeout(_) => true,
            ChError::Server { status, code, .. } => {
                TRANSIENT_CODES.contains(code) || (*code == 0 && matches!(status, 502..=504))
            }
            ChError::Decode(_) => false,
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:8123` (a path prefix is kept, for proxies).
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// A ClickHouse HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    user: Option<String>,
    password: Option<String>,
}

fn error_from(status: u16, header_code: Option<u32>, body: &str) -> ChError {
    let code = header_code.or_else(|| {
        let rest = body.split("Code: ").nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    });
    let message: String = body.trim().chars().take(2000).collect();
    ChError::Server {
        status,
        code: code.unwrap_or(0),
        message,
    }
}

impl Client {
    /// # Errors
    /// When the HTTP client cannot be built (bad TLS setup).
    pub fn new(config: &ClientConfig) -> Result<Client, ChError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ChError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            url: config.url.trim_end_matches('/').to_string() + "/",
            user: config.user.clone(),
            password: config.password.clone(),
        })
    }

    fn request(&self, query: &[(String, String)], timeout: Duration) -> reqwest::RequestBuilder {
        let mut rb = self.http.post(&self.url).query(query).timeout(timeout);
        if let Some(u) = &self.user {
            rb = rb.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.password {
            rb = rb.header("X-ClickHouse-Key", p);
        }
        rb
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, ChError> {
        let resp = rb.send().await.map_err(|e| transport(&e, timeout))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let header_code = resp
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = resp.text().await.unwrap_or_default();
        Err(error_from(status.as_u16(), header_code, &body))
    }

    /// `GET /ping`: whether the server answers at all.
    ///
    /// # Errors
    /// [`ChError`] when it does not answer `Ok.`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), ChError> {
        let resp = self
            .send(
                self.http.get(format!("{}ping", self.url)).timeout(timeout),
                timeout,
            )
            .await?;
        let body = resp.bytes().await.map_err(|e| transport(&e, timeout))?;
        if body.starts_with(b"Ok.") {
            Ok(())
        } else {
            Err(ChError::Decode(format!(
                "/ping answered {:?}",
                String::from_utf8_lossy(&body)
            )))
        }
    }

    /// Runs one statement (SQL in the body) and returns the whole answer.
    ///
    /// `params` are `(name, value)` for the SQL's `{name:Type}` placeholders; `settings` are
    /// query-level settings.
    ///
    /// # Errors
    /// [`ChError`] from the transport or the server.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[(String, String)],
        settings: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Bytes, ChError> {
        let query = url_params(params, settings);
        let resp = self
            .send(self.request(&query, timeout).body(sql.to_string()), timeout)
            .await?;
        resp.bytes().await.map_err(|e| transport(&e, timeout))
    }

    /// Sends `data` to an `INSERT … FORMAT X` statement.
    ///
    /// # Errors
    /// [`ChError`] from the transport or the server.
    pub async fn insert(
        &self,
        insert_sql: &str,
        settings: &[(&str, String)],
        data: Bytes,
        timeout: Duration,
    ) -> Result<(), ChError> {
        let mut query = url_params(&[], settings);
        query.push(("query".to_string(), insert_sql.to_string()));
        let resp = self
            .send(self.request(&query, timeout).body(data), timeout)
            .await?;
        // Read the (empty) answer so the connection goes back to the pool.
        resp.bytes().await.map_err(|e| transport(&e, timeout))?;
        Ok(())
    }

    /// Runs a SELECT with `FORMAT ArrowStream` and decodes the answer as it arrives.
    ///
    /// # Errors
    /// [`ChError`] when the request fails before any data; later failures come in the stream.
    pub async fn select_arrow(
        &self,
        sql: &str,
        params: &[(String, String)],
        settings: &[(&str, String)],
        timeout: Duration,
    ) -> Result<impl Stream<Item = Result<RecordBatch, ChError>> + Send + use<>, ChError> {
        let mut all: Vec<(&str, String)> = vec![
            ("output_format_arrow_string_as_string", "1".into()),
            (
                "output_format_arrow_low_cardinality_as_dictionary",
                "0".into(),
            ),
            // A reader that stops early (a LIMIT met, a cancelled request) drops the
            // connection; ClickHouse then stops the query instead of finishing it.
            ("cancel_http_readonly_queries_on_client_close", "1".into()),
        ];
        all.extend(settings.iter().cloned());
        let query = url_params(params, &all);
        let sql = format!("{sql}\nFORMAT ArrowStream");
        let resp = self
            .send(self.request(&query, timeout).body(sql), timeout)
            .await?;
        Ok(decode_arrow(resp.bytes_stream(), timeout))
    }
}

fn transport(e: &reqwest::Error, timeout: Duration) -> ChError {
    if e.is_timeout() {
        ChError::Timeout(timeout)
    } else {
        // The source chain says why (connection refused, reset); the top level only says
        // "error sending request".
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        ChError::Transport(msg)
    }
}

/// A query parameter value as ClickHouse parses it: in the escaped (TabSeparated) text form,
/// where a raw tab or newline would end the value and a backslash starts an escape.
fn escape_param(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out
}

fn url_params(params: &[(String, String)], settings: &[(&str, String)]) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (format!("param_{k}"), escape_param(v)))
        .collect();
    q.extend(settings.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
    q
}

/// Decodes an Arrow IPC stream from HTTP body chunks, yielding batches as soon as they are whole.
fn decode_arrow(
    body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    timeout: Duration,
) -> impl Stream<Item = Result<RecordBatch, ChError>> + Send {
    struct St<S> {
        body: S,
        decoder: StreamDecoder,
        pending: Option<Buffer>,
        done: bool,
    }
    let st = St {
        body: Box::pin(body),
        decoder: StreamDecoder::new(),
        pending: None,
        done: false,
    };
    futures::stream::unfold(st, move |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(buf) = st.pending.as_mut() {
                match st.decoder.decode(buf) {
                    Ok(Some(batch)) => return Some((Ok(batch), st)),
                    // The chunk is used up without completing a batch: read more.
                    Ok(None) => st.pending = None,
                    Err(e) => {
                        st.done = true;
                        return Some((Err(ChError::Decode(e.to_string())), st));
                    }
                }
            }
            match st.body.next().await {
                Some(Ok(chunk)) => st.pending = Some(Buffer::from(chunk)),
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(transport(&e, timeout)), st));
                }
                None => {
                    st.done = true;
                    return match st.decoder.finish() {
                        Ok(()) => None,
                        Err(e) => Some((Err(ChError::Decode(e.to_string())), st)),
                    };
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_come_from_the_header_or_the_text() {
        let e = error_from(
            404,
            None,
            "Code: 60. DB::Exception: Unknown table (UNKNOWN_TABLE)",
        );
        assert!(matches!(
            e,
            ChError::Server {
                code: 60,
                status: 404,
                ..
            }
        ));
        assert!(!e.is_transient());
        let e = error_from(500, Some(252), "Too many parts");
        assert!(e.is_transient());
        assert!(error_from(503, None, "proxy: upstream down").is_transient());
        assert!(!error_from(500, None, "something").is_transient());
    }

    #[test]
    fn parameter_values_are_escaped_for_clickhouse() {
        assert_eq!(escape_param("a\tb\nc\\d'e"), "a\\tb\\nc\\\\d'e");
    }
}
