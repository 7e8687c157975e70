//! `sphere-cli gateway`: runs the embedded IPFS gateway until Ctrl-C or SIGTERM.
//! The data dir only holds the gateway's block store (`gateway.db`); it need not
//! be a wallet.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use sphere_profile::ipfs::server::{self, GATEWAY_DB};
use sphere_profile::ipfs::{BlockCache, CarLimits};

use crate::args::GatewayArgs;
use crate::exit::user;
use crate::output::{Printer, path_json};
use crate::signals::Shutdown;

pub(crate) fn run(data_dir: &Path, args: &GatewayArgs, printer: &Printer) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let db = data_dir.join(GATEWAY_DB);
    let store = Arc::new(
        BlockCache::open(&db)
            .with_context(|| format!("cannot open block store {}", db.display()))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| user(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let shutdown = Shutdown::install()?;
        printer.result(
            &format!("listening on {url}"),
            &json!({"listening": url, "data_dir": path_json(data_dir), "db": path_json(&db)}),
        )?;
        printer.hint(&format!(
            "blocks in {}; Ctrl-C or SIGTERM stops the gateway",
            db.display()
        ));
        server::serve(listener, store, CarLimits::default(), shutdown.wait())
            .await
            .context("gateway server failed")?;
        printer.hint("gateway stopped");
        anyhow::Ok(())
    })
}
