//! The embedded aggregator's durable state: `<dir>/aggregator.db` (SQLite, WAL,
//! `synchronous=FULL`: a block is acknowledged to nobody before it is on disk) and
//! `<dir>/validator.key` (the test root validator's secret, hex, mode 0600), plus
//! `<dir>/trust-base.json`, the exported trust base clients configure.
//!
//! Tables (schema version 1 in `PRAGMA user_version`):
//!
//! * `records(state_id BLOB PRIMARY KEY, certification_data BLOB, reference_time
//!   INTEGER, block INTEGER)` — one row per finalized leaf; `certification_data`
//!   is the canonical CBOR; the leaf value is recomputed from it.
//! * `blocks(number INTEGER PRIMARY KEY, root BLOB, uc BLOB, created_at INTEGER)` —
//!   one row per closed round, `uc` the canonical CBOR unicity certificate.
//!
//! A block and its records are written in one transaction.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::wire::CertificationData;

/// Database file name inside the aggregator dir.
pub const DB_FILE: &str = "aggregator.db";
/// Lock file name: one server per dir, holding its pid.
pub const LOCK_FILE: &str = "aggregator.lock";
/// Validator key file name.
pub const KEY_FILE: &str = "validator.key";
/// Exported trust base file name.
pub const TRUST_BASE_FILE: &str = "trust-base.json";

/// A record to persist.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key.
    pub state_id: [u8; 32],
    /// What was certified.
    pub data: CertificationData,
    /// Admission time.
    pub reference_time: u64,
    /// Block it was finalized in.
    pub block: u64,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

/// A stored block.
#[derive(Debug, Clone)]
pub struct BlockRow {
    /// Number.
    pub number: u64,
    /// SMT root.
    pub root: Vec<u8>,
    /// Canonical UC bytes.
    pub uc: Vec<u8>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The newest `aggregator.db` schema this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Why `aggregator.db` could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite failed.
    #[error("aggregator database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer version of this program.
    #[error("aggregator database schema version {found} is newer than this program's {supported}")]
    NewerSchema {
        /// `PRAGMA user_version` on disk.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
}

impl Store {
    /// Opens (creating) `<dir>/aggregator.db`.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        Self::init(Connection::open(dir.join(DB_FILE))?)
    }

    /// An in-memory store (tests and benchmarks).
    pub fn in_memory() -> Result<Self, OpenError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, OpenError> {
        // A file of a newer program may hold rows this one would misread: refuse it.
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records(
                state_id BLOB PRIMARY KEY,
                certification_data BLOB NOT NULL,
                reference_time INTEGER NOT NULL,
                block INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS blocks(
                number INTEGER PRIMARY KEY,
                root BLOB NOT NULL,
                uc BLOB NOT NULL,
                created_at INTEGER NOT NULL
            );
            PRAGMA user_version = 1;",
        )?;
        Ok(Self { conn })
    }

    /// Writes a block and its records in one transaction.
    pub fn commit_block(
        &mut self,
        block: &BlockRow,
        records: &[Record],
        now: u64,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO records(state_id, certification_data, reference_time, block) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in records {
                ins.execute(params![
                    r.state_id.as_slice(),
                    r.data.encode(),
                    to_i64(r.reference_time),
                    to_i64(r.block)
                ])?;
            }
            tx.execute(
                "INSERT INTO blocks(number, root, uc, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![to_i64(block.number), block.root, block.uc, to_i64(now)],
            )?;
        }
        tx.commit()
    }

    /// The newest block.
    pub fn latest_block(&self) -> rusqlite::Result<Option<BlockRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT number, root, uc FROM blocks ORDER BY number DESC LIMIT 1")?;
        let mut rows = st.query([])?;
        match rows.next()? {
            None => Ok(None),
            Some(r) => Ok(Some(BlockRow {
                number: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                root: r.get(1)?,
                uc: r.get(2)?,
            })),
        }
    }

    /// Every record, for rebuilding the tree at start-up.
    pub fn for_each_record(
        &self,
        mut f: impl FnMut([u8; 32], Vec<u8>, u64, u64),
    ) -> rusqlite::Result<()> {
        let mut st = self
            .conn
            .prepare("SELECT state_id, certification_data, reference_time, block FROM records")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let sid: Vec<u8> = r.get(0)?;
            let Ok(sid) = <[u8; 32]>::try_from(sid.as_slice()) else {
                continue;
            };
            f(
                sid,
                r.get(1)?,
                u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            );
        }
        Ok(())
    }

    /// One record.
    pub fn record(&self, state_id: &[u8; 32]) -> rusqlite::Result<Option<(Vec<u8>, u64, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT certification_data, reference_time, block FROM records WHERE state_id = ?1",
        )?;
        let mut rows = st.query(params![state_id.as_slice()])?;
        match rows.next()? {
            None => Ok(None),
            Some(r) => Ok(Some((
                r.get(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            ))),
        }
    }
}

/// Paths of the aggregator dir's files.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(DB_FILE),
        dir.join(KEY_FILE),
        dir.join(TRUST_BASE_FILE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_a_newer_schema_is_refused_and_left_as_is() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute_batch("PRAGMA user_version = 2;")
            .unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(OpenError::NewerSchema {
                found: 2,
                supported: SCHEMA_VERSION
            })
        ));
        let version: i64 = Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        // The current version opens.
        let other = tempfile::tempdir().unwrap();
        drop(Store::open(other.path()).unwrap());
        assert!(Store::open(other.path()).is_ok());
    }
}
