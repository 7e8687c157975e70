//! One module per subcommand; each is a plain function over resolved settings and
//! the [`Printer`]. This file only dispatches.

mod aggregator;
mod gateway;
mod init;
mod ipfs;
mod kv;
mod mnemonic;
mod pointer;
mod status;
mod sync;
mod uxf;

use std::path::PathBuf;

use anyhow::Context;

use crate::args::{Cli, Command};
use crate::output::Printer;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli, printer: &Printer) -> anyhow::Result<()> {
    let data_dir = match (&cli.command, cli.global.data_dir) {
        // The aggregator's dir is its own, never a wallet's: SPHERE_DATA_DIR (which
        // `init` suggests setting) names the wallet and is not followed here.
        (Command::Aggregator(_), None) => home()?.join(".sphere-aggregator"),
        (_, flag) => resolve_data_dir(flag, std::env::var_os("SPHERE_DATA_DIR"))?,
    };
    match cli.command {
        Command::Init(args) => init::run(&data_dir, &args, printer),
        Command::Status => status::run(&data_dir, printer),
        Command::Mnemonic => mnemonic::run(&data_dir, printer),
        Command::Pointer(cmd) => pointer::run(&data_dir, &cmd, printer),
        Command::Aggregator(args) => aggregator::run(&data_dir, &args, printer),
        Command::Kv(args) => kv::run(&data_dir, args.command, printer),
        Command::Sync(args) => sync::run(&data_dir, &args, printer),
        Command::Gateway(args) => gateway::run(&data_dir, &args, printer),
        Command::Ipfs(cmd) => ipfs::run(&cmd, printer),
        Command::Uxf(cmd) => uxf::run(cmd, printer),
    }
}

/// `--data-dir`, else `SPHERE_DATA_DIR` when set and not empty, else
/// `~/.sphere-profile`.
fn resolve_data_dir(
    flag: Option<PathBuf>,
    env: Option<std::ffi::OsString>,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(home()?.join(".sphere-profile"))
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("no --data-dir given and HOME is not set")
}
