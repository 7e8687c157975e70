//! `sphere-cli pointer publish|discover|inspect` and the operator overrides
//! `accept-car-loss|accept-corrupt-streak|clear-pending-marker`: the wallet's
//! aggregator pointer. `discover` checks the content: it fetches the snapshot CAR
//! of each candidate version from `--gateway`s with every block verified (the
//! library's content check, built here from the IPFS client). The overrides are
//! granted only with `SPHERE_ALLOW_OVERRIDES=1` and `NODE_ENV` ≠ `production`.
//! Holds the wallet's pointer lock (`<data dir>/pointer.lock`: one publisher per
//! wallet across processes) but not the Profile's, so it runs beside `sphere-cli
//! sync`; the pointer's state lives in `<data dir>/pointer.db`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use cid::Cid;
use serde_json::json;
use sphere_pointer::client::{AggregatorClient, ClientConfig};
use sphere_pointer::derive::Side;
use sphere_pointer::error::{DiscoverError, OverrideError};
use sphere_pointer::events::{EVENT_CHANNEL_CAP, PointerEvent};
use sphere_pointer::pointer::{ContentCheck, ContentStatus};
use sphere_pointer::state::{PointerState, STATE_FILE};
use sphere_pointer::{Pointer, PointerConfig, PointerKeys, TrustBase};
use sphere_profile::datadir::{DataDir, POINTER_LOCK_FILE};
use sphere_profile::ipfs::{FetchError, GatewayConfig, IpfsClient, Source};
use sphere_profile::keys::sha256;

use crate::args::{PointerCommand, PointerFetchArgs, PointerInspectArgs, PointerNetArgs};
use crate::exit;
use crate::output::Printer;

/// The environment variable that grants the operator overrides (with `NODE_ENV`
/// not `production`), as in the reference.
pub(crate) const OVERRIDES_ENV: &str = "SPHERE_ALLOW_OVERRIDES";

/// Printed on stderr before every operator override.
pub(crate) const OVERRIDE_WARNING: &str = "OPERATOR OVERRIDE: this bypasses a safety check of the \
     aggregator pointer (spec §10). It can discard a snapshot another device published or \
     unblock a wallet whose state is uncertain. Use it only when the runbook tells you to.";

/// Whether this process may use the operator overrides: `SPHERE_ALLOW_OVERRIDES=1`
/// and `NODE_ENV` other than `production`.
fn overrides_allowed() -> bool {
    std::env::var(OVERRIDES_ENV).as_deref() == Ok("1")
        && std::env::var("NODE_ENV").as_deref() != Ok("production")
}

fn denied_hint(e: OverrideError) -> anyhow::Error {
    match e {
        OverrideError::CapabilityDenied { .. } => anyhow::Error::new(e).context(format!(
            "operator overrides are disabled: set {OVERRIDES_ENV}=1 (and NODE_ENV must not be \
             `production`) to use this command"
        )),
        other => other.into(),
    }
}

pub(crate) fn run(data_dir: &Path, cmd: &PointerCommand, printer: &Printer) -> anyhow::Result<()> {
    let dd = DataDir::open_with_lock(data_dir, POINTER_LOCK_FILE)?;
    match cmd {
        PointerCommand::Inspect(args) => inspect(&dd, args, printer),
        PointerCommand::Publish(args) => {
            let cid = parse_cid(&args.cid)?;
            networked(&dd, &args.net, None, printer, |p, pb| async move {
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
        PointerCommand::Discover(args) => {
            discover_with(&dd, &args.net, &args.fetch, printer, |_, _| Ok(()))
        }
        PointerCommand::AcceptCorruptStreak(args) => {
            discover_with(&dd, &args.net, &args.fetch, printer, |p, pb| {
                if overrides_allowed() {
                    printer.warn(OVERRIDE_WARNING);
                }
                let limit = p.accept_corrupt_streak(args.limit).map_err(denied_hint)?;
                printer.above(
                    pb,
                    &format!("this discovery may walk back past {limit} invalid versions"),
                );
                Ok(())
            })
        }
        PointerCommand::AcceptCarLoss(args) => {
            let fetcher = CarFetcher::new(&PointerFetchArgs {
                gateway: args.gateways.gateway.clone(),
                out: None,
                no_fetch: false,
            })?;
            let cid = args.cid.as_deref().map(parse_cid).transpose()?;
            networked(
                &dd,
                &args.net,
                fetcher.as_ref().map(CarFetcher::check),
                printer,
                |p, pb| async move {
                    let local = match cid {
                        Some(c) => c,
                        None => match p.local_state()?.local_cid {
                            Some(c) => parse_cid(&c)?,
                            None => {
                                return Err(exit::user(
                                    "this device has no state CID on record; pass --cid with the \
                                 CID of its current state",
                                ));
                            }
                        },
                    };
                    if overrides_allowed() {
                        printer.warn(OVERRIDE_WARNING);
                    }
                    pb.set_message(format!(
                        "accepting the loss of version {}'s CAR",
                        args.version
                    ));
                    let published = p
                        .accept_car_loss(args.version, &local)
                        .await
                        .map_err(denied_hint)?;
                    pb.finish_and_clear();
                    printer.result(
                    &format!(
                        "accepted the loss of version {}'s snapshot CAR; republished {local} at \
                         version {}",
                        args.version, published.version
                    ),
                    &json!({
                        "lost_version": args.version,
                        "cid": local.to_string(),
                        "version": published.version,
                        "conflicts": published.conflicts,
                    }),
                )?;
                    Ok(())
                },
            )
        }
        PointerCommand::ClearPendingMarker(net) => {
            networked(&dd, net, None, printer, |p, pb| async move {
                if overrides_allowed() {
                    printer.warn(OVERRIDE_WARNING);
                }
                let version = p.clear_pending_marker().map_err(denied_hint)?;
                pb.finish_and_clear();
                let human = match version {
                    Some(v) => format!(
                        "cleared the pending marker of version {v}; publishing is blocked \
                         (marker_cleared) until the next successful `pointer discover`"
                    ),
                    None => "there was no pending marker; publishing is blocked (marker_cleared) \
                             until the next successful `pointer discover`"
                        .to_owned(),
                };
                printer.result(
                    &human,
                    &json!({"cleared_marker_version": version, "blocked": "marker_cleared"}),
                )?;
                Ok(())
            })
        }
    }
}

/// Budget of one version's CAR fetch across all gateways (the reference wiring's
/// outer 60 s), so a walk-back over dead gateways ends in minutes, not hours.
pub(crate) const CAR_FETCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// What happened to one CID's CAR during discovery.
enum CarOutcome {
    Fetched {
        bytes: Vec<u8>,
        blocks: usize,
        from: String,
        failures: Vec<String>,
    },
    Failed(String),
}

/// The content check of discovery: fetch the CAR under a decoded CID from the
/// gateways with every block verified (the IPFS client), remembering the outcome
/// for the report and `--out`.
struct CarFetcher {
    ipfs: IpfsClient,
    outcomes: Arc<Mutex<HashMap<Cid, CarOutcome>>>,
}

impl CarFetcher {
    /// None with `--no-fetch` or without any `--gateway`.
    fn new(args: &PointerFetchArgs) -> anyhow::Result<Option<Self>> {
        if args.no_fetch || args.gateway.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            ipfs: super::ipfs::client_with(
                &args.gateway,
                GatewayConfig::default().with_total_budget(CAR_FETCH_BUDGET),
            )?,
            outcomes: Arc::default(),
        }))
    }

    fn check(&self) -> ContentCheck {
        let (ipfs, outcomes) = (self.ipfs.clone(), self.outcomes.clone());
        Arc::new(move |cid: Cid| {
            let (ipfs, outcomes) = (ipfs.clone(), outcomes.clone());
            Box::pin(async move {
                let (status, outcome) = match ipfs.fetch_car(&cid).await {
                    Ok(fetched) => {
                        let from = match &fetched.source {
                            Source::Local => "the local cache".to_owned(),
                            Source::Gateway { url, endpoint } => format!("{url} ({endpoint})"),
                            other => format!("{other:?}"),
                        };
                        let outcome = CarOutcome::Fetched {
                            blocks: fetched.car.blocks().len(),
                            bytes: fetched.car.encode(),
                            from,
                            failures: fetched.failures.iter().map(ToString::to_string).collect(),
                        };
                        (ContentStatus::Valid, outcome)
                    }
                    // A CID kind no gateway may serve: the pointer itself is bad.
                    Err(e @ FetchError::Unsupported(_)) => {
                        (ContentStatus::Invalid, CarOutcome::Failed(e.to_string()))
                    }
                    Err(e) => (
                        ContentStatus::Unavailable,
                        CarOutcome::Failed(e.to_string()),
                    ),
                };
                outcomes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(cid, outcome);
                status
            })
        })
    }

    fn take(&self, cid: &Cid) -> Option<CarOutcome> {
        self.outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(cid)
    }

    fn failed(&self) -> Vec<(Cid, String)> {
        self.outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(c, o)| match o {
                CarOutcome::Failed(e) => Some((*c, e.clone())),
                CarOutcome::Fetched { .. } => None,
            })
            .collect()
    }
}

async fn discover(
    p: &Pointer,
    pb: &indicatif::ProgressBar,
    fetch: &PointerFetchArgs,
    fetcher: Option<&CarFetcher>,
    printer: &Printer,
) -> anyhow::Result<()> {
    let out = fetch.out.as_deref();
    pb.set_message("discovering the latest pointer version");
    let started = Instant::now();
    let result = p.discover().await;
    let ms = started.elapsed().as_millis() as u64;
    pb.finish_and_clear();
    for (cid, e) in fetcher.map(CarFetcher::failed).unwrap_or_default() {
        printer.warn(&format!("CAR of {cid} not fetched: {e}"));
    }
    let d = match result {
        Ok(d) => d,
        Err(e @ DiscoverError::ContentUnavailable { .. }) => {
            return Err(anyhow::Error::new(e).context(
                "no gateway delivers the snapshot CAR of the latest version, nor of any \
                 version below it (CAR_UNAVAILABLE): the local version is not advanced and \
                 publishing is refused until a discovery fetches it",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = match (&d.cid, fetcher) {
        (Some(cid), Some(f)) => f.take(cid),
        _ => None,
    };
    let mut car = serde_json::Value::Null;
    let mut car_line = String::new();
    if let Some(CarOutcome::Fetched {
        bytes,
        blocks,
        from,
        failures,
    }) = &outcome
    {
        for f in failures {
            printer.warn(&format!("skipped gateway {f}"));
        }
        if let Some(out) = out {
            exit::write_output(out, bytes)?;
        }
        car_line = format!(
            "\nsnapshot CAR fetched and verified: {blocks} blocks, {} bytes, from {from}{}",
            bytes.len(),
            out.map(|o| format!("; wrote {}", o.display()))
                .unwrap_or_default()
        );
        car = json!({
            "fetched": true,
            "verified": true,
            "bytes": bytes.len(),
            "blocks": blocks,
            "from": from,
            "output": out.map(crate::output::path_json),
            "skipped_gateways": failures,
        });
    } else if d.cid.is_some() && fetcher.is_none() {
        let why = if fetch.no_fetch {
            "--no-fetch"
        } else {
            "no --gateway given"
        };
        car_line = format!("\nsnapshot CAR not fetched ({why}): the CID's content is unchecked");
        car = json!({"fetched": false, "verified": false, "reason": why});
    }
    let human = match &d.cid {
        Some(cid) => format!(
            "latest: {cid} at version {} ({} versions probed, {} RPCs, {ms} ms){car_line}",
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
            "car": car,
        }),
    )?;
    Ok(())
}

fn parse_cid(s: &str) -> anyhow::Result<cid::Cid> {
    cid::Cid::from_str(s).map_err(|e| exit::user(format!("--cid {s:?} is not a CID: {e}")))
}

/// One discovery (fetching the CAR unless `--no-fetch`), after `before` has run with
/// the pointer set up.
fn discover_with(
    dd: &DataDir,
    net: &PointerNetArgs,
    fetch: &PointerFetchArgs,
    printer: &Printer,
    before: impl FnOnce(&Pointer, &indicatif::ProgressBar) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let fetcher = CarFetcher::new(fetch)?;
    networked(
        dd,
        net,
        fetcher.as_ref().map(CarFetcher::check),
        printer,
        |p, pb| async move {
            before(&p, &pb)?;
            discover(&p, &pb, fetch, fetcher.as_ref(), printer).await
        },
    )
}

/// `--trust-base` / `SPHERE_TRUST_BASE`, else the file the embedded aggregator
/// exports in its default dir (`~/.sphere-aggregator/trust-base.json`) if it exists.
fn trust_base_path(net: &PointerNetArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &net.trust_base {
        return Ok(p.clone());
    }
    let default = std::env::var_os("HOME").map(|h| {
        PathBuf::from(h)
            .join(".sphere-aggregator")
            .join("trust-base.json")
    });
    match default {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(exit::user(
            "no trust base given: pass --trust-base FILE or set SPHERE_TRUST_BASE (the \
             embedded aggregator writes <its dir>/trust-base.json; with its default dir, \
             ~/.sphere-aggregator/trust-base.json is used without the flag)",
        )),
    }
}

fn networked<F, Fut>(
    dd: &DataDir,
    net: &PointerNetArgs,
    content: Option<ContentCheck>,
    printer: &Printer,
    f: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Pointer>, indicatif::ProgressBar) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let tb_path = trust_base_path(net)?;
    let tb_bytes = std::fs::read(&tb_path)
        .map_err(|e| exit::user(format!("cannot read trust base {}: {e}", tb_path.display())))?;
    let trust_base = TrustBase::from_json(&tb_bytes)
        .map_err(|e| exit::user(format!("{}: {e}", tb_path.display())))?;
    let keys = dd.keys()?;
    let state = PointerState::open(&dd.path().join(STATE_FILE))?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = AggregatorClient::new(&net.aggregator, ClientConfig::default())?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL_CAP);
        let mut pointer = Pointer::new(
            &keys.pointer,
            client,
            trust_base,
            state,
            PointerConfig::default().with_operator_overrides(overrides_allowed()),
        )?
        .with_events(tx);
        if let Some(check) = content {
            pointer = pointer.with_content_check(check);
        }
        let pointer = Arc::new(pointer);
        let pb = printer.spinner();
        let pb2 = pb.clone();
        let printer = *printer;
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
                        printer.above(
                            &pb2,
                            &format!("version {version} was taken by another device; reconciling"),
                        );
                    }
                    PointerEvent::VersionSkipped { version, reason } => {
                        printer.above(&pb2, &format!("skipping version {version}: {reason}"));
                    }
                    PointerEvent::VersionSkippedUnfetchable { version, attempts } => {
                        printer.above(
                            &pb2,
                            &format!(
                                "skipping version {version}: no gateway delivers its snapshot \
                                 CAR ({attempts} failed fetches recorded)"
                            ),
                        );
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
