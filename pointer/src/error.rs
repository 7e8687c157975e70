//! Error types, one per operation, and the crate's umbrella [`Error`].
//!
//! Variants carry what identifies the failure (version, side, status, URL) and
//! never secret bytes (seeds, keys, plaintext payloads).

use crate::cbor::CborError;
use crate::certificate::CertificateError;
use crate::derive::Side;
use crate::smt::PathError;

/// Bytes that are not the wire object they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not strict CBOR.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// A field has the wrong type or a container the wrong arity.
    #[error("malformed {0}")]
    Shape(&'static str),
    /// A tagged object carries another tag.
    #[error("{what}: unexpected tag {found}")]
    Tag {
        /// Which object.
        what: &'static str,
        /// The tag found.
        found: u64,
    },
    /// An unsupported object version.
    #[error("{what}: unsupported version {found}")]
    Version {
        /// Which object.
        what: &'static str,
        /// The version found.
        found: u64,
    },
    /// A fixed-length field has another length.
    #[error("{what}: {len} bytes")]
    Length {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Larger than [`crate::wire::MAX_WIRE_BYTES`].
    #[error("wire object of {0} bytes is too large")]
    TooLarge(usize),
    /// Not hex.
    #[error("parameter is not hex")]
    Hex,
    /// The inclusion certificate is malformed.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Why two ciphertexts do not decode to a CID (or a CID cannot be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Version outside 1..=2^31−1.
    #[error("version {0} is out of range")]
    VersionOutOfRange(u32),
    /// A CID longer than 63 bytes (or empty) cannot be published.
    #[error("cid of {0} bytes does not fit a pointer (1..=63)")]
    CidTooLarge(usize),
    /// The decoded length prefix is outside 1..=63.
    #[error("decoded length prefix {0} is out of range")]
    BadLength(u8),
    /// The bytes inside the length prefix are not exactly one CID.
    #[error("decoded bytes are not a cid: {0}")]
    BadCid(String),
    /// A hash other than sha2-256.
    #[error("cid uses multihash {0:#x}, only sha2-256 is accepted")]
    UnsupportedHash(u64),
    /// The padding is not the one this wallet derives.
    #[error("padding does not match the wallet's padding")]
    BadPadding,
}

/// Why an inclusion proof is not believed. A proof that fails any check is never
/// used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The response does not decode.
    #[error("undecodable proof: {0}")]
    Wire(#[from] WireError),
    /// The certification data is not for the key and state that were asked for.
    #[error("certification data does not match the requested state")]
    CertificationDataMismatch,
    /// The certification data hashes to another StateId than the one requested.
    #[error("proof is for another state id")]
    StateIdMismatch,
    /// The leaf's reference time is after the certified round.
    #[error("reference time after the certified round")]
    ReferenceTimeAfterRound,
    /// The request's deadline had passed when the leaf was admitted.
    #[error("request expired before it was admitted")]
    RequestExpired,
    /// The SMT path does not reach the certified root.
    #[error("smt path does not reach the certified root")]
    PathInvalid,
    /// The state id is outside the certificate's shard.
    #[error("state id is outside the certified shard")]
    ShardMismatch,
    /// The certificate's epoch is newer than the trust base: ship a newer trust base.
    #[error("trust base is stale (certificate epoch {cert}, trust base epoch {trusted})")]
    TrustBaseStale {
        /// Certificate epoch.
        cert: u64,
        /// Trust base epoch.
        trusted: u64,
    },
    /// The unicity certificate does not verify against the trust base.
    #[error("untrusted unicity certificate: {0}")]
    Untrusted(CertificateError),
    /// The witness does not verify for the lock script.
    #[error("leaf signature does not verify")]
    NotAuthenticated,
}

/// A JSON-RPC call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Connection refused, reset, timed out, or DNS/TLS failure — retryable.
    #[error("aggregator unreachable: {0}")]
    Network(String),
    /// HTTP 429/503 or JSON-RPC −32006 after every retry.
    #[error("aggregator busy (HTTP {0})")]
    Busy(u16),
    /// HTTP 5xx after every retry.
    #[error("aggregator server error (HTTP {0})")]
    Server(u16),
    /// Another HTTP 4xx: the aggregator refused the request.
    #[error("aggregator rejected the request (HTTP {0})")]
    Rejected(u16),
    /// A JSON-RPC error object.
    #[error("aggregator error {code}: {message}")]
    Rpc {
        /// JSON-RPC code.
        code: i64,
        /// Message.
        message: String,
    },
    /// Bad JSON, missing fields, wrong id, or an undecodable result.
    #[error("aggregator protocol error: {0}")]
    Protocol(String),
    /// The aggregator URL is not an absolute `http://` or `https://` URL (refused
    /// before any request; the URL itself is not echoed, it may hold credentials).
    #[error("the aggregator URL is not usable: {0}")]
    BadUrl(String),
}

impl RpcError {
    /// True for errors a later retry may fix.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Network(_) | Self::Busy(_) | Self::Server(_))
    }
}

/// The SQLite pointer state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// SQLite failed.
    #[error("pointer state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored marker is malformed, or jumps too far ahead.
    #[error("pending-version marker is corrupt: {0}")]
    MarkerCorrupt(String),
    /// The state file was written by a newer version of this program.
    #[error("pointer state schema version {found} is newer than this program's {supported}")]
    NewerSchema {
        /// `PRAGMA user_version` on disk.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
}

/// Why a publish did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Publishing is blocked until an operator clears it or a discovery succeeds.
    #[error("pointer publishing is blocked ({reason}); run discovery or clear it")]
    Blocked {
        /// Why it was blocked.
        reason: String,
    },
    /// The CID cannot be carried.
    #[error(transparent)]
    Cid(#[from] DecodeError),
    /// The aggregator refused a side permanently; version `version` is burnt.
    #[error("aggregator rejected side {side:?} of version {version}: {status}")]
    Rejected {
        /// Burnt version.
        version: u32,
        /// The side refused.
        side: Side,
        /// The status string.
        status: String,
    },
    /// CAR_UNAVAILABLE: the latest verified version's snapshot CAR cannot be
    /// fetched; publishing now could overwrite content this device never saw.
    /// Cleared by a discovery that fetches it, or by `accept_car_loss`.
    #[error(
        "the snapshot CAR of version {version} cannot be fetched (CAR_UNAVAILABLE); \
         publishing is refused until a discovery fetches it or an operator accepts the loss"
    )]
    CarUnavailable {
        /// The version whose CAR is missing.
        version: u32,
    },
    /// Another device kept winning; gave up after the retry budget.
    #[error("lost the race for a version {attempts} times; giving up")]
    RetryExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// The inclusion did not show up within the confirmation budget.
    #[error("version {version} was accepted but not certified in time")]
    NotConfirmed {
        /// The version.
        version: u32,
    },
    /// A network or protocol failure (the marker is kept; the next publish resumes).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A proof did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Discovery (during reconcile) failed.
    #[error(transparent)]
    Discover(#[from] Box<DiscoverError>),
    /// Local state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why discovery did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// A proof RPC failed: the latest version cannot be determined now.
    #[error("proof of version {version} unavailable: {source}")]
    ProofUnavailable {
        /// Version probed.
        version: u32,
        /// The failure.
        source: RpcError,
    },
    /// A proof did not verify: the aggregator (or a proxy) lies, or the trust base is stale.
    #[error("untrusted proof for version {version} side {side:?}: {source}")]
    Untrusted {
        /// Version probed.
        version: u32,
        /// Side probed.
        side: Side,
        /// Why.
        source: VerifyError,
    },
    /// Versions are included all the way up to the hard ceiling.
    #[error("discovery overflow: versions included up to {0}")]
    Overflow(u32),
    /// Too many invalid versions in a row.
    #[error("{0} invalid versions in a row below the latest")]
    CorruptStreak(u32),
    /// The latest valid version's content cannot be fetched.
    #[error("content of version {version} is unavailable")]
    ContentUnavailable {
        /// The version.
        version: u32,
    },
    /// The walk-back went below the version this device itself committed: the
    /// aggregator hides or has not yet replicated what it certified before.
    #[error("aggregator no longer shows version {local}, which this device committed")]
    WalkbackFloor {
        /// The device's committed version.
        local: u32,
    },
    /// Local state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why an operator override (spec §10) was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverrideError {
    /// CAPABILITY_DENIED: the pointer was not configured with
    /// `allow_operator_overrides`.
    #[error(
        "{operation} is an operator override and this pointer is not allowed to use them (CAPABILITY_DENIED)"
    )]
    CapabilityDenied {
        /// The override asked for (`acceptCarLoss`, `acceptCorruptStreak`, `clearPendingMarker`).
        operation: &'static str,
    },
    /// The version is outside 1..=2^31−1.
    #[error("version {0} is out of range")]
    VersionOutOfRange(u32),
    /// `acceptCarLoss(v)` before the loss is persistent: fewer than the required
    /// failed fetches, or not spread over long enough.
    #[error(
        "the CAR of version {version} is not known lost yet: {attempts} failed fetches over \
         {span_secs} s, {min_attempts} over {min_span_secs} s are required"
    )]
    CarLossNotPersistent {
        /// The version.
        version: u32,
        /// Failed fetches recorded.
        attempts: u32,
        /// Seconds between the first and the latest.
        span_secs: u64,
        /// Failed fetches required.
        min_attempts: u32,
        /// Span required.
        min_span_secs: u64,
    },
    /// The final fetch before accepting the loss found the CAR: nothing is lost.
    #[error("the CAR of version {version} is available again; the loss is not accepted")]
    CarAvailable {
        /// The version.
        version: u32,
    },
    /// Reading the version's pointer before accepting its loss failed.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The republish of the local state failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Local state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`WireError`].
    #[error(transparent)]
    Wire(#[from] WireError),
    /// See [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// See [`VerifyError`].
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// See [`RpcError`].
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// See [`StateError`].
    #[error(transparent)]
    State(#[from] StateError),
    /// See [`PublishError`].
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// See [`DiscoverError`].
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// See [`OverrideError`].
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// See [`crate::certificate::TrustBaseError`].
    #[error(transparent)]
    TrustBase(#[from] crate::certificate::TrustBaseError),
    /// See [`crate::derive::KeysError`].
    #[error(transparent)]
    Keys(#[from] crate::derive::KeysError),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
