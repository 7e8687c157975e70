//! The control socket: how other commands on a data dir reach the running sync node
//! that holds the dir's lock (the way `ipfs` commands reach a running daemon).
//!
//! # Format
//!
//! A Unix-domain stream socket `<data dir>/sync.sock` (mode 0600, inside the 0700
//! data dir). Each request is one line of JSON, answered by one line of JSON; a
//! connection may send several requests in turn. Lines are at most
//! [`MAX_LINE_BYTES`], newline included, both ways: a longer request is refused
//! (and the connection closed), an answer that would be longer is replaced by an
//! error answer, and the [`Client`] reports a longer answer as
//! [`ControlError::ReplyTooLong`]. Values travel as lower-case hex.
//!
//! | request | response |
//! |---|---|
//! | `{"op":"put","key":K,"value_hex":H}` | `{"ok":true,"kind":"written","entry":CID,"seq":N}` |
//! | `{"op":"get","key":K}` | `{"ok":true,"kind":"value","value_hex":H or null}` |
//! | `{"op":"del","key":K}` | `{"ok":true,"kind":"written","existed":B,"entry":CID,"seq":N}` |
//! | `{"op":"list","prefix":P,"after":A?,"limit":N?}` | `{"ok":true,"kind":"records","records":[[K,H],…],"more":B}` |
//! | `{"op":"digest"}` | `{"ok":true,"kind":"digest","digest":HEX,"keys":N}` |
//! | `{"op":"status"}` | `{"ok":true,"kind":"status","status":{…SyncStatus…}}` |
//!
//! `list` pages: with `limit` the answer holds at most `limit` records (clamped to
//! 1..=[`MAX_LIST_PAGE`]) whose keys sort after `after` (when given), and at most
//! [`LIST_PAGE_BYTES`] of them as encoded, but always at least one when any is left;
//! `more` says whether records are left, to be asked for with `after` = the last key
//! of the page ([`Client::list`] does this). Without `limit` (clients from before
//! paging) the whole listing is one answer, and a listing too long for a line is an
//! error answer.
//!
//! Any failure answers `{"ok":false,"error":TEXT,"class":C}`: `class` is `"user"`
//! when the request itself is at fault (a write that breaks a format limit, as
//! [`StoreError::Invalid`]), `"internal"` otherwise; a reply without `class` counts
//! as internal. [`Client::request`] turns them into [`ControlError::Refused`] and
//! [`ControlError::Remote`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::node::Node;
use super::status::SyncStatus;
use crate::oplog::{Store, StoreError};

/// The socket's file name inside the data dir.
pub const SOCKET_FILE: &str = "sync.sock";
/// Longest request or response line.
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;
/// Most connections served at once; more wait.
pub const MAX_CONNECTIONS: usize = 16;
/// Most records one `list` page holds.
pub const MAX_LIST_PAGE: u32 = 4096;
/// Most bytes the records of one `list` page take as encoded (`["key","hex"],`),
/// unless its only record is larger. [`MAX_LINE_BYTES`] less room for the rest of
/// the answer; the largest record alone (a 1 KiB key escaped, a 256 KiB value as
/// hex: about 520 KiB) is far under a line.
pub const LIST_PAGE_BYTES: usize = MAX_LINE_BYTES - 4096;
/// Records [`Client::list`] asks for per page.
const CLIENT_LIST_PAGE: u32 = 1024;
/// Records a `list` page reads from the store at a time (bounds the memory one
/// page costs the node while it fills the byte budget).
const LIST_SCAN_CHUNK: usize = 64;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Write a value.
    Put {
        /// The key.
        key: String,
        /// The value, hex.
        value_hex: String,
    },
    /// Read a value.
    Get {
        /// The key.
        key: String,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
    },
    /// List records under a prefix, in key order.
    List {
        /// The prefix ("" for all).
        prefix: String,
        /// Only keys after this one (the last key of the previous page).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Page the listing: at most this many records per answer (clamped to
        /// 1..=[`MAX_LIST_PAGE`]) and at most [`LIST_PAGE_BYTES`]. Without it the
        /// whole listing is one answer (refused when longer than a line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// The state digest and key count.
    Digest,
    /// The node's status.
    Status,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// After `put` or `del`.
    Written {
        /// Whether the key existed (only for `del`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        existed: Option<bool>,
        /// The entry that holds the write.
        entry: String,
        /// Its sequence number.
        seq: u64,
    },
    /// After `get`.
    Value {
        /// The value, hex; null when absent.
        value_hex: Option<String>,
    },
    /// After `list`.
    Records {
        /// `(key, value hex)` pairs.
        records: Vec<(String, String)>,
        /// Whether more records are left after the last one (paged `list` only).
        #[serde(default)]
        more: bool,
    },
    /// After `digest`.
    Digest {
        /// SHA-256 state digest, hex.
        digest: String,
        /// Number of live keys.
        keys: usize,
    },
    /// After `status`.
    Status {
        /// The node's status.
        status: SyncStatus,
    },
}

/// Whose fault a failed request is (the `class` of an error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The request itself is invalid: the same request will fail again.
    User,
    /// The node failed (storage, a stopped node, a malformed request).
    Internal,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<ErrorClass>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    answer: Option<Answer>,
}

impl Envelope {
    /// An error answer of class `internal`: the node or the request line failed.
    fn failure(error: String) -> Self {
        Self {
            ok: false,
            error: Some(error),
            class: Some(ErrorClass::Internal),
            answer: None,
        }
    }

    /// The error answer for a request that failed, classed by its cause.
    fn of_failure(failure: Failure) -> Self {
        Self {
            ok: false,
            error: Some(failure.error),
            class: Some(failure.class),
            answer: None,
        }
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket could not be reached or broke.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The other side answered with something that is not a valid answer.
    #[error("malformed control message: {0}")]
    Malformed(String),
    /// The node failed the request.
    #[error("the sync node answered: {0}")]
    Remote(String),
    /// The answer line was longer than [`MAX_LINE_BYTES`]; the connection is no
    /// longer usable.
    #[error("reply larger than {max} bytes from the sync node")]
    ReplyTooLong {
        /// The limit ([`MAX_LINE_BYTES`]).
        max: usize,
    },
    /// The request would be longer than [`MAX_LINE_BYTES`]; it was not sent.
    #[error("request larger than {max} bytes for the sync node")]
    RequestTooLong {
        /// The limit ([`MAX_LINE_BYTES`]).
        max: usize,
    },
    /// An earlier answer on this connection broke off or was too long, so the
    /// connection is out of step; connect again.
    #[error("control connection unusable after an earlier broken answer")]
    Unusable,
    /// The node refused the request as invalid (an error of class `user`, e.g. a
    /// key or value over the format's limits): the same request fails again.
    #[error("the sync node refused the request: {0}")]
    Refused(String),
}

/// A failed request as the server answers it.
struct Failure {
    error: String,
    class: ErrorClass,
}

impl Failure {
    /// The error's text, classed `user` for a write the store refuses as invalid.
    fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        let class = match e.downcast_ref::<StoreError>() {
            Some(StoreError::Invalid(_)) => ErrorClass::User,
            _ => ErrorClass::Internal,
        };
        Self {
            error: e.to_string(),
            class,
        }
    }
}

/// Serves the control socket for `store` and `node` until the task is aborted.
pub fn serve(path: &Path, store: Store, node: Node) -> Result<JoinHandle<()>, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The caller holds the data dir lock, so any socket file left here is stale.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (store, node) = (store.clone(), node.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_connection(stream, &store, &node).await {
                    tracing::debug!(error = %e, "control connection ended");
                }
                drop(permit);
            });
        }
    }))
}

async fn serve_connection(stream: UnixStream, store: &Store, node: &Node) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).take(u64::MAX);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        lines.set_limit(limit);
        let n = lines.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let mut is_list = false;
        let reply = if line.len() > MAX_LINE_BYTES {
            Envelope::failure(format!("request larger than {MAX_LINE_BYTES} bytes"))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => {
                    is_list = matches!(request, Request::List { .. });
                    match handle(request, store, node).await {
                        Ok(answer) => Envelope {
                            ok: true,
                            error: None,
                            class: None,
                            answer: Some(answer),
                        },
                        Err(e) => Envelope::of_failure(e),
                    }
                }
                Err(e) => Envelope::failure(format!("bad request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        if out.len() > MAX_LINE_BYTES {
            // Never send a line the client must refuse; say why instead.
            let hint = if is_list {
                "; ask for the listing page by page (`limit`, `after`)"
            } else {
                ""
            };
            out = serde_json::to_vec(&Envelope::failure(format!(
                "answer larger than {MAX_LINE_BYTES} bytes{hint}"
            )))
            .map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        write.write_all(&out).await?;
        if line.len() > MAX_LINE_BYTES {
            return Ok(());
        }
    }
}

async fn handle(request: Request, store: &Store, node: &Node) -> Result<Answer, Failure> {
    let text = |e: &(dyn std::error::Error + 'static)| Failure::of(e);
    Ok(match request {
        Request::Put { key, value_hex } => {
            let value = hex::decode(&value_hex).map_err(|e| text(&e))?;
            let w = store.put(key, value).await.map_err(|e| text(&e))?;
            Answer::Written {
                existed: None,
                entry: w.id.to_string(),
                seq: w.seq,
            }
        }
        Request::Get { key } => Answer::Value {
            value_hex: store
                .get(&key)
                .await
                .map_err(|e| text(&e))?
                .map(hex::encode),
        },
        Request::Del { key } => {
            let existed = store.get(&key).await.map_err(|e| text(&e))?.is_some();
            let w = store.delete(key).await.map_err(|e| text(&e))?;
            Answer::Written {
                existed: Some(existed),
                entry: w.id.to_string(),
                seq: w.seq,
            }
        }
        Request::List {
            prefix,
            after,
            limit: None,
        } => Answer::Records {
            records: store
                .scan_page(&prefix, after.as_deref(), usize::MAX)
                .await
                .map_err(|e| text(&e))?
                .into_iter()
                .map(|(k, v)| (k, hex::encode(v)))
                .collect(),
            more: false,
        },
        Request::List {
            prefix,
            after,
            limit: Some(limit),
        } => list_page(store, &prefix, after, limit)
            .await
            .map_err(|e| text(&e))?,
        Request::Digest => Answer::Digest {
            digest: hex::encode(store.state_digest().await.map_err(|e| text(&e))?),
            keys: store.scan("").await.map_err(|e| text(&e))?.len(),
        },
        Request::Status => Answer::Status {
            status: node.status().await.map_err(|e| text(&e))?,
        },
    })
}

/// One page of a paged `list`: records after `after`, at most `limit` of them and
/// at most [`LIST_PAGE_BYTES`] (but at least one when any is left).
async fn list_page(
    store: &Store,
    prefix: &str,
    mut after: Option<String>,
    limit: u32,
) -> Result<Answer, crate::oplog::StoreError> {
    let limit = usize::try_from(limit.clamp(1, MAX_LIST_PAGE)).unwrap_or(1);
    let mut records = Vec::new();
    let mut bytes = 0usize;
    loop {
        // One record more than the page can take tells whether any is left.
        let want = limit.saturating_sub(records.len()).min(LIST_SCAN_CHUNK) + 1;
        let chunk = store.scan_page(prefix, after.as_deref(), want).await?;
        let exhausted = chunk.len() < want;
        for (key, value) in chunk {
            let size = encoded_record_len(&key, &value);
            let full = records.len() == limit
                || (!records.is_empty() && bytes.saturating_add(size) > LIST_PAGE_BYTES);
            if full {
                return Ok(Answer::Records {
                    records,
                    more: true,
                });
            }
            bytes = bytes.saturating_add(size);
            records.push((key.clone(), hex::encode(value)));
            after = Some(key);
        }
        if exhausted {
            return Ok(Answer::Records {
                records,
                more: false,
            });
        }
    }
}

/// Bytes `["key","hex"],` takes in the answer line.
fn encoded_record_len(key: &str, value: &[u8]) -> usize {
    let key = serde_json::to_string(key).map_or(key.len().saturating_mul(6), |k| k.len());
    // `[`, `,`, the hex's two quotes, `]`, and the comma before the next record.
    key.saturating_add(value.len().saturating_mul(2))
        .saturating_add(6)
}

/// A connection to a running node's control socket.
pub struct Client {
    path: PathBuf,
    stream: BufReader<UnixStream>,
    /// Set when an answer broke off or was too long: the stream is out of step.
    broken: bool,
}

/// Connects to the node running on `data_dir`, or returns `None` when none is: no
/// socket file, or nothing listening on it (a file left by a node that was killed).
/// Takes no lock, so it never gets in the way of the process holding the data dir.
pub async fn connect_if_running(data_dir: &Path) -> Result<Option<Client>, ControlError> {
    let path = data_dir.join(SOCKET_FILE);
    // Checked first so that a data dir whose path is too long for a socket address
    // (where no node can listen) is simply "not running".
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ControlError::Io { path, source }),
    }
    match Client::connect(&path).await {
        Ok(client) => Ok(Some(client)),
        Err(ControlError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl Client {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> Result<Self, ControlError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ControlError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            stream: BufReader::new(stream),
            broken: false,
        })
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&mut self, request: &Request) -> Result<Answer, ControlError> {
        if self.broken {
            return Err(ControlError::Unusable);
        }
        let mut line =
            serde_json::to_vec(request).map_err(|e| ControlError::Malformed(e.to_string()))?;
        line.push(b'\n');
        if line.len() > MAX_LINE_BYTES {
            return Err(ControlError::RequestTooLong {
                max: MAX_LINE_BYTES,
            });
        }
        let reply = self.read_reply(&line).await;
        if matches!(
            reply,
            Err(ControlError::Io { .. } | ControlError::ReplyTooLong { .. })
        ) {
            self.broken = true;
        }
        let reply = reply?;
        let envelope: Envelope =
            serde_json::from_slice(&reply).map_err(|e| ControlError::Malformed(e.to_string()))?;
        match (envelope.ok, envelope.answer, envelope.error) {
            (true, Some(answer), _) => Ok(answer),
            (false, _, Some(error)) if envelope.class == Some(ErrorClass::User) => {
                Err(ControlError::Refused(error))
            }
            (false, _, Some(error)) => Err(ControlError::Remote(error)),
            _ => Err(ControlError::Malformed(
                "answer without result or error".into(),
            )),
        }
    }

    /// Writes `line` and reads one answer line (newline included), refusing one
    /// longer than [`MAX_LINE_BYTES`] instead of cutting it off.
    async fn read_reply(&mut self, line: &[u8]) -> Result<Vec<u8>, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        self.stream.get_mut().write_all(line).await.map_err(io)?;
        let mut reply = Vec::new();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
        let n = (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut reply)
            .await
            .map_err(io)?;
        if n == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed without an answer",
            )));
        }
        if reply.last() != Some(&b'\n') {
            if reply.len() >= MAX_LINE_BYTES {
                return Err(ControlError::ReplyTooLong {
                    max: MAX_LINE_BYTES,
                });
            }
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of an answer",
            )));
        }
        Ok(reply)
    }

    /// Every live record whose key starts with `prefix`, in key order, as
    /// [`Store::scan`] gives it locally: asked for page by page so that each answer
    /// stays within a line, however long the listing.
    pub async fn list(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, ControlError> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            let answer = self
                .request(&Request::List {
                    prefix: prefix.to_owned(),
                    after: out.last().map(|(k, _)| k.clone()),
                    limit: Some(CLIENT_LIST_PAGE),
                })
                .await?;
            let Answer::Records { records, more } = answer else {
                return Err(ControlError::Malformed(format!(
                    "a list request answered with {answer:?}"
                )));
            };
            if more && records.is_empty() {
                return Err(ControlError::Malformed(
                    "a list page with more to come but no records".into(),
                ));
            }
            for (key, value_hex) in records {
                // Keys must rise strictly, across pages too: a node that repeats or
                // reorders records would otherwise make this loop forever.
                let in_order = out.last().is_none_or(|(last, _)| key > *last);
                if !in_order || !key.starts_with(prefix) {
                    return Err(ControlError::Malformed(format!(
                        "list record {key:?} out of order or outside prefix {prefix:?}"
                    )));
                }
                let value = hex::decode(&value_hex)
                    .map_err(|e| ControlError::Malformed(format!("value of {key:?}: {e}")))?;
                out.push((key, value));
            }
            if !more {
                return Ok(out);
            }
        }
    }

    /// The node's sync status.
    pub async fn status(&mut self) -> Result<SyncStatus, ControlError> {
        match self.request(&Request::Status).await? {
            Answer::Status { status } => Ok(status),
            other => Err(ControlError::Malformed(format!(
                "a status request answered with {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WalletKeys;
    use crate::oplog::StoreConfig;
    use crate::secret::Secret32;

    /// A node on an in-memory store serving the socket in `dir`.
    async fn serving(dir: &Path) -> (Store, Node, JoinHandle<()>, PathBuf) {
        let keys = WalletKeys::from_address_key(&Secret32::new([3; 32])).unwrap();
        let store = Store::in_memory(&keys.oplog, [1; 8], StoreConfig::default()).unwrap();
        let (node, _t) = Node::start(
            store.clone(),
            &keys.oplog.topic,
            libp2p::identity::Keypair::generate_ed25519(),
            Default::default(),
        )
        .await
        .unwrap();
        let path = dir.join(SOCKET_FILE);
        let server = serve(&path, store.clone(), node.clone()).unwrap();
        (store, node, server, path)
    }

    /// `count` records `big/NN` of 256 KiB each (distinct bytes per record).
    async fn put_big(store: &Store, count: u8) {
        for i in 0..count {
            let value: Vec<u8> = (0..crate::oplog::MAX_VALUE_BYTES)
                .map(|j| (j % 251) as u8 ^ i)
                .collect();
            store.put(format!("big/{i:02}"), value).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_listing_longer_than_a_line_comes_whole_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _node, server, path) = serving(dir.path()).await;
        // 9 × 256 KiB = 2.25 MiB of values, 4.5 MiB as hex: over twice a line.
        put_big(&store, 9).await;
        store.put("big", b"not under big/".to_vec()).await.unwrap();
        store.put("small/a", b"x".to_vec()).await.unwrap();
        let mut client = Client::connect(&path).await.unwrap();
        let listed = client.list("big/").await.unwrap();
        assert_eq!(listed.len(), 9);
        assert_eq!(listed, store.scan("big/").await.unwrap());
        assert_eq!(
            client.list("").await.unwrap(),
            store.scan("").await.unwrap()
        );
        assert_eq!(client.list("none/").await.unwrap(), Vec::new());
        // Each page stays within its byte budget, but holds one record at least.
        let mut after = None;
        let mut pages = 0;
        loop {
            let Answer::Records { records, more } = client
                .request(&Request::List {
                    prefix: "big/".into(),
                    after: after.clone(),
                    limit: Some(MAX_LIST_PAGE),
                })
                .await
                .unwrap()
            else {
                panic!("not records");
            };
            pages += 1;
            assert!(!records.is_empty());
            let bytes: usize = records
                .iter()
                .map(|(k, h)| encoded_record_len(k, &hex::decode(h).unwrap()))
                .sum();
            assert!(bytes <= LIST_PAGE_BYTES, "{bytes}");
            after = records.last().map(|(k, _)| k.clone());
            if !more {
                break;
            }
        }
        assert_eq!(after.as_deref(), Some("big/08"));
        assert_eq!(pages, 3, "three 256 KiB values to a page");
        server.abort();
    }

    #[tokio::test]
    async fn list_pages_honour_limit_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _node, server, path) = serving(dir.path()).await;
        for i in 0..150u32 {
            store.put(format!("k/{i:03}"), vec![1]).await.unwrap();
        }
        let mut client = Client::connect(&path).await.unwrap();
        let page = |after: Option<&str>, limit| Request::List {
            prefix: "k/".into(),
            after: after.map(str::to_owned),
            limit: Some(limit),
        };
        let keys = |a: Answer| match a {
            Answer::Records { records, more } => (
                records.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
                more,
            ),
            other => panic!("{other:?}"),
        };
        let (k, more) = keys(client.request(&page(None, 3)).await.unwrap());
        assert_eq!(
            (k, more),
            (vec!["k/000".into(), "k/001".into(), "k/002".into()], true)
        );
        // A limit of 0 is one record; the last page says no more.
        let (k, more) = keys(client.request(&page(Some("k/002"), 0)).await.unwrap());
        assert_eq!((k, more), (vec!["k/003".to_owned()], true));
        let (k, more) = keys(client.request(&page(Some("k/147"), 2)).await.unwrap());
        assert_eq!((k, more), (vec!["k/148".into(), "k/149".into()], false));
        let (k, more) = keys(client.request(&page(Some("k/149"), 2)).await.unwrap());
        assert_eq!((k, more), (Vec::<String>::new(), false));
        // More than one store chunk in one page.
        let (k, more) = keys(client.request(&page(Some("k/009"), 140)).await.unwrap());
        assert_eq!((k.len(), more), (140, false));
        let (k, more) = keys(client.request(&page(None, 149)).await.unwrap());
        assert_eq!((k.len(), more), (149, true));
        assert_eq!(client.list("k/").await.unwrap().len(), 150);
        server.abort();
    }

    #[tokio::test]
    async fn an_unpaged_listing_longer_than_a_line_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _node, server, path) = serving(dir.path()).await;
        put_big(&store, 5).await;
        let mut client = Client::connect(&path).await.unwrap();
        // A client from before paging asks without `limit`.
        let err = client
            .request(&Request::List {
                prefix: String::new(),
                after: None,
                limit: None,
            })
            .await
            .unwrap_err();
        match &err {
            ControlError::Remote(text) => {
                assert!(text.contains("answer larger than 2097152 bytes"), "{text}")
            }
            other => panic!("{other:?}"),
        }
        // The connection stays usable.
        assert!(matches!(
            client.request(&Request::Digest).await.unwrap(),
            Answer::Digest { keys: 5, .. }
        ));
        server.abort();
    }

    #[tokio::test]
    async fn a_reply_longer_than_a_line_is_a_typed_error_not_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_FILE);
        let listener = UnixListener::bind(&path).unwrap();
        let fake = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).await.unwrap();
            // A valid-looking answer, one byte over the limit, newline included.
            let head = br#"{"ok":true,"kind":"records","records":[["k",""#;
            let tail = b"\"]]}\n";
            let mut line = head.to_vec();
            line.resize(MAX_LINE_BYTES + 1 - tail.len(), b'0');
            line.extend_from_slice(tail);
            stream.write_all(&line).await.unwrap();
        });
        let mut client = Client::connect(&path).await.unwrap();
        let err = client.list("").await.unwrap_err();
        assert!(
            matches!(
                err,
                ControlError::ReplyTooLong {
                    max: MAX_LINE_BYTES
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "reply larger than 2097152 bytes from the sync node"
        );
        assert!(matches!(
            client.request(&Request::Digest).await,
            Err(ControlError::Unusable)
        ));
        fake.await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_of_exactly_the_line_limit_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_FILE);
        let listener = UnixListener::bind(&path).unwrap();
        let fake = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).await.unwrap();
            let head = br#"{"ok":true,"kind":"value","value_hex":""#;
            let tail = b"\"}\n";
            let mut line = head.to_vec();
            line.resize(MAX_LINE_BYTES - tail.len(), b'0');
            line.extend_from_slice(tail);
            stream.write_all(&line).await.unwrap();
        });
        let mut client = Client::connect(&path).await.unwrap();
        let answer = client
            .request(&Request::Get { key: "k".into() })
            .await
            .unwrap();
        assert!(matches!(answer, Answer::Value { value_hex: Some(h) } if h.len() > 2_000_000));
        fake.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_longer_than_a_line_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _node, server, path) = serving(dir.path()).await;
        let mut client = Client::connect(&path).await.unwrap();
        let err = client
            .request(&Request::Get {
                key: "k".repeat(MAX_LINE_BYTES),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, ControlError::RequestTooLong { .. }),
            "{err:?}"
        );
        // Nothing was sent, so the connection is still in step.
        assert!(matches!(
            client.request(&Request::Digest).await.unwrap(),
            Answer::Digest { keys: 0, .. }
        ));
        server.abort();
    }

    #[tokio::test]
    async fn no_socket_or_a_stale_one_means_no_node_is_running() {
        let dir = tempfile::tempdir().unwrap();
        assert!(connect_if_running(dir.path()).await.unwrap().is_none());
        // A socket file nobody listens on, as a killed node leaves it.
        drop(std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap());
        assert!(dir.path().join(SOCKET_FILE).exists());
        assert!(connect_if_running(dir.path()).await.unwrap().is_none());
        let (_store, node, server, _path) = serving(dir.path()).await;
        let mut client = connect_if_running(dir.path()).await.unwrap().unwrap();
        assert_eq!(
            client.status().await.unwrap().peer_id,
            node.peer_id().to_string()
        );
        server.abort();
    }

    #[tokio::test]
    async fn requests_round_trip_through_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _node, server, path) = serving(dir.path()).await;
        let mut client = Client::connect(&path).await.unwrap();
        let put = client
            .request(&Request::Put {
                key: "k".into(),
                value_hex: hex::encode(b"v"),
            })
            .await
            .unwrap();
        assert!(
            matches!(
                put,
                Answer::Written {
                    seq: 1,
                    existed: None,
                    ..
                }
            ),
            "{put:?}"
        );
        assert_eq!(
            client
                .request(&Request::Get { key: "k".into() })
                .await
                .unwrap(),
            Answer::Value {
                value_hex: Some(hex::encode(b"v"))
            }
        );
        assert_eq!(
            client
                .request(&Request::List {
                    prefix: String::new(),
                    after: None,
                    limit: None,
                })
                .await
                .unwrap(),
            Answer::Records {
                records: vec![("k".into(), hex::encode(b"v"))],
                more: false,
            }
        );
        assert!(matches!(
            client.request(&Request::Status).await.unwrap(),
            Answer::Status { .. }
        ));
        let bad = client
            .request(&Request::Put {
                key: "k".into(),
                value_hex: "zz".into(),
            })
            .await;
        assert!(matches!(bad, Err(ControlError::Remote(_))), "{bad:?}");
        let invalid = client
            .request(&Request::Put {
                key: "k".repeat(2000),
                value_hex: hex::encode(b"v"),
            })
            .await;
        assert!(
            matches!(invalid, Err(ControlError::Refused(_))),
            "a write over the key limit is the request's fault: {invalid:?}"
        );
        let del = client
            .request(&Request::Del { key: "k".into() })
            .await
            .unwrap();
        assert!(
            matches!(
                del,
                Answer::Written {
                    existed: Some(true),
                    ..
                }
            ),
            "{del:?}"
        );
        assert_eq!(
            client
                .request(&Request::Get { key: "k".into() })
                .await
                .unwrap(),
            Answer::Value { value_hex: None }
        );
        server.abort();
    }
}
