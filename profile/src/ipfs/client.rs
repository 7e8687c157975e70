//! The verified gateway client: pins CARs to and fetches CARs from an ordered list
//! of Kubo-RPC / trustless gateways, trusting none of them.
//!
//! **Fetch** (`fetch_car`): the local [`BlockCache`] first (a complete DAG there
//! needs no network); then each gateway in order, each through up to three
//! endpoints: the trustless `GET /ipfs/{cid}?format=car`, then Kubo's
//! `POST /api/v0/dag/export?arg={cid}`, then a walk with `POST /api/v0/block/get`
//! per block. An endpoint that answers 404, 405 or 501 passes to the next endpoint of
//! the same gateway; a gateway whose bytes fail verification (any block, the root,
//! completeness) or that exceeds a size cap is skipped at once, without retries; a
//! transient failure (network, 5xx, 429, time-out) is retried with jittered
//! exponential backoff up to the configured attempts; on the trustless endpoint a
//! retry after a body broke off asks only for the rest (`Range: bytes=N-`) and keeps
//! verifying across the seam, or starts over if the gateway ignores the Range. Every
//! verified block is written back to the cache. The result lists every failure met on the way, so callers can
//! report a lying gateway even when another one delivered.
//!
//! **Probe** (`has`): `HEAD /ipfs/{cid}` on each gateway in order with its own
//! short timeout; the first 2xx answers, 404 moves on. Nothing is verified.
//!
//! **Pin** (`pin_car`): the CAR is verified and written to the cache first; then the
//! first gateway that accepts it wins (failover, not replication): Kubo's
//! `POST /api/v0/dag/import?pin-roots=true` (multipart field `file`), falling back to
//! `POST /api/v0/block/put` per block (leaves first, the root last with `pin=true`);
//! the CID each gateway echoes back must be ours.
//!
//! Time: headers must arrive within the first-byte timeout, a body may not pause
//! longer than the stall timeout, and the whole operation has one budget across all
//! gateways; running out of it yields [`FetchError::Budget`]/[`PinError::Budget`].
//! Sizes: Content-Length over the cap is refused before reading; bodies are counted
//! while streaming and dropped as soon as they pass the cap. Any `Content-Encoding`
//! is refused ([`FailureCause::ContentEncoding`]: the bytes must be hashed as sent).
//!
//! Cancel safety: every method may be dropped at an await point; the cache is only
//! written in whole transactions.
#![expect(
    clippy::result_large_err,
    reason = "errors carry the CIDs they are about (96 B each); the error path is cold"
)]

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, RANGE};
use reqwest::{Response, StatusCode};
use tokio::time::Instant;

use super::block::{self, VerifiedBlock};
use super::cache::BlockCache;
use super::car::{Car, CarStream};
use super::config::{GatewayConfig, GatewayUrl};
use super::error::{
    CacheError, CarError, ConfigError, FailureCause, FetchError, GatewayFailure, PinError,
};
use super::{multipart, stream};

/// Media type of CARv1 responses (trustless gateway spec).
pub const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";
/// Media type of single raw blocks (trustless gateway spec).
pub const RAW_MEDIA_TYPE: &str = "application/vnd.ipld.raw";
/// Largest JSON or error body read from a gateway (bytes).
pub const MAX_JSON_BYTES: u64 = 1024 * 1024;

/// Where fetched data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Entirely from the local block cache.
    Local,
    /// From a gateway.
    Gateway {
        /// The gateway's base URL.
        url: String,
        /// The endpoint that delivered.
        endpoint: &'static str,
    },
}

/// A verified fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The verified DAG.
    pub car: Car,
    /// Who delivered it.
    pub source: Source,
    /// The gateways (and endpoints) that failed before, in order; a
    /// [`FailureCause::Tampered`] here names a gateway that served wrong bytes.
    pub failures: Vec<GatewayFailure>,
}

/// An accepted pin.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The pinned root.
    pub root: Cid,
    /// The gateway that accepted it.
    pub gateway: String,
    /// The endpoint used.
    pub endpoint: &'static str,
    /// The gateways (and endpoints) that failed before, in order.
    pub failures: Vec<GatewayFailure>,
}

/// The answer of an availability probe ([`IpfsClient::has`]).
#[derive(Debug, Clone)]
pub struct Probe {
    /// The first gateway that has the CID, and the `Content-Length` it reported.
    pub found: Option<Found>,
    /// The gateways that answered 404, in order.
    pub absent: Vec<String>,
    /// The gateways that could not be asked (network, time-out, other statuses).
    pub failures: Vec<GatewayFailure>,
}

/// A gateway that has a CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The gateway's base URL.
    pub gateway: String,
    /// The size it reported, if any (the root block's, for a plain `HEAD`).
    pub content_length: Option<u64>,
}

/// The IPFS gateway client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IpfsClient {
    http: reqwest::Client,
    config: Arc<GatewayConfig>,
    cache: Option<Arc<BlockCache>>,
}

/// What one endpoint attempt produced.
type Attempt<T> = Result<T, FailureCause>;

impl IpfsClient {
    /// A client over `config` (checked with [`GatewayConfig::build`]), without a cache.
    ///
    /// # Errors
    /// [`ConfigError`] for bad settings or if the HTTP client cannot be built.
    pub fn new(config: GatewayConfig) -> Result<Self, ConfigError> {
        let config = config.build()?;
        // reqwest is built without a default TLS provider; ring is ours. Idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.connect_timeout())
            .user_agent(concat!("sphere-profile/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        Ok(Self {
            http,
            config: Arc::new(config),
            cache: None,
        })
    }

    /// Uses `cache` as the local block store: read first, verified blocks written back.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<BlockCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    // ---------------------------------------------------------------- fetch

    /// Fetches and verifies the DAG under `root` (see the module docs).
    ///
    /// # Errors
    /// [`FetchError::AllFailed`] or [`FetchError::Budget`] with one cause per gateway
    /// endpoint tried; [`FetchError::Unsupported`] for a CID kind this client never
    /// accepts; [`FetchError::NoGateways`]; cache errors.
    pub async fn fetch_car(&self, root: &Cid) -> Result<Fetched, FetchError> {
        block::check_cid(root)?;
        if let Some(car) = self.local_car(root)? {
            return Ok(Fetched {
                car,
                source: Source::Local,
                failures: Vec::new(),
            });
        }
        if self.config.gateways().is_empty() {
            return Err(FetchError::NoGateways(*root));
        }
        let deadline = Instant::now() + self.config.total_budget();
        let mut failures = Vec::new();
        for gw in self.config.gateways() {
            for endpoint in [Endpoint::Trustless, Endpoint::DagExport, Endpoint::BlockGet] {
                let (result, attempts) = match endpoint {
                    Endpoint::BlockGet => (self.walk_blocks(gw, root, deadline).await, 1),
                    _ => self.fetch_resumable(gw, endpoint, root, deadline).await,
                };
                match result {
                    Ok(car) => {
                        self.store(car.blocks())?;
                        return Ok(Fetched {
                            car,
                            source: Source::Gateway {
                                url: gw.to_string(),
                                endpoint: endpoint.name(),
                            },
                            failures,
                        });
                    }
                    Err(cause) => {
                        match record_failure(&mut failures, gw, endpoint, cause, attempts) {
                            AfterFailure::OutOfBudget => {
                                return Err(FetchError::Budget {
                                    cid: *root,
                                    budget: self.config.total_budget(),
                                    failures,
                                });
                            }
                            AfterFailure::NextGateway => break,
                            AfterFailure::NextEndpoint => {}
                        }
                    }
                }
            }
        }
        Err(FetchError::AllFailed {
            cid: *root,
            failures,
        })
    }

    /// The DAG under `root` if the cache holds all of it.
    fn local_car(&self, root: &Cid) -> Result<Option<Car>, FetchError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let limits = self.config.limits();
        // A damaged row counts as a miss: the network copy will repair it.
        let get = |cid: &Cid| match cache.get(cid) {
            Err(CacheError::Corrupt(e)) => {
                tracing::warn!(error = %e, "damaged block in the local cache; refetching");
                Ok(None)
            }
            other => other,
        };
        match super::car::walk(root, limits, get)? {
            Ok(blocks) => Ok(Car::from_blocks(*root, blocks, limits).ok()),
            Err(_) => Ok(None),
        }
    }

    fn store(&self, blocks: &[VerifiedBlock]) -> Result<(), FetchError> {
        if let Some(cache) = &self.cache {
            cache.put_many(blocks)?;
        }
        Ok(())
    }

    /// A whole-CAR endpoint with retries. On the trustless endpoint a retry after a
    /// body broke off asks for the rest (`Range: bytes=N-`) and verifies across the
    /// seam; a gateway that ignores the Range (answers 200) is read from the start.
    async fn fetch_resumable(
        &self,
        gw: &GatewayUrl,
        endpoint: Endpoint,
        root: &Cid,
        deadline: Instant,
    ) -> (Attempt<Car>, u32) {
        let limits = *self.config.limits();
        let mut car = CarStream::new(*root, limits);
        let mut n: u32 = 0;
        loop {
            n = n.saturating_add(1);
            let attempt = self.car_attempt(gw, endpoint, root, &mut car);
            let result = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(r) => r,
                Err(_) => Err(FailureCause::Budget),
            };
            match result {
                Ok(()) => {
                    let done = std::mem::replace(&mut car, CarStream::new(*root, limits));
                    return (done.finish().map_err(stream::car_cause), n);
                }
                Err(cause) if cause.is_transient() && n < self.config.max_attempts() => {
                    let delay = backoff(self.config.backoff_base(), self.config.backoff_max(), n);
                    if Instant::now() + delay >= deadline {
                        return (Err(FailureCause::Budget), n);
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(cause) => return (Err(cause), n),
            }
        }
    }

    /// One request to a whole-CAR endpoint, feeding `car` (resuming it on the
    /// trustless endpoint when it already holds part of the CAR).
    async fn car_attempt(
        &self,
        gw: &GatewayUrl,
        endpoint: Endpoint,
        root: &Cid,
        car: &mut CarStream,
    ) -> Attempt<()> {
        let limits = self.config.limits();
        let offset = car.received();
        let resume = endpoint == Endpoint::Trustless && offset > 0;
        let req = match endpoint {
            Endpoint::Trustless => {
                let r = self
                    .http
                    .get(gw.url(
                        &format!("ipfs/{root}"),
                        &[("format", "car"), ("dag-scope", "all")],
                    ))
                    .header(ACCEPT, CAR_MEDIA_TYPE);
                if resume {
                    r.header(RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            }
            _ => self
                .http
                .post(gw.url("api/v0/dag/export", &[("arg", &root.to_string())])),
        };
        let resp = match self.send(req).await {
            // Nothing after byte N: the break came after the last byte. Whether the
            // CAR is really complete is for `CarStream::finish` to say.
            Err(FailureCause::Status { status: 416, .. }) if resume => return Ok(()),
            other => other?,
        };
        if resume && resp.status() == StatusCode::PARTIAL_CONTENT {
            stream::range_start(&resp, offset)?;
            check_headers(&resp, limits.max_bytes().saturating_sub(offset))?;
            tracing::debug!(gateway = %gw, offset, "resuming a CAR download");
        } else {
            // A full body (the server ignored the Range, or this is the first try).
            if offset > 0 {
                *car = CarStream::new(*root, *limits);
            }
            check_headers(&resp, limits.max_bytes())?;
        }
        // Blocks are verified as their frames arrive, overlapping hashing and transfer.
        stream::read_into(resp, car, self.config.stall_timeout()).await
    }

    /// The block-by-block fallback: a depth-first walk with `block/get`, each block
    /// retried on its own, blocks already cached not asked for.
    async fn walk_blocks(&self, gw: &GatewayUrl, root: &Cid, deadline: Instant) -> Attempt<Car> {
        let limits = *self.config.limits();
        let mut have: std::collections::HashMap<Cid, VerifiedBlock> = Default::default();
        let mut stack = vec![(*root, 0usize)];
        let mut total: u64 = 0;
        while let Some((cid, depth)) = stack.pop() {
            if have.contains_key(&cid) {
                continue;
            }
            if depth > limits.max_depth() {
                return Err(FailureCause::Tampered(CarError::TooDeep {
                    limit: limits.max_depth(),
                }));
            }
            if have.len() >= limits.max_blocks() {
                return Err(FailureCause::Tampered(CarError::TooManyBlocks {
                    limit: limits.max_blocks(),
                }));
            }
            let local = match &self.cache {
                Some(c) => c.get(&cid).ok().flatten(),
                None => None,
            };
            let block = match local {
                Some(b) => b,
                None => {
                    self.with_retries(deadline, || self.get_block(gw, &cid))
                        .await
                        .0?
                }
            };
            total = total.saturating_add(block.data().len() as u64);
            if total > limits.max_bytes() {
                return Err(FailureCause::TooLarge {
                    limit: limits.max_bytes(),
                });
            }
            let links = block
                .links()
                .map_err(|e| FailureCause::Tampered(CarError::Block(e)))?;
            for link in links.into_iter().rev() {
                if !have.contains_key(&link) {
                    stack.push((link, depth.saturating_add(1)));
                }
            }
            have.insert(cid, block);
        }
        Car::from_blocks(*root, have.into_values(), &limits).map_err(FailureCause::Tampered)
    }

    /// One `block/get` attempt, verified.
    async fn get_block(&self, gw: &GatewayUrl, cid: &Cid) -> Attempt<VerifiedBlock> {
        let max = self.config.limits().max_block_bytes();
        let req = self
            .http
            .post(gw.url("api/v0/block/get", &[("arg", &cid.to_string())]));
        let resp = self.send(req).await?;
        let data = self.read_body(resp, max as u64).await?;
        VerifiedBlock::with_limit(*cid, data, max)
            .map_err(|e| FailureCause::Tampered(CarError::Block(e)))
    }

    // ---------------------------------------------------------------- probe

    /// Asks the gateways in order whether they have `cid`: `HEAD /ipfs/{cid}`, each
    /// answer awaited at most the probe timeout, transient failures retried with
    /// backoff. Stops at the first gateway that answers 2xx; a 404 means "not
    /// there" and moves on. The local cache is not consulted: this is about what the
    /// network can serve. Only the status is trusted, nothing is verified.
    ///
    /// # Errors
    /// [`FetchError::Unsupported`] for a CID kind this client never accepts;
    /// [`FetchError::NoGateways`]; [`FetchError::AllFailed`] /
    /// [`FetchError::Budget`] when no gateway gave an answer (neither 2xx nor 404).
    pub async fn has(&self, cid: &Cid) -> Result<Probe, FetchError> {
        block::check_cid(cid)?;
        if self.config.gateways().is_empty() {
            return Err(FetchError::NoGateways(*cid));
        }
        let deadline = Instant::now() + self.config.total_budget();
        let mut probe = Probe {
            found: None,
            absent: Vec::new(),
            failures: Vec::new(),
        };
        for gw in self.config.gateways() {
            let (result, attempts) = self.with_retries(deadline, || self.head(gw, cid)).await;
            match result {
                Ok(content_length) => {
                    probe.found = Some(Found {
                        gateway: gw.to_string(),
                        content_length,
                    });
                    return Ok(probe);
                }
                Err(FailureCause::Status { status: 404, .. }) => probe.absent.push(gw.to_string()),
                Err(cause) => {
                    let budget = cause == FailureCause::Budget;
                    probe.failures.push(GatewayFailure {
                        gateway: gw.to_string(),
                        endpoint: Endpoint::Head.name(),
                        cause,
                        attempts,
                    });
                    if budget && probe.absent.is_empty() {
                        return Err(FetchError::Budget {
                            cid: *cid,
                            budget: self.config.total_budget(),
                            failures: probe.failures,
                        });
                    }
                }
            }
        }
        if probe.absent.is_empty() {
            return Err(FetchError::AllFailed {
                cid: *cid,
                failures: probe.failures,
            });
        }
        Ok(probe)
    }

    /// One `HEAD /ipfs/{cid}`: the reported length on 2xx.
    async fn head(&self, gw: &GatewayUrl, cid: &Cid) -> Attempt<Option<u64>> {
        let wait = self.config.probe_timeout();
        let req = self.http.head(gw.url(&format!("ipfs/{cid}"), &[]));
        let resp = match tokio::time::timeout(wait, req.send()).await {
            Err(_) => return Err(FailureCause::FirstByteTimeout(wait)),
            Ok(Err(e)) => return Err(FailureCause::Network(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(FailureCause::Status {
                status: status.as_u16(),
                message: status.canonical_reason().unwrap_or_default().to_owned(),
            });
        }
        Ok(resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    // ---------------------------------------------------------------- pin

    /// Verifies CAR bytes, then pins them (see [`IpfsClient::pin_car`]).
    ///
    /// # Errors
    /// [`PinError::InvalidCar`] before anything is sent, or what `pin_car` returns.
    pub async fn pin_car_bytes(&self, bytes: &[u8]) -> Result<Pinned, PinError> {
        let car = Car::decode(bytes, self.config.limits())?;
        self.pin_car(&car).await
    }

    /// Writes the CAR's blocks to the cache, then pins it on the first gateway that
    /// accepts it (see the module docs).
    ///
    /// # Errors
    /// [`PinError::AllFailed`] / [`PinError::Budget`] with one cause per gateway
    /// endpoint tried; [`PinError::NoGateways`]; cache errors.
    pub async fn pin_car(&self, car: &Car) -> Result<Pinned, PinError> {
        if let Some(cache) = &self.cache {
            cache.put_many(car.blocks())?;
        }
        if self.config.gateways().is_empty() {
            return Err(PinError::NoGateways);
        }
        let deadline = Instant::now() + self.config.total_budget();
        // The request body is built once, the CAR encoded straight into it; retries
        // and the next gateways share it without copying.
        let boundary = multipart::boundary();
        let body = bytes::Bytes::from(multipart::encode_file_with(
            &boundary,
            "file",
            "bundle.car",
            usize::try_from(car.data_bytes()).unwrap_or(0),
            |out| car.encode_into(out),
        ));
        let mut failures = Vec::new();
        for gw in self.config.gateways() {
            for endpoint in [Endpoint::DagImport, Endpoint::BlockPut] {
                let (result, attempts) = match endpoint {
                    Endpoint::DagImport => {
                        self.with_retries(deadline, || {
                            self.dag_import(gw, car.root(), &boundary, body.clone())
                        })
                        .await
                    }
                    _ => (self.put_blocks(gw, car, deadline).await, 1),
                };
                match result {
                    Ok(()) => {
                        return Ok(Pinned {
                            root: *car.root(),
                            gateway: gw.to_string(),
                            endpoint: endpoint.name(),
                            failures,
                        });
                    }
                    Err(cause) => {
                        match record_failure(&mut failures, gw, endpoint, cause, attempts) {
                            AfterFailure::OutOfBudget => {
                                return Err(PinError::Budget {
                                    cid: *car.root(),
                                    budget: self.config.total_budget(),
                                    failures,
                                });
                            }
                            AfterFailure::NextGateway => break,
                            AfterFailure::NextEndpoint => {}
                        }
                    }
                }
            }
        }
        Err(PinError::AllFailed {
            cid: *car.root(),
            failures,
        })
    }

    async fn dag_import(
        &self,
        gw: &GatewayUrl,
        root: &Cid,
        boundary: &str,
        body: bytes::Bytes,
    ) -> Attempt<()> {
        let req = self
            .http
            .post(gw.url("api/v0/dag/import", &[("pin-roots", "true")]))
            .header(CONTENT_TYPE, multipart::content_type(boundary))
            .body(body);
        let resp = self.send(req).await?;
        let body = self.read_body(resp, MAX_JSON_BYTES).await?;
        let want = root.to_string();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                FailureCause::Protocol(format!("dag/import reply is not JSON: {e}"))
            })?;
            let Some(r) = v.get("Root") else { continue };
            let cid = r
                .pointer("/Cid/~1")
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            if cid != want {
                continue;
            }
            let err = r
                .get("PinErrorMsg")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            if !err.is_empty() {
                return Err(FailureCause::Protocol(format!(
                    "gateway could not pin: {err}"
                )));
            }
            return Ok(());
        }
        Err(FailureCause::Protocol(format!(
            "dag/import reply does not name root {want}"
        )))
    }

    /// The per-block fallback: leaves first, the root last with `pin=true`.
    async fn put_blocks(&self, gw: &GatewayUrl, car: &Car, deadline: Instant) -> Attempt<()> {
        let last = car.blocks().len().saturating_sub(1);
        for (i, b) in car.blocks().iter().enumerate().rev() {
            let pin = i == 0 || last == 0;
            self.with_retries(deadline, || self.put_block(gw, b, pin))
                .await
                .0?;
        }
        Ok(())
    }

    async fn put_block(&self, gw: &GatewayUrl, b: &VerifiedBlock, pin: bool) -> Attempt<()> {
        let codec = if b.cid().codec() == block::DAG_CBOR {
            "dag-cbor"
        } else {
            "raw"
        };
        let boundary = multipart::boundary();
        let req = self
            .http
            .post(gw.url(
                "api/v0/block/put",
                &[
                    ("cid-codec", codec),
                    ("mhtype", "sha2-256"),
                    ("pin", if pin { "true" } else { "false" }),
                ],
            ))
            .header(CONTENT_TYPE, multipart::content_type(&boundary))
            .body(multipart::encode_file(&boundary, "file", "block", b.data()));
        let resp = self.send(req).await?;
        let body = self.read_body(resp, MAX_JSON_BYTES).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| FailureCause::Protocol(format!("block/put reply is not JSON: {e}")))?;
        let key = v.get("Key").and_then(|k| k.as_str()).unwrap_or_default();
        let got: Cid = key
            .parse()
            .map_err(|_| FailureCause::Protocol(format!("block/put returned a bad CID {key:?}")))?;
        if got != *b.cid() {
            return Err(FailureCause::Protocol(format!(
                "block/put stored {got}, expected {}",
                b.cid()
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- transport

    /// Runs `attempt` until it succeeds, fails for good, or the attempts or the
    /// budget run out; sleeps a jittered exponential backoff between attempts.
    /// Returns the last outcome and how many attempts were made.
    async fn with_retries<T, F, Fut>(&self, deadline: Instant, mut attempt: F) -> (Attempt<T>, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut n: u32 = 0;
        loop {
            n = n.saturating_add(1);
            let result = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(FailureCause::Budget),
            };
            match result {
                Err(cause) if cause.is_transient() && n < self.config.max_attempts() => {
                    let delay = backoff(self.config.backoff_base(), self.config.backoff_max(), n);
                    if Instant::now() + delay >= deadline {
                        return (Err(FailureCause::Budget), n);
                    }
                    tokio::time::sleep(delay).await;
                }
                other => return (other, n),
            }
        }
    }

    /// Sends `req`, waiting at most the first-byte timeout for the headers; non-2xx
    /// statuses become [`FailureCause::Status`] with the start of the body.
    async fn send(&self, req: reqwest::RequestBuilder) -> Attempt<Response> {
        let wait = self.config.first_byte_timeout();
        let resp = match tokio::time::timeout(wait, req.send()).await {
            Err(_) => return Err(FailureCause::FirstByteTimeout(wait)),
            Ok(Err(e)) => return Err(FailureCause::Network(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = self.read_prefix(resp, 512).await;
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("Message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(FailureCause::Status {
            status: status.as_u16(),
            message,
        })
    }

    /// The first `n` bytes of an error body, best effort (for the failure message).
    async fn read_prefix(&self, mut resp: Response, n: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        while buf.len() < n {
            match tokio::time::timeout(self.config.stall_timeout(), resp.chunk()).await {
                Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
                _ => break,
            }
        }
        buf.truncate(n);
        buf
    }

    /// Reads a body of at most `limit` bytes, with the stall timeout between chunks.
    /// Oversize bodies are dropped as soon as they pass `limit`.
    async fn read_body(&self, mut resp: Response, limit: u64) -> Attempt<Vec<u8>> {
        check_headers(&resp, limit)?;
        let cap = resp.content_length().unwrap_or(0).min(limit);
        let mut buf = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
        let stall = self.config.stall_timeout();
        loop {
            match tokio::time::timeout(stall, resp.chunk()).await {
                Err(_) => return Err(FailureCause::Stalled(stall)),
                Ok(Err(e)) => return Err(FailureCause::Network(error_chain(&e))),
                Ok(Ok(None)) => return Ok(buf),
                Ok(Ok(Some(chunk))) => {
                    if (buf.len() as u64).saturating_add(chunk.len() as u64) > limit {
                        return Err(FailureCause::TooLarge { limit });
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
        }
    }
}

/// Refuses a response with a content encoding (bytes must be hashed as sent) or a
/// Content-Length over `limit` (before reading any of the body).
fn check_headers(resp: &Response, limit: u64) -> Attempt<()> {
    if let Some(enc) = resp.headers().get(CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(FailureCause::ContentEncoding(
            String::from_utf8_lossy(enc.as_bytes())
                .chars()
                .take(64)
                .collect(),
        ));
    }
    if let Some(len) = resp.content_length()
        && len > limit
    {
        return Err(FailureCause::TooLarge { limit });
    }
    Ok(())
}

/// The endpoints the client uses, named as in failure reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Trustless,
    DagExport,
    BlockGet,
    DagImport,
    BlockPut,
    Head,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Trustless => "GET /ipfs/{cid}?format=car",
            Self::DagExport => "dag/export",
            Self::BlockGet => "block/get",
            Self::DagImport => "dag/import",
            Self::BlockPut => "block/put",
            Self::Head => "HEAD /ipfs/{cid}",
        }
    }
}

/// What a fetch or pin does after one endpoint of a gateway failed.
enum AfterFailure {
    /// The total budget is spent: give up with every failure so far.
    OutOfBudget,
    /// The gateway does not offer this endpoint: try its next one.
    NextEndpoint,
    /// The gateway failed: try the next gateway.
    NextGateway,
}

/// Records a failed endpoint in the report and says what to try next.
fn record_failure(
    failures: &mut Vec<GatewayFailure>,
    gw: &GatewayUrl,
    endpoint: Endpoint,
    cause: FailureCause,
    attempts: u32,
) -> AfterFailure {
    let next = if cause == FailureCause::Budget {
        AfterFailure::OutOfBudget
    } else if is_unsupported(&cause) {
        AfterFailure::NextEndpoint
    } else {
        AfterFailure::NextGateway
    };
    failures.push(GatewayFailure {
        gateway: gw.to_string(),
        endpoint: endpoint.name(),
        cause,
        attempts,
    });
    next
}

/// Statuses meaning "this endpoint is not here": try the gateway's next endpoint.
fn is_unsupported(cause: &FailureCause) -> bool {
    matches!(
        cause,
        FailureCause::Status { status, .. }
            if *status == StatusCode::NOT_FOUND.as_u16()
                || *status == StatusCode::METHOD_NOT_ALLOWED.as_u16()
                || *status == StatusCode::NOT_IMPLEMENTED.as_u16()
                || *status == StatusCode::NOT_ACCEPTABLE.as_u16()
    )
}

/// Delay before retry `n` (1-based): `min(max, base · 2^(n-1)) × uniform[0.5, 1.5)`.
fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    use rand::RngExt;
    let exp = base.saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    capped.mul_f64(rand::rng().random_range(0.5..1.5))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for n in 1..12 {
            let d = backoff(base, max, n);
            assert!(d <= max.mul_f64(1.5), "{n}: {d:?}");
            let nominal = base.saturating_mul(1 << (n - 1).min(20)).min(max);
            assert!(d >= nominal.mul_f64(0.5), "{n}: {d:?}");
        }
    }

    #[test]
    fn transient_and_unsupported_are_told_apart() {
        let s = |status| FailureCause::Status {
            status,
            message: String::new(),
        };
        assert!(s(503).is_transient() && s(429).is_transient());
        assert!(!s(404).is_transient() && is_unsupported(&s(404)) && is_unsupported(&s(405)));
        assert!(!FailureCause::Tampered(CarError::RootCount(0)).is_transient());
    }

    #[cfg(feature = "server")]
    #[tokio::test]
    async fn a_damaged_cache_row_is_refetched_and_repaired() {
        use crate::ipfs::car::CarLimits;
        use crate::ipfs::server::RunningGateway;

        let gw_store = Arc::new(BlockCache::in_memory().unwrap());
        let gw = RunningGateway::start(
            "127.0.0.1:0".parse().unwrap(),
            gw_store,
            CarLimits::default(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.db");
        let cache = Arc::new(BlockCache::open(&path).unwrap());
        let client = IpfsClient::new(
            GatewayConfig::default().with_gateway(GatewayUrl::parse(&gw.url()).unwrap()),
        )
        .unwrap()
        .with_cache(cache.clone());
        let block = VerifiedBlock::from_data(block::RAW, b"precious".to_vec()).unwrap();
        let car = Car::from_blocks(*block.cid(), [block.clone()], &CarLimits::default()).unwrap();
        client.pin_car(&car).await.unwrap();
        // damage the cached row behind the store's back
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE ipfs_blocks_v1 SET data = x'00'", [])
            .unwrap();
        let fetched = client.fetch_car(car.root()).await.unwrap();
        assert!(matches!(fetched.source, Source::Gateway { .. }));
        assert_eq!(fetched.car, car);
        assert_eq!(cache.get(block.cid()).unwrap().unwrap(), block);
        let again = client.fetch_car(car.root()).await.unwrap();
        assert_eq!(again.source, Source::Local);
    }

    #[tokio::test]
    async fn no_gateways_is_a_typed_error() {
        let c = IpfsClient::new(GatewayConfig::default()).unwrap();
        let cid = block::cid_of(block::RAW, b"x").unwrap();
        assert!(matches!(
            c.fetch_car(&cid).await,
            Err(FetchError::NoGateways(_))
        ));
    }
}
