//! End-to-end scenarios: each test drives the built `sphere-cli` binary in its own
//! temporary data dirs, on loopback only, and stops by itself.

mod harness;
mod init_cli;
