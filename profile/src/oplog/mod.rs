//! The encrypted Merkle-CRDT OpLog on SQLite (DESIGN §4): signed, content-addressed
//! entries and the materialized last-writer-wins state.
//!
//! # Data model
//!
//! Every device of a wallet appends [`Entry`]s to its own chain: sequence numbers 1,
//! 2, 3 … without gaps, each entry naming its predecessor's CID and the heads of the
//! other devices it had applied (its causal context), so the entries of all devices
//! form one Merkle DAG. An entry carries a batch of operations `[key, value | null]`
//! encrypted under the wallet's body key, a Lamport clock, and a secp256k1 signature
//! by the wallet's OpLog signing key; every device of the wallet derives the same
//! keys ([`crate::keys::OplogKeys`]), nobody else can. The byte format is in
//! [`entry`] and `docs/formats.md` §5.
//!
//! The state is a last-writer-wins map: for each key the write with the greatest
//! `(clock, device id, op index)` wins, tombstones included. Because that order is
//! total and every write carries it, any set of entries applied in any order, any
//! number of times, gives the same state. The [`Store`] keeps the state materialized
//! in SQLite, updated in the same transaction that inserts the entry, so reads never
//! walk the log.
//!
//! # Using a store
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sphere_profile::keys::WalletKeys;
//! use sphere_profile::oplog::{Store, StoreConfig};
//! use sphere_profile::secret::Secret32;
//!
//! let keys = WalletKeys::from_address_key(&Secret32::new([7; 32]))?;
//! let store = Store::in_memory(&keys.oplog, [1; 8], StoreConfig::default())?;
//! store.put("settings.theme", b"dark".to_vec()).await?;
//! store.put_batch([("a.1", b"x".to_vec()), ("a.2", b"y".to_vec())]).await?;
//! store.delete("a.1").await?;
//! assert_eq!(store.get("settings.theme").await?, Some(b"dark".to_vec()));
//! assert_eq!(store.scan("a.").await?, vec![("a.2".to_owned(), b"y".to_vec())]);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! A sync layer never touches SQLite. The sync node uses [`Store::subscribe`] (every
//! committed entry's bytes, to publish), [`Store::version_vector`] and
//! [`Store::entries_since`] (catch-up pages for a peer's [`VersionVector`]),
//! [`Store::verify_batch`] then [`Store::apply_verified`] (remote entries → applied /
//! pending / rejected; together they are [`Store::ingest`], split so that the next
//! batch is verified while one is applied), and [`Store::export_snapshot`] /
//! [`Store::import_snapshot`] (when one device is behind the other's pruning floor).
//! [`verify`] checks an entry without a store.

pub mod db;
pub mod entry;
pub mod error;
pub(crate) mod presign;
pub(crate) mod recent;
pub mod schema;
pub mod sigbatch;
pub mod snapshot;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use cid::Cid;

pub use db::Record;
pub use entry::{
    DeviceId, Entry, Head, LogKeys, MAX_CTX, MAX_ENTRY_BYTES, MAX_KEY_BYTES, MAX_OPS,
    MAX_VALUE_BYTES, Op, decode, decode_verified, verify,
};
pub use error::{DecodeError, OpenError, Rejected, StoreError};
pub use snapshot::{MAX_SNAPSHOT_BYTES, Snapshot, SnapshotRow};
pub use store::{MAX_VERIFY_THREADS, PARALLEL_VERIFY_MIN, Store, StoreConfig, Verified, Written};

/// Most entries in one [`Store::ingest`] call.
pub const MAX_INGEST: usize = 1024;
/// Most entries kept waiting for a missing predecessor; more are rejected with
/// [`Rejected::PendingFull`] until the gap is filled.
pub const MAX_PENDING: usize = 65_536;
/// Rows the `recent` table collects before a transaction moves them into `state`
/// (the default of [`StoreConfig::with_recent_rows`]). A commit appends to `recent`
/// at the same cost whatever its size, so larger makes the moves rarer (each one
/// writes the `state` pages that many keys fall in) but longer, and holds more rows
/// in the in-memory index; the figures behind the choice are in
/// `docs/benchmarks.md`.
pub const RECENT_ROWS: usize = 2048;
/// Largest page [`Store::entries_since`] returns.
pub const MAX_PAGE: usize = 1024;
/// Capacity of the command channel to the store thread (callers wait when full).
pub const COMMAND_CAP: usize = 1024;
/// Capacity of the change broadcast; a subscriber more than this many events behind
/// gets `RecvError::Lagged` and should catch up with [`Store::entries_since`].
pub const CHANGE_CAP: usize = 4096;

/// What `put` waits for: how durable a write is when its future resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: the commit is in the WAL file (the OS page
    /// cache) before `put` returns, so it survives the process being killed
    /// (`kill -9`, panic, OOM). A power loss or kernel crash may lose the last
    /// commits since the previous checkpoint, never corrupting the database.
    #[default]
    Process,
    /// WAL with `synchronous=FULL`: the WAL is fsynced at every commit; survives
    /// power loss too. About 150 µs more per commit on this project's machines.
    PowerLoss,
}

/// A version vector: each device's highest contiguous sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct VersionVector(BTreeMap<DeviceId, u64>);

impl VersionVector {
    /// The position of `device` (0 = nothing).
    pub fn get(&self, device: &DeviceId) -> u64 {
        self.0.get(device).copied().unwrap_or(0)
    }

    /// Sets the position of `device`.
    pub fn set(&mut self, device: DeviceId, seq: u64) {
        self.0.insert(device, seq);
    }

    /// Raises the position of `device` to `seq` if it is lower.
    pub fn advance(&mut self, device: DeviceId, seq: u64) {
        let e = self.0.entry(device).or_insert(0);
        *e = (*e).max(seq);
    }

    /// `(device, seq)` pairs in device order.
    pub fn iter(&self) -> impl Iterator<Item = (&DeviceId, &u64)> {
        self.0.iter()
    }

    /// True when `self` has everything `other` has.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(d, s)| self.get(d) >= *s)
    }
}

/// A page of [`Store::entries_since`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Encoded entries in (device, seq) order.
    pub entries: Vec<Vec<u8>>,
    /// More entries follow: ask again with the version vector advanced by this page.
    pub more: bool,
}

/// What [`Store::ingest`] did with each entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Applied now (including pending entries they unblocked).
    pub applied: Vec<Cid>,
    /// Kept in the pending table until their predecessor arrives.
    pub pending: Vec<Cid>,
    /// Already known.
    pub duplicates: Vec<Cid>,
    /// `(index in the input, reason)`.
    pub rejected: Vec<(usize, Rejected)>,
}

impl IngestReport {
    fn merge(&mut self, other: IngestReport) {
        self.applied.extend(other.applied);
        self.pending.extend(other.pending);
        self.duplicates.extend(other.duplicates);
        self.rejected.extend(other.rejected);
    }
}

/// Where a committed entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Written by this store.
    Local,
    /// Received through [`Store::ingest`] (or resolved from the pending table).
    Remote,
}

/// An entry that was just committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEntry {
    /// Its CID.
    pub id: Cid,
    /// Its device.
    pub device: DeviceId,
    /// Its sequence number.
    pub seq: u64,
    /// Its Lamport clock.
    pub clock: u64,
    /// Local or remote.
    pub origin: Origin,
    /// The keys its operations touch (whether or not they won).
    pub keys: Vec<String>,
    /// The encoded entry, ready to publish.
    pub bytes: Vec<u8>,
}

/// A fork: two different entries for one device position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// Device (hex).
    pub device: String,
    /// The contested sequence number.
    pub seq: u64,
    /// The entry already known.
    pub existing: Cid,
    /// The conflicting one.
    pub incoming: Cid,
}

impl std::fmt::Display for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fork: {}#{} is {} here but {} is already known",
            self.device, self.seq, self.incoming, self.existing
        )
    }
}

/// An event of [`Store::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// An entry was committed.
    Entry(Arc<CommittedEntry>),
    /// A fork was detected (the incoming entry was rejected).
    Fork(Arc<Fork>),
}
