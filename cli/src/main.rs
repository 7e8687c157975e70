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

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match args::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage(&e),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPHERE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.global.verbose { "info" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let printer = output::Printer::new(&args.global);
    match commands::run(args, &printer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&printer, &err),
    }
}

/// What clap stopped at: `--help` and `--version` print on stdout and exit 0; a
/// usage error prints clap's message on stderr and is a user error (exit 1), with
/// the usual JSON error object on stdout when `--json` was given.
fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return match e.print() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(exit::USER),
        };
    }
    if json_requested(std::env::args_os()) {
        let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            "a subcommand or argument is missing (see --help)".to_owned()
        } else {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        };
        output::error_json(&message, &[], exit::USER);
    }
    let _ = e.print();
    ExitCode::from(exit::USER)
}

/// Whether `--json` is among the options (before a bare `--`, after which every
/// argument is a value).
fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}
