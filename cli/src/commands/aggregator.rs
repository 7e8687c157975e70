//! `sphere-cli aggregator`: runs the embedded aggregator until interrupted.
//! First stdout line: the URL; second: the exported trust base file.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sphere_pointer::server::{AggregatorConfig, AggregatorServer};

use crate::args::AggregatorArgs;
use crate::output::Printer;
use crate::signals::Shutdown;

pub(crate) fn run(dir: &Path, args: &AggregatorArgs, printer: &Printer) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let config = AggregatorConfig::default()
            .with_round_interval(Duration::from_millis(args.round_ms.max(1)));
        let server = AggregatorServer::start(dir, args.listen, config)
            .await
            .with_context(|| format!("cannot start the aggregator in {}", dir.display()))?;
        let shutdown = Shutdown::install()?;
        let tb = server
            .trust_base_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        printer.result(
            &format!("{}\ntrust base: {tb}\n", server.url()),
            &json!({"url": server.url(), "trust_base": tb, "data_dir": crate::output::path_json(dir)}),
        )?;
        printer.hint("serving; press Ctrl-C to stop");
        shutdown.wait().await;
        server.shutdown().await;
        anyhow::Ok(())
    })
}
