//! The OpLog's SQLite schema and its migrations.
//!
//! The schema version is `PRAGMA user_version`; [`migrate`] runs every numbered
//! migration `m00N_…` above it, each in its own `BEGIN IMMEDIATE` transaction, and
//! refuses a database newer than [`SCHEMA_VERSION`].
//!
//! # Tables (version 3)
//!
//! * **`meta(k TEXT PK, v BLOB)`** — one row per setting: `log_id` (32 bytes, the
//!   wallet's log; a store refuses to open a database of another log) and `device`
//!   (8 bytes, this store's device id).
//! * **`devices(idx INTEGER PK, id BLOB UNIQUE, seq, head, clock, floor)`** — one row
//!   per device ever seen; `idx` is a local small number used in the other tables
//!   instead of the 8-byte id. `seq` is the highest *contiguous* applied sequence
//!   number (0 = none) — together the rows are the version vector. `head` is the
//!   32-byte sha2-256 digest of entry `seq` (NULL iff `seq = 0`), `clock` that entry's
//!   Lamport clock. `floor`: entries with `seq ≤ floor` may be absent from `entries`
//!   (pruned, or covered by an imported snapshot); `floor ≤ seq`.
//! * **`entries(id INTEGER PK, prev, clock, wall, ctx, body, sig)`** (version 3) —
//!   one row per applied entry, keyed by `id = devices.idx · 2⁴⁰ + seq` (so
//!   `idx ≤ 2²³ − 1` and `seq ≤` [`crate::oplog::entry::MAX_SEQ`]), its fields as
//!   columns: `prev` is the previous entry's 32-byte digest (NULL for seq 1), `ctx`
//!   the canonical CBOR of the causal-context array, `body` nonce ‖ ciphertext ‖ tag,
//!   `sig` 65 bytes. Versions 1 and 2 keyed the table `(dev, seq)` WITHOUT ROWID:
//!   such a table keeps whole rows in its interior pages too, and a 16-write entry
//!   (≈ 1.2 KB) is also past the ≈ 1 KB a row of it may hold before spilling to an
//!   overflow page, so every group commit wrote more pages; a rowid table keeps only
//!   the integer in its interior pages and rows up to ≈ 4 KB in its leaves.
//!   The log id and signer key are those of `meta` and are not repeated; the entry's
//!   exact bytes are re-encoded from the row (the encoding is canonical, so they are
//!   identical, and the id is their CID). Invariant: for every device, rows exist for
//!   every `seq` in `floor+1 ..= devices.seq` and for no higher `seq`; row `seq`'s
//!   `prev` is the digest of row `seq − 1`.
//! * **`pending(dev BLOB, seq, bytes, received)` PK `(dev, seq)`, WITHOUT ROWID** —
//!   verified remote entries whose predecessor is missing (`seq > devices.seq + 1`),
//!   as received. Each is applied (and deleted) in the transaction that applies its
//!   predecessor; at most [`crate::oplog::MAX_PENDING`] rows.
//! * **`state(key TEXT PK, clock, dev, seq, op, tomb, value)`, WITHOUT ROWID** — the
//!   materialized last-writer-wins map, one row per key ever written. The winning
//!   write is operation `op` of entry `(dev, seq)` with Lamport clock `clock`; writes
//!   are ordered by `(clock, devices.id, op)`. `tomb = 1` marks a delete. `value` is
//!   NULL while the value can be read from the entry's body; it holds the value
//!   sealed under the body key (nonce ‖ ct ‖ tag, AAD `sphere-oplog-state-v1` ‖ key)
//!   once the entry is pruned or when the row came from a snapshot (then `seq = 0`).
//!   Writes reach it through `recent` (below).
//! * **`recent(id INTEGER PK, key, clock, dev, seq, op, tomb, value)`** (version 4;
//!   versions 2–3 keyed it by `key` `WITHOUT ROWID`) — the newest winning writes,
//!   columns as in `state`, appended in write order with no index on `key`: a key's
//!   newest row is its record, and the materialized map is `recent` over `state`.
//!   Every winning write is appended here in the same transaction as its entry
//!   insert; a transaction that leaves `recent` with at least the store's flush
//!   threshold of rows (default [`crate::oplog::RECENT_ROWS`]) first moves them all
//!   into `state`, in key order, and empties it. A commit of 16 writes from 16 key
//!   ranges thus dirties the last page of `recent` instead of 16 leaves of `state`
//!   (the pages written are most of a group commit's cost: `docs/benchmarks.md`).
//!   The store indexes it by key in memory (`oplog/recent.rs`).
//! * **`seen(observer, subject, seq)` PK `(observer, subject)`, WITHOUT ROWID** — the
//!   highest `subject` sequence number device `observer` declared in a causal
//!   context: what every known device has passed, for pruning.

use rusqlite::{Connection, TransactionBehavior, params};

use super::db::MAX_DEVICE_IDX;
use super::entry::MAX_SEQ;

/// The newest schema version this code writes.
pub const SCHEMA_VERSION: i64 = 4;

/// What one migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// Already at or past this version.
    Skipped,
    /// Applied.
    Applied,
}

fn m001_initial(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS devices (
             idx   INTEGER PRIMARY KEY,
             id    BLOB NOT NULL UNIQUE,
             seq   INTEGER NOT NULL DEFAULT 0,
             head  BLOB,
             clock INTEGER NOT NULL DEFAULT 0,
             floor INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS entries (
             dev   INTEGER NOT NULL,
             seq   INTEGER NOT NULL,
             prev  BLOB,
             clock INTEGER NOT NULL,
             wall  INTEGER NOT NULL,
             ctx   BLOB NOT NULL,
             body  BLOB NOT NULL,
             sig   BLOB NOT NULL,
             PRIMARY KEY (dev, seq)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS pending (
             dev      BLOB NOT NULL,
             seq      INTEGER NOT NULL,
             bytes    BLOB NOT NULL,
             received INTEGER NOT NULL,
             PRIMARY KEY (dev, seq)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS state (
             key   TEXT PRIMARY KEY,
             clock INTEGER NOT NULL,
             dev   INTEGER NOT NULL,
             seq   INTEGER NOT NULL,
             op    INTEGER NOT NULL,
             tomb  INTEGER NOT NULL,
             value BLOB) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS seen (
             observer INTEGER NOT NULL,
             subject  INTEGER NOT NULL,
             seq      INTEGER NOT NULL,
             PRIMARY KEY (observer, subject)) WITHOUT ROWID;",
    )
}

/// Version 2: the `recent` overlay of `state`. A version-1 database has none, so
/// its map is `state` alone, which an empty `recent` leaves unchanged.
fn m002_recent(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS recent (
             key   TEXT PRIMARY KEY,
             clock INTEGER NOT NULL,
             dev   INTEGER NOT NULL,
             seq   INTEGER NOT NULL,
             op    INTEGER NOT NULL,
             tomb  INTEGER NOT NULL,
             value BLOB) WITHOUT ROWID;",
    )
}

/// Version 3: `entries` becomes a rowid table keyed by `dev · 2⁴⁰ + seq` (a copy of
/// every row). Fails, changing nothing, if a stored device number or sequence number
/// does not fit that key.
fn m003_entries_by_rowid(conn: &Connection) -> rusqlite::Result<()> {
    let misfits: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM entries WHERE dev NOT BETWEEN 1 AND ?1 OR seq NOT BETWEEN 1 AND ?2) \
              + (SELECT count(*) FROM devices WHERE idx NOT BETWEEN 1 AND ?1)",
        params![MAX_DEVICE_IDX, i64::try_from(MAX_SEQ).unwrap_or(i64::MAX)],
        |r| r.get(0),
    )?;
    if misfits > 0 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            Some(format!(
                "schema 3 keys entries by device · 2^40 + seq: {misfits} stored device or entry numbers do not fit"
            )),
        ));
    }
    conn.execute_batch(
        "CREATE TABLE entries_v3 (
             id    INTEGER PRIMARY KEY,
             prev  BLOB,
             clock INTEGER NOT NULL,
             wall  INTEGER NOT NULL,
             ctx   BLOB NOT NULL,
             body  BLOB NOT NULL,
             sig   BLOB NOT NULL);
         INSERT INTO entries_v3 (id, prev, clock, wall, ctx, body, sig)
             SELECT (dev << 40) | seq, prev, clock, wall, ctx, body, sig FROM entries
             ORDER BY dev, seq;
         DROP TABLE entries;
         ALTER TABLE entries_v3 RENAME TO entries;",
    )
}

/// Version 4: `recent` becomes a rowid table in write order, with no index on `key`
/// (the store indexes it in memory). Its rows keep their content; a version-3
/// `recent` has one row per key, so their order does not matter.
fn m004_recent_in_write_order(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE recent_v4 (
             id    INTEGER PRIMARY KEY,
             key   TEXT NOT NULL,
             clock INTEGER NOT NULL,
             dev   INTEGER NOT NULL,
             seq   INTEGER NOT NULL,
             op    INTEGER NOT NULL,
             tomb  INTEGER NOT NULL,
             value BLOB);
         INSERT INTO recent_v4 (key, clock, dev, seq, op, tomb, value)
             SELECT key, clock, dev, seq, op, tomb, value FROM recent ORDER BY clock, dev, op;
         DROP TABLE recent;
         ALTER TABLE recent_v4 RENAME TO recent;",
    )
}

type Migration = fn(&Connection) -> rusqlite::Result<()>;

/// Every migration, in order; index + 1 is the version it produces.
const MIGRATIONS: &[Migration] = &[
    m001_initial,
    m002_recent,
    m003_entries_by_rowid,
    m004_recent_in_write_order,
];

/// The database's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema to [`SCHEMA_VERSION`]. Returns what each migration did, or
/// `Err(found)` through the caller's check when the database is newer.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Vec<Migrated>> {
    let mut report = Vec::with_capacity(MIGRATIONS.len());
    for (i, m) in MIGRATIONS.iter().enumerate() {
        let target = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version(&tx)? >= target {
            report.push(Migrated::Skipped);
            continue;
        }
        m(&tx)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        report.push(Migrated::Applied);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut c).unwrap(), vec![Migrated::Applied; 4]);
        assert_eq!(version(&c).unwrap(), SCHEMA_VERSION);
        assert_eq!(migrate(&mut c).unwrap(), vec![Migrated::Skipped; 4]);
        // Re-running the `IF NOT EXISTS` migration bodies changes nothing.
        m001_initial(&c).unwrap();
        m002_recent(&c).unwrap();
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 7);
    }

    #[test]
    fn m003_refuses_numbers_that_do_not_fit_the_rowid_and_changes_nothing() {
        let mut c = Connection::open_in_memory().unwrap();
        m001_initial(&c).unwrap();
        m002_recent(&c).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        let too_big = i64::try_from(MAX_SEQ + 1).unwrap();
        c.execute_batch(&format!(
            "INSERT INTO devices (idx, id) VALUES (1, x'0102030405060708');
             INSERT INTO entries (dev, seq, clock, wall, ctx, body, sig)
                 VALUES (1, {too_big}, 1, 0, x'80', x'00', x'00');"
        ))
        .unwrap();
        let err = migrate(&mut c).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
        assert_eq!(version(&c).unwrap(), 2);
        let seq: i64 = c
            .query_row("SELECT seq FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, too_big, "the old table is untouched");

        c.execute_batch("UPDATE entries SET seq = 7").unwrap();
        migrate(&mut c).unwrap();
        let id: i64 = c
            .query_row("SELECT id FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, (1 << 40) + 7);
    }

    use crate::keys::WalletKeys;
    use crate::oplog::{Store, StoreConfig};
    use crate::secret::Secret32;

    fn fixture_keys() -> WalletKeys {
        WalletKeys::from_address_key(&Secret32::new([42; 32])).unwrap()
    }

    fn fixture(version: i64) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("oplog-v{version}.db"))
    }

    /// Writes `profile/tests/fixtures/oplog-v{SCHEMA_VERSION}.db` (run once per schema
    /// version with `--ignored`; the file is committed and never rewritten afterwards).
    #[test]
    #[ignore = "generates the committed fixture"]
    fn write_current_fixture() {
        let path = fixture(SCHEMA_VERSION);
        let _ = std::fs::remove_file(&path);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let k = fixture_keys();
            let other = Store::in_memory(&k.oplog, [0xbb; 8], StoreConfig::default()).unwrap();
            for i in 0..3u8 {
                other.put(format!("b{i}"), vec![i]).await.unwrap();
            }
            let page = other
                .entries_since(&crate::oplog::VersionVector::default(), 10)
                .await
                .unwrap();
            // `recent` moves into `state` at 3 rows: "a", "c1" and "c2" end in `state`,
            // the tombstone of "c1" and "b0" in `recent`
            let config = StoreConfig::default().with_recent_rows(3);
            let s = Store::open(&path, &k.oplog, [0xaa; 8], config).unwrap();
            s.put("a", b"1".to_vec()).await.unwrap();
            s.put_batch([("c1", b"x".to_vec()), ("c2", b"y".to_vec())])
                .await
                .unwrap();
            s.delete("c1").await.unwrap();
            // Entries 1 and 3 of the other device: 3 stays pending.
            let r = s
                .ingest(vec![page.entries[0].clone(), page.entries[2].clone()])
                .await
                .unwrap();
            assert_eq!((r.applied.len(), r.pending.len()), (1, 1));
            s.vacuum().await.unwrap();
            s.shutdown().await.unwrap();
        });
        let _ = std::fs::remove_file(path.with_extension("db-wal"));
        let _ = std::fs::remove_file(path.with_extension("db-shm"));
    }

    /// Every past schema version opens, reads the same and takes new writes.
    #[test]
    fn opens_every_fixture() {
        for version in 1..=SCHEMA_VERSION {
            opens_the_fixture(version);
        }
    }

    fn opens_the_fixture(version: i64) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("profile.db");
        std::fs::copy(fixture(version), &path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let k = fixture_keys();
            let s = Store::open(&path, &k.oplog, [0xaa; 8], StoreConfig::default()).unwrap();
            assert_eq!(s.get("a").await.unwrap(), Some(b"1".to_vec()));
            assert_eq!(s.get("c1").await.unwrap(), None);
            assert_eq!(s.get("c2").await.unwrap(), Some(b"y".to_vec()));
            assert_eq!(s.get("b0").await.unwrap(), Some(vec![0]));
            let vv = s.version_vector().await.unwrap();
            assert_eq!((vv.get(&[0xaa; 8]), vv.get(&[0xbb; 8])), (3, 1));
            assert!(s.integrity_check().await.unwrap().is_empty());
            // The pending entry (seq 3 of the other device) is still waiting.
            assert_eq!(s.get("b2").await.unwrap(), None);
            let sealed = s.export_snapshot().await.unwrap();
            assert_eq!(sealed.rows.len(), 4);
            // a write over a row of the old `state`, and a new key
            s.put("a", b"2".to_vec()).await.unwrap();
            s.put("d", b"3".to_vec()).await.unwrap();
            s.shutdown().await.unwrap();
            let s = Store::open(&path, &k.oplog, [0xaa; 8], StoreConfig::default()).unwrap();
            assert_eq!(s.get("a").await.unwrap(), Some(b"2".to_vec()));
            let keys: Vec<String> = s
                .scan("")
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(keys, ["a", "b0", "c2", "d"], "schema v{version}");
            assert!(s.integrity_check().await.unwrap().is_empty());
        });
    }
}
