//! `sphere-cli kv put|get|del|list`: raw record access to the Profile's OpLog, and
//! the hidden `kv crash-writer` the kill -9 test drives.
//!
//! Values are bytes. Human output prints UTF-8 values as text and other values as
//! `hex:…`; `--json` gives `value` (UTF-8 text or null) and `value_hex` always.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use sphere_profile::datadir::DataDir;
use sphere_profile::oplog::{MAX_VALUE_BYTES, Store, StoreConfig};

use crate::args::KvCommand;
use crate::exit::user;
use crate::output::Printer;

/// Capacity of the ack queue between the crash writers and the printer.
const ACK_QUEUE: usize = 1024;

pub(crate) fn run(data_dir: &Path, cmd: KvCommand, printer: &Printer) -> anyhow::Result<()> {
    let dir = DataDir::open(data_dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let store = Store::open_data_dir(dir, StoreConfig::default())?;
    let result = rt.block_on(dispatch(&store, cmd, printer));
    rt.block_on(store.shutdown())?;
    result
}

async fn dispatch(store: &Store, cmd: KvCommand, printer: &Printer) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Put { key, value, file } => {
            let value = read_value(value, file.as_deref())?;
            let w = store.put(key.clone(), value.clone()).await?;
            printer.result(
                &format!(
                    "put {key} ({} bytes) in entry {} (seq {})",
                    value.len(),
                    w.id,
                    w.seq
                ),
                &json!({"key": key, "bytes": value.len(), "entry": w.id.to_string(), "seq": w.seq}),
            )?;
        }
        KvCommand::Get { key } => {
            let Some(value) = store.get(&key).await? else {
                return Err(user(format!("key not found: {key}")));
            };
            printer.result(&show(&value), &record_json(&key, &value))?;
        }
        KvCommand::Del { key } => {
            let existed = store.get(&key).await?.is_some();
            let w = store.delete(key.clone()).await?;
            printer.result(
                &format!(
                    "deleted {key}{} in entry {} (seq {})",
                    if existed { "" } else { " (it was absent)" },
                    w.id,
                    w.seq
                ),
                &json!({"key": key, "existed": existed, "entry": w.id.to_string(), "seq": w.seq}),
            )?;
        }
        KvCommand::List { prefix } => {
            let prefix = prefix.unwrap_or_default();
            let rows = store.scan(&prefix).await?;
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
        KvCommand::CrashWriter {
            writers,
            count,
            tag,
        } => {
            crash_writer(store, writers, count, &tag, printer).await?;
        }
    }
    Ok(())
}

fn show(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("hex:{}", hex(value)),
    }
}

fn hex(value: &[u8]) -> String {
    value.iter().map(|b| format!("{b:02x}")).collect()
}

fn record_json(key: &str, value: &[u8]) -> serde_json::Value {
    json!({
        "key": key,
        "value": std::str::from_utf8(value).ok(),
        "value_hex": hex(value),
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
