//! `sphere-cli status`: the wallet's identity, what the data dir holds, and — when
//! `sphere-cli sync` runs on the data dir — the node's sync status, asked over its
//! control socket. Reads `wallet.json` and takes no lock, so it works while another
//! process holds the data dir.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use sphere_profile::datadir::{DataDir, PROFILE_DB};
use sphere_profile::sync::SyncStatus;
use sphere_profile::sync::control;

use crate::output::Printer;

/// How long the running node gets to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn run(data_dir: &Path, printer: &Printer) -> anyhow::Result<()> {
    let info = DataDir::read_info(data_dir)?;
    let db = data_dir.join(PROFILE_DB);
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).ok();
    let sync = node_status(data_dir)?;
    let mut human = format!(
        "data dir:       {}\naddress id:     {}\ndirect address: {}\npublic key:     {}\npath:           {}\ndevice id:      {}\ncreated:        {} (unix seconds)\nmnemonic:       {}\nprofile db:     {}\n",
        data_dir.display(),
        info.address_id,
        info.direct_address,
        info.public_key,
        info.derivation_path,
        info.device_id,
        info.created_at,
        if info.mnemonic.is_some() {
            "stored (sealed)"
        } else {
            "not stored"
        },
        db_bytes.map_or_else(|| "not created yet".to_owned(), |b| format!("{b} bytes")),
    );
    describe_sync(&mut human, sync.as_ref(), now_ms());
    printer.result(
        &human,
        &json!({
            "data_dir": crate::output::path_json(data_dir),
            "address_id": info.address_id,
            "direct_address": info.direct_address,
            "public_key": info.public_key,
            "derivation_path": info.derivation_path,
            "device_id": info.device_id,
            "created_at": info.created_at,
            "mnemonic_stored": info.mnemonic.is_some(),
            "profile_db_bytes": db_bytes,
            "sync": sync,
        }),
    )?;
    Ok(())
}

/// The running node's status, or `None` when no `sphere-cli sync` runs on the dir.
fn node_status(data_dir: &Path) -> anyhow::Result<Option<SyncStatus>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let ask = async {
            match control::connect_if_running(data_dir).await? {
                None => Ok(None),
                Some(mut client) => client.status().await.map(Some),
            }
        };
        tokio::time::timeout(NODE_TIMEOUT, ask)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the sync node did not answer within {} s",
                    NODE_TIMEOUT.as_secs()
                )
            })?
            .context("asking the sync node running on this data dir for its status")
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Appends the `sync:` lines of the human output.
fn describe_sync(out: &mut String, sync: Option<&SyncStatus>, now_ms: u64) {
    let Some(s) = sync else {
        out.push_str("sync:           not running (no `sphere-cli sync` on this data dir)\n");
        return;
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "sync:           running, peer id {}", s.peer_id);
    for (i, addr) in s.listen.iter().enumerate() {
        let label = if i == 0 { "listening on:" } else { "" };
        let _ = writeln!(out, "{label:<16}{addr}");
    }
    let _ = writeln!(out, "peers:          {} connected", s.peers.len());
    for p in &s.peers {
        let role = if p.wallet_peer {
            "device of this wallet"
        } else {
            "not (yet) on this wallet's topic"
        };
        let catchup = p.last_catchup_ms.map_or_else(
            || "no catch-up yet".to_owned(),
            |t| {
                format!(
                    "last catch-up {} s ago",
                    now_ms.saturating_sub(t).div_ceil(1000)
                )
            },
        );
        let _ = writeln!(
            out,
            "                {} ({role}), {catchup}, {} strikes",
            p.peer, p.strikes
        );
    }
    let _ = writeln!(
        out,
        "entries:        in {} · out {} · served {}",
        s.entries_in, s.entries_out, s.entries_served
    );
    let _ = writeln!(
        out,
        "snapshots:      in {} · served {}",
        s.snapshots_in, s.snapshots_served
    );
    let rejected = if s.rejected.is_empty() {
        "none".to_owned()
    } else {
        s.rejected
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let _ = writeln!(out, "rejected:       {rejected}");
}

#[cfg(test)]
mod tests {
    use sphere_profile::sync::PeerStatus;

    use super::*;

    #[test]
    fn the_sync_lines_say_not_running_or_show_the_node() {
        let mut out = String::new();
        describe_sync(&mut out, None, 0);
        assert_eq!(
            out,
            "sync:           not running (no `sphere-cli sync` on this data dir)\n"
        );
        let status = SyncStatus {
            peer_id: "12D3me".into(),
            listen: vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3me".into()],
            peers: vec![
                PeerStatus {
                    peer: "12D3a".into(),
                    wallet_peer: true,
                    last_catchup_ms: Some(1_000),
                    strikes: 0,
                },
                PeerStatus {
                    peer: "12D3b".into(),
                    wallet_peer: false,
                    last_catchup_ms: None,
                    strikes: 2,
                },
            ],
            entries_in: 3,
            entries_out: 4,
            entries_served: 5,
            snapshots_in: 0,
            snapshots_served: 1,
            rejected: [("bad_signature".to_owned(), 2), ("wire".to_owned(), 1)].into(),
        };
        let mut out = String::new();
        describe_sync(&mut out, Some(&status), 6_000);
        assert_eq!(
            out,
            "sync:           running, peer id 12D3me\n\
             listening on:   /ip4/127.0.0.1/tcp/1/p2p/12D3me\n\
             peers:          2 connected\n\
             \x20               12D3a (device of this wallet), last catch-up 5 s ago, 0 strikes\n\
             \x20               12D3b (not (yet) on this wallet's topic), no catch-up yet, 2 strikes\n\
             entries:        in 3 · out 4 · served 5\n\
             snapshots:      in 0 · served 1\n\
             rejected:       bad_signature 2 · wire 1\n"
        );
    }
}
