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
    /// The wallet data dir, else SPHERE_DATA_DIR [default: ~/.sphere-profile]. For
    /// `aggregator`, the aggregator's own dir [default: ~/.sphere-aggregator; it
    /// never follows SPHERE_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
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
    /// Show the wallet's identity and what the data dir holds, and the sync status of
    /// the `sphere-cli sync` running on it (peers, catch-ups, entries in/out,
    /// rejections), or that none runs. Takes no lock.
    Status,
    /// Reveal the stored mnemonic (asks for the password, or reads SPHERE_PASSWORD).
    Mnemonic,
    /// Raw record access to the Profile's OpLog, for operators and scripts.
    ///
    /// Values are stored as given (bytes); each write is one signed, encrypted entry
    /// that replicates like any other. Takes the data dir's lock, or talks to the
    /// running `sphere-cli sync` of the data dir.
    Kv(KvArgs),
    /// Run the sync node in the foreground: replicate the Profile live with this
    /// wallet's other devices over libp2p.
    ///
    /// Prints its listen addresses (give one to another device's --peer), then a
    /// live status line; --json prints one JSON event per line instead. While it
    /// runs, `kv` on the same data dir goes through it and `status` shows its sync
    /// status. Stop with Ctrl-C.
    Sync(SyncArgs),
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
    /// Run the embedded IPFS gateway (Kubo RPC subset + trustless gateway) over a
    /// SQLite block store in the data dir (`<data dir>/gateway.db`; no wallet needed).
    ///
    /// Prints `listening on http://ADDR` (or `{"listening": …}` with --json) once it
    /// accepts connections; stops cleanly on Ctrl-C or SIGTERM.
    Gateway(GatewayArgs),
    /// UXF token bundles as a tool: pack token JSON into a CAR, unpack, verify, inspect.
    #[command(subcommand)]
    Uxf(UxfCommand),
    /// Pin a CAR to IPFS gateways, or fetch one back with every block verified.
    #[command(subcommand)]
    Ipfs(IpfsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum IpfsCommand {
    /// Verify a CAR file, then pin it: Kubo `dag/import`, else block by block.
    Pin {
        /// The CAR file.
        #[arg(value_name = "FILE.car")]
        car: PathBuf,
        #[command(flatten)]
        gateways: IpfsGateways,
    },
    /// Fetch the DAG under CID as a CAR (trustless gateway, else `dag/export`, else
    /// block by block), re-hashing every block; a gateway that lies is skipped.
    Fetch {
        /// The root CID.
        cid: String,
        /// Where to write the CAR.
        #[arg(short, long, value_name = "OUT.car")]
        output: PathBuf,
        #[command(flatten)]
        gateways: IpfsGateways,
    },
    /// Ask the gateways, in order, whether they have CID (`HEAD /ipfs/CID`). Exit 0
    /// if one has it, 1 if those that answered do not, 2 if none could be asked.
    Has {
        /// The CID.
        cid: String,
        #[command(flatten)]
        gateways: IpfsGateways,
    },
}

#[derive(Debug, Args)]
pub(crate) struct IpfsGateways {
    /// Gateway base URL, tried in the order given (repeatable), e.g. http://127.0.0.1:5001
    #[arg(long = "gateway", required = true, value_name = "URL")]
    pub(crate) gateway: Vec<String>,
}

/// `sphere-cli uxf …`
#[derive(Debug, Subcommand)]
pub(crate) enum UxfCommand {
    /// Pack token JSON files (each one token or an array of tokens) into a UXF CARv1 bundle.
    Pack(UxfPackArgs),
    /// Write every token of a bundle back as token JSON files (DIR/TOKEN_ID.json).
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
pub(crate) struct GatewayArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5001", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// Listen on this multiaddr (repeatable) [default: /ip4/127.0.0.1/tcp/0]
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<String>,
    /// Dial this device (repeatable), e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3…;
    /// redialled with backoff when it drops. Devices seen before are redialled too.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) peer: Vec<String>,
    /// Also find devices on the local network by mDNS (multicast).
    #[arg(long)]
    pub(crate) mdns: bool,
    /// Period of the anti-entropy catch-up with every device, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub(crate) anti_entropy_ms: u64,
    /// Test switch: drop this fraction (0..1) of received gossip messages.
    #[arg(long, default_value_t = 0.0, hide = true)]
    pub(crate) gossip_drop_rate: f64,
}

#[derive(Debug, Args)]
pub(crate) struct KvArgs {
    #[command(subcommand)]
    pub(crate) command: KvCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KvCommand {
    /// Write a value: from VALUE, from --file, or from standard input (VALUE
    /// omitted or `-`).
    Put {
        /// The key.
        key: String,
        /// The value (UTF-8 text); `-` or omitted reads standard input.
        #[arg(conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Print a value (exit 1 if the key is absent or deleted).
    Get {
        /// The key.
        key: String,
    },
    /// Delete a key (writes a tombstone).
    Del {
        /// The key.
        key: String,
    },
    /// List live keys and values, optionally under a prefix.
    List {
        /// Only keys starting with this.
        prefix: Option<String>,
    },
    /// Print the state digest (SHA-256 over every record): two devices hold the same
    /// state exactly when their digests are equal.
    Digest,
    /// Test helper: write as fast as possible and print every acknowledged key
    /// (used by the kill -9 crash test).
    #[command(hide = true)]
    CrashWriter {
        /// Concurrent writers.
        #[arg(long, default_value_t = 8)]
        writers: u32,
        /// Stop after this many puts per writer (default: never).
        #[arg(long)]
        count: Option<u64>,
        /// Keys are `crash/TAG/WRITER/I`.
        #[arg(long, default_value = "0")]
        tag: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PointerCommand {
    /// Publish CID as the wallet's next pointer version (both sides, confirmed by
    /// verified inclusion proofs).
    Publish(PointerPublishArgs),
    /// Find the latest published CID (exponential then binary search, every proof
    /// verified), then fetch its snapshot CAR from the gateways and verify every
    /// block. A version whose CAR no gateway delivers is skipped; when none is left
    /// the command fails with CAR_UNAVAILABLE and publishing is refused until a
    /// discovery fetches it (or an operator runs `accept-car-loss`).
    Discover(PointerDiscoverArgs),
    /// Show what the wallet would publish at a version: public key, state ids,
    /// and with --cid the XOR-blinded ciphertexts and requests. No network.
    Inspect(PointerInspectArgs),
    /// Operator override: give up the snapshot CAR of VERSION for good and
    /// republish this device's state above it. Needs SPHERE_ALLOW_OVERRIDES=1 (and
    /// NODE_ENV not `production`), and 12 failed fetches of VERSION spread over 24 h
    /// (each `pointer discover` that cannot fetch it records one).
    AcceptCarLoss(PointerAcceptCarLossArgs),
    /// Operator override: run one discovery that may walk back past up to LIMIT
    /// invalid versions instead of 64 (CORRUPT_STREAK). Needs SPHERE_ALLOW_OVERRIDES=1.
    AcceptCorruptStreak(PointerAcceptCorruptStreakArgs),
    /// Operator override: drop the pending-version marker (e.g. one MARKER_CORRUPT
    /// refuses); publishing stays blocked until the next successful discovery.
    /// Needs SPHERE_ALLOW_OVERRIDES=1.
    ClearPendingMarker(PointerNetArgs),
}

/// Where the snapshot CAR comes from (the same `--gateway` as `sphere-cli ipfs fetch`).
#[derive(Debug, Args)]
pub(crate) struct PointerFetchArgs {
    /// Gateway base URL to fetch the snapshot CAR from, tried in the order given
    /// (repeatable), e.g. http://127.0.0.1:5001. Without any, the CAR is not
    /// fetched (as with --no-fetch) and the command says so.
    #[arg(long = "gateway", value_name = "URL")]
    pub(crate) gateway: Vec<String>,
    /// Write the verified snapshot CAR to this file (needs --gateway).
    #[arg(long, value_name = "FILE", requires = "gateway")]
    pub(crate) out: Option<PathBuf>,
    /// Only find the pointer; do not fetch its CAR (the CID's content is then unchecked).
    #[arg(long, conflicts_with_all = ["gateway", "out"])]
    pub(crate) no_fetch: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PointerDiscoverArgs {
    #[command(flatten)]
    pub(crate) net: PointerNetArgs,
    #[command(flatten)]
    pub(crate) fetch: PointerFetchArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PointerAcceptCorruptStreakArgs {
    /// Invalid versions the one discovery may walk past (1..=4096) [default: 4096]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) limit: Option<u32>,
    #[command(flatten)]
    pub(crate) net: PointerNetArgs,
    #[command(flatten)]
    pub(crate) fetch: PointerFetchArgs,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub(crate) struct PointerAcceptCarLossArgs {
    /// The verified version whose snapshot CAR is lost.
    #[arg(long)]
    pub(crate) version: u32,
    /// The CID of this device's current state to republish [default: the CID this
    /// device last published or fetched]
    #[arg(long)]
    pub(crate) cid: Option<String>,
    #[command(flatten)]
    pub(crate) net: PointerNetArgs,
    #[command(flatten)]
    pub(crate) gateways: IpfsGateways,
}

#[derive(Debug, Args)]
pub(crate) struct PointerNetArgs {
    /// Aggregator JSON-RPC URL.
    #[arg(long, env = "SPHERE_AGGREGATOR", value_name = "URL")]
    pub(crate) aggregator: String,
    /// Root trust base JSON (RootTrustBase, as `sphere-cli aggregator` exports it)
    /// [default: ~/.sphere-aggregator/trust-base.json, the embedded aggregator's
    /// export, when that file exists].
    #[arg(long, env = "SPHERE_TRUST_BASE", value_name = "FILE")]
    pub(crate) trust_base: Option<PathBuf>,
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
    /// BIP32 address index (0..=2147483647): the key at m/44'/0'/0'/0/INDEX.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "INDEX",
        value_parser = clap::value_parser!(u32).range(0..=i64::from(i32::MAX))
    )]
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
