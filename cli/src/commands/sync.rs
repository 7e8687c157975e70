//! `sphere-cli sync`: the sync node in the foreground, with the control socket that
//! lets `kv` and `status` on the same data dir go through it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sphere_profile::datadir::DataDir;
use sphere_profile::oplog::{Store, StoreConfig};
use sphere_profile::sync::control;
use sphere_profile::sync::identity::{self, DEVICE_KEY_FILE};
use sphere_profile::sync::{Multiaddr, Node, SyncConfig, SyncEvent};

use crate::args::SyncArgs;
use crate::exit::user;
use crate::output::Printer;
use crate::signals::Shutdown;

/// The peer book's file name in the data dir.
const PEER_BOOK: &str = "peers.json";

fn multiaddrs(flag: &str, values: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|e| user(format!("{flag} {v}: not a multiaddr ({e})")))
        })
        .collect()
}

pub(crate) fn run(data_dir: &Path, args: &SyncArgs, printer: &Printer) -> anyhow::Result<()> {
    let mut config = SyncConfig::default()
        .with_peers(multiaddrs("--peer", &args.peer)?)
        .with_mdns(args.mdns)
        .with_anti_entropy(Duration::from_millis(args.anti_entropy_ms))
        .with_gossip_drop_rate(args.gossip_drop_rate)
        .with_peer_book(data_dir.join(PEER_BOOK));
    if !args.listen.is_empty() {
        config = config.with_listen(multiaddrs("--listen", &args.listen)?);
    }
    let config = config.build().map_err(|e| user(e.to_string()))?;
    let dir = DataDir::open(data_dir)?;
    let topic = dir.keys()?.oplog.topic.clone();
    let identity = identity::load_or_create(&dir.path().join(DEVICE_KEY_FILE))?;
    let socket = dir.path().join(control::SOCKET_FILE);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let store = Store::open_data_dir(dir, StoreConfig::default())?;
        let result = serve(store.clone(), &topic, identity, config, &socket, printer).await;
        let _ = std::fs::remove_file(&socket);
        store.shutdown().await?;
        result
    })
}

async fn serve(
    store: Store,
    topic: &str,
    identity: sphere_profile::sync::Keypair,
    config: SyncConfig,
    socket: &Path,
    printer: &Printer,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::install()?;
    let (node, task) = Node::start(store.clone(), topic, identity, config).await?;
    let mut events = node.events();
    let server = control::serve(socket, store, node.clone())?;
    for addr in node.listen_addrs() {
        let full = format!("{addr}/p2p/{}", node.peer_id());
        printer.result(
            &format!("listening on {full}"),
            &json!({"event": "listening", "addr": full}),
        )?;
    }
    printer
        .hint("syncing; Ctrl-C stops. Other commands on this data dir now go through this node.");
    let line = printer.status_line();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = events.recv() => match event {
                Ok(event) => {
                    if printer.is_json() {
                        printer.result("", &serde_json::to_value(&event)?)?;
                    } else if matches!(event, SyncEvent::Connected { .. } | SyncEvent::Disconnected { .. } | SyncEvent::Banned { .. }) {
                        printer.note(&line, &describe(&event));
                    }
                    if let (Some(bar), Ok(status)) = (&line, node.status().await) {
                        let rejected: u64 = status.rejected.values().sum();
                        bar.set_message(format!(
                            "peers {} · in {} · out {} · served {} · rejected {rejected}",
                            status.peers.len(), status.entries_in, status.entries_out, status.entries_served
                        ));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if let Some(bar) = line {
        bar.finish_and_clear();
    }
    server.abort();
    node.shutdown().await.ok();
    task.await.ok();
    printer.hint("sync stopped");
    Ok(())
}

fn describe(event: &SyncEvent) -> String {
    match event {
        SyncEvent::Connected { peer } => format!("connected: {peer}"),
        SyncEvent::Disconnected { peer } => format!("disconnected: {peer}"),
        SyncEvent::Banned { peer } => format!("banned for invalid data: {peer}"),
        other => format!("{other:?}"),
    }
}
