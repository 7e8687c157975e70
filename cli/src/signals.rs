//! Shutdown signals for the long-running commands (`gateway`, `aggregator`, `sync`).
//!
//! The handlers are installed when [`Shutdown::install`] is called, which must happen
//! *before* a command announces that it is ready: a SIGTERM sent right after the
//! "listening on …" line would otherwise hit the default action and kill the process
//! uncleanly.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, already registered.
pub(crate) struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    /// Registers both handlers now (inside a tokio runtime).
    pub(crate) fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub(crate) async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
