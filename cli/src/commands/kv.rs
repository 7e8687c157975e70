//! `sphere-cli kv put|get|del|list`: raw record access to the Profile's OpLog, and
//! the hidden `kv crash-writer` the kill -9 test drives. While `sphere-cli sync`
//! holds the data dir, requests go to the running node over its control socket.
//!
//! Values are bytes. Human output prints UTF-8 values as text and other values as
//! `hex:…`; `--json` gives `value` (UTF-8 text or null) and `value_hex` always.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use sphere_profile::datadir::{DataDir, DataDirError};
use sphere_profile::oplog::{MAX_VALUE_BYTES, Store, StoreConfig};
use sphere_profile::sync::control::{self, Answer, Request};

use crate::args::KvCommand;
use crate::exit::user;
use crate::output::Printer;

/// Capacity of the ack queue between the crash writers and the printer.
const ACK_QUEUE: usize = 1024;

pub(crate) fn run(data_dir: &Path, cmd: KvCommand, printer: &Printer) -> anyhow::Result<()> {
    // `kv put`'s value is read before the data dir is opened: standard input may
    // take as long as its writer likes, and the lock must not be held meanwhile.
    let put_value = match &cmd {
        KvCommand::Put { value, file, .. } => Some(read_value(value.clone(), file.as_deref())?),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let mut backend = Backend::open(data_dir).await?;
        let result = dispatch(&mut backend, cmd, put_value, printer).await;
        backend.close().await?;
        result
    })
}

/// Where records are read and written: the data dir's store, or — while
/// `sphere-cli sync` holds the data dir — the running node, over its control socket.
enum Backend {
    Local(Store),
    Node(control::Client),
}

impl Backend {
    async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        match DataDir::open(data_dir) {
            Ok(dir) => Ok(Self::Local(Store::open_data_dir(
                dir,
                StoreConfig::default(),
            )?)),
            Err(DataDirError::Locked { pid, .. }) => {
                let socket = data_dir.join(control::SOCKET_FILE);
                match control::Client::connect(&socket).await {
                    Ok(client) => Ok(Self::Node(client)),
                    Err(_) => Err(DataDirError::Locked {
                        path: data_dir.to_path_buf(),
                        pid,
                    }
                    .into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Self::Local(store) = self {
            store.shutdown().await?;
        }
        Ok(())
    }

    /// Returns `(entry id, seq)`.
    async fn put(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<(String, u64)> {
        match self {
            Self::Local(store) => {
                let w = store.put(key, value).await?;
                Ok((w.id.to_string(), w.seq))
            }
            Self::Node(c) => written(
                c.request(&Request::Put {
                    key,
                    value_hex: hex::encode(value),
                })
                .await?,
            ),
        }
    }

    async fn get(&mut self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Self::Local(store) => Ok(store.get(key).await?),
            Self::Node(c) => match c
                .request(&Request::Get {
                    key: key.to_owned(),
                })
                .await?
            {
                Answer::Value { value_hex } => Ok(value_hex.map(hex::decode).transpose()?),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// Returns `(existed, entry id, seq)`.
    async fn del(&mut self, key: String) -> anyhow::Result<(bool, String, u64)> {
        let existed = self.get(&key).await?.is_some();
        let (entry, seq) = match self {
            Self::Local(store) => {
                let w = store.delete(key).await?;
                (w.id.to_string(), w.seq)
            }
            Self::Node(c) => written(c.request(&Request::Del { key }).await?)?,
        };
        Ok((existed, entry, seq))
    }

    async fn list(&mut self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        match self {
            Self::Local(store) => Ok(store.scan(prefix).await?),
            // Page by page: one answer line could not hold a long listing.
            Self::Node(c) => Ok(c.list(prefix).await?),
        }
    }

    /// Returns `(state digest hex, live keys)`.
    async fn digest(&mut self) -> anyhow::Result<(String, usize)> {
        match self {
            Self::Local(store) => Ok((
                hex::encode(store.state_digest().await?),
                store.scan("").await?.len(),
            )),
            Self::Node(c) => match c.request(&Request::Digest).await? {
                Answer::Digest { digest, keys } => Ok((digest, keys)),
                other => Err(unexpected(&other)),
            },
        }
    }
}

fn written(answer: Answer) -> anyhow::Result<(String, u64)> {
    match answer {
        Answer::Written { entry, seq, .. } => Ok((entry, seq)),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(answer: &Answer) -> anyhow::Error {
    anyhow::anyhow!("the sync node gave an unexpected answer: {answer:?}")
}

async fn dispatch(
    backend: &mut Backend,
    cmd: KvCommand,
    put_value: Option<Vec<u8>>,
    printer: &Printer,
) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Put { key, value, file } => {
            let value = match put_value {
                Some(v) => v,
                None => read_value(value, file.as_deref())?,
            };
            let bytes = value.len();
            let (entry, seq) = backend.put(key.clone(), value).await?;
            printer.result(
                &format!("put {key} ({bytes} bytes) in entry {entry} (seq {seq})"),
                &json!({"key": key, "bytes": bytes, "entry": entry, "seq": seq}),
            )?;
        }
        KvCommand::Get { key } => {
            let Some(value) = backend.get(&key).await? else {
                return Err(user(format!("key not found: {key}")));
            };
            printer.result(&show(&value), &record_json(&key, &value))?;
        }
        KvCommand::Del { key } => {
            let (existed, entry, seq) = backend.del(key.clone()).await?;
            printer.result(
                &format!(
                    "deleted {key}{} in entry {entry} (seq {seq})",
                    if existed { "" } else { " (it was absent)" },
                ),
                &json!({"key": key, "existed": existed, "entry": entry, "seq": seq}),
            )?;
        }
        KvCommand::List { prefix } => {
            let prefix = prefix.unwrap_or_default();
            let rows = backend.list(&prefix).await?;
            let human: String = rows
                .iter()
                .map(|(k, v)| format!("{k}\t{}\n", show(v)))
                .collect();
            let records: Vec<_> = rows.iter().map(|(k, v)| record_json(k, v)).collect();
            printer.result(
                &human,
                &json!({"prefix": prefix, "count": rows.len(), "records": records}),
            )?;
        }
        KvCommand::Digest => {
            let (digest, keys) = backend.digest().await?;
            printer.result(
                &format!("{digest}  ({keys} keys)"),
                &json!({"digest": digest, "keys": keys}),
            )?;
        }
        KvCommand::CrashWriter {
            writers,
            count,
            tag,
        } => {
            let Backend::Local(store) = backend else {
                return Err(user(
                    "the crash writer needs the data dir itself; stop `sphere-cli sync` first",
                ));
            };
            crash_writer(store, writers, count, &tag, printer).await?;
        }
    }
    Ok(())
}

fn show(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("hex:{}", hex::encode(value)),
    }
}

fn record_json(key: &str, value: &[u8]) -> serde_json::Value {
    json!({
        "key": key,
        "value": std::str::from_utf8(value).ok(),
        "value_hex": hex::encode(value),
    })
}

/// The value of `kv put`: the argument, the file, or standard input.
fn read_value(arg: Option<String>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let limit = u64::try_from(MAX_VALUE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let bytes = match (arg, file) {
        (Some(v), _) if v != "-" => v.into_bytes(),
        (_, Some(path)) => {
            let mut buf = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(limit).read_to_end(&mut buf))
                .with_context(|| format!("reading {}", path.display()))
                .map_err(|e| user(format!("{e:#}")))?;
            buf
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut buf)
                .context("reading the value from standard input")?;
            buf
        }
    };
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(user(format!(
            "value larger than the {MAX_VALUE_BYTES}-byte limit"
        )));
    }
    Ok(bytes)
}

/// Writes `crash/{tag}/{writer}/{i}` from `writers` concurrent tasks and prints each key
/// once its put has returned (i.e. is acknowledged as durable).
async fn crash_writer(
    store: &Store,
    writers: u32,
    count: Option<u64>,
    tag: &str,
    printer: &Printer,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<String>>(ACK_QUEUE);
    for w in 0..writers.max(1) {
        let store = store.clone();
        let tx = tx.clone();
        let tag = tag.to_owned();
        tokio::spawn(async move {
            let mut i = 0u64;
            while count.is_none_or(|c| i < c) {
                let key = format!("crash/{tag}/{w}/{i}");
                let r = store
                    .put(key.clone(), format!("value of {key}").into_bytes())
                    .await
                    .map(|_| key)
                    .map_err(anyhow::Error::from);
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed {
                    return;
                }
                i = i.saturating_add(1);
            }
        });
    }
    drop(tx);
    while let Some(ack) = rx.recv().await {
        let key = ack?;
        printer.result(&format!("ack {key}"), &json!({"ack": key}))?;
    }
    Ok(())
}
