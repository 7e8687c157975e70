//! `sphere-cli ipfs pin|fetch|has`: a CAR to and from IPFS gateways, every block
//! verified against its CID, failing over gateway by gateway in the order given;
//! and the availability probe.

use std::path::Path;

use anyhow::Context;
use serde_json::json;
use sphere_profile::ipfs::{GatewayConfig, GatewayUrl, IpfsClient, Source};

use crate::args::{IpfsCommand, IpfsGateways};
use crate::exit::{Quiet, user, write_output};
use crate::output::{Printer, path_json};

fn client(gateways: &IpfsGateways) -> anyhow::Result<IpfsClient> {
    client_for(&gateways.gateway)
}

/// The verified IPFS client over `--gateway` URLs.
fn client_for(gateways: &[String]) -> anyhow::Result<IpfsClient> {
    client_with(gateways, GatewayConfig::default())
}

/// The verified IPFS client over `--gateway` URLs with `config`'s other settings
/// (also `pointer discover`'s).
pub(crate) fn client_with(
    gateways: &[String],
    config: GatewayConfig,
) -> anyhow::Result<IpfsClient> {
    let urls = gateways
        .iter()
        .map(|g| GatewayUrl::parse(g).map_err(|e| user(format!("--gateway {g}: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    IpfsClient::new(config.with_gateways(urls)).map_err(|e| user(e.to_string()))
}

pub(crate) fn run(cmd: &IpfsCommand, printer: &Printer) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        match cmd {
            IpfsCommand::Pin { car, gateways } => pin(car, gateways, printer).await,
            IpfsCommand::Fetch {
                cid,
                output,
                gateways,
            } => fetch(cid, output, gateways, printer).await,
            IpfsCommand::Has { cid, gateways } => has(cid, gateways, printer).await,
        }
    })
}

async fn pin(car: &Path, gateways: &IpfsGateways, printer: &Printer) -> anyhow::Result<()> {
    let bytes = std::fs::read(car).map_err(|e| user(format!("reading {}: {e}", car.display())))?;
    let pinned = client(gateways)?.pin_car_bytes(&bytes).await?;
    for f in &pinned.failures {
        printer.warn(&format!(
            "{} ({}) failed: {}",
            f.gateway, f.endpoint, f.cause
        ));
    }
    printer.result(
        &format!("pinned {} on {} ({})", pinned.root, pinned.gateway, pinned.endpoint),
        &json!({"root": pinned.root.to_string(), "gateway": pinned.gateway, "endpoint": pinned.endpoint, "bytes": bytes.len()}),
    )?;
    Ok(())
}

async fn fetch(
    cid: &str,
    output: &Path,
    gateways: &IpfsGateways,
    printer: &Printer,
) -> anyhow::Result<()> {
    let root = cid
        .parse()
        .map_err(|e| user(format!("{cid} is not a CID: {e}")))?;
    let fetched = client(gateways)?.fetch_car(&root).await?;
    for f in &fetched.failures {
        printer.warn(&format!(
            "{} ({}) failed: {}",
            f.gateway, f.endpoint, f.cause
        ));
    }
    let bytes = fetched.car.encode();
    write_output(output, &bytes)?;
    let from = match &fetched.source {
        Source::Local => "the local cache".to_owned(),
        Source::Gateway { url, endpoint } => format!("{url} ({endpoint})"),
        other => format!("{other:?}"),
    };
    printer.result(
        &format!(
            "fetched {root}: {} blocks, {} bytes, every block verified, from {from}; wrote {}",
            fetched.car.blocks().len(),
            bytes.len(),
            output.display()
        ),
        &json!({"root": root.to_string(), "blocks": fetched.car.blocks().len(), "bytes": bytes.len(), "from": from, "output": path_json(output)}),
    )?;
    Ok(())
}

async fn has(cid: &str, gateways: &IpfsGateways, printer: &Printer) -> anyhow::Result<()> {
    let root = cid
        .parse()
        .map_err(|e| user(format!("{cid} is not a CID: {e}")))?;
    let probe = client(gateways)?.has(&root).await?;
    for f in &probe.failures {
        printer.warn(&format!("{} could not be asked: {}", f.gateway, f.cause));
    }
    let failed: Vec<&str> = probe.failures.iter().map(|f| f.gateway.as_str()).collect();
    match &probe.found {
        Some(found) => {
            let size = found
                .content_length
                .map_or_else(String::new, |n| format!(" ({n} bytes)"));
            printer.result(
                &format!("{root} is available on {}{size}", found.gateway),
                &json!({"cid": root.to_string(), "available": true, "gateway": found.gateway,
                        "content_length": found.content_length, "absent": probe.absent, "failed": failed}),
            )?;
            Ok(())
        }
        None => {
            printer.result(
                &format!(
                    "{root} is not available (absent on {})",
                    probe.absent.join(", ")
                ),
                &json!({"cid": root.to_string(), "available": false, "gateway": null,
                        "content_length": null, "absent": probe.absent, "failed": failed}),
            )?;
            Err(Quiet(1).into())
        }
    }
}
