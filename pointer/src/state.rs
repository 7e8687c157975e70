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
//! ```
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
}

/// The SQLite state file. One connection, owned by the [`crate::Pointer`].
#[derive(Debug)]
pub struct PointerState {
    conn: Connection,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

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
            PRAGMA user_version = 1;",
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
        let Some((lv, cid, mv, mc, blocked)) = row else {
            return Ok(WalletState::default());
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
}
