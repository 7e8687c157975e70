//! Multi-process end-to-end scenarios driving the built `sphere-cli` binary.

/// Embedded aggregator + pointer publish/discover between two data dirs.
mod pointer_cli;

/// The official state-transition SDK (npm) against our aggregator and client.
mod pointer_sdk;
