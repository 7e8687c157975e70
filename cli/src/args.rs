//! Command-line flags (clap derives only; doc comments are the `--help` text).

use std::net::SocketAddr;
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
    /// Anchor the wallet's latest Profile snapshot CID on a Unicity aggregator, and
    /// find it again from the mnemonic alone.
    #[command(subcommand)]
    Pointer(PointerCommand),
    /// Run the embedded aggregator: the Unicity aggregator's JSON-RPC over a radix
    /// SMT in SQLite, with proofs signed under a generated test trust base.
    ///
    /// Prints its URL on the first line of stdout and the trust base file on the
    /// second, then serves until interrupted. --data-dir is the aggregator's own
    /// dir (default ~/.sphere-aggregator), not a wallet.
    Aggregator(AggregatorArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PointerCommand {
    /// Publish CID as the wallet's next pointer version (both sides, confirmed by
    /// verified inclusion proofs).
    Publish(PointerPublishArgs),
    /// Find the latest published CID (exponential then binary search, every proof
    /// verified).
    Discover(PointerNetArgs),
    /// Show what the wallet would publish at a version: public key, state ids,
    /// and with --cid the XOR-blinded ciphertexts and requests. No network.
    Inspect(PointerInspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PointerNetArgs {
    /// Aggregator JSON-RPC URL.
    #[arg(long, env = "SPHERE_AGGREGATOR", value_name = "URL")]
    pub(crate) aggregator: String,
    /// Root trust base JSON (RootTrustBase, as `sphere-cli aggregator` exports it).
    #[arg(long, env = "SPHERE_TRUST_BASE", value_name = "FILE")]
    pub(crate) trust_base: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct PointerPublishArgs {
    /// The CID to anchor (at most 63 bytes in binary form, sha2-256).
    #[arg(long)]
    pub(crate) cid: String,
    #[command(flatten)]
    pub(crate) net: PointerNetArgs,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub(crate) struct PointerInspectArgs {
    /// The version to derive (1..=2147483647).
    #[arg(long)]
    pub(crate) version: u32,
    /// A CID to blind: adds ciphertexts and certification requests.
    #[arg(long)]
    pub(crate) cid: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AggregatorArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub(crate) listen: SocketAddr,
    /// Milliseconds between rounds (a round closes only when requests are pending).
    #[arg(long, default_value_t = 200)]
    pub(crate) round_ms: u64,
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
