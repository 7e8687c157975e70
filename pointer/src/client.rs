//! JSON-RPC client of the Unicity aggregator (reqwest), with per-request timeouts
//! and jittered exponential retries for transient failures.
//!
//! Retried: connection errors and timeouts, HTTP 5xx, HTTP 429 and 503 (waiting
//! `Retry-After` seconds when given, capped), JSON-RPC −32006 (concurrency limit).
//! Not retried: other 4xx, JSON-RPC errors, malformed answers. Backoff before retry
//! n (0-based) is `min(max_backoff, base · 2^n) × uniform[0.5, 1.5)`.
//!
//! The client decodes but never trusts: proofs come back as raw bytes for
//! [`crate::proof`] to verify. Every HTTP request is counted ([`AggregatorClient::rpc_count`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::RpcError;
use crate::wire::{self, CertificationRequest, CertificationStatus, RpcResponse, codes};

/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    submit_timeout: Duration,
    probe_timeout: Duration,
    attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    api_key: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            submit_timeout: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            attempts: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            api_key: None,
        }
    }
}

impl ClientConfig {
    /// Timeout of one submit request (default 30 s).
    pub fn with_submit_timeout(mut self, d: Duration) -> Self {
        self.submit_timeout = d;
        self
    }
    /// Timeout of one proof / height request (default 10 s).
    pub fn with_probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = d;
        self
    }
    /// Attempts per call, first included (default 5).
    pub fn with_attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }
    /// Base and cap of the backoff (default 250 ms, 4 s).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max;
        self
    }
    /// `X-API-Key` to send.
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key;
        self
    }

    /// Jittered delay before retry `n`.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        exp.mul_f64(0.5 + rand::random::<f64>())
    }
}

/// A JSON-RPC client bound to one aggregator URL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AggregatorClient {
    http: reqwest::Client,
    url: String,
    config: ClientConfig,
    count: Arc<AtomicU64>,
}

enum Attempt {
    Done(Value),
    Retry(RpcError, Option<Duration>),
    Fail(RpcError),
}

impl AggregatorClient {
    /// A client for `url`.
    ///
    /// # Errors
    /// [`RpcError::BadUrl`] if `url` is not an absolute `http://` or `https://` URL;
    /// [`RpcError::Network`] if the HTTP client cannot be built.
    pub fn new(url: &str, config: ClientConfig) -> Result<Self, RpcError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| RpcError::BadUrl(format!("{e} (expected e.g. http://127.0.0.1:3000/)")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RpcError::BadUrl(format!(
                "scheme {:?} is not http or https",
                parsed.scheme()
            )));
        }
        // reqwest is built without a default TLS provider; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10));
        if url_is_loopback(url) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| RpcError::Network(format!("cannot build http client: {e}")))?;
        Ok(Self {
            http,
            url: url.to_owned(),
            config,
            count: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The aggregator URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// HTTP requests sent so far (retries included).
    pub fn rpc_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Submits a certification request; returns the status string parsed.
    pub async fn submit(
        &self,
        req: &CertificationRequest,
    ) -> Result<CertificationStatus, RpcError> {
        let params = Value::String(hex::encode(req.encode()));
        let v = self
            .call(
                wire::METHOD_SUBMIT,
                params,
                Some(&hex::encode(req.state_id)),
                self.config.submit_timeout,
            )
            .await?;
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| RpcError::Protocol("result has no status".into()))?;
        Ok(CertificationStatus::parse(status))
    }

    /// Fetches the raw CBOR of an inclusion proof (not verified).
    pub async fn inclusion_proof(&self, state_id: &[u8; 32]) -> Result<Vec<u8>, RpcError> {
        let v = self
            .call(
                wire::METHOD_PROOF,
                json!({"stateId": hex::encode(state_id)}),
                None,
                self.config.probe_timeout,
            )
            .await?;
        let s = v
            .as_str()
            .ok_or_else(|| RpcError::Protocol("proof result is not a string".into()))?;
        wire::decode_hex_param(s).map_err(|e| RpcError::Protocol(e.to_string()))
    }

    /// The latest block number.
    pub async fn block_height(&self) -> Result<u64, RpcError> {
        let v = self
            .call(
                wire::METHOD_BLOCK_HEIGHT,
                json!({}),
                None,
                self.config.probe_timeout,
            )
            .await?;
        match v.get("blockNumber") {
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| RpcError::Protocol("bad blockNumber".into())),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| RpcError::Protocol("bad blockNumber".into())),
            _ => Err(RpcError::Protocol("no blockNumber".into())),
        }
    }

    async fn call(
        &self,
        method: &str,
        params: Value,
        state_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let mut last = RpcError::Network("no attempt made".into());
        let mut waited = Duration::ZERO;
        for n in 0..self.config.attempts {
            match self.attempt(method, &params, state_id, timeout).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, retry_after) => {
                    last = e;
                    if n.saturating_add(1) < self.config.attempts {
                        let d = retry_after
                            .map(|d| d.min(MAX_RETRY_AFTER))
                            .unwrap_or_else(|| self.config.backoff(n));
                        waited = waited.saturating_add(d);
                        tracing::debug!(method, attempt = n, delay_ms = d.as_millis() as u64, error = %last, "retrying");
                        tokio::time::sleep(d).await;
                    }
                }
            }
        }
        tracing::debug!(method, waited_ms = waited.as_millis() as u64, "giving up");
        Err(last)
    }

    async fn attempt(
        &self,
        method: &str,
        params: &Value,
        state_id: Option<&str>,
        timeout: Duration,
    ) -> Attempt {
        let id = format!("{:032x}", rand::random::<u128>());
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let mut rb = self.http.post(&self.url).timeout(timeout).json(&body);
        if let Some(sid) = state_id {
            rb = rb.header("X-State-ID", sid);
        }
        if let Some(k) = &self.config.api_key {
            rb = rb.header("X-API-Key", k);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(RpcError::Network(describe(&e)), None),
        };
        let status = resp.status();
        if status.as_u16() == 429 || status.as_u16() == 503 {
            let ra = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Attempt::Retry(RpcError::Busy(status.as_u16()), ra);
        }
        if status.is_server_error() {
            return Attempt::Retry(RpcError::Server(status.as_u16()), None);
        }
        if !status.is_success() {
            return Attempt::Fail(RpcError::Rejected(status.as_u16()));
        }
        let bytes = match read_bounded(resp).await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(e, None),
        };
        let parsed: RpcResponse = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                return Attempt::Fail(RpcError::Protocol(format!("bad json-rpc response: {e}")));
            }
        };
        if parsed.jsonrpc != "2.0" {
            return Attempt::Fail(RpcError::Protocol("not json-rpc 2.0".into()));
        }
        match (parsed.result, parsed.error) {
            (_, Some(err)) if err.code == codes::CONCURRENCY_LIMIT => {
                Attempt::Retry(RpcError::Busy(200), Some(Duration::from_secs(1)))
            }
            (None, Some(err)) => Attempt::Fail(RpcError::Rpc {
                code: err.code,
                message: err.message,
            }),
            (Some(result), None) => {
                if parsed.id != Value::String(id) {
                    return Attempt::Fail(RpcError::Protocol("response id does not match".into()));
                }
                Attempt::Done(result)
            }
            _ => Attempt::Fail(RpcError::Protocol(
                "response must carry exactly one of result or error".into(),
            )),
        }
    }
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| RpcError::Network(describe(&e)))?
    {
        if out.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
            return Err(RpcError::Protocol("response too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.to_string()
    }
}

fn url_is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
}
