//! End-to-end scenarios: each test drives the built `sphere-cli` binary in its own
//! temporary data dirs, on loopback only, and stops by itself.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures by design"
)]

mod harness;

/// Exit codes (0/1/2) across commands, non-UTF-8 paths, stdin limits.
mod exit_cli;
/// `sphere-cli gateway`: the embedded IPFS gateway as a process, with the official Kubo RPC client.
mod gateway_cli;
/// `init`, `status`, `mnemonic`.
mod init_cli;
/// `kv`, the one-process lock and the kill -9 crash test.
mod kv_cli;
/// `pointer discover` fetching the snapshot CAR from gateway processes; overrides.
mod pointer_car_cli;
/// Embedded aggregator + pointer publish/discover between two data dirs.
mod pointer_cli;
/// The official state-transition SDK (npm) against our aggregator and client.
mod pointer_sdk;
/// Three device processes syncing, with a kill and restart.
mod sync_cli;
/// `sphere-cli uxf` against the golden vectors.
mod uxf_cli;
