//! Typed errors of the OpLog, one enum per operation: decoding entry bytes
//! ([`DecodeError`]), deciding about a remote entry ([`Rejected`]), opening a store
//! ([`OpenError`]), and every other store call ([`StoreError`]). Messages never carry
//! secret bytes; they name devices (hex), sequence numbers, CIDs and keys.

/// Why bytes are not a well-formed entry, body or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Over a documented limit.
    #[error("{what} too large: {len}, limit {max}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size (bytes or count).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not the DAG-CBOR shape the format requires.
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// A format version this code does not read (fails closed).
    #[error("unknown format version {0}")]
    Version(u64),
    /// A field has an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Valid CBOR, but not the canonical encoding of what it holds.
    #[error("not canonical DAG-CBOR")]
    NonCanonical,
    /// The encrypted body (or snapshot) could not be opened.
    #[error("encrypted body rejected: {0}")]
    Body(&'static str),
}

/// Why a remote entry was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// The bytes are not a well-formed entry.
    #[error("malformed entry: {0}")]
    Malformed(DecodeError),
    /// Larger than [`crate::oplog::MAX_ENTRY_BYTES`].
    #[error("entry of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The entry belongs to another wallet's log.
    #[error("entry {device}#{seq} belongs to another log")]
    ForeignLog {
        /// Writer device (hex).
        device: String,
        /// Its sequence number.
        seq: u64,
    },
    /// The signature is malformed, high-S, or does not match the entry.
    #[error("entry {device}#{seq} has a bad signature")]
    BadSignature {
        /// Writer device (hex).
        device: String,
        /// Its sequence number.
        seq: u64,
    },
    /// Validly signed, but by a key that is not this wallet's OpLog key.
    #[error("entry {device}#{seq} is signed by another wallet's key {signer}")]
    WrongKey {
        /// Writer device (hex).
        device: String,
        /// Its sequence number.
        seq: u64,
        /// The signer's public key (hex).
        signer: String,
    },
    /// The body does not decrypt under the wallet's body key, or its operations are
    /// malformed.
    #[error("entry {device}#{seq} has an unreadable body: {reason}")]
    BadBody {
        /// Writer device (hex).
        device: String,
        /// Its sequence number.
        seq: u64,
        /// What failed.
        reason: DecodeError,
    },
    /// Same device and sequence number as a known entry, different content (or a
    /// different predecessor than the known one). Also raised as
    /// [`crate::oplog::Change::Fork`].
    #[error("{0}")]
    Fork(Box<crate::oplog::Fork>),
    /// The entry is older than what this store keeps (pruned or covered by an
    /// imported snapshot) and cannot be compared.
    #[error("entry {device}#{seq} is below the pruned floor {floor}")]
    BelowFloor {
        /// Writer device (hex).
        device: String,
        /// Its sequence number.
        seq: u64,
        /// The floor.
        floor: u64,
    },
    /// The entry extends its device's chain but its Lamport clock is not greater than
    /// its predecessor's (a writer must count up, so that no two writes tie).
    #[error("entry {device}#{seq} has clock {clock}, not above its predecessor's {previous}")]
    ClockNotIncreasing {
        /// Writer device (hex).
        device: String,
        /// Its sequence number.
        seq: u64,
        /// Its clock.
        clock: u64,
        /// The clock of entry `seq - 1`.
        previous: u64,
    },
    /// The pending table is full ([`crate::oplog::MAX_PENDING`]).
    #[error("pending table full ({max} entries waiting for predecessors)")]
    PendingFull {
        /// The limit.
        max: usize,
    },
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite refused to open or migrate the database.
    #[error("cannot open the OpLog database {path}")]
    Sqlite {
        /// The database path (`:memory:` for in-memory stores).
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of this program.
    #[error("database schema version {found} is newer than this program's {supported}")]
    NewerSchema {
        /// `PRAGMA user_version` on disk.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
    /// The database belongs to another wallet's log.
    #[error("database belongs to another log (log id {found})")]
    ForeignLog {
        /// The log id stored in the database (hex).
        found: String,
    },
    /// The device id given does not match the one the database was created with.
    #[error("database was written by device {found}, not {given}")]
    DeviceMismatch {
        /// Stored (hex).
        found: String,
        /// Given (hex).
        given: String,
    },
    /// The wallet's OpLog keys are unusable.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The device id in the data dir is not 8 bytes of hex.
    #[error("invalid device id {0:?} (want 16 hex characters)")]
    DeviceId(String),
    /// The data dir could not be used.
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    /// The store thread or its checkpoint thread could not be started.
    #[error("cannot start the store's threads")]
    Thread(#[source] std::io::Error),
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed; the transaction was rolled back and nothing was acknowledged.
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// The operation or batch breaks a format limit.
    #[error("invalid write: {0}")]
    Invalid(#[from] DecodeError),
    /// The store thread has stopped (the store was shut down or panicked).
    #[error("the store has stopped")]
    Stopped,
    /// More entries than [`crate::oplog::MAX_INGEST`] in one `ingest` call.
    #[error("{len} entries in one ingest call; limit {max}")]
    IngestTooLarge {
        /// Entries given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `entries_since` was asked for entries this store no longer keeps; fetch a
    /// snapshot instead.
    #[error("entries of device {device} up to #{floor} were pruned; asked from #{from}")]
    Pruned {
        /// Device (hex).
        device: String,
        /// Highest pruned sequence number.
        floor: u64,
        /// First sequence number asked for.
        from: u64,
    },
    /// A snapshot belongs to another log or is malformed.
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
    /// The store has given out every local device number an entry row can hold
    /// (`devices.idx`, [`crate::oplog::schema`]); entries naming a new device cannot
    /// be stored.
    #[error("this store knows {max} devices, the most it can hold")]
    TooManyDevices {
        /// The limit.
        max: i64,
    },
    /// Stored data is inconsistent (a bug or outside tampering).
    #[error("corrupt store: {0}")]
    Corrupt(String),
}
