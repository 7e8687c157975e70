//! End-to-end scenarios: each test drives the built `sphere-cli` binary in its own
//! temporary data dirs, on loopback only, and stops by itself.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures by design"
)]

mod harness;
mod init_cli;
mod kv_cli;
mod sync_cli;
