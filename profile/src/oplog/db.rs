//! The SQL side of the OpLog: every query and every write transaction, as functions
//! over a `rusqlite::Connection`. [`super::store`] keeps the writing
//! connection and the `Db` state machine behind a mutex; read-only queries are free
//! functions that the writer and the reader connection share.
//!
//! Invariants kept here (see [`super::schema`] for the tables): an entry is inserted,
//! its device's head advanced, its causal context recorded and its operations merged
//! into the materialized map in one `BEGIN IMMEDIATE` transaction; the in-memory
//! device cache is replaced only after that transaction commits.
//!
//! The map is two tables: winning writes are appended to `recent`, which a
//! transaction empties into the big `state` once it holds the flush threshold of
//! rows (why: [`super::schema`]). `recent` has no key index in SQLite; the writer
//! keeps one in memory (`oplog/recent.rs`), publishing a transaction's rows once it
//! commits. Readers take from that index, then read `state` in one read
//! transaction, and keep per key the record that ranks higher.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cid::Cid;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::entry::{
    self, DeviceId, Draft, Entry, Head, LogKeys, Op, cid_from_digest, decode_ctx, digest_of,
    encode_ctx,
};
use super::error::{Rejected, StoreError};
use super::presign::PresignPool;
use super::recent::{RecentIndex, RecentRow, Staged};
use super::store::VerifiedEntry;
use super::{
    Change, CommittedEntry, Durability, Fork, IngestReport, MAX_PENDING, Origin, Page, RECENT_ROWS,
};
use super::{Snapshot, SnapshotRow, VersionVector};
use crate::cipher;

/// AAD prefix of values sealed inline in `state`.
pub const STATE_AAD: &[u8] = b"sphere-oplog-state-v1";

/// A transaction writing at least this many records (a local entry's ops, an ingest's
/// ops, a snapshot's rows) writes them to `state` directly instead of through
/// `recent`.
const DIRECT_TO_STATE_OPS: usize = 32;

/// Low bits of an `entries` rowid that hold the entry's sequence number; the device's
/// `idx` is above them ([`entry_rowid`]). The SQL spells the same key as
/// `(s.dev << 40) | s.seq` ([`WITH_DEVICE_AND_ENTRY`]).
const SEQ_BITS: u32 = 40;
const _: () = assert!(entry::MAX_SEQ < 1 << SEQ_BITS);

/// Highest `devices.idx` that fits in an entry rowid above [`SEQ_BITS`] (2²³ − 1).
pub(crate) const MAX_DEVICE_IDX: i64 = (1 << (63 - SEQ_BITS)) - 1;

/// The `entries` rowid of entry `seq` of device `idx`: `idx · 2⁴⁰ + seq`. The one
/// integer keeps the table a rowid table (why: [`super::schema`]). Callers hold
/// `1 ≤ idx ≤ MAX_DEVICE_IDX` (checked when a device row is made) and
/// `seq ≤ MAX_SEQ` (checked when an entry is decoded or sealed).
fn entry_rowid(idx: i64, seq: u64) -> i64 {
    debug_assert!((1..=MAX_DEVICE_IDX).contains(&idx) && seq <= entry::MAX_SEQ);
    (idx << SEQ_BITS) | to_i64(seq & entry::MAX_SEQ)
}

/// One cached `devices` row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dev {
    pub(crate) idx: i64,
    pub(crate) seq: u64,
    pub(crate) head: Option<[u8; 32]>,
    /// The Lamport clock of entry `seq` (0 = none): the device's next entry must
    /// carry a greater one.
    pub(crate) clock: u64,
    pub(crate) floor: u64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// WAL pages after which SQLite checkpoints (default 1000). Each checkpoint fsyncs
/// the database file; with small commits touching a few hot pages, a longer WAL
/// coalesces them (at most ~40 MiB of WAL, replayed in milliseconds after a crash).
pub const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// WAL size in pages at which the writer checkpoints inline because the background
/// checkpoint thread has not caught up (a long reader, a slow disk).
pub const WAL_BACKSTOP_PAGES: i64 = 4 * WAL_CHECKPOINT_PAGES;

/// Applies the pragmas every connection uses.
pub(crate) fn configure(
    conn: &Connection,
    durability: Durability,
    memory: bool,
) -> rusqlite::Result<()> {
    if !memory {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, not wal"
            )));
        }
    }
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Process => "NORMAL",
            Durability::PowerLoss => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Rebuilds the entry stored at `(idx, seq)` of device `device`.
fn entry_from_row(
    keys: &LogKeys,
    device: DeviceId,
    seq: u64,
    row: &rusqlite::Row<'_>,
    at: usize,
) -> Result<Entry, StoreError> {
    let prev: Option<Vec<u8>> = row.get(at)?;
    let clock: i64 = row.get(at + 1)?;
    let wall: i64 = row.get(at + 2)?;
    let ctx: Vec<u8> = row.get(at + 3)?;
    let body: Vec<u8> = row.get(at + 4)?;
    let sig: Vec<u8> = row.get(at + 5)?;
    let corrupt =
        |what: &str| StoreError::Corrupt(format!("entry {}#{seq}: {what}", hex::encode(device)));
    let prev = match prev {
        None => None,
        Some(p) => Some(cid_from_digest(
            &p.as_slice()
                .try_into()
                .map_err(|_| corrupt("prev digest"))?,
        )),
    };
    Ok(Entry {
        log_id: *keys.log_id(),
        device,
        seq,
        prev,
        ctx: decode_ctx(&ctx).map_err(|_| corrupt("ctx"))?,
        clock: to_u64(clock),
        wall_ms: to_u64(wall),
        signer: *keys.public_key(),
        body,
        sig: sig
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("signature"))?,
    })
}

const ENTRY_COLS: &str = "e.prev, e.clock, e.wall, e.ctx, e.body, e.sig";

/// Loads entry `(dev idx, seq)`.
fn load_entry(
    conn: &Connection,
    keys: &LogKeys,
    device: DeviceId,
    idx: i64,
    seq: u64,
) -> Result<Option<Entry>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLS} FROM entries e WHERE e.id = ?1"
    ))?;
    let mut rows = stmt.query([entry_rowid(idx, seq)])?;
    match rows.next()? {
        Some(row) => Ok(Some(entry_from_row(keys, device, seq, row, 0)?)),
        None => Ok(None),
    }
}

fn seal_value(keys: &LogKeys, key: &str, value: &[u8]) -> Vec<u8> {
    let mut iv = [0u8; cipher::IV_LEN];
    rand::fill(&mut iv);
    let mut aad = Vec::with_capacity(STATE_AAD.len() + key.len());
    aad.extend_from_slice(STATE_AAD);
    aad.extend_from_slice(key.as_bytes());
    cipher::encrypt_with_iv(keys.body_key(), &iv, value, &aad)
}

fn open_value(keys: &LogKeys, key: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut aad = Vec::with_capacity(STATE_AAD.len() + key.len());
    aad.extend_from_slice(STATE_AAD);
    aad.extend_from_slice(key.as_bytes());
    cipher::decrypt_with_aad(keys.body_key(), sealed, &aad)
        .map_err(|_| StoreError::Corrupt(format!("inline value of {key:?} does not decrypt")))
}

/// One materialized record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Lamport clock of the winning write.
    pub clock: u64,
    /// Device of the winning write.
    pub device: DeviceId,
    /// Index of the operation in its entry.
    pub op: u32,
    /// Sequence number of the entry holding the write (0 when it came from a
    /// snapshot).
    pub seq: u64,
}

/// The two tables of the materialized map, as targets of a write.
#[derive(Debug, Clone, Copy)]
enum MapTable {
    /// The newest writes (`recent`, appended in write order).
    Recent,
    /// Everything else (`state`, one row per key).
    State,
}

impl MapTable {
    /// Writes one key's row: `key, clock, dev, seq, op, tomb, value`. `recent` takes
    /// every winning write as a new row; `state` replaces the key's row.
    fn write_sql(self) -> &'static str {
        match self {
            Self::Recent => {
                "INSERT INTO recent (key, clock, dev, seq, op, tomb, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
            Self::State => {
                "INSERT OR REPLACE INTO state (key, clock, dev, seq, op, tomb, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
        }
    }
}

/// The map row of operation `i` of local or remote entry `e` (device `idx`): its value
/// stays in the entry's body.
fn op_row(e: &Entry, idx: i64, i: usize, op: &Op) -> RecentRow {
    RecentRow {
        clock: e.clock,
        dev: idx,
        device: e.device,
        seq: e.seq,
        op: u32::try_from(i).unwrap_or(u32::MAX),
        tomb: op.value.is_none(),
        inline: None,
    }
}

/// Writes `row` of `key` with `put` (`table`'s [`MapTable::write_sql`]) and, when it
/// went to `recent`, stages it for the index, so that table and index hold the same
/// rows.
fn write_row(
    put: &mut rusqlite::CachedStatement<'_>,
    table: MapTable,
    staged: &mut Staged,
    key: &str,
    row: RecentRow,
) -> Result<(), StoreError> {
    put.execute(params![
        key,
        to_i64(row.clock),
        row.dev,
        to_i64(row.seq),
        row.op,
        row.tomb,
        row.inline
    ])?;
    if let MapTable::Recent = table {
        staged.push(key, row);
    }
    Ok(())
}

/// Joins `state` rows `s` to their device `d` and, when the value lives in the entry
/// body, to their entry `e` by its rowid ([`entry_rowid`], spelled in SQL).
const WITH_DEVICE_AND_ENTRY: &str = "JOIN devices d ON d.idx = s.dev \
     LEFT JOIN entries e ON s.value IS NULL AND s.tomb = 0 AND e.id = (s.dev << 40) | s.seq";

/// `state` rows (tombstones included) with keys from `?1` (inclusive or not:
/// `lo_op`) to `?2` (NULL: no end), at most `?3`, with their devices and entries, by
/// key: the columns [`Found::from_state`] reads.
fn state_range_sql(lo_op: &str) -> String {
    format!(
        "SELECT s.key, s.clock, s.tomb, s.value, s.seq, s.op, s.dev, d.id, \
         e.prev, e.clock, e.wall, e.ctx, e.body, e.sig \
         FROM state s {WITH_DEVICE_AND_ENTRY} \
         WHERE s.key {lo_op} ?1 AND (?2 IS NULL OR s.key < ?2) \
         ORDER BY s.key LIMIT ?3"
    )
}

/// Runs `f` in one read transaction, so that it sees `state` and the entries at one
/// point: the caller's transaction when one is open, else a new one.
fn in_read_tx<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !conn.is_autocommit() {
        return f(conn);
    }
    let tx = conn.unchecked_transaction()?;
    let out = f(&tx)?;
    tx.finish()?;
    Ok(out)
}

/// One record of the map before its value is read.
struct Found {
    key: String,
    clock: u64,
    device: DeviceId,
    /// The device's `devices.idx`.
    dev: i64,
    seq: u64,
    op: u32,
    tomb: bool,
    inline: Option<Vec<u8>>,
    /// The entry holding the value, when a join already loaded it.
    entry: Option<Entry>,
}

impl Found {
    fn from_recent(key: String, r: RecentRow) -> Self {
        Self {
            key,
            clock: r.clock,
            device: r.device,
            dev: r.dev,
            seq: r.seq,
            op: r.op,
            tomb: r.tomb,
            inline: r.inline,
            entry: None,
        }
    }

    /// A row of [`state_range_sql`]. Its entry is kept only the first time a read
    /// meets it (`met` remembers): later records of the same entry find its body
    /// already decrypted ([`Values`]).
    fn from_state(
        keys: &LogKeys,
        row: &rusqlite::Row<'_>,
        met: &mut HashSet<(DeviceId, u64)>,
    ) -> Result<Self, StoreError> {
        let device = device_id(&row.get::<_, Vec<u8>>(7)?)?;
        let seq = to_u64(row.get(4)?);
        // The join yields entry columns only for a value that lives in the entry.
        let entry = if row.get_ref(12)?.data_type() == rusqlite::types::Type::Blob
            && met.insert((device, seq))
        {
            Some(entry_from_row(keys, device, seq, row, 8)?)
        } else {
            None
        };
        Ok(Self {
            key: row.get(0)?,
            clock: to_u64(row.get(1)?),
            tomb: row.get(2)?,
            inline: row.get(3)?,
            seq,
            op: u32::try_from(row.get::<_, i64>(5)?)
                .map_err(|_| StoreError::Corrupt("op index".into()))?,
            dev: row.get(6)?,
            device,
            entry,
        })
    }

    fn rank(&self) -> (u64, DeviceId, u32) {
        (self.clock, self.device, self.op)
    }

    fn record(self, value: Option<Vec<u8>>) -> Record {
        Record {
            value,
            clock: self.clock,
            device: self.device,
            op: self.op,
            seq: self.seq,
        }
    }
}

fn device_id(id: &[u8]) -> Result<DeviceId, StoreError> {
    id.try_into()
        .map_err(|_| StoreError::Corrupt("device id length".into()))
}

/// The record of a key that `recent` (as the index showed it before the read
/// transaction) and `state` (as the transaction sees it) may both hold: the `recent`
/// row only if it outranks the `state` row. Equal ranks are one record seen in both
/// places (it moved into `state` in between), and `state` can still read its value
/// even if the entry was pruned since ([`super::recent`]).
fn newer(recent: Option<Found>, state: Option<Found>) -> Option<Found> {
    match (recent, state) {
        (Some(r), Some(s)) if r.rank() > s.rank() => Some(r),
        (Some(_), Some(s)) => Some(s),
        (r, s) => r.or(s),
    }
}

/// Lays the index's rows over `state`'s, both in key order, keeping per key the
/// record [`newer`] picks. `state` rows are fed one at a time ([`Self::feed`]), so a
/// reader can stream them or read them in chunks; every record goes to a callback
/// that returns whether it wants more.
struct Overlay {
    mem: std::iter::Peekable<std::vec::IntoIter<(String, RecentRow)>>,
}

impl Overlay {
    fn new(mem: Vec<(String, RecentRow)>) -> Self {
        Self {
            mem: mem.into_iter().peekable(),
        }
    }

    /// Hands `each` the index's rows before `s`'s key, then that key's record; false
    /// once `each` wants no more.
    fn feed(
        &mut self,
        s: Found,
        each: &mut impl FnMut(Found) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        while let Some((k, r)) = self.mem.next_if(|(k, _)| *k < s.key) {
            if !each(Found::from_recent(k, r))? {
                return Ok(false);
            }
        }
        let m = self
            .mem
            .next_if(|(k, _)| *k == s.key)
            .map(|(k, r)| Found::from_recent(k, r));
        match newer(m, Some(s)) {
            Some(f) => each(f),
            None => Ok(true),
        }
    }

    /// Hands `each` the index's rows past the last `state` row.
    fn finish(
        self,
        each: &mut impl FnMut(Found) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        for (k, r) in self.mem {
            if !each(Found::from_recent(k, r))? {
                break;
            }
        }
        Ok(())
    }
}

/// Reads the values of map records inside one read transaction, decrypting each
/// entry body once even when it holds many of the records.
struct Values<'a> {
    tx: &'a Connection,
    keys: &'a LogKeys,
    bodies: HashMap<(DeviceId, u64), Vec<Op>>,
}

impl<'a> Values<'a> {
    fn new(tx: &'a Connection, keys: &'a LogKeys) -> Self {
        Self {
            tx,
            keys,
            bodies: HashMap::new(),
        }
    }

    /// The value of `f`; `None` for a tombstone.
    fn of(&mut self, f: &mut Found) -> Result<Option<Vec<u8>>, StoreError> {
        if f.tomb {
            return Ok(None);
        }
        if let Some(sealed) = &f.inline {
            return open_value(self.keys, &f.key, sealed).map(Some);
        }
        let id = (f.device, f.seq);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.bodies.entry(id) {
            let e =
                match f.entry.take() {
                    Some(e) => e,
                    None => load_entry(self.tx, self.keys, f.device, f.dev, f.seq)?.ok_or_else(
                        || StoreError::Corrupt(format!("{:?} points at a missing entry", f.key)),
                    )?,
                };
            slot.insert(
                e.open_stored(self.keys).map_err(|err| {
                    StoreError::Corrupt(format!("entry body of {:?}: {err}", f.key))
                })?,
            );
        }
        let op = self
            .bodies
            .get(&id)
            .and_then(|ops| ops.get(f.op as usize))
            .ok_or_else(|| StoreError::Corrupt(format!("{:?} op index out of range", f.key)))?;
        if op.key != f.key {
            return Err(StoreError::Corrupt(format!(
                "{:?} op holds another key",
                f.key
            )));
        }
        Ok(op.value.clone())
    }
}

/// The record of `key` (tombstones included).
pub(crate) fn record(
    conn: &Connection,
    recent: &RecentIndex,
    keys: &LogKeys,
    key: &str,
) -> Result<Option<Record>, StoreError> {
    // The index first, then the read transaction (why: [`super::recent`]).
    let mem = recent
        .get(key)
        .map(|r| Found::from_recent(key.to_owned(), r));
    in_read_tx(conn, |tx| {
        let Some(mut f) = newer(mem, state_row(tx, key)?) else {
            return Ok(None);
        };
        let value = Values::new(tx, keys).of(&mut f)?;
        Ok(Some(f.record(value)))
    })
}

/// The `state` row of `key`. Point lookups, each by primary key: SQLite runs them
/// several times faster than the equivalent join (measured: ~5 µs against ~30 µs).
fn state_row(tx: &Connection, key: &str) -> Result<Option<Found>, StoreError> {
    let Some(row) = map_row(tx, key)? else {
        return Ok(None);
    };
    let id: Vec<u8> = tx
        .prepare_cached("SELECT id FROM devices WHERE idx = ?1")?
        .query_row([row.dev], |r| r.get(0))?;
    Ok(Some(Found {
        key: key.to_owned(),
        clock: to_u64(row.clock),
        device: device_id(&id)?,
        dev: row.dev,
        seq: to_u64(row.seq),
        op: u32::try_from(row.op).map_err(|_| StoreError::Corrupt("op index".into()))?,
        tomb: row.tomb,
        inline: row.inline,
        entry: None,
    }))
}

/// One key's row in `state`.
struct MapRow {
    clock: i64,
    tomb: bool,
    inline: Option<Vec<u8>>,
    seq: i64,
    op: i64,
    dev: i64,
}

/// The `state` row of `key`, without its device id.
fn map_row(conn: &Connection, key: &str) -> Result<Option<MapRow>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT clock, tomb, value, seq, op, dev FROM state WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(MapRow {
                clock: r.get(0)?,
                tomb: r.get(1)?,
                inline: r.get(2)?,
                seq: r.get(3)?,
                op: r.get(4)?,
                dev: r.get(5)?,
            })
        })
        .optional()?)
}

/// The smallest string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(n) = (u32::from(c).checked_add(1)).and_then(char::from_u32) {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Live records under `prefix`, by key, at most `limit`, starting after `after`.
pub(crate) fn scan(
    conn: &Connection,
    recent: &RecentIndex,
    keys: &LogKeys,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    // An `after` below the prefix would start the range outside it: ignore it.
    let after = after.filter(|a| *a >= prefix);
    let hi = prefix_end(prefix);
    let mut lo = after.unwrap_or(prefix).to_owned();
    let mut exclusive = after.is_some();
    // Every `recent` row of the range (there are at most about a flush threshold's
    // worth), taken before the read transaction.
    let mut overlay = Overlay::new(recent.range(&lo, exclusive, hi.as_deref(), usize::MAX));
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // `state` in chunks that include tombstones, a few more rows than the page
    // needs: a `recent` row can hide or delete a `state` row.
    let chunk = limit.saturating_add(16);
    in_read_tx(conn, |tx| {
        let mut values = Values::new(tx, keys);
        let mut each = |mut f: Found| -> Result<bool, StoreError> {
            if let Some(v) = values.of(&mut f)? {
                out.push((f.key, v));
            }
            Ok(out.len() < limit)
        };
        let mut met = HashSet::new();
        let mut stmt = tx.prepare_cached(&state_range_sql(if exclusive { ">" } else { ">=" }))?;
        loop {
            let mut state = Vec::new();
            let mut rows = stmt.query(params![lo, hi, i64::try_from(chunk).unwrap_or(i64::MAX)])?;
            while let Some(row) = rows.next()? {
                state.push(Found::from_state(keys, row, &mut met)?);
            }
            drop(rows);
            let last = (state.len() >= chunk)
                .then(|| state.last().map(|f| f.key.clone()))
                .flatten();
            for s in state {
                if !overlay.feed(s, &mut each)? {
                    return Ok(());
                }
            }
            // A short chunk is the end of `state`: the index's rows past it follow.
            let Some(last) = last else {
                return overlay.finish(&mut each);
            };
            lo = last;
            if !exclusive {
                exclusive = true;
                stmt = tx.prepare_cached(&state_range_sql(">"))?;
            }
        }
    })?;
    Ok(out)
}

/// Every device's highest contiguous sequence number.
pub(crate) fn version_vector(conn: &Connection) -> Result<VersionVector, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, seq FROM devices WHERE seq > 0")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
    let mut vv = VersionVector::default();
    for row in rows {
        let (id, seq) = row?;
        if let Ok(d) = DeviceId::try_from(id.as_slice()) {
            vv.set(d, to_u64(seq));
        }
    }
    Ok(vv)
}

/// The heads (device, seq, entry id) of every device with entries.
pub(crate) fn heads(conn: &Connection) -> Result<Vec<(Head, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, head, clock FROM devices WHERE seq > 0 AND head IS NOT NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, seq, head, clock) = row?;
        let (Ok(device), Ok(digest)) = (
            DeviceId::try_from(id.as_slice()),
            <[u8; 32]>::try_from(head.as_slice()),
        ) else {
            return Err(StoreError::Corrupt("devices row".into()));
        };
        out.push((
            Head {
                device,
                seq: to_u64(seq),
                id: cid_from_digest(&digest),
            },
            to_u64(clock),
        ));
    }
    Ok(out)
}

/// Entries the holder of `since` lacks, in (device, seq) order, at most `limit`.
pub(crate) fn entries_since(
    conn: &Connection,
    keys: &LogKeys,
    since: &VersionVector,
    limit: usize,
) -> Result<Page, StoreError> {
    let mut devs = conn.prepare_cached("SELECT idx, id, seq, floor FROM devices ORDER BY id")?;
    let list: Vec<(i64, Vec<u8>, i64, i64)> = devs
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut page = Page::default();
    for (idx, id, seq, floor) in list {
        let Ok(device) = DeviceId::try_from(id.as_slice()) else {
            continue;
        };
        let from = since.get(&device).saturating_add(1);
        if from > to_u64(seq) {
            continue;
        }
        if from <= to_u64(floor) {
            return Err(StoreError::Pruned {
                device: hex::encode(device),
                floor: to_u64(floor),
                from,
            });
        }
        if page.entries.len() >= limit {
            page.more = true;
            break;
        }
        let room = limit.saturating_sub(page.entries.len());
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT e.id & {}, {ENTRY_COLS} FROM entries e WHERE e.id BETWEEN ?1 AND ?2 ORDER BY e.id LIMIT ?3",
            entry::MAX_SEQ
        ))?;
        let mut rows = stmt.query(params![
            entry_rowid(idx, from),
            entry_rowid(idx, to_u64(seq)),
            i64::try_from(room).unwrap_or(i64::MAX)
        ])?;
        let mut last = from.saturating_sub(1);
        while let Some(row) = rows.next()? {
            let s = to_u64(row.get(0)?);
            let e = entry_from_row(keys, device, s, row, 1)?;
            page.entries.push(e.encode());
            last = s;
        }
        if last < to_u64(seq) {
            page.more = true;
            break;
        }
    }
    Ok(page)
}

/// SHA-256 over the live and tombstoned state, in key order: equal iff two stores
/// hold the same records (key, clock, device, value | tombstone).
pub(crate) fn state_digest(
    conn: &Connection,
    recent: &RecentIndex,
    keys: &LogKeys,
) -> Result<[u8; 32], StoreError> {
    use sha2::{Digest, Sha256};
    let rows = export_rows(conn, recent, keys)?;
    let mut h = Sha256::new();
    for r in rows {
        h.update((r.key.len() as u64).to_be_bytes());
        h.update(r.key.as_bytes());
        h.update(r.clock.to_be_bytes());
        h.update(r.device);
        h.update(r.op.to_be_bytes());
        match &r.value {
            None => h.update([0u8]),
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    }
    Ok(h.finalize().into())
}

/// Every record of the map with its value, in key order.
pub(crate) fn export_rows(
    conn: &Connection,
    recent: &RecentIndex,
    keys: &LogKeys,
) -> Result<Vec<SnapshotRow>, StoreError> {
    // The index first, then the read transaction (why: [`super::recent`]).
    let mut overlay = Overlay::new(recent.all());
    in_read_tx(conn, |tx| {
        let mut values = Values::new(tx, keys);
        let mut out = Vec::new();
        let mut each = |mut f: Found| -> Result<bool, StoreError> {
            let value = values.of(&mut f)?;
            out.push(SnapshotRow {
                clock: f.clock,
                device: f.device,
                op: f.op,
                value,
                key: f.key,
            });
            Ok(true)
        };
        let mut met = HashSet::new();
        let mut stmt = tx.prepare_cached(&state_range_sql(">="))?;
        let mut rows = stmt.query(params!["", None::<String>, i64::MAX])?;
        while let Some(row) = rows.next()? {
            overlay.feed(Found::from_state(keys, row, &mut met)?, &mut each)?;
        }
        overlay.finish(&mut each)?;
        Ok(out)
    })
}

/// The writer side: owns the connection and the device cache.
pub(crate) struct Db {
    pub(crate) conn: Connection,
    pub(crate) keys: LogKeys,
    me: DeviceId,
    devices: HashMap<DeviceId, Dev>,
    by_idx: HashMap<i64, DeviceId>,
    lamport: u64,
    /// Most rows in `pending` ([`MAX_PENDING`] unless configured lower).
    pub(crate) max_pending: usize,
    /// Rows in `recent` at which a transaction moves them into `state`
    /// ([`RECENT_ROWS`] unless configured otherwise).
    pub(crate) recent_limit: usize,
    /// Rows in `recent`, counted from above: a replaced row counts twice until the
    /// next flush, which only makes that flush come a little early.
    recent_rows: usize,
    /// The open transaction writes many records: `recent` was emptied at its start
    /// and its writes go straight to `state` ([`Self::write_to_state`]).
    direct: bool,
    /// The key index of `recent`'s committed rows, shared with the readers.
    pub(crate) recent: Arc<RecentIndex>,
    /// What the open transaction did to `recent`, published when it commits.
    staged: Staged,
    /// Signatures half-made ahead of the local entries that need them.
    presign: PresignPool,
}

/// What happened to one remote entry.
enum Outcome {
    Applied(CommittedEntry),
    Duplicate,
    Pending,
}

impl Db {
    /// Prepares the database for `keys` and `me` (schema, meta, own device row) and
    /// applies whatever the pending table can now resolve.
    pub(crate) fn init(
        mut conn: Connection,
        keys: LogKeys,
        me: DeviceId,
    ) -> Result<(Self, Vec<Change>), super::error::OpenError> {
        use super::error::OpenError;
        let path = conn.path().unwrap_or(":memory:").to_owned();
        let sql = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let found = super::schema::version(&conn).map_err(sql)?;
        if found > super::schema::SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                found,
                supported: super::schema::SCHEMA_VERSION,
            });
        }
        super::schema::migrate(&mut conn).map_err(sql)?;
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let get = |k: &str| -> rusqlite::Result<Option<Vec<u8>>> {
                tx.query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
                    .optional()
            };
            match get("log_id").map_err(sql)? {
                Some(l) if l != keys.log_id() => {
                    return Err(OpenError::ForeignLog {
                        found: hex::encode(l),
                    });
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO meta (k, v) VALUES ('log_id', ?1)",
                        [keys.log_id().as_slice()],
                    )
                    .map_err(sql)?;
                }
            }
            match get("device").map_err(sql)? {
                Some(d) if d != me => {
                    return Err(OpenError::DeviceMismatch {
                        found: hex::encode(d),
                        given: hex::encode(me),
                    });
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO meta (k, v) VALUES ('device', ?1)",
                        [me.as_slice()],
                    )
                    .map_err(sql)?;
                }
            }
            tx.execute(
                "INSERT OR IGNORE INTO devices (id) VALUES (?1)",
                [me.as_slice()],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        let presign = PresignPool::start(keys.signing_key()).map_err(OpenError::Thread)?;
        let mut db = Self {
            presign,
            conn,
            keys,
            me,
            devices: HashMap::new(),
            by_idx: HashMap::new(),
            lamport: 0,
            max_pending: MAX_PENDING,
            recent_limit: RECENT_ROWS,
            recent_rows: 0,
            direct: false,
            recent: Arc::default(),
            staged: Staged::default(),
        };
        db.load_caches().map_err(|e| match e {
            StoreError::Sqlite(source) => sql(source),
            other => sql(rusqlite::Error::InvalidParameterName(other.to_string())),
        })?;
        let changes = db.resolve_all_pending().map_err(|e| match e {
            StoreError::Sqlite(source) => sql(source),
            other => sql(rusqlite::Error::InvalidParameterName(other.to_string())),
        })?;
        Ok((db, changes))
    }

    fn load_devices(&mut self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT idx, id, seq, head, clock, floor FROM devices")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        self.devices.clear();
        self.by_idx.clear();
        self.lamport = 0;
        for row in rows {
            let (idx, id, seq, head, clock, floor) = row?;
            let device = DeviceId::try_from(id.as_slice())
                .map_err(|_| StoreError::Corrupt("device id length".into()))?;
            let head = match head {
                Some(h) => Some(
                    <[u8; 32]>::try_from(h.as_slice())
                        .map_err(|_| StoreError::Corrupt("head digest length".into()))?,
                ),
                None => None,
            };
            self.devices.insert(
                device,
                Dev {
                    idx,
                    seq: to_u64(seq),
                    head,
                    clock: to_u64(clock),
                    floor: to_u64(floor),
                },
            );
            self.by_idx.insert(idx, device);
            self.lamport = self.lamport.max(to_u64(clock));
        }
        Ok(())
    }

    /// Rebuilds everything kept in memory from the tables: the device cache, then
    /// (it names devices by them) the index of `recent` and its row count.
    fn load_caches(&mut self) -> Result<(), StoreError> {
        self.load_devices()?;
        self.load_recent()
    }

    /// Rebuilds the index of `recent` from the table (each key's newest row).
    fn load_recent(&mut self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, clock, dev, seq, op, tomb, value FROM recent ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let (mut index, mut n) = (BTreeMap::new(), 0usize);
        while let Some(r) = rows.next()? {
            let dev: i64 = r.get(2)?;
            let device = *self.by_idx.get(&dev).ok_or_else(|| {
                StoreError::Corrupt(format!("recent row of unknown device {dev}"))
            })?;
            let row = RecentRow {
                clock: to_u64(r.get(1)?),
                dev,
                device,
                seq: to_u64(r.get(3)?),
                op: u32::try_from(r.get::<_, i64>(4)?)
                    .map_err(|_| StoreError::Corrupt("op index".into()))?,
                tomb: r.get(5)?,
                inline: r.get(6)?,
            };
            index.insert(r.get::<_, String>(0)?, row);
            n = n.saturating_add(1);
        }
        self.recent_rows = n;
        self.recent.reset(index);
        Ok(())
    }

    /// Commits the open transaction, first moving a full `recent` into `state`; if that
    /// fails, rolls it back so the connection is never left inside a transaction, and
    /// reloads the device cache.
    fn commit(&mut self) -> Result<(), StoreError> {
        self.direct = false;
        let done = self
            .flush_recent_when_full()
            .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        if done.is_ok() {
            self.recent.publish(&mut self.staged);
        } else {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.rollback_cache();
        }
        done
    }

    /// Inside the open transaction: moves `recent` into `state` once it holds
    /// [`Self::recent_limit`] rows.
    fn flush_recent_when_full(&mut self) -> Result<(), StoreError> {
        if self.recent_rows >= self.recent_limit {
            self.flush_recent()?;
        }
        Ok(())
    }

    /// Inside the open transaction: moves every `recent` row into `state` and empties
    /// `recent`. A `recent` row won when it was written, and a later row of the same
    /// key won over it, so writing them in key order and, per key, in write order
    /// leaves each key's newest row in `state`; key order also fills each `state`
    /// page once.
    fn flush_recent(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "INSERT OR REPLACE INTO state (key, clock, dev, seq, op, tomb, value) \
             SELECT key, clock, dev, seq, op, tomb, value FROM recent ORDER BY key, id; \
             DELETE FROM recent;",
        )?;
        self.recent_rows = 0;
        self.staged.flushed();
        Ok(())
    }

    /// Inside the open transaction, before its first write: when it will write at
    /// least [`DIRECT_TO_STATE_OPS`] records, empties `recent` and sends the rest of
    /// the transaction's writes to `state`. A big transaction fills many `state` pages
    /// anyway; through `recent` it would write every record twice. (With `recent`
    /// empty, no `recent` row can hide the new `state` rows.)
    fn write_to_state(&mut self, records: usize) -> Result<(), StoreError> {
        if records >= DIRECT_TO_STATE_OPS {
            if self.recent_rows > 0 {
                self.flush_recent()?;
            }
            self.direct = true;
        }
        Ok(())
    }

    /// The table the open transaction writes its next `records` records to, counted
    /// against the flush threshold when that is `recent`.
    fn target_for(&mut self, records: usize) -> MapTable {
        if self.direct {
            MapTable::State
        } else {
            self.recent_rows = self.recent_rows.saturating_add(records);
            MapTable::Recent
        }
    }

    /// Forgets a failed transaction's staged `recent` rows and reloads the caches
    /// it may have changed (the device cache, the `recent` row count).
    fn rollback_cache(&mut self) {
        self.direct = false;
        self.staged.discard();
        if let Err(e) = self.load_caches() {
            tracing::error!(error = %e, "cannot reload the device cache after a rollback");
        }
    }

    fn device_idx(
        conn: &Connection,
        devices: &mut HashMap<DeviceId, Dev>,
        by_idx: &mut HashMap<i64, DeviceId>,
        d: DeviceId,
    ) -> Result<Dev, StoreError> {
        if let Some(dev) = devices.get(&d) {
            return Ok(*dev);
        }
        conn.prepare_cached("INSERT INTO devices (id) VALUES (?1)")?
            .execute([d.as_slice()])?;
        let idx = conn.last_insert_rowid();
        if !(1..=MAX_DEVICE_IDX).contains(&idx) {
            // The caller's transaction rolls the row back.
            return Err(StoreError::TooManyDevices {
                max: MAX_DEVICE_IDX,
            });
        }
        let dev = Dev {
            idx,
            seq: 0,
            head: None,
            clock: 0,
            floor: 0,
        };
        devices.insert(d, dev);
        by_idx.insert(dev.idx, d);
        Ok(dev)
    }

    /// Inserts a verified entry that extends its device's chain and merges its ops.
    /// `local`: written by this store, so its clock exceeds every clock in `state`
    /// and each op wins without comparing.
    fn apply(
        &mut self,
        e: &Entry,
        ops: &[Op],
        digest: [u8; 32],
        local: bool,
    ) -> Result<(), StoreError> {
        let dev = Self::device_idx(&self.conn, &mut self.devices, &mut self.by_idx, e.device)?;
        self.conn
            .prepare_cached(
                "INSERT INTO entries (id, prev, clock, wall, ctx, body, sig) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                entry_rowid(dev.idx, e.seq),
                e.prev.as_ref().map(|p| digest_of(p).to_vec()),
                to_i64(e.clock),
                to_i64(e.wall_ms),
                encode_ctx(&e.ctx),
                e.body,
                e.sig.as_slice(),
            ])?;
        self.conn
            .prepare_cached("UPDATE devices SET seq = ?2, head = ?3, clock = ?4 WHERE idx = ?1")?
            .execute(params![
                dev.idx,
                to_i64(e.seq),
                digest.as_slice(),
                to_i64(e.clock)
            ])?;
        let updated = Dev {
            seq: e.seq,
            head: Some(digest),
            clock: e.clock,
            ..dev
        };
        self.devices.insert(e.device, updated);
        for h in &e.ctx {
            let subject =
                Self::device_idx(&self.conn, &mut self.devices, &mut self.by_idx, h.device)?;
            self.conn
                .prepare_cached(
                    "INSERT INTO seen (observer, subject, seq) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (observer, subject) DO UPDATE SET seq = max(seq, excluded.seq)",
                )?
                .execute(params![dev.idx, subject.idx, to_i64(h.seq)])?;
        }
        self.lamport = self.lamport.max(e.clock);
        if local {
            self.write_to_state(ops.len())?;
            let table = self.target_for(ops.len());
            let mut put = self.conn.prepare_cached(table.write_sql())?;
            for (i, op) in ops.iter().enumerate() {
                let row = op_row(e, dev.idx, i, op);
                write_row(&mut put, table, &mut self.staged, &op.key, row)?;
            }
            return Ok(());
        }
        for (i, op) in ops.iter().enumerate() {
            self.merge(&op.key, op_row(e, dev.idx, i, op))?;
        }
        Ok(())
    }

    /// Last-writer-wins merge of one write into the map: it wins iff its
    /// `(clock, device id, op)` is greater than the current record's.
    fn merge(&mut self, key: &str, row: RecentRow) -> Result<bool, StoreError> {
        // The key's current record: its newest `recent` row (none once this
        // transaction emptied `recent`), else its `state` row.
        let current = match self.staged.lookup(&self.recent, key) {
            Some(r) => Some(r.rank()),
            None => map_row(&self.conn, key)?.map(|r| {
                (
                    to_u64(r.clock),
                    self.by_idx.get(&r.dev).copied().unwrap_or([0; 8]),
                    u32::try_from(r.op).unwrap_or(0),
                )
            }),
        };
        if current.is_some_and(|c| row.rank() <= c) {
            return Ok(false);
        }
        let table = self.target_for(1);
        let mut put = self.conn.prepare_cached(table.write_sql())?;
        write_row(&mut put, table, &mut self.staged, key, row)?;
        Ok(true)
    }

    /// Commits one local entry holding `ops`; durable when this returns `Ok`.
    pub(crate) fn write_local(&mut self, ops: &[Op]) -> Result<CommittedEntry, StoreError> {
        let r = self.write_local_tx(ops);
        if r.is_err() {
            self.rollback_cache();
        }
        r
    }

    fn write_local_tx(&mut self, ops: &[Op]) -> Result<CommittedEntry, StoreError> {
        let me = self
            .devices
            .get(&self.me)
            .copied()
            .ok_or_else(|| StoreError::Corrupt("own device row missing".into()))?;
        let ctx: Vec<Head> = {
            let mut v: Vec<Head> = self
                .devices
                .iter()
                .filter(|(d, dev)| **d != self.me && dev.seq > 0)
                .filter_map(|(d, dev)| {
                    dev.head.map(|h| Head {
                        device: *d,
                        seq: dev.seq,
                        id: cid_from_digest(&h),
                    })
                })
                .collect();
            v.sort();
            v.truncate(entry::MAX_CTX);
            v
        };
        let draft = Draft {
            device: self.me,
            seq: me.seq.saturating_add(1),
            prev: me.head.map(|h| cid_from_digest(&h)),
            ctx,
            clock: self.lamport.saturating_add(1),
            wall_ms: now_ms(),
        };
        let (e, bytes) = Entry::seal_presigned(&self.keys, draft, ops, self.presign.take())?;
        let id = entry::cid_of(&bytes);
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = self.apply(&e, ops, digest_of(&id), true);
        match r {
            Ok(()) => self.commit()?,
            Err(err) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(err);
            }
        }
        Ok(CommittedEntry {
            id,
            device: e.device,
            seq: e.seq,
            clock: e.clock,
            origin: Origin::Local,
            keys: ops.iter().map(|o| o.key.clone()).collect(),
            bytes,
        })
    }

    /// Applies verified remote entries (with their opened ops) in one transaction.
    pub(crate) fn ingest(
        &mut self,
        items: Vec<VerifiedEntry>,
        report: &mut IngestReport,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let records = items.iter().map(|v| v.ops.len()).sum();
        if let Err(e) = self.write_to_state(records) {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.rollback_cache();
            return Err(e);
        }
        let mut local_changes = Vec::new();
        let mut local_report = IngestReport::default();
        let mut err = None;
        // Pending entries can only be unblocked if some exist: skip the two lookups
        // per applied entry otherwise (the common case of an in-order catch-up).
        let mut maybe_pending = match self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM pending)")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, bool>(0)))
        {
            Ok(b) => b,
            Err(x) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.rollback_cache();
                return Err(x.into());
            }
        };
        for VerifiedEntry {
            index: i,
            entry: e,
            ops,
            id,
            bytes,
        } in items
        {
            match self.ingest_one(&e, &ops, id, bytes, &mut local_changes) {
                Ok(Outcome::Applied(c)) => {
                    local_report.applied.push(c.id);
                    local_changes.push(Change::Entry(std::sync::Arc::new(c)));
                    if maybe_pending
                        && let Err(x) =
                            self.resolve_pending(e.device, &mut local_report, &mut local_changes)
                    {
                        err = Some(x);
                        break;
                    }
                }
                Ok(Outcome::Duplicate) => local_report.duplicates.push(id),
                Ok(Outcome::Pending) => {
                    maybe_pending = true;
                    local_report.pending.push(id);
                }
                Err(IngestErr::Rejected(r)) => local_report.rejected.push((i, r)),
                Err(IngestErr::Store(x)) => {
                    err = Some(x);
                    break;
                }
            }
        }
        if let Some(x) = err {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.rollback_cache();
            return Err(x);
        }
        self.commit()?;
        report.merge(local_report);
        changes.extend(local_changes);
        Ok(())
    }

    /// `bytes` is the entry's encoding (what `e` was decoded from).
    fn ingest_one(
        &mut self,
        e: &Entry,
        ops: &[Op],
        id: Cid,
        bytes: Vec<u8>,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, IngestErr> {
        let dev = self.devices.get(&e.device).copied();
        let (seq, head, head_clock, floor, idx) = dev.map_or((0, None, 0, 0, None), |d| {
            (d.seq, d.head, d.clock, d.floor, Some(d.idx))
        });
        let hexdev = hex::encode(e.device);
        if e.seq <= seq {
            if e.seq == seq && head == Some(digest_of(&id)) {
                return Ok(Outcome::Duplicate);
            }
            let existing = match idx {
                Some(idx) if e.seq > floor => {
                    load_entry(&self.conn, &self.keys, e.device, idx, e.seq)?.map(|x| x.id())
                }
                _ => None,
            };
            let Some(existing) = existing else {
                if e.seq == seq
                    && let Some(h) = head
                {
                    return Err(self.fork(hexdev, e.seq, cid_from_digest(&h), id, changes));
                }
                return Err(IngestErr::Rejected(Rejected::BelowFloor {
                    device: hexdev,
                    seq: e.seq,
                    floor,
                }));
            };
            if existing == id {
                return Ok(Outcome::Duplicate);
            }
            return Err(self.fork(hexdev, e.seq, existing, id, changes));
        }
        if e.seq == seq.saturating_add(1) {
            let prev_ok = match (e.prev, head) {
                (None, None) => true,
                (Some(p), Some(h)) => digest_of(&p) == h,
                _ => false,
            };
            if !prev_ok {
                let existing = head.map_or(id, |h| cid_from_digest(&h));
                let incoming = e.prev.unwrap_or(id);
                return Err(self.fork(hexdev, seq, existing, incoming, changes));
            }
            // Per-device clocks strictly increase, so no two writes ever tie in the
            // merge order; an entry that breaks this is refused, not tie-broken.
            if e.clock <= head_clock {
                return Err(IngestErr::Rejected(Rejected::ClockNotIncreasing {
                    device: hexdev,
                    seq: e.seq,
                    clock: e.clock,
                    previous: head_clock,
                }));
            }
            self.apply(e, ops, digest_of(&id), false)?;
            return Ok(Outcome::Applied(CommittedEntry {
                id,
                device: e.device,
                seq: e.seq,
                clock: e.clock,
                origin: Origin::Remote,
                keys: ops.iter().map(|o| o.key.clone()).collect(),
                bytes,
            }));
        }
        // A gap: keep it until its predecessor arrives.
        let existing: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT bytes FROM pending WHERE dev = ?1 AND seq = ?2")?
            .query_row(params![e.device.as_slice(), to_i64(e.seq)], |r| r.get(0))
            .optional()?;
        if let Some(old) = existing {
            if old == bytes {
                return Ok(Outcome::Pending);
            }
            return Err(self.fork(hexdev, e.seq, entry::cid_of(&old), id, changes));
        }
        let count: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM pending")?
            .query_row([], |r| r.get(0))?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= self.max_pending {
            return Err(IngestErr::Rejected(Rejected::PendingFull {
                max: self.max_pending,
            }));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO pending (dev, seq, bytes, received) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                e.device.as_slice(),
                to_i64(e.seq),
                bytes,
                to_i64(now_ms())
            ])?;
        Ok(Outcome::Pending)
    }

    fn fork(
        &self,
        device: String,
        seq: u64,
        existing: Cid,
        incoming: Cid,
        changes: &mut Vec<Change>,
    ) -> IngestErr {
        tracing::warn!(%device, seq, %existing, %incoming, "fork detected in the OpLog");
        let fork = Fork {
            device,
            seq,
            existing,
            incoming,
        };
        changes.push(Change::Fork(std::sync::Arc::new(fork.clone())));
        IngestErr::Rejected(Rejected::Fork(Box::new(fork)))
    }

    /// Applies pending entries of `device` that now extend its chain.
    fn resolve_pending(
        &mut self,
        device: DeviceId,
        report: &mut IngestReport,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        loop {
            let Some(dev) = self.devices.get(&device).copied() else {
                return Ok(());
            };
            self.conn
                .prepare_cached("DELETE FROM pending WHERE dev = ?1 AND seq <= ?2")?
                .execute(params![device.as_slice(), to_i64(dev.seq)])?;
            let next = dev.seq.saturating_add(1);
            let bytes: Option<Vec<u8>> = self
                .conn
                .prepare_cached("SELECT bytes FROM pending WHERE dev = ?1 AND seq = ?2")?
                .query_row(params![device.as_slice(), to_i64(next)], |r| r.get(0))
                .optional()?;
            let Some(bytes) = bytes else {
                return Ok(());
            };
            self.conn
                .prepare_cached("DELETE FROM pending WHERE dev = ?1 AND seq = ?2")?
                .execute(params![device.as_slice(), to_i64(next)])?;
            // Verified when it was stored; decode and open again (cheap, and it keeps
            // a damaged row from being applied).
            let parsed = entry::decode_verified(&bytes, &self.keys).and_then(|e| {
                e.open(&self.keys)
                    .map(|ops| (e, ops))
                    .map_err(Rejected::Malformed)
            });
            let (e, ops) = match parsed {
                Ok(x) => x,
                Err(r) => {
                    tracing::warn!(error = %r, "dropping an unreadable pending entry");
                    continue;
                }
            };
            let id = entry::cid_of(&bytes);
            match self.ingest_one(&e, &ops, id, bytes, changes) {
                Ok(Outcome::Applied(c)) => {
                    report.applied.push(c.id);
                    changes.push(Change::Entry(std::sync::Arc::new(c)));
                }
                Ok(Outcome::Duplicate | Outcome::Pending) => {}
                Err(IngestErr::Rejected(r)) => {
                    tracing::warn!(error = %r, "pending entry rejected");
                    return Ok(());
                }
                Err(IngestErr::Store(x)) => return Err(x),
            }
        }
    }

    /// Resolves every device's pending chain (at open).
    fn resolve_all_pending(&mut self) -> Result<Vec<Change>, StoreError> {
        let waiting: Vec<Vec<u8>> = self
            .conn
            .prepare("SELECT DISTINCT dev FROM pending")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut changes = Vec::new();
        if waiting.is_empty() {
            return Ok(changes);
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut report = IngestReport::default();
        for d in waiting {
            if let Ok(device) = DeviceId::try_from(d.as_slice())
                && let Err(e) = self.resolve_pending(device, &mut report, &mut changes)
            {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.rollback_cache();
                return Err(e);
            }
        }
        self.commit()?;
        Ok(changes)
    }

    /// Merges a snapshot: LWW rows (values sealed inline) and the heads it covers.
    pub(crate) fn import(&mut self, snap: &Snapshot) -> Result<(usize, Vec<Change>), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = self.import_tx(snap);
        match r {
            Ok(n) => {
                self.commit()?;
                let mut changes = Vec::new();
                let mut report = IngestReport::default();
                // Entries waiting for what the snapshot covers can go now.
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let devices: Vec<DeviceId> = self.devices.keys().copied().collect();
                for d in devices {
                    if let Err(e) = self.resolve_pending(d, &mut report, &mut changes) {
                        let _ = self.conn.execute_batch("ROLLBACK");
                        self.rollback_cache();
                        return Err(e);
                    }
                }
                self.commit()?;
                Ok((n, changes))
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.rollback_cache();
                Err(e)
            }
        }
    }

    fn import_tx(&mut self, snap: &Snapshot) -> Result<usize, StoreError> {
        self.write_to_state(snap.rows.len())?;
        for (h, clock) in &snap.heads {
            let dev = Self::device_idx(&self.conn, &mut self.devices, &mut self.by_idx, h.device)?;
            if dev.seq >= h.seq {
                continue;
            }
            self.conn
                .prepare_cached(
                    "UPDATE devices SET seq = ?2, head = ?3, clock = ?4, floor = ?2 WHERE idx = ?1",
                )?
                .execute(params![
                    dev.idx,
                    to_i64(h.seq),
                    digest_of(&h.id).as_slice(),
                    to_i64(*clock)
                ])?;
            self.devices.insert(
                h.device,
                Dev {
                    seq: h.seq,
                    head: Some(digest_of(&h.id)),
                    clock: *clock,
                    floor: h.seq,
                    ..dev
                },
            );
            self.lamport = self.lamport.max(*clock);
        }
        let mut won = 0;
        for row in &snap.rows {
            let dev =
                Self::device_idx(&self.conn, &mut self.devices, &mut self.by_idx, row.device)?;
            let inline = row
                .value
                .as_ref()
                .map(|v| seal_value(&self.keys, &row.key, v));
            let imported = RecentRow {
                clock: row.clock,
                dev: dev.idx,
                device: row.device,
                seq: 0,
                op: row.op,
                tomb: row.value.is_none(),
                inline,
            };
            if self.merge(&row.key, imported)? {
                won += 1;
            }
            self.lamport = self.lamport.max(row.clock);
        }
        Ok(won)
    }

    /// Deletes entries every known device has passed, sealing still-winning values
    /// into `state` first. Returns how many entries were removed.
    pub(crate) fn prune(&mut self) -> Result<u64, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match self.prune_tx() {
            Ok(n) => {
                self.commit()?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.rollback_cache();
                Err(e)
            }
        }
    }

    fn prune_tx(&mut self) -> Result<u64, StoreError> {
        // The queries below read and seal `state` rows: bring every record there.
        self.flush_recent()?;
        let mut seen: HashMap<(i64, i64), u64> = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT observer, subject, seq FROM seen")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (o, s, q) = row?;
                seen.insert((o, s), to_u64(q));
            }
        }
        let me_idx = self.devices.get(&self.me).map(|d| d.idx);
        let all: Vec<(DeviceId, Dev)> = self.devices.iter().map(|(d, v)| (*d, *v)).collect();
        let mut removed = 0u64;
        for (device, dev) in &all {
            // What every other known device has passed; we know our own position.
            let mut floor = dev.seq;
            for (other, odev) in &all {
                if other == device || Some(odev.idx) == me_idx {
                    continue;
                }
                floor = floor.min(seen.get(&(odev.idx, dev.idx)).copied().unwrap_or(0));
            }
            if floor <= dev.floor {
                continue;
            }
            // Seal still-winning values held by the entries about to go.
            let live: Vec<(String, i64, i64)> = self
                .conn
                .prepare_cached(
                    "SELECT key, seq, op FROM state WHERE dev = ?1 AND seq > 0 AND seq <= ?2 AND tomb = 0 AND value IS NULL",
                )?
                .query_map(params![dev.idx, to_i64(floor)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut cache: BTreeMap<i64, Vec<Op>> = BTreeMap::new();
            for (key, seq, op) in live {
                if let std::collections::btree_map::Entry::Vacant(v) = cache.entry(seq) {
                    let e = load_entry(&self.conn, &self.keys, *device, dev.idx, to_u64(seq))?
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("{key:?} points at a missing entry"))
                        })?;
                    v.insert(
                        e.open_stored(&self.keys)
                            .map_err(|err| StoreError::Corrupt(err.to_string()))?,
                    );
                }
                let value = cache
                    .get(&seq)
                    .and_then(|ops| ops.get(usize::try_from(op).unwrap_or(usize::MAX)))
                    .and_then(|o| o.value.clone())
                    .ok_or_else(|| StoreError::Corrupt(format!("{key:?} op missing")))?;
                self.conn
                    .prepare_cached("UPDATE state SET value = ?2 WHERE key = ?1")?
                    .execute(params![key, seal_value(&self.keys, &key, &value)])?;
            }
            let n = self
                .conn
                .prepare_cached("DELETE FROM entries WHERE id BETWEEN ?1 AND ?2")?
                .execute(params![
                    entry_rowid(dev.idx, 0),
                    entry_rowid(dev.idx, floor)
                ])?;
            removed = removed.saturating_add(n as u64);
            self.conn
                .prepare_cached("UPDATE devices SET floor = ?2 WHERE idx = ?1")?
                .execute(params![dev.idx, to_i64(floor)])?;
            self.devices.insert(*device, Dev { floor, ..*dev });
        }
        Ok(removed)
    }
}

/// Internal split of ingest failures: a rejection of one entry, or a store error
/// that aborts the transaction.
enum IngestErr {
    Rejected(Rejected),
    Store(StoreError),
}

impl From<StoreError> for IngestErr {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<rusqlite::Error> for IngestErr {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joins from a map row to its entry compute the rowid (`(s.dev << 40) |
    /// s.seq`): SQLite must still look the entry up by rowid, not scan `entries`.
    #[test]
    fn map_reads_find_their_entry_by_rowid() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        for sql in [state_range_sql(">="), state_range_sql(">")] {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params!["a", "b", 10], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|p| p.starts_with("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)")),
                "{sql}: {plan:?}"
            );
            assert!(!plan.iter().any(|p| p.starts_with("SCAN e")), "{plan:?}");
        }
        let rowid = entry_rowid(3, 5);
        let sql: i64 = c
            .query_row("SELECT (3 << 40) | 5", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rowid, sql, "entry_rowid agrees with the SQL spelling");
        assert_eq!(entry_rowid(MAX_DEVICE_IDX, entry::MAX_SEQ), i64::MAX);
    }

    #[test]
    fn prefix_end_is_the_next_string() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
    }
}
