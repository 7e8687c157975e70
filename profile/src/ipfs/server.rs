//! The embedded IPFS gateway: an axum server over a SQLite [`BlockCache`] that
//! speaks the subset of Kubo's RPC and of the trustless gateway that the client
//! (and the official `kubo-rpc-client`) use. It is not a full IPFS node: no DHT,
//! no bitswap, no UnixFS; it stores and serves content-addressed blocks.
//!
//! | endpoint | method | does |
//! |---|---|---|
//! | `/api/v0/dag/import?pin-roots=true&stats=false` | POST, multipart, each part a CARv1 | verify, store, pin the root; NDJSON `{"Root":{"Cid":{"/":…},"PinErrorMsg":""}}` per CAR, then `{"Stats":…}` if `stats=true` |
//! | `/api/v0/dag/export?arg=CID` | POST (GET too) | the DAG as CARv1 (`application/vnd.ipld.car`) |
//! | `/api/v0/block/put?cid-codec=raw\|dag-cbor&mhtype=sha2-256&pin=false` | POST, multipart, first part | store one block; `{"Key":CID,"Size":N}` |
//! | `/api/v0/block/get?arg=CID` | POST (GET too) | the block's bytes |
//! | `/api/v0/pin/ls?arg=CID&stream=false` | POST (GET too) | `{"Keys":{CID:{"Type":"recursive"}}}`, or NDJSON `{"Cid":…,"Type":"recursive"}` with `stream=true` |
//! | `/api/v0/version` | POST | `{"Version":…}` |
//! | `/ipfs/{cid}?format=car` (or `Accept: application/vnd.ipld.car`) | GET | the DAG as CARv1; a `Range: bytes=N-[M]` gets 206 with `Content-Range` (416 past the end) |
//! | `/ipfs/{cid}?format=raw` (or `Accept: application/vnd.ipld.raw`) | GET | one block; `Range` as above |
//! | `/ipfs/{cid}` (`?format=car` optional) | HEAD | availability: 200 with `Content-Length` (the block's, or with `format=car` the whole CAR's when the DAG is complete), 404 otherwise |
//!
//! Everything received is verified as the client verifies it: a CAR must have one
//! root, every block must hash to its CID (CIDv1, sha2-256, dag-cbor or raw), the
//! DAG must be complete with no stray blocks, within [`CarLimits`]. A refused input
//! gets 400 with a Kubo-style JSON error `{"Message":…,"Code":1,"Type":"error"}`;
//! an unknown CID 404 (`Code` 3); a body over the CAR limit plus
//! [`MULTIPART_SLACK`] 413; a store
//! failure 500. Nothing is written unless all of a CAR verifies (one transaction).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cid::Cid;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::block::{self, DAG_CBOR, RAW, VerifiedBlock};
use super::cache::BlockCache;
use super::car::{self, Car, CarLimits, CarStream};
use super::client::{CAR_MEDIA_TYPE, RAW_MEDIA_TYPE};
use super::error::CacheError;
use super::multipart;

/// File name of the gateway's block store inside `sphere-cli gateway`'s data dir.
pub const GATEWAY_DB: &str = "gateway.db";

/// Room for multipart framing above the CAR limit (bytes): 1 MiB. The largest
/// request body is `CarLimits::max_bytes() + MULTIPART_SLACK` (101 MiB by default).
pub const MULTIPART_SLACK: usize = 1024 * 1024;

#[derive(Clone)]
struct AppState {
    store: Arc<BlockCache>,
    limits: CarLimits,
    max_request: usize,
}

/// A refused request, rendered as Kubo renders errors.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        tracing::error!(error = %e, "gateway block store failed");
        Self::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => 1,
            StatusCode::NOT_FOUND => 3,
            _ => 0,
        };
        let body = json!({"Message": self.message, "Code": code, "Type": "error"}).to_string();
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The gateway's routes over `store`, enforcing `limits`.
pub fn router(store: Arc<BlockCache>, limits: CarLimits) -> Router {
    let max_request = usize::try_from(limits.max_bytes())
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_SLACK);
    let state = AppState {
        store,
        limits,
        max_request,
    };
    Router::new()
        .route("/api/v0/dag/import", post(dag_import))
        .route("/api/v0/dag/export", post(dag_export).get(dag_export))
        .route("/api/v0/block/put", post(block_put))
        .route("/api/v0/block/get", post(block_get).get(block_get))
        .route("/api/v0/pin/ls", post(pin_ls).get(pin_ls))
        .route("/api/v0/version", post(version).get(version))
        .route("/ipfs/{cid}", get(trustless).head(trustless_head))
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` resolves, then finishes the
/// requests in flight and returns.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    listener: TcpListener,
    store: Arc<BlockCache>,
    limits: CarLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, limits))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A gateway running on a background task (tests, benchmarks, the CLI).
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    /// Binds `addr` (port 0 picks a free port) and starts serving `store`.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start(
        addr: SocketAddr,
        store: Arc<BlockCache>,
        limits: CarLimits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, store, limits, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops accepting, finishes requests in flight, and waits for the server.
    ///
    /// # Errors
    /// The server's I/O error, or a panic of its task as `Other`.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ------------------------------------------------------------------ helpers

type Params = Vec<(String, String)>;

fn param<'a>(q: &'a Params, key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn flag(q: &Params, key: &str, default: bool) -> Result<bool, ApiError> {
    match param(q, key) {
        None => Ok(default),
        Some("true" | "1" | "") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(ApiError::bad(format!("{key}={v:?} is not a boolean"))),
    }
}

fn parse_cid(s: &str) -> Result<Cid, ApiError> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    let cid: Cid = s
        .parse()
        .map_err(|_| ApiError::bad(format!("invalid CID {s:?}")))?;
    block::check_cid(&cid).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(cid)
}

fn arg(q: &Params) -> Result<Cid, ApiError> {
    parse_cid(param(q, "arg").ok_or_else(|| ApiError::bad("argument \"arg\" is required"))?)
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body exceeds {limit} bytes or was cut off"),
        })
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Frames are sent to the client in batches of about this many bytes.
const EXPORT_BATCH_BYTES: usize = 256 * 1024;
/// Batches buffered between the store reader and the HTTP body.
const EXPORT_QUEUE: usize = 8;

/// Why the export's store reader stopped early.
enum ExportStop {
    Cache(CacheError),
    /// The client went away, or the requested range is complete.
    Done,
}

/// The byte range of the CAR an export sends: `skip` bytes are dropped, then at most
/// `take` are sent (all of the rest when `None`).
#[derive(Debug, Clone, Copy)]
struct Window {
    skip: u64,
    take: Option<u64>,
}

impl Window {
    const ALL: Self = Self {
        skip: 0,
        take: None,
    };

    /// The part of `piece` (the next bytes of the CAR) inside the window.
    fn cut(&mut self, mut piece: Vec<u8>) -> Vec<u8> {
        let len = piece.len() as u64;
        if self.skip >= len {
            self.skip = self.skip.saturating_sub(len);
            return Vec::new();
        }
        if self.skip > 0 {
            piece.drain(
                ..usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(piece.len()),
            );
            self.skip = 0;
        }
        if let Some(left) = &mut self.take {
            let keep = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(piece.len());
            piece.truncate(keep);
            *left = left.saturating_sub(keep as u64);
        }
        piece
    }

    fn done(&self) -> bool {
        self.take == Some(0)
    }
}

/// The length of the CAR [`stream_export`] would send for `root`, or `None` if the
/// DAG is not complete here. Reads every block once (for the links), keeping one
/// at a time.
fn car_len(st: &AppState, root: &Cid) -> Result<Option<u64>, CacheError> {
    let mut total = car::encode(root, &[]).len() as u64;
    let walked = car::walk_visit(
        root,
        &st.limits,
        |cid| st.store.get_stored(cid),
        |b| {
            total = total.saturating_add(car::frame_len(&b));
            Ok(())
        },
    )?;
    Ok(walked.ok().map(|()| total))
}

/// A `Range: bytes=first-[last]` header with one range; anything else (several
/// ranges, suffix ranges, other units, garbage) is ignored and the whole body sent,
/// as RFC 9110 allows.
fn requested_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => None,
        l => Some(l.parse::<u64>().ok()?),
    };
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some((first, last))
}

/// What to send for a `Range` over a body of `total` bytes: the window and the
/// 206 headers, or a 416 response when it starts past the end.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response to send at once; one per request"
)]
fn range_window(
    range: (u64, Option<u64>),
    total: u64,
) -> Result<(Window, u64, HeaderValue), Response> {
    let (first, last) = range;
    if first >= total {
        let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Err(r);
    }
    let last = last.map_or(total.saturating_sub(1), |l| l.min(total.saturating_sub(1)));
    let len = last.saturating_sub(first).saturating_add(1);
    let value = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}"))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes */0"));
    Ok((
        Window {
            skip: first,
            take: Some(len),
        },
        len,
        value,
    ))
}

/// Streams the DAG under `root` as CARv1 (header, then blocks in depth-first
/// pre-order, byte-identical to [`Car::encode`]), or the `window` of it, while a
/// blocking task reads the store, so reading, sending and the client's hashing
/// overlap. An absent root is a 404 before the body starts; a block found missing
/// mid-walk aborts the body, which the client sees as a truncated CAR.
async fn stream_export(st: AppState, root: Cid, window: Window) -> Result<Body, ApiError> {
    let store = st.store.clone();
    if !blocking(move || Ok(store.has(&root)?)).await? {
        return Err(ApiError::not_found(format!("block {root} not found")));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(EXPORT_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut window = window;
        let mut send = |piece: Vec<u8>| -> Result<(), ExportStop> {
            let piece = window.cut(piece);
            if !piece.is_empty() {
                tx.blocking_send(Ok(piece)).map_err(|_| ExportStop::Done)?;
            }
            if window.done() {
                return Err(ExportStop::Done);
            }
            Ok(())
        };
        if send(car::encode(&root, &[])).is_err() {
            return;
        }
        let mut batch = Vec::with_capacity(EXPORT_BATCH_BYTES);
        let walked = car::walk_visit(
            &root,
            &st.limits,
            |cid| st.store.get_stored(cid).map_err(ExportStop::Cache),
            |b| {
                car::write_frame(&mut batch, &b);
                if batch.len() >= EXPORT_BATCH_BYTES {
                    send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(EXPORT_BATCH_BYTES),
                    ))?;
                }
                Ok(())
            },
        );
        let end = match walked {
            Ok(Ok(())) => match send(batch) {
                Ok(()) | Err(ExportStop::Done) => return,
                Err(ExportStop::Cache(e)) => Err(std::io::Error::other(e.to_string())),
            },
            Ok(Err(e)) => Err(std::io::Error::other(format!(
                "export of {root} stopped: {e}"
            ))),
            Err(ExportStop::Cache(e)) => {
                tracing::error!(error = %e, "gateway block store failed during export");
                Err(std::io::Error::other(e.to_string()))
            }
            Err(ExportStop::Done) => return,
        };
        let _ = tx.blocking_send(end);
    });
    Ok(Body::from_stream(futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )))
}

fn car_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.ipld.car; version=1"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ]
}

fn raw_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(RAW_MEDIA_TYPE),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ]
}

/// The whole CAR export (dag/export, and trustless GETs without a Range).
async fn export_response(st: AppState, root: Cid) -> ApiResult {
    let body = stream_export(st, root, Window::ALL).await?;
    Ok((car_headers(), body).into_response())
}

/// A ranged CAR export: 206 with `Content-Range` (the length is computed first by
/// a walk over the store), 416 past the end, 404 if the DAG is not complete here.
async fn ranged_export(st: AppState, root: Cid, range: (u64, Option<u64>)) -> ApiResult {
    let probe = st.clone();
    let total = blocking(move || Ok(car_len(&probe, &root)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("the DAG under {root} is not complete here")))?;
    let (window, len, content_range) = match range_window(range, total) {
        Ok(w) => w,
        Err(r) => return Ok(r),
    };
    let body = stream_export(st, root, window).await?;
    let mut resp = (StatusCode::PARTIAL_CONTENT, car_headers(), body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_RANGE, content_range);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

fn ndjson(lines: &[serde_json::Value]) -> Response {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn multipart_parts(headers: &HeaderMap) -> Result<String, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    multipart::boundary_of(ct).map_err(|e| ApiError::bad(e.to_string()))
}

// ------------------------------------------------------------------ handlers

async fn dag_import(
    State(st): State<AppState>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let pin = flag(&q, "pin-roots", true)?;
    let stats = flag(&q, "stats", false)?;
    let boundary = multipart_parts(&headers)?;
    // A declared length over the limit is refused before reading anything.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > st.max_request as u64
    {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body exceeds {} bytes", st.max_request),
        });
    }
    let cars = receive_cars(body, &boundary, &st).await?;
    let lines = blocking(move || {
        if cars.is_empty() {
            return Err(ApiError::bad("no CAR in the request"));
        }
        let mut lines = Vec::new();
        let (mut count, mut bytes) = (0u64, 0u64);
        for car in &cars {
            let roots = if pin { vec![*car.root()] } else { Vec::new() };
            st.store.put_and_pin(car.blocks(), &roots)?;
            count = count.saturating_add(car.blocks().len() as u64);
            bytes = bytes.saturating_add(car.data_bytes());
            lines.push(json!({"Root": {"Cid": {"/": car.root().to_string()}, "PinErrorMsg": ""}}));
        }
        if stats {
            lines.push(json!({"Stats": {"BlockCount": count, "BlockBytesCount": bytes}}));
        }
        tracing::info!(cars = cars.len(), blocks = count, bytes, "dag/import");
        Ok(lines)
    })
    .await?;
    Ok(ndjson(&lines))
}

/// Reads a `dag/import` body while it arrives: the multipart framing is split as
/// it streams and each non-empty part is fed to a [`CarStream`], so every block is
/// hashed as soon as its frame is in and only the DAG walk is left when the upload
/// ends. The body is cut off (413) past the request limit.
async fn receive_cars(body: Body, boundary: &str, st: &AppState) -> Result<Vec<Car>, ApiError> {
    use futures::StreamExt;

    let mut parts = multipart::PartStream::new(boundary);
    let mut cars = Vec::new();
    let mut current: Option<CarStream> = None;
    let mut on = |event: multipart::Event<'_>| -> Result<(), ApiError> {
        match event {
            multipart::Event::Start(_) => current = Some(CarStream::any_root(st.limits)),
            multipart::Event::Data(d) => {
                if let Some(c) = current.as_mut() {
                    c.feed(d)
                        .map_err(|e| ApiError::bad(format!("invalid CAR: {e}")))?;
                }
            }
            multipart::Event::End => {
                if let Some(c) = current.take()
                    && c.received() > 0
                {
                    cars.push(
                        c.finish()
                            .map_err(|e| ApiError::bad(format!("invalid CAR: {e}")))?,
                    );
                }
            }
        }
        Ok(())
    };
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "request body exceeds {} bytes or was cut off",
            st.max_request
        ),
    };
    let mut received: usize = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| too_large())?;
        received = received.saturating_add(chunk.len());
        if received > st.max_request {
            return Err(too_large());
        }
        parts.feed(&chunk, &mut on)?;
    }
    parts.finish().map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(cars)
}

impl From<multipart::MultipartError> for ApiError {
    fn from(e: multipart::MultipartError) -> Self {
        Self::bad(e.to_string())
    }
}

async fn dag_export(State(st): State<AppState>, Query(q): Query<Params>) -> ApiResult {
    let root = arg(&q)?;
    export_response(st, root).await
}

async fn block_put(
    State(st): State<AppState>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let codec_name = param(&q, "cid-codec")
        .or_else(|| param(&q, "format"))
        .unwrap_or("raw");
    let codec = match codec_name {
        "raw" => RAW,
        "dag-cbor" | "cbor" => DAG_CBOR,
        other => {
            return Err(ApiError::bad(format!(
                "codec {other:?} is not supported (raw, dag-cbor)"
            )));
        }
    };
    match param(&q, "mhtype") {
        None | Some("sha2-256") => {}
        Some(other) => {
            return Err(ApiError::bad(format!(
                "hash {other:?} is not supported (sha2-256)"
            )));
        }
    }
    match param(&q, "mhlen") {
        None | Some("-1" | "32") => {}
        Some(other) => {
            return Err(ApiError::bad(format!(
                "mhlen {other:?} is not supported (32)"
            )));
        }
    }
    let pin = flag(&q, "pin", false)?;
    let boundary = multipart_parts(&headers)?;
    let body = read_body(body, st.max_request).await?;
    let reply = blocking(move || {
        let parts = multipart::parse(&boundary, &body).map_err(|e| ApiError::bad(e.to_string()))?;
        let part = parts
            .first()
            .ok_or_else(|| ApiError::bad("no block in the request"))?;
        if part.data.len() > st.limits.max_block_bytes() {
            return Err(ApiError::bad(format!(
                "block of {} bytes exceeds the {}-byte limit",
                part.data.len(),
                st.limits.max_block_bytes()
            )));
        }
        let b = VerifiedBlock::from_data(codec, part.data.to_vec())
            .map_err(|e| ApiError::bad(e.to_string()))?;
        b.links().map_err(|e| ApiError::bad(e.to_string()))?;
        if pin {
            // A recursive pin needs the whole DAG here.
            let cid = *b.cid();
            let missing = car::walk(&cid, &st.limits, |c| {
                if c == &cid {
                    Ok(Some(b.clone()))
                } else {
                    st.store.get(c)
                }
            })?;
            if let Err(e) = missing {
                return Err(ApiError::bad(format!("cannot pin {cid}: {e}")));
            }
            st.store.put_and_pin([&b], &[cid])?;
        } else {
            st.store.put_many([&b])?;
        }
        Ok(json!({"Key": b.cid().to_string(), "Size": b.data().len()}))
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        reply.to_string(),
    )
        .into_response())
}

async fn block_get(State(st): State<AppState>, Query(q): Query<Params>) -> ApiResult {
    let cid = arg(&q)?;
    let data = blocking(move || {
        st.store
            .get(&cid)?
            .ok_or_else(|| ApiError::not_found(format!("block {cid} not found")))
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        data.into_data(),
    )
        .into_response())
}

async fn pin_ls(State(st): State<AppState>, Query(q): Query<Params>) -> ApiResult {
    let stream = flag(&q, "stream", false)?;
    let wanted: Vec<Cid> = q
        .iter()
        .filter(|(k, _)| k == "arg")
        .map(|(_, v)| parse_cid(v))
        .collect::<Result<_, _>>()?;
    if let Some(t) = param(&q, "type")
        && !matches!(t, "all" | "recursive")
    {
        // Every pin here is recursive: direct and indirect listings are empty.
        return Ok(if stream {
            ndjson(&[])
        } else {
            ndjson(&[json!({"Keys": {}})])
        });
    }
    let pins = blocking(move || {
        let all = st.store.pins()?;
        if wanted.is_empty() {
            return Ok(all);
        }
        for w in &wanted {
            if !all.contains(w) {
                return Err(ApiError::not_found(format!("path '{w}' is not pinned")));
            }
        }
        Ok(wanted)
    })
    .await?;
    if stream {
        let lines: Vec<_> = pins
            .iter()
            .map(|c| json!({"Cid": c.to_string(), "Type": "recursive"}))
            .collect();
        Ok(ndjson(&lines))
    } else {
        let keys: serde_json::Map<String, serde_json::Value> = pins
            .iter()
            .map(|c| (c.to_string(), json!({"Type": "recursive"})))
            .collect();
        Ok(ndjson(&[json!({"Keys": keys})]))
    }
}

async fn version() -> Response {
    ndjson(&[json!({
        "Version": concat!("sphere-gateway-", env!("CARGO_PKG_VERSION")),
        "Commit": "", "Repo": "", "System": "", "Golang": ""
    })])
}

/// The format a trustless request asks for (`?format=` first, then `Accept`).
fn trustless_format(
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Option<&'static str>, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = match q.get("format").map(String::as_str) {
        Some("car") => Some("car"),
        Some("raw") => Some("raw"),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "format {other:?} is not served here (car, raw)"
            )));
        }
        None if accept.contains(CAR_MEDIA_TYPE) => Some("car"),
        None if accept.contains(RAW_MEDIA_TYPE) => Some("raw"),
        None => None,
    };
    if let Some(scope) = q.get("dag-scope")
        && scope != "all"
    {
        return Err(ApiError::bad(format!(
            "dag-scope {scope:?} is not supported (all)"
        )));
    }
    Ok(format)
}

async fn trustless(
    State(st): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let root = parse_cid(&cid)?;
    let format = trustless_format(&q, &headers)?.ok_or_else(|| ApiError {
        status: StatusCode::NOT_ACCEPTABLE,
        message: "this is a trustless gateway: ask for ?format=car or ?format=raw".into(),
    })?;
    let range = requested_range(&headers);
    if format == "car" {
        return match range {
            Some(r) => ranged_export(st, root, r).await,
            None => export_response(st, root).await,
        };
    }
    let b = blocking(move || {
        st.store
            .get(&root)?
            .ok_or_else(|| ApiError::not_found(format!("block {root} not found")))
    })
    .await?;
    let data = b.into_data();
    let Some(range) = range else {
        return Ok((raw_headers(), data).into_response());
    };
    let (mut window, _, content_range) = match range_window(range, data.len() as u64) {
        Ok(w) => w,
        Err(r) => return Ok(r),
    };
    let part = window.cut(data);
    let mut resp = (StatusCode::PARTIAL_CONTENT, raw_headers(), part).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_RANGE, content_range);
    Ok(resp)
}

/// `HEAD /ipfs/{cid}`: the availability probe. 200 with `Content-Length` when this
/// gateway can serve the CID: for `?format=car` (or a CAR `Accept`) the whole DAG
/// must be here and the length is the CAR's; otherwise the root block must be here
/// and the length is the block's. 404 when it cannot, 400 for a bad CID. No body.
async fn trustless_head(
    State(st): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let root = parse_cid(&cid)?;
        let car = trustless_format(&q, &headers)? == Some("car");
        let len = blocking(move || {
            if car {
                Ok(car_len(&st, &root)?)
            } else {
                Ok(st.store.stored_len(&root)?)
            }
        })
        .await?;
        Ok::<_, ApiError>((car, len))
    }
    .await;
    let (status, car, len) = match result {
        Ok((car, Some(len))) => (StatusCode::OK, car, Some(len)),
        Ok((car, None)) => (StatusCode::NOT_FOUND, car, None),
        Err(e) => (e.status, false, None),
    };
    let mut resp = status.into_response();
    if status == StatusCode::OK {
        let h = resp.headers_mut();
        for (k, v) in if car { car_headers() } else { raw_headers() } {
            h.insert(k, v);
        }
        if let Some(len) = len {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfs::block::cid_of;

    struct Fixture {
        gw: RunningGateway,
        store: Arc<BlockCache>,
        http: reqwest::Client,
    }

    async fn fixture() -> Fixture {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = Arc::new(BlockCache::in_memory().unwrap());
        let gw = RunningGateway::start(
            "127.0.0.1:0".parse().unwrap(),
            store.clone(),
            CarLimits::default(),
        )
        .await
        .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Fixture { gw, store, http }
    }

    impl Fixture {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.gw.url())
        }
        async fn post_file(&self, path: &str, data: &[u8]) -> reqwest::Response {
            let b = multipart::boundary();
            self.http
                .post(self.url(path))
                .header(header::CONTENT_TYPE, multipart::content_type(&b))
                .body(multipart::encode_file(&b, "file", "f", data))
                .send()
                .await
                .unwrap()
        }
    }

    /// root (dag-cbor list of 2 links) → two raw leaves.
    fn sample() -> Car {
        let a = VerifiedBlock::from_data(RAW, b"leaf a".to_vec()).unwrap();
        let b = VerifiedBlock::from_data(RAW, b"leaf b".to_vec()).unwrap();
        let v = ipld_core::ipld::Ipld::List(vec![
            ipld_core::ipld::Ipld::Link(*a.cid()),
            ipld_core::ipld::Ipld::Link(*b.cid()),
        ]);
        let root =
            VerifiedBlock::from_data(DAG_CBOR, serde_ipld_dagcbor::to_vec(&v).unwrap()).unwrap();
        let cid = *root.cid();
        Car::from_blocks(cid, [root, a, b], &CarLimits::default()).unwrap()
    }

    async fn error_message(r: reqwest::Response) -> (u16, String) {
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["Type"], "error");
        (status, v["Message"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn dag_import_stores_pins_and_reports_the_root() {
        let f = fixture().await;
        let car = sample();
        let r = f
            .post_file("api/v0/dag/import?pin-roots=true&stats=true", &car.encode())
            .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["Root"]["Cid"]["/"], car.root().to_string());
        assert_eq!(lines[0]["Root"]["PinErrorMsg"], "");
        assert_eq!(lines[1]["Stats"]["BlockCount"], 3);
        assert!(f.store.is_pinned(car.root()).unwrap());
        // exported back byte for byte, by both routes
        let export = f
            .http
            .post(f.url(&format!("api/v0/dag/export?arg={}", car.root())))
            .send()
            .await
            .unwrap();
        assert_eq!(export.bytes().await.unwrap().as_ref(), car.encode());
        let trustless = f
            .http
            .get(f.url(&format!("ipfs/{}", car.root())))
            .header(header::ACCEPT, CAR_MEDIA_TYPE)
            .send()
            .await
            .unwrap();
        assert!(
            trustless.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(CAR_MEDIA_TYPE)
        );
        assert_eq!(trustless.bytes().await.unwrap().as_ref(), car.encode());
        // pin/ls, both shapes
        let ls: serde_json::Value = f
            .http
            .post(f.url("api/v0/pin/ls"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ls["Keys"][car.root().to_string()]["Type"], "recursive");
        let streamed = f
            .http
            .post(f.url("api/v0/pin/ls?stream=true"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let first: serde_json::Value =
            serde_json::from_str(streamed.lines().next().unwrap()).unwrap();
        assert_eq!(first["Cid"], car.root().to_string());
    }

    #[tokio::test]
    async fn bad_cars_get_400_with_a_message_and_store_nothing() {
        let f = fixture().await;
        let car = sample();
        let mut tampered = car.encode();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let (status, msg) = error_message(f.post_file("api/v0/dag/import", &tampered).await).await;
        assert_eq!(status, 400);
        assert!(
            msg.contains("invalid CAR") && msg.contains("do not hash"),
            "{msg}"
        );
        // incomplete DAG
        let short = car::encode(car.root(), &car.blocks()[..2]);
        let (status, msg) = error_message(f.post_file("api/v0/dag/import", &short).await).await;
        assert_eq!(status, 400);
        assert!(msg.contains("missing"), "{msg}");
        // not multipart at all
        let r = f
            .http
            .post(f.url("api/v0/dag/import"))
            .body(car.encode())
            .send()
            .await
            .unwrap();
        assert_eq!(error_message(r).await.0, 400);
        // garbage
        let (status, _) = error_message(f.post_file("api/v0/dag/import", b"not a car").await).await;
        assert_eq!(status, 400);
        assert!(f.store.is_empty().unwrap());
    }

    #[tokio::test]
    async fn block_put_and_get() {
        let f = fixture().await;
        let r = f.post_file("api/v0/block/put", b"hello").await;
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            v["Key"],
            "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
        );
        assert_eq!(v["Size"], 5);
        let cid = cid_of(RAW, b"hello").unwrap();
        let got = f
            .http
            .post(f.url(&format!("api/v0/block/get?arg={cid}")))
            .send()
            .await
            .unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), b"hello");
        let raw = f
            .http
            .get(f.url(&format!("ipfs/{cid}?format=raw")))
            .send()
            .await
            .unwrap();
        assert_eq!(raw.headers()[header::CONTENT_TYPE], RAW_MEDIA_TYPE);
        assert_eq!(raw.bytes().await.unwrap().as_ref(), b"hello");
        // a dag-cbor block that is not CBOR is refused
        let (status, _) = error_message(
            f.post_file("api/v0/block/put?cid-codec=dag-cbor", b"\xff\xff")
                .await,
        )
        .await;
        assert_eq!(status, 400);
        // pinning a block whose children are absent is refused
        let car = sample();
        let (status, msg) = error_message(
            f.post_file(
                "api/v0/block/put?cid-codec=dag-cbor&pin=true",
                car.blocks()[0].data(),
            )
            .await,
        )
        .await;
        assert_eq!(status, 400);
        assert!(msg.contains("cannot pin"), "{msg}");
        // unsupported hash
        let (status, _) =
            error_message(f.post_file("api/v0/block/put?mhtype=blake3", b"x").await).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn an_incomplete_dag_aborts_the_export_and_the_client_says_so() {
        let f = fixture().await;
        let car = sample();
        // the root alone, without its leaves (no pin, so the gateway accepts it)
        let r = f
            .post_file(
                "api/v0/block/put?cid-codec=dag-cbor",
                car.blocks()[0].data(),
            )
            .await;
        assert_eq!(r.status(), 200);
        let client = crate::ipfs::IpfsClient::new(
            crate::ipfs::GatewayConfig::default()
                .with_gateway(crate::ipfs::GatewayUrl::parse(&f.gw.url()).unwrap())
                .with_max_attempts(1),
        )
        .unwrap();
        let err = client.fetch_car(car.root()).await.unwrap_err();
        let first = &err.failures()[0];
        assert_eq!(first.endpoint, "GET /ipfs/{cid}?format=car");
        assert!(
            matches!(
                first.cause,
                crate::ipfs::FailureCause::Network(_) | crate::ipfs::FailureCause::Tampered(_)
            ),
            "{first}"
        );
    }

    #[tokio::test]
    async fn unknown_and_invalid_cids() {
        let f = fixture().await;
        let absent = cid_of(RAW, b"absent").unwrap();
        for path in [
            format!("api/v0/block/get?arg={absent}"),
            format!("api/v0/dag/export?arg={absent}"),
        ] {
            let r = f.http.post(f.url(&path)).send().await.unwrap();
            assert_eq!(error_message(r).await.0, 404, "{path}");
        }
        let r = f
            .http
            .get(f.url(&format!("ipfs/{absent}?format=car")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = f
            .http
            .get(f.url("ipfs/not-a-cid?format=car"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = f
            .http
            .get(f.url(&format!("ipfs/{absent}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406, "only trustless formats are served");
        let r = f.http.post(f.url("api/v0/block/get")).send().await.unwrap();
        assert_eq!(error_message(r).await.0, 400);
    }

    #[tokio::test]
    async fn oversize_bodies_get_413() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = Arc::new(BlockCache::in_memory().unwrap());
        let limits = CarLimits::default().with_max_bytes(1024);
        let gw = RunningGateway::start("127.0.0.1:0".parse().unwrap(), store.clone(), limits)
            .await
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let b = multipart::boundary();
        let body = multipart::encode_file(&b, "file", "f", &vec![7u8; MULTIPART_SLACK + 2048]);
        let r = http
            .post(format!("{}api/v0/dag/import", gw.url()))
            .header(header::CONTENT_TYPE, multipart::content_type(&b))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        // Within the request limit but over the CAR limit: a 400 naming the limit.
        let car = sample();
        let mut big = vec![car.blocks()[0].clone()];
        big.extend((0..20u8).map(|i| VerifiedBlock::from_data(RAW, vec![i; 100]).unwrap()));
        let bytes = car::encode(car.root(), &big);
        assert!(bytes.len() > 1024);
        let r = http
            .post(format!("{}api/v0/dag/import", gw.url()))
            .header(header::CONTENT_TYPE, multipart::content_type(&b))
            .body(multipart::encode_file(&b, "file", "f", &bytes))
            .send()
            .await
            .unwrap();
        let (status, msg) = error_message(r).await;
        assert_eq!(status, 400);
        assert!(msg.contains("1024-byte limit"), "{msg}");
        assert!(store.is_empty().unwrap());
    }
}
