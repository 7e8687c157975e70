//! `sphere-cli pointer publish|discover|inspect`: the wallet's aggregator pointer.
//! Holds the wallet's pointer lock (`<data dir>/pointer.lock`: one publisher per
//! wallet across processes) but not the Profile's, so it runs beside `sphere-cli
//! sync`; the pointer's state lives in `<data dir>/pointer.db`.

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use sphere_pointer::client::{AggregatorClient, ClientConfig};
use sphere_pointer::derive::Side;
use sphere_pointer::events::{EVENT_CHANNEL_CAP, PointerEvent};
use sphere_pointer::state::{PointerState, STATE_FILE};
use sphere_pointer::{Pointer, PointerConfig, PointerKeys, TrustBase};
use sphere_profile::datadir::{DataDir, POINTER_LOCK_FILE};
use sphere_profile::keys::sha256;

use crate::args::{PointerCommand, PointerInspectArgs, PointerNetArgs};
use crate::exit;
use crate::output::Printer;

pub(crate) fn run(data_dir: &Path, cmd: &PointerCommand, printer: &Printer) -> anyhow::Result<()> {
    let dd = DataDir::open_with_lock(data_dir, POINTER_LOCK_FILE)?;
    match cmd {
        PointerCommand::Inspect(args) => inspect(&dd, args, printer),
        PointerCommand::Publish(args) => {
            let cid = parse_cid(&args.cid)?;
            networked(&dd, &args.net, printer, |p, pb| async move {
                pb.set_message(format!("publishing {cid}"));
                let started = Instant::now();
                let published = p.publish(&cid).await?;
                let ms = started.elapsed().as_millis() as u64;
                pb.finish_and_clear();
                printer.result(
                    &format!(
                        "published {cid} at version {} ({} lost races, {} RPCs, {ms} ms)",
                        published.version,
                        published.conflicts,
                        p.client().rpc_count()
                    ),
                    &json!({
                        "cid": cid.to_string(),
                        "version": published.version,
                        "conflicts": published.conflicts,
                        "rpc_count": p.client().rpc_count(),
                        "elapsed_ms": ms,
                        "signing_public_key": p.wallet_id(),
                    }),
                )?;
                Ok(())
            })
        }
        PointerCommand::Discover(net) => networked(&dd, net, printer, |p, pb| async move {
            pb.set_message("discovering the latest pointer version");
            let started = Instant::now();
            let d = p.discover().await?;
            let ms = started.elapsed().as_millis() as u64;
            pb.finish_and_clear();
            let human = match &d.cid {
                Some(cid) => format!(
                    "latest: {cid} at version {} ({} versions probed, {} RPCs, {ms} ms)",
                    d.valid_version,
                    d.probes,
                    p.client().rpc_count()
                ),
                None => format!(
                    "no pointer published yet ({} versions probed, {} RPCs, {ms} ms)",
                    d.probes,
                    p.client().rpc_count()
                ),
            };
            printer.result(
                &human,
                &json!({
                    "cid": d.cid.map(|c| c.to_string()),
                    "version": d.valid_version,
                    "included_version": d.included_version,
                    "skipped": d.skipped.iter().map(|(v, r)| json!({"version": v, "reason": r})).collect::<Vec<_>>(),
                    "probes": d.probes,
                    "rpc_count": p.client().rpc_count(),
                    "elapsed_ms": ms,
                }),
            )?;
            Ok(())
        }),
    }
}

fn parse_cid(s: &str) -> anyhow::Result<cid::Cid> {
    cid::Cid::from_str(s).map_err(|e| exit::user(format!("--cid {s:?} is not a CID: {e}")))
}

fn networked<F, Fut>(
    dd: &DataDir,
    net: &PointerNetArgs,
    printer: &Printer,
    f: F,
) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<Pointer>, indicatif::ProgressBar) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let tb_bytes = std::fs::read(&net.trust_base).map_err(|e| {
        exit::user(format!(
            "cannot read trust base {}: {e}",
            net.trust_base.display()
        ))
    })?;
    let trust_base = TrustBase::from_json(&tb_bytes)
        .map_err(|e| exit::user(format!("{}: {e}", net.trust_base.display())))?;
    let keys = dd.keys()?;
    let state = PointerState::open(&dd.path().join(STATE_FILE))?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = AggregatorClient::new(&net.aggregator, ClientConfig::default())?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL_CAP);
        let pointer = std::sync::Arc::new(
            Pointer::new(
                &keys.pointer,
                client,
                trust_base,
                state,
                PointerConfig::default(),
            )?
            .with_events(tx),
        );
        let pb = printer.spinner();
        let pb2 = pb.clone();
        let progress = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match e {
                    PointerEvent::Probe { version, included } => pb2.set_message(format!(
                        "probing version {version}: {}",
                        if included { "included" } else { "absent" }
                    )),
                    PointerEvent::PublishStarted { version } => {
                        pb2.set_message(format!("publishing version {version}"));
                    }
                    PointerEvent::SideSubmitted {
                        version,
                        side,
                        status,
                    } => {
                        pb2.set_message(format!(
                            "version {version} side {}: {status}",
                            side.name()
                        ));
                    }
                    PointerEvent::PublishConflict { version } => {
                        pb2.println(format!(
                            "version {version} was taken by another device; reconciling"
                        ));
                    }
                    PointerEvent::VersionSkipped { version, reason } => {
                        pb2.println(format!("skipping version {version}: {reason}"));
                    }
                    _ => {}
                }
            }
        });
        let result = f(pointer.clone(), pb.clone()).await;
        pb.finish_and_clear();
        drop(pointer);
        let _ = progress.await;
        result
    })
}

fn inspect(dd: &DataDir, args: &PointerInspectArgs, printer: &Printer) -> anyhow::Result<()> {
    let keys = dd.keys()?;
    let pk = PointerKeys::new(&keys.pointer)?;
    let v = args.version;
    if !(sphere_pointer::derive::VERSION_MIN..=sphere_pointer::derive::VERSION_MAX).contains(&v) {
        return Err(exit::user(format!(
            "--version {v} is out of range (1..=2147483647)"
        )));
    }
    let cid = args.cid.as_deref().map(parse_cid).transpose()?;
    let built = match &cid {
        Some(c) => Some(pk.build(v, c).map_err(|e| exit::user(e.to_string()))?),
        None => None,
    };
    let fp = |b: &[u8; 32]| hex::encode(&sha256(b)[..8]);
    let mut sides = serde_json::Map::new();
    let mut human = format!(
        "wallet signing public key: {}\nlock script: {}\nversion: {v}\n",
        hex::encode(pk.public_key()),
        hex::encode(pk.lock_script().encode())
    );
    for side in Side::BOTH {
        let mut o = json!({
            "source_state_hash": hex::encode(pk.state_hash(side, v)),
            "state_id": hex::encode(pk.state_id(side, v)),
        });
        human.push_str(&format!(
            "side {}: state id {}\n",
            side.name(),
            hex::encode(pk.state_id(side, v))
        ));
        if let Some(b) = &built {
            let c = b.side(side);
            o["ciphertext"] = json!(hex::encode(c.ciphertext));
            o["witness"] = json!(hex::encode(c.witness));
            o["certification_request"] = json!(hex::encode(c.request().encode()));
            human.push_str(&format!(
                "        ciphertext {}\n",
                hex::encode(c.ciphertext)
            ));
        }
        sides.insert(side.name().to_owned(), o);
    }
    printer.result(
        &human,
        &json!({
            "version": v,
            "cid": cid.map(|c| c.to_string()),
            "signing_public_key": hex::encode(pk.public_key()),
            "lock_script": hex::encode(pk.lock_script().encode()),
            "health_check_state_id": hex::encode(pk.health_check_state_id()),
            "seed_fingerprints": {
                "pointer_secret": fp(keys.pointer.pointer_secret.expose()),
                "signing_seed": fp(keys.pointer.signing_seed.expose()),
                "xor_seed": fp(keys.pointer.xor_seed.expose()),
                "pad_seed": fp(keys.pointer.pad_seed.expose()),
            },
            "sides": sides,
        }),
    )?;
    Ok(())
}
