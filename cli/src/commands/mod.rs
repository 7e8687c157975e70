//! One module per subcommand; each is a plain function over resolved settings and
//! the [`Printer`]. This file only dispatches.

mod init;
mod mnemonic;
mod status;
mod uxf;

use std::path::PathBuf;

use anyhow::Context;

use crate::args::{Cli, Command};
use crate::output::Printer;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli, printer: &Printer) -> anyhow::Result<()> {
    let data_dir = resolve_data_dir(cli.global.data_dir)?;
    match cli.command {
        Command::Init(args) => init::run(&data_dir, &args, printer),
        Command::Status => status::run(&data_dir, printer),
        Command::Mnemonic => mnemonic::run(&data_dir, printer),
        Command::Uxf(cmd) => uxf::run(cmd, printer),
    }
}

/// `--data-dir`, else `SPHERE_DATA_DIR` (clap reads it), else `~/.sphere-profile`.
fn resolve_data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").context("no --data-dir given and HOME is not set")?;
    Ok(PathBuf::from(home).join(".sphere-profile"))
}
