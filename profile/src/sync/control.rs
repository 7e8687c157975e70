//! The control socket: how other commands on a data dir reach the running sync node
//! that holds the dir's lock (the way `ipfs` commands reach a running daemon).
//!
//! # Format
//!
//! A Unix-domain stream socket `<data dir>/sync.sock` (mode 0600, inside the 0700
//! data dir). Each request is one line of JSON, answered by one line of JSON; a
//! connection may send several requests in turn. Lines are at most
//! [`MAX_LINE_BYTES`]. Values travel as lower-case hex.
//!
//! | request | response |
//! |---|---|
//! | `{"op":"put","key":K,"value_hex":H}` | `{"ok":true,"kind":"written","entry":CID,"seq":N}` |
//! | `{"op":"get","key":K}` | `{"ok":true,"kind":"value","value_hex":H or null}` |
//! | `{"op":"del","key":K}` | `{"ok":true,"kind":"written","existed":B,"entry":CID,"seq":N}` |
//! | `{"op":"list","prefix":P}` | `{"ok":true,"kind":"records","records":[[K,H],…]}` |
//! | `{"op":"digest"}` | `{"ok":true,"kind":"digest","digest":HEX,"keys":N}` |
//! | `{"op":"status"}` | `{"ok":true,"kind":"status","status":{…SyncStatus…}}` |
//!
//! Any failure answers `{"ok":false,"error":TEXT}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::node::Node;
use super::status::SyncStatus;
use crate::oplog::Store;

/// The socket's file name inside the data dir.
pub const SOCKET_FILE: &str = "sync.sock";
/// Longest request or response line.
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;
/// Most connections served at once; more wait.
pub const MAX_CONNECTIONS: usize = 16;

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
    /// List records under a prefix.
    List {
        /// The prefix ("" for all).
        prefix: String,
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

#[derive(Serialize, Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    answer: Option<Answer>,
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
    /// The node refused or failed the request.
    #[error("the sync node answered: {0}")]
    Remote(String),
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
        let reply = if line.len() > MAX_LINE_BYTES {
            Envelope {
                ok: false,
                error: Some("request line too long".into()),
                answer: None,
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => match handle(request, store, node).await {
                    Ok(answer) => Envelope {
                        ok: true,
                        error: None,
                        answer: Some(answer),
                    },
                    Err(e) => Envelope {
                        ok: false,
                        error: Some(e),
                        answer: None,
                    },
                },
                Err(e) => Envelope {
                    ok: false,
                    error: Some(format!("bad request: {e}")),
                    answer: None,
                },
            }
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_LINE_BYTES {
            return Ok(());
        }
    }
}

async fn handle(request: Request, store: &Store, node: &Node) -> Result<Answer, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
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
        Request::List { prefix } => Answer::Records {
            records: store
                .scan(&prefix)
                .await
                .map_err(|e| text(&e))?
                .into_iter()
                .map(|(k, v)| (k, hex::encode(v)))
                .collect(),
        },
        Request::Digest => Answer::Digest {
            digest: hex::encode(store.state_digest().await.map_err(|e| text(&e))?),
            keys: store.scan("").await.map_err(|e| text(&e))?.len(),
        },
        Request::Status => Answer::Status {
            status: node.status().await.map_err(|e| text(&e))?,
        },
    })
}

/// A connection to a running node's control socket.
pub struct Client {
    path: PathBuf,
    stream: BufReader<UnixStream>,
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
        })
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&mut self, request: &Request) -> Result<Answer, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line =
            serde_json::to_vec(request).map_err(|e| ControlError::Malformed(e.to_string()))?;
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).await.map_err(io)?;
        let mut reply = Vec::new();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
        let n = (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut reply)
            .await
            .map_err(|source| ControlError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ControlError::Malformed(
                "connection closed without an answer".into(),
            ));
        }
        let envelope: Envelope =
            serde_json::from_slice(&reply).map_err(|e| ControlError::Malformed(e.to_string()))?;
        match (envelope.ok, envelope.answer, envelope.error) {
            (true, Some(answer), _) => Ok(answer),
            (false, _, Some(error)) => Err(ControlError::Remote(error)),
            _ => Err(ControlError::Malformed(
                "answer without result or error".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WalletKeys;
    use crate::oplog::StoreConfig;
    use crate::secret::Secret32;

    #[tokio::test]
    async fn requests_round_trip_through_the_socket() {
        let dir = tempfile::tempdir().unwrap();
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
        let path = dir.path().join(SOCKET_FILE);
        let server = serve(&path, store.clone(), node.clone()).unwrap();
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
                    prefix: String::new()
                })
                .await
                .unwrap(),
            Answer::Records {
                records: vec![("k".into(), hex::encode(b"v"))]
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
