//! HTTP face of the embedded aggregator (axum 0.8): `POST /` JSON-RPC 2.0 with
//! `certification_request`, `get_inclusion_proof.v2` and `get_block_height`;
//! `GET /health`; `GET /api/v1/trustbases` (the exported trust base).
//!
//! A background task closes a round every `round_interval` when requests are
//! pending. [`AggregatorServer::shutdown`] stops both and waits for them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::certificate::TrustBase;
use crate::server::core::{AggregatorConfig, Core, CoreError};
use crate::server::store::{self, Store};
use crate::wire::{self, CertificationRequest, RpcRequest, codes};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading or writing the dir failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The validator key file is not a valid key.
    #[error("{0}: not a valid validator key")]
    BadKey(PathBuf),
    /// Another process serves the same dir (two servers would corrupt its state).
    #[error("another aggregator serves this dir")]
    Locked(#[source] sphere_profile::datadir::DataDirError),
    /// The state could not be opened.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// `aggregator.db` could not be opened.
    #[error(transparent)]
    Store(#[from] store::OpenError),
}

struct Shared {
    core: Mutex<Core>,
    busy: AtomicU32,
    requests: AtomicU64,
}

/// A running embedded aggregator.
pub struct AggregatorServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    trust_base: TrustBase,
    trust_base_path: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    /// `<dir>/aggregator.lock`, held while the server lives.
    _dir_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for AggregatorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads `<dir>/validator.key`, or generates and stores one (mode 0600).
fn load_or_create_key(dir: &Path) -> Result<SigningKey, ServerError> {
    let (_, key_path, _) = store::paths(dir);
    if key_path.exists() {
        let text = Zeroizing::new(std::fs::read_to_string(&key_path).map_err(io_at(&key_path))?);
        let mut b = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut b[..])
            .map_err(|_| ServerError::BadKey(key_path.clone()))?;
        return SigningKey::from_slice(&b[..]).map_err(|_| ServerError::BadKey(key_path));
    }
    let key = loop {
        let mut b = Zeroizing::new([0u8; 32]);
        rand::fill(&mut b[..]);
        if let Ok(k) = SigningKey::from_slice(&b[..]) {
            break k;
        }
    };
    let text = Zeroizing::new(hex::encode(key.to_bytes()));
    write_private(&key_path, text.as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

impl AggregatorServer {
    /// Starts a server persisted in `dir` (created if missing), listening on `listen`.
    pub async fn start(
        dir: &Path,
        listen: SocketAddr,
        config: AggregatorConfig,
    ) -> Result<Self, ServerError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let dir_lock =
            sphere_profile::datadir::lock(dir, store::LOCK_FILE).map_err(ServerError::Locked)?;
        let key = load_or_create_key(dir)?;
        let core = Core::open(Store::open(dir)?, key, config.clone())?;
        let (_, _, tb_path) = store::paths(dir);
        let trust_base = core.trust_base().clone();
        let tmp = tb_path.with_extension("json.tmp");
        std::fs::write(&tmp, trust_base.to_json()).map_err(io_at(&tmp))?;
        std::fs::rename(&tmp, &tb_path).map_err(io_at(&tb_path))?;
        let mut s = Self::serve(core, listen, config).await?;
        s.trust_base_path = Some(tb_path);
        s._dir_lock = Some(dir_lock);
        Ok(s)
    }

    /// Starts a server whose state lives in memory only (tests, benchmarks).
    pub async fn start_in_memory(
        key: SigningKey,
        listen: SocketAddr,
        config: AggregatorConfig,
    ) -> Result<Self, ServerError> {
        let core = Core::open(Store::in_memory()?, key, config.clone())?;
        Self::serve(core, listen, config).await
    }

    async fn serve(
        core: Core,
        listen: SocketAddr,
        config: AggregatorConfig,
    ) -> Result<Self, ServerError> {
        let trust_base = core.trust_base().clone();
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            busy: AtomicU32::new(0),
            requests: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Io {
                path: PathBuf::from(listen.to_string()),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Io {
            path: PathBuf::from(listen.to_string()),
            source,
        })?;
        let tb_json = Arc::new(trust_base.to_json());
        let app = Router::new()
            .route("/", post(rpc))
            .route(
                "/health",
                get(|| async { axum::Json(json!({"status": "ok", "role": "standalone"})) }),
            )
            .route(
                "/api/v1/trustbases",
                get(move || {
                    let body = tb_json.clone();
                    async move {
                        (
                            [(header::CONTENT_TYPE, "application/json")],
                            body.as_ref().clone(),
                        )
                    }
                }),
            )
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (tick_stop_tx, mut tick_stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                    let _ = tick_stop_tx.send(true);
                })
                .await;
        });
        let ticker_shared = shared.clone();
        let interval = config.round_interval();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let result = match ticker_shared.core.lock() {
                            Ok(mut c) => c.close_round().map(|_| ()),
                            Err(_) => return,
                        };
                        if let Err(e) = result {
                            tracing::error!(error = %e, "aggregator round close failed");
                        }
                    }
                    _ = tick_stop_rx.changed() => return,
                }
            }
        });
        Ok(Self {
            addr,
            shared,
            trust_base,
            trust_base_path: None,
            stop: Some(stop_tx),
            tasks: vec![server, ticker],
            _dir_lock: None,
        })
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The trust base clients must use.
    pub fn trust_base(&self) -> &TrustBase {
        &self.trust_base
    }

    /// Where the trust base was exported (persistent servers only).
    pub fn trust_base_path(&self) -> Option<&Path> {
        self.trust_base_path.as_deref()
    }

    /// Runs `f` on the state (fault injection, seeding, inspection).
    pub fn with_core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        let mut guard = self
            .shared
            .core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Answers the next `n` requests with HTTP 503 and `Retry-After: 0`.
    pub fn set_busy(&self, n: u32) {
        self.shared.busy.store(n, Ordering::SeqCst);
    }

    /// JSON-RPC requests served so far.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Stops serving and waits for the tasks.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for AggregatorServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}))
        .into_response()
}

fn rpc_result(id: Value, result: Value) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "result": result, "id": id})).into_response()
}

async fn rpc(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if shared
        .busy
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
        .is_ok()
    {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
        return r;
    }
    let Ok(req) = serde_json::from_slice::<RpcRequest>(&body) else {
        return rpc_error(Value::Null, codes::PARSE, "parse error");
    };
    if req.jsonrpc != "2.0" {
        return rpc_error(req.id, codes::INVALID_REQUEST, "jsonrpc must be 2.0");
    }
    let id = req.id.clone();
    let shared2 = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || handle(&shared2, &req)).await;
    match outcome {
        Ok(Ok(v)) => rpc_result(id, v),
        Ok(Err((code, msg))) => rpc_error(id, code, &msg),
        Err(_) => rpc_error(id, codes::INTERNAL, "internal error"),
    }
}

fn handle(shared: &Shared, req: &RpcRequest) -> Result<Value, (i64, String)> {
    let mut core = shared
        .core
        .lock()
        .map_err(|_| (codes::INTERNAL, "state poisoned".to_owned()))?;
    match req.method.as_str() {
        wire::METHOD_SUBMIT => {
            let hex_str = req.params.as_str().ok_or((
                codes::INVALID_PARAMS,
                "params must be a hex string".to_owned(),
            ))?;
            let bytes = wire::decode_hex_param(hex_str)
                .map_err(|e| (codes::INVALID_PARAMS, e.to_string()))?;
            let cr = CertificationRequest::decode(&bytes)
                .map_err(|e| (codes::INVALID_PARAMS, e.to_string()))?;
            let status = core.submit(cr);
            Ok(json!({"status": status.as_str()}))
        }
        wire::METHOD_PROOF => {
            let sid = req
                .params
                .get("stateId")
                .and_then(Value::as_str)
                .and_then(|s| {
                    let mut b = [0u8; 32];
                    hex::decode_to_slice(s, &mut b).ok().map(|()| b)
                })
                .ok_or((
                    codes::VALIDATION,
                    "stateId must be 32 bytes of hex".to_owned(),
                ))?;
            let proof = core
                .proof(&sid)
                .map_err(|e| (codes::INTERNAL, e.to_string()))?;
            Ok(Value::String(hex::encode(proof.encode())))
        }
        wire::METHOD_BLOCK_HEIGHT => Ok(json!({"blockNumber": core.block_number().to_string()})),
        _ => Err((codes::METHOD_NOT_FOUND, "method not found".to_owned())),
    }
}
