//! The pointer's durable state, one row per wallet (keyed by the signing public key)
//! in `<wallet data dir>/pointer.db`.
//!
//! ```text
//! pointer_state(
//!   wallet         TEXT PRIMARY KEY,  -- hex signing public key (the pointer pseudonym)
//!   local_version  INTEGER NOT NULL,  -- highest version this device knows is committed
//!   local_cid      TEXT,              -- the CID at local_version, if known
//!   marker_version INTEGER,           -- pending publish: version being written …
//!   marker_cid     BLOB,              -- … and the binary CID it carries
//!   blocked_reason TEXT,              -- BLOCKED flag (NULL = not blocked) …
//!   blocked_at     INTEGER            -- … and when it was set (Unix seconds)
//! )
//! car_loss_attempts(                  -- failed CAR fetches of a verified version
//!   wallet         TEXT NOT NULL,
//!   version        INTEGER NOT NULL,
//!   attempts       INTEGER NOT NULL,  -- how many fetches failed …
//!   first_at       INTEGER NOT NULL,  -- … the first one (Unix seconds, injected clock)
//!   last_at        INTEGER NOT NULL,  -- … and the latest one
//!   PRIMARY KEY (wallet, version)
//! )
//! car_unavailable(                    -- CAR_UNAVAILABLE: publishing is refused
//!   wallet         TEXT PRIMARY KEY,
//!   version        INTEGER NOT NULL,  -- the newest verified version whose CAR is missing
//!   since          INTEGER NOT NULL   -- when discovery first stopped on it
//! )
//! ```
//!
//! `car_loss_attempts` is the reference's `car_loss_attempts_<v>` flag, one row per
//! version (so it stays bounded): `acceptCarLoss(v)` needs
//! [`crate::pointer::CAR_LOSS_MIN_ATTEMPTS`] attempts spread over
//! [`crate::pointer::CAR_LOSS_MIN_SPAN`]. `car_unavailable` is set when a discovery
//! ends with `CAR_UNAVAILABLE` and cleared by the next successful discovery or by
//! `acceptCarLoss`.
//!
//! The marker is written with `synchronous=FULL` **before** anything for its
//! version is derived, so a crash at any point leaves either no marker (nothing
//! sent) or a marker naming the exact version and CID that may be in flight. That
//! is the one-time-pad guard: a version is never reused for another CID.
//! Success writes `local_version`/`local_cid` and clears the marker in one
//! transaction.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StateError;

/// File name inside the wallet data dir.
pub const STATE_FILE: &str = "pointer.db";

/// A pending-version marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Version being published.
    pub version: u32,
    /// Binary CID being published.
    pub cid: Vec<u8>,
}

/// One wallet's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletState {
    /// Highest version known committed by this device.
    pub local_version: u32,
    /// CID at that version.
    pub local_cid: Option<String>,
    /// Pending publish.
    pub marker: Option<Marker>,
    /// BLOCKED reason.
    pub blocked: Option<String>,
    /// CAR_UNAVAILABLE: the verified version whose snapshot CAR could not be
    /// fetched (publishing is refused until a fetch succeeds or `acceptCarLoss`).
    pub car_unavailable: Option<u32>,
}

/// Failed CAR fetches recorded for one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLossAttempts {
    /// How many fetches failed.
    pub attempts: u32,
    /// When the first failed (Unix seconds).
    pub first_at: u64,
    /// When the latest failed (Unix seconds).
    pub last_at: u64,
}

impl CarLossAttempts {
    /// Seconds between the first and the latest failure.
    pub fn span_secs(&self) -> u64 {
        self.last_at.saturating_sub(self.first_at)
    }
}

/// The SQLite state file. One connection, owned by the [`crate::Pointer`].
#[derive(Debug)]
pub struct PointerState {
    conn: Connection,
}

fn secs(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The newest `pointer.db` schema this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

impl PointerState {
    /// Opens (creating) the state file at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        Self::init(Connection::open(path)?)
    }

    /// A state that lives in memory (tests).
    pub fn in_memory() -> Result<Self, StateError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StateError> {
        // Versions 0 (new) and 1 upgrade in place; a newer program's file is refused.
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS pointer_state(
                wallet TEXT PRIMARY KEY,
                local_version INTEGER NOT NULL DEFAULT 0,
                local_cid TEXT,
                marker_version INTEGER,
                marker_cid BLOB,
                blocked_reason TEXT,
                blocked_at INTEGER
            );
            CREATE TABLE IF NOT EXISTS car_loss_attempts(
                wallet TEXT NOT NULL,
                version INTEGER NOT NULL,
                attempts INTEGER NOT NULL,
                first_at INTEGER NOT NULL,
                last_at INTEGER NOT NULL,
                PRIMARY KEY (wallet, version)
            );
            CREATE TABLE IF NOT EXISTS car_unavailable(
                wallet TEXT PRIMARY KEY,
                version INTEGER NOT NULL,
                since INTEGER NOT NULL
            );
            PRAGMA user_version = 2;",
        )?;
        Ok(Self { conn })
    }

    fn ensure(&self, wallet: &str) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO pointer_state(wallet) VALUES (?1)",
            params![wallet],
        )?;
        Ok(())
    }

    /// The wallet's row (defaults when absent).
    pub fn get(&self, wallet: &str) -> Result<WalletState, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT local_version, local_cid, marker_version, marker_cid, blocked_reason
                 FROM pointer_state WHERE wallet = ?1",
                params![wallet],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()?;
        let car_unavailable = self.car_unavailable(wallet)?;
        let Some((lv, cid, mv, mc, blocked)) = row else {
            return Ok(WalletState {
                car_unavailable,
                ..WalletState::default()
            });
        };
        let local_version = u32::try_from(lv)
            .map_err(|_| StateError::MarkerCorrupt(format!("local version {lv}")))?;
        let marker = match (mv, mc) {
            (None, None) => None,
            (Some(v), Some(cid)) => Some(Marker {
                version: u32::try_from(v)
                    .ok()
                    .filter(|v| {
                        (crate::derive::VERSION_MIN..=crate::derive::VERSION_MAX).contains(v)
                    })
                    .ok_or_else(|| StateError::MarkerCorrupt(format!("version {v}")))?,
                cid,
            }),
            _ => return Err(StateError::MarkerCorrupt("half-written marker".into())),
        };
        Ok(WalletState {
            local_version,
            local_cid: cid,
            marker,
            blocked,
            car_unavailable,
        })
    }

    /// Writes the marker durably.
    pub fn set_marker(&self, wallet: &str, marker: &Marker) -> Result<(), StateError> {
        self.ensure(wallet)?;
        self.conn.execute(
            "UPDATE pointer_state SET marker_version = ?2, marker_cid = ?3 WHERE wallet = ?1",
            params![wallet, i64::from(marker.version), marker.cid],
        )?;
        Ok(())
    }

    /// Drops the marker.
    pub fn clear_marker(&self, wallet: &str) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE pointer_state SET marker_version = NULL, marker_cid = NULL WHERE wallet = ?1",
            params![wallet],
        )?;
        Ok(())
    }

    /// Records a committed version and clears the marker, atomically. Never lowers
    /// the local version.
    pub fn commit(&self, wallet: &str, version: u32, cid: Option<&str>) -> Result<(), StateError> {
        self.ensure(wallet)?;
        self.conn.execute(
            "UPDATE pointer_state SET
               local_cid = CASE WHEN ?2 >= local_version THEN ?3 ELSE local_cid END,
               local_version = MAX(local_version, ?2),
               marker_version = NULL, marker_cid = NULL
             WHERE wallet = ?1",
            params![wallet, i64::from(version), cid],
        )?;
        Ok(())
    }

    /// Raises the local version (after a discovery) without touching the marker.
    pub fn observe(&self, wallet: &str, version: u32, cid: Option<&str>) -> Result<(), StateError> {
        self.ensure(wallet)?;
        self.conn.execute(
            "UPDATE pointer_state SET
               local_cid = CASE WHEN ?2 >= local_version THEN ?3 ELSE local_cid END,
               local_version = MAX(local_version, ?2)
             WHERE wallet = ?1",
            params![wallet, i64::from(version), cid],
        )?;
        Ok(())
    }

    /// Sets the BLOCKED flag.
    pub fn set_blocked(&self, wallet: &str, reason: &str) -> Result<(), StateError> {
        self.ensure(wallet)?;
        self.conn.execute(
            "UPDATE pointer_state SET blocked_reason = ?2, blocked_at = ?3 WHERE wallet = ?1",
            params![wallet, reason, now()],
        )?;
        Ok(())
    }

    /// The CAR_UNAVAILABLE version, if set.
    pub fn car_unavailable(&self, wallet: &str) -> Result<Option<u32>, StateError> {
        let v = self
            .conn
            .query_row(
                "SELECT version FROM car_unavailable WHERE wallet = ?1",
                params![wallet],
                |r| r.get::<_, i64>(0),
            )
            .optional()?;
        v.map(|v| {
            u32::try_from(v)
                .map_err(|_| StateError::MarkerCorrupt(format!("car-unavailable version {v}")))
        })
        .transpose()
    }

    /// Sets CAR_UNAVAILABLE at `version` (keeps the first `since`).
    pub fn set_car_unavailable(
        &self,
        wallet: &str,
        version: u32,
        at: u64,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO car_unavailable(wallet, version, since) VALUES (?1, ?2, ?3)
             ON CONFLICT(wallet) DO UPDATE SET version = excluded.version",
            params![wallet, i64::from(version), secs(at)],
        )?;
        Ok(())
    }

    /// Clears CAR_UNAVAILABLE.
    pub fn clear_car_unavailable(&self, wallet: &str) -> Result<(), StateError> {
        self.conn.execute(
            "DELETE FROM car_unavailable WHERE wallet = ?1",
            params![wallet],
        )?;
        Ok(())
    }

    /// Records one failed CAR fetch of `version` at `at` (Unix seconds).
    pub fn record_car_fetch_failure(
        &self,
        wallet: &str,
        version: u32,
        at: u64,
    ) -> Result<CarLossAttempts, StateError> {
        self.conn.execute(
            "INSERT INTO car_loss_attempts(wallet, version, attempts, first_at, last_at)
             VALUES (?1, ?2, 1, ?3, ?3)
             ON CONFLICT(wallet, version) DO UPDATE SET
               attempts = MIN(attempts + 1, 4294967295),
               first_at = MIN(first_at, excluded.first_at),
               last_at = MAX(last_at, excluded.last_at)",
            params![wallet, i64::from(version), secs(at)],
        )?;
        Ok(self
            .car_loss_attempts(wallet, version)?
            .unwrap_or(CarLossAttempts {
                attempts: 1,
                first_at: at,
                last_at: at,
            }))
    }

    /// The failed fetches recorded for `version`.
    pub fn car_loss_attempts(
        &self,
        wallet: &str,
        version: u32,
    ) -> Result<Option<CarLossAttempts>, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT attempts, first_at, last_at FROM car_loss_attempts
                 WHERE wallet = ?1 AND version = ?2",
                params![wallet, i64::from(version)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(|(n, first, last)| CarLossAttempts {
            attempts: u32::try_from(n).unwrap_or(0),
            first_at: u64::try_from(first).unwrap_or(0),
            last_at: u64::try_from(last).unwrap_or(0),
        }))
    }

    /// Forgets the failed fetches of versions `..= version`.
    pub fn clear_car_loss_attempts(&self, wallet: &str, version: u32) -> Result<(), StateError> {
        self.conn.execute(
            "DELETE FROM car_loss_attempts WHERE wallet = ?1 AND version <= ?2",
            params![wallet, i64::from(version)],
        )?;
        Ok(())
    }

    /// Forgets the failed fetches of exactly `version` (its CAR was fetched).
    pub fn forget_car_loss_attempts(&self, wallet: &str, version: u32) -> Result<(), StateError> {
        self.conn.execute(
            "DELETE FROM car_loss_attempts WHERE wallet = ?1 AND version = ?2",
            params![wallet, i64::from(version)],
        )?;
        Ok(())
    }

    /// Clears the BLOCKED flag.
    pub fn clear_blocked(&self, wallet: &str) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE pointer_state SET blocked_reason = NULL, blocked_at = NULL WHERE wallet = ?1",
            params![wallet],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_commit_and_blocked_round_trip() {
        let s = PointerState::in_memory().unwrap();
        assert_eq!(s.get("w").unwrap(), WalletState::default());
        let m = Marker {
            version: 3,
            cid: vec![1, 2, 3],
        };
        s.set_marker("w", &m).unwrap();
        assert_eq!(s.get("w").unwrap().marker, Some(m));
        s.commit("w", 3, Some("bafy")).unwrap();
        let st = s.get("w").unwrap();
        assert_eq!(
            (st.local_version, st.marker, st.local_cid.as_deref()),
            (3, None, Some("bafy"))
        );
        s.observe("w", 2, Some("old")).unwrap();
        assert_eq!(s.get("w").unwrap().local_version, 3);
        s.set_blocked("w", "network_timeout").unwrap();
        assert_eq!(
            s.get("w").unwrap().blocked.as_deref(),
            Some("network_timeout")
        );
        s.clear_blocked("w").unwrap();
        assert_eq!(s.get("w").unwrap().blocked, None);
    }

    #[test]
    fn a_file_of_a_newer_schema_is_refused_and_left_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 3;")
            .unwrap();
        assert!(matches!(
            PointerState::open(&path),
            Err(StateError::NewerSchema {
                found: 3,
                supported: SCHEMA_VERSION
            })
        ));
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
    }

    #[test]
    fn a_version_1_file_opens_and_gains_the_new_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE pointer_state(
                    wallet TEXT PRIMARY KEY,
                    local_version INTEGER NOT NULL DEFAULT 0,
                    local_cid TEXT,
                    marker_version INTEGER,
                    marker_cid BLOB,
                    blocked_reason TEXT,
                    blocked_at INTEGER
                );
                INSERT INTO pointer_state(wallet, local_version, local_cid) VALUES ('w', 7, 'bafy');
                PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let s = PointerState::open(&path).unwrap();
        let st = s.get("w").unwrap();
        assert_eq!(
            (
                st.local_version,
                st.local_cid.as_deref(),
                st.car_unavailable
            ),
            (7, Some("bafy"), None)
        );
        s.set_car_unavailable("w", 7, 1).unwrap();
        s.record_car_fetch_failure("w", 7, 1).unwrap();
        let version: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
    }

    #[test]
    fn car_loss_attempts_and_unavailable_round_trip() {
        let s = PointerState::in_memory().unwrap();
        assert_eq!(s.car_loss_attempts("w", 4).unwrap(), None);
        s.record_car_fetch_failure("w", 4, 1_000).unwrap();
        s.record_car_fetch_failure("w", 4, 500).unwrap();
        let a = s.record_car_fetch_failure("w", 4, 9_000).unwrap();
        assert_eq!(
            a,
            CarLossAttempts {
                attempts: 3,
                first_at: 500,
                last_at: 9_000
            }
        );
        assert_eq!(a.span_secs(), 8_500);
        s.record_car_fetch_failure("w", 5, 1).unwrap();
        s.record_car_fetch_failure("x", 4, 1).unwrap();
        s.forget_car_loss_attempts("w", 5).unwrap();
        assert_eq!(s.car_loss_attempts("w", 5).unwrap(), None);
        s.clear_car_loss_attempts("w", 4).unwrap();
        assert_eq!(s.car_loss_attempts("w", 4).unwrap(), None);
        assert!(s.car_loss_attempts("x", 4).unwrap().is_some());

        assert_eq!(s.get("w").unwrap().car_unavailable, None);
        s.set_car_unavailable("w", 7, 10).unwrap();
        s.set_car_unavailable("w", 8, 20).unwrap();
        assert_eq!(s.get("w").unwrap().car_unavailable, Some(8));
        s.clear_car_unavailable("w").unwrap();
        assert_eq!(s.car_unavailable("w").unwrap(), None);
    }
}
