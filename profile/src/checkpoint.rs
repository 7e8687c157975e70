//! Background WAL checkpoints for the crate's SQLite files (the OpLog and the block
//! store).
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold:
//! that writer copies the WAL into the database file and fsyncs it while everything
//! queued behind it waits (measured: about 7 % of a 16-writer OpLog load and two thirds
//! of storing a 10 MiB CAR). A [`Checkpointer`] instead runs `PRAGMA
//! wal_checkpoint(PASSIVE)` on its own connection and thread whenever it is woken;
//! a passive checkpoint never blocks a writer. Durability is unchanged: a commit is
//! durable once its frames are in the WAL, whichever thread later copies them.
//!
//! Who wakes it: the block store after each write transaction (few, large ones),
//! keeping SQLite's own auto-checkpoint as a backstop; the OpLog, whose commits are
//! many and small, through [`wake_on_growth`], a WAL hook that wakes the thread once the
//! WAL passes a threshold and checkpoints inline at a backstop size (the hook replaces
//! SQLite's auto-checkpoint).

use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

/// A checkpoint thread with its own connection. Dropping it stops and joins the
/// thread once every [`Waker`] is gone too, so drop it after the writer connection
/// when a [`wake_on_growth`] hook holds one.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: Option<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// Wakes a [`Checkpointer`]; wake-ups coalesce (one pending is enough: a checkpoint
/// covers every frame written before it starts).
#[derive(Debug, Clone)]
pub(crate) struct Waker(SyncSender<()>);

impl Waker {
    /// Asks for a checkpoint; never blocks.
    pub(crate) fn wake(&self) {
        // full: one is already due; disconnected: the thread is stopping
        let _ = self.0.try_send(());
    }
}

impl Checkpointer {
    /// Opens a second connection on `path` and starts the thread `name`.
    pub(crate) fn start(path: &Path, name: &str) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(std::io::Error::other)?;
        let (tx, rx) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "background WAL checkpoint failed; the backstop checkpoints inline if the WAL keeps growing");
                    }
                }
            })?;
        Ok(Self {
            wake: Some(Waker(tx)),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint; never blocks.
    pub(crate) fn wake(&self) {
        if let Some(w) = &self.wake {
            w.wake();
        }
    }

    /// A handle that wakes this checkpointer (for a WAL hook).
    pub(crate) fn waker(&self) -> Option<Waker> {
        self.wake.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Installs a WAL hook on `writer` that wakes `waker` once the WAL holds `threshold`
/// pages and checkpoints inline (passive) from `backstop` pages on, which bounds the
/// WAL should the thread fall behind. It replaces SQLite's auto-checkpoint.
pub(crate) fn wake_on_growth(
    writer: &mut Connection,
    waker: Waker,
    threshold: i64,
    backstop: i64,
) -> rusqlite::Result<()> {
    writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        let pages = i64::from(pages);
        if pages >= backstop {
            // The commit has happened whatever this returns, and an error from the hook
            // would fail the write that made it; a checkpoint that cannot run now (the
            // thread is mid-way) is simply tried again at the next commit.
            if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                tracing::debug!(error = %e, pages, "inline WAL checkpoint deferred");
            }
        } else if pages >= threshold {
            waker.wake();
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: i64 = 1_000;

    #[test]
    fn the_background_thread_checkpoints_once_the_wal_passes_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut w = Connection::open(&path).unwrap();
        w.pragma_update(None, "journal_mode", "WAL").unwrap();
        w.pragma_update(None, "synchronous", "NORMAL").unwrap();
        w.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let cp = Checkpointer::start(&path, "test-checkpoint").unwrap();
        wake_on_growth(&mut w, cp.waker().unwrap(), THRESHOLD, 4 * THRESHOLD).unwrap();
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();
        // one page per commit, just past the threshold (the backstop is far away, so
        // the writer itself does not checkpoint)
        let rows = THRESHOLD + 10;
        for k in 0..rows {
            w.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [k])
                .unwrap();
        }
        // the checkpoint copies the pages into the database file
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while db_len() < before + 3000 * u64::try_from(THRESHOLD).unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(w);
        drop(cp);
        let r = Connection::open(&path).unwrap();
        let n: i64 = r
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, rows);
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}
