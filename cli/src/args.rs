//! Command-line flags (clap derives only; doc comments are the `--help` text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sphere Profile: a local-first wallet Profile store (encrypted OpLog on SQLite,
/// UXF token bundles on IPFS, live sync between devices, recovery from the mnemonic).
#[derive(Debug, Parser)]
#[command(name = "sphere-cli", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The wallet data dir [default: ~/.sphere-profile]
    #[arg(long, global = true, env = "SPHERE_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print one JSON object per command (JSON Lines for streaming commands) instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print only results and errors: no progress, no hints.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// Log what is happening to stderr (SPHERE_LOG=debug for more).
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a wallet in the data dir, from a new mnemonic or an imported one.
    ///
    /// The mnemonic is stored only sealed under your password (Argon2id, 64 MiB,
    /// 3 passes + AES-256-GCM), or not at all with --no-store-mnemonic. The password
    /// is prompted for without echo, or read from SPHERE_PASSWORD.
    Init(InitArgs),
    /// Show the wallet's identity and what the data dir holds.
    Status,
    /// Reveal the stored mnemonic (asks for the password, or reads SPHERE_PASSWORD).
    Mnemonic,
    /// UXF token bundles as a tool: pack token JSON into a CAR, unpack, verify, inspect.
    #[command(subcommand)]
    Uxf(UxfCommand),
}

/// `sphere-cli uxf …`
#[derive(Debug, Subcommand)]
pub(crate) enum UxfCommand {
    /// Pack token JSON files (each one token or an array of tokens) into a UXF CARv1 bundle.
    Pack(UxfPackArgs),
    /// Write every token of a bundle back as token JSON files (DIR/<tokenId>.json).
    Unpack(UxfUnpackArgs),
    /// Run every import check and verify(); exit 1 with the reason if anything fails.
    Verify {
        /// The bundle.
        #[arg(value_name = "IN.car")]
        input: PathBuf,
    },
    /// Show the envelope, manifest, element counts by type and dedup figures.
    Inspect {
        /// The bundle.
        #[arg(value_name = "IN.car")]
        input: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UxfPackArgs {
    /// Token JSON files.
    #[arg(required = true, value_name = "TOKEN.json")]
    pub(crate) tokens: Vec<PathBuf>,
    /// Output CAR file.
    #[arg(short, long, value_name = "OUT.car")]
    pub(crate) output: PathBuf,
    /// Envelope createdAt and updatedAt, unix seconds [default: now]. Same value, same bytes.
    #[arg(long, value_name = "SECS")]
    pub(crate) created_at: Option<u64>,
    /// Envelope creator (hex, e.g. a public key).
    #[arg(long, value_name = "HEX")]
    pub(crate) creator: Option<String>,
    /// Envelope description.
    #[arg(long, value_name = "TEXT")]
    pub(crate) description: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UxfUnpackArgs {
    /// The bundle.
    #[arg(value_name = "IN.car")]
    pub(crate) input: PathBuf,
    /// Directory to write the token JSON files into (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub(crate) output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Import an existing mnemonic, typed at a prompt without echo.
    #[arg(long, conflicts_with = "mnemonic_stdin")]
    pub(crate) import: bool,
    /// Import an existing mnemonic read from standard input (for scripts).
    #[arg(long)]
    pub(crate) mnemonic_stdin: bool,
    /// Words in a newly generated mnemonic.
    #[arg(long, value_enum, default_value_t = Words::W24, conflicts_with_all = ["import", "mnemonic_stdin"])]
    pub(crate) words: Words,
    /// Do not store the mnemonic at all; you alone keep it.
    #[arg(long)]
    pub(crate) no_store_mnemonic: bool,
    /// BIP32 address index: the key at m/44'/0'/0'/0/INDEX.
    #[arg(long, default_value_t = 0, value_name = "INDEX")]
    pub(crate) address_index: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Words {
    /// 12 words (128 bits).
    #[value(name = "12")]
    W12,
    /// 24 words (256 bits).
    #[value(name = "24")]
    W24,
}
