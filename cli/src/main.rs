//! `sphere-cli`: the command-line front end of the Sphere Profile store.
//!
//! Parses arguments, sends tracing to stderr, runs the command, and maps the
//! outcome to an exit code: 0 success, 1 user or input error, 2 internal error.
//! A closed stdout (broken pipe) counts as success.

mod args;
mod commands;
mod exit;
mod output;
mod prompt;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPHERE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.global.verbose { "info" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let printer = output::Printer::new(&args.global);
    match commands::run(args, &printer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&printer, &err),
    }
}
