//! Errors of the IPFS module, one enum per operation: [`BlockError`] (one block
//! against its CID), [`CarError`] (decoding and verifying a CAR), [`CacheError`]
//! (the SQLite block store), [`FetchError`] and [`PinError`] (the gateway client,
//! each collecting one [`GatewayFailure`] per gateway tried), [`ConfigError`].
//!
//! Messages are lowercase without a final period; variants carry the CID or the
//! gateway they are about, never payload bytes.

use std::fmt;
use std::time::Duration;

use cid::Cid;

/// Why one block does not match its CID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The CID's multihash is not sha2-256.
    #[error("block {cid}: hash function 0x{code:x} is not sha2-256")]
    UnsupportedHash {
        /// The block's CID.
        cid: Cid,
        /// The multihash code found.
        code: u64,
    },
    /// The CID's codec is neither dag-cbor nor raw.
    #[error("block {cid}: codec 0x{codec:x} is not dag-cbor (0x71) or raw (0x55)")]
    UnsupportedCodec {
        /// The block's CID.
        cid: Cid,
        /// The codec found.
        codec: u64,
    },
    /// The CID is a CIDv0 (dag-pb); only CIDv1 is accepted.
    #[error("block {cid}: CIDv0 (dag-pb) is not supported")]
    CidV0 {
        /// The block's CID.
        cid: Cid,
    },
    /// SHA-256 of the bytes differs from the CID's digest.
    #[error("block {cid}: bytes do not hash to the CID")]
    HashMismatch {
        /// The block's CID.
        cid: Cid,
    },
    /// The block is larger than the block-size limit.
    #[error("block {cid}: {len} bytes exceeds the {limit}-byte block limit")]
    TooLarge {
        /// The block's CID.
        cid: Cid,
        /// Its size.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A dag-cbor block is not well-formed CBOR, so its links cannot be read.
    #[error("block {cid}: malformed dag-cbor: {reason}")]
    MalformedCbor {
        /// The block's CID.
        cid: Cid,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a CAR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// The CARv1 framing or header could not be decoded.
    #[error("malformed CAR: {0}")]
    Malformed(String),
    /// The header version is not 1.
    #[error("CAR version {0} is not supported (only CARv1)")]
    UnsupportedVersion(u64),
    /// The header lists no root, or more than one where one is required.
    #[error("CAR must have exactly one root, it has {0}")]
    RootCount(usize),
    /// The header's root is not the CID that was asked for.
    #[error("CAR root {got} is not the requested {want}")]
    WrongRoot {
        /// The CID asked for.
        want: Cid,
        /// The root the CAR names.
        got: Cid,
    },
    /// A block failed verification.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A block reachable from the root is absent.
    #[error("block {0} is linked from the root but missing")]
    MissingBlock(Cid),
    /// A block is present that the root does not reach.
    #[error("block {0} is not reachable from the root")]
    UnreachableBlock(Cid),
    /// The CAR is larger than the byte limit.
    #[error("the CAR is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// More blocks than the block-count limit.
    #[error("the CAR has more than {limit} blocks")]
    TooManyBlocks {
        /// The limit in force.
        limit: usize,
    },
    /// The DAG is deeper than the depth limit.
    #[error("the DAG is deeper than {limit} levels")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
}

/// Why the SQLite block store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// SQLite reported an error.
    #[error("block store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored block no longer matches its CID (disk corruption or tampering).
    #[error("block store: stored block is corrupt: {0}")]
    Corrupt(#[from] BlockError),
    /// A stored CID could not be parsed.
    #[error("block store: stored CID is invalid: {0}")]
    BadCid(String),
    /// The store's lock was poisoned by a panic in another thread.
    #[error("block store: lock poisoned")]
    Poisoned,
    /// The background checkpoint thread could not be started.
    #[error("block store: cannot start the checkpoint thread: {0}")]
    Io(String),
}

/// Why one gateway did not deliver. Collected per gateway in [`FetchError`] and
/// [`PinError`], and reported on success for the gateways skipped on the way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureCause {
    /// The gateway answered with bytes that fail verification: it is lying or broken,
    /// and it is skipped without retries.
    #[error("returned bad data: {0}")]
    Tampered(CarError),
    /// The response is over a size limit (seen from Content-Length or while streaming).
    #[error("response exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// No response headers within the first-byte timeout.
    #[error("no response within {0:?}")]
    FirstByteTimeout(Duration),
    /// The body stopped arriving for longer than the stall timeout.
    #[error("stalled for {0:?}")]
    Stalled(Duration),
    /// The overall time budget ran out while this gateway was being tried.
    #[error("time budget exhausted")]
    Budget,
    /// An HTTP status that is not success.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body, for people.
        message: String,
    },
    /// The response is not what the endpoint returns (wrong content type, content
    /// encoding, unparsable JSON, wrong CID echoed back).
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// Connecting, sending or reading failed.
    #[error("network: {0}")]
    Network(String),
    /// The response carries a `Content-Encoding` (other than `identity`): bytes must
    /// be hashed exactly as sent, so the gateway is skipped without retries.
    #[error("content encoding {0:?} refused: bytes must be verified as sent")]
    ContentEncoding(String),
}

impl FailureCause {
    /// Whether retrying the same gateway may help (network trouble, 5xx, 429, time-outs).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) | Self::FirstByteTimeout(_) | Self::Stalled(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Tampered(_)
            | Self::TooLarge { .. }
            | Self::Budget
            | Self::Protocol(_)
            | Self::ContentEncoding(_) => false,
        }
    }
}

/// One gateway and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFailure {
    /// The gateway's base URL (credentials removed).
    pub gateway: String,
    /// Which endpoint was being used.
    pub endpoint: &'static str,
    /// Why it failed (the last cause, after retries).
    pub cause: FailureCause,
    /// How many attempts were made on this endpoint.
    pub attempts: u32,
}

impl fmt::Display for GatewayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {} attempt{}): {}",
            self.gateway,
            self.endpoint,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.cause
        )
    }
}

fn list(failures: &[GatewayFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Every gateway was tried and none delivered verified data.
    #[error("no gateway delivered {cid}: {}", list(failures))]
    AllFailed {
        /// The requested root.
        cid: Cid,
        /// One entry per gateway endpoint tried, in order.
        failures: Vec<GatewayFailure>,
    },
    /// The overall time budget ran out before any gateway delivered.
    #[error("fetching {cid} ran out of its {budget:?} budget: {}", list(failures))]
    Budget {
        /// The requested root.
        cid: Cid,
        /// The budget in force.
        budget: Duration,
        /// What had failed by then.
        failures: Vec<GatewayFailure>,
    },
    /// The requested CID itself is unsupported (codec or hash).
    #[error(transparent)]
    Unsupported(#[from] BlockError),
    /// Not in the local store and no gateway is configured.
    #[error("{0} is not stored locally and no gateway is configured")]
    NoGateways(Cid),
    /// The local block store failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl FetchError {
    /// The per-gateway failures, if the error carries any.
    #[must_use]
    pub fn failures(&self) -> &[GatewayFailure] {
        match self {
            Self::AllFailed { failures, .. } | Self::Budget { failures, .. } => failures,
            _ => &[],
        }
    }
}

/// Why a pin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The CAR to pin is itself invalid (checked before anything is sent).
    #[error("refusing to pin an invalid CAR: {0}")]
    InvalidCar(#[from] CarError),
    /// No gateway accepted the CAR.
    #[error("no gateway pinned {cid}: {}", list(failures))]
    AllFailed {
        /// The CAR's root.
        cid: Cid,
        /// One entry per gateway endpoint tried, in order.
        failures: Vec<GatewayFailure>,
    },
    /// The overall time budget ran out.
    #[error("pinning {cid} ran out of its {budget:?} budget: {}", list(failures))]
    Budget {
        /// The CAR's root.
        cid: Cid,
        /// The budget in force.
        budget: Duration,
        /// What had failed by then.
        failures: Vec<GatewayFailure>,
    },
    /// No gateway is configured.
    #[error("no gateway is configured")]
    NoGateways,
    /// The local block store failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A gateway URL is not http(s), has credentials, or does not parse.
    #[error("gateway URL {url:?} is not usable: {reason}")]
    BadUrl {
        /// The URL as given (credentials are never echoed: such URLs are refused
        /// before they are stored).
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// A limit or timeout is zero or out of its range.
    #[error("{field} is out of range: {reason}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}
