//! Background WAL checkpoints.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold: that
//! writer copies up to [`WAL_CHECKPOINT_PAGES`] pages into the database file and fsyncs
//! it while every queued put waits. Here the writer's WAL hook only notes that the WAL
//! has grown past the threshold, and a second connection on its own thread runs a
//! `PASSIVE` checkpoint, which never blocks the writer. Durability is unchanged: commits
//! are in the WAL either way, and a checkpoint only moves committed frames.
//!
//! If the checkpointer falls behind (a reader holding an old snapshot keeps it from
//! finishing), the writer checkpoints inline once the WAL reaches
//! [`WAL_BACKSTOP_PAGES`], which bounds the WAL as the automatic checkpoint did.

use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

use super::db::WAL_CHECKPOINT_PAGES;
use super::error::OpenError;

/// WAL size in pages at which the writer checkpoints inline because the background
/// checkpointer has not caught up.
pub const WAL_BACKSTOP_PAGES: i64 = 4 * WAL_CHECKPOINT_PAGES;

/// The checkpoint thread and its connection. Drop it only after the writer connection
/// (whose hook holds a sender): the thread ends when every sender is gone.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection on `path` and installs the WAL hook on `writer`.
    pub(crate) fn start(path: &Path, writer: &mut Connection) -> Result<Self, OpenError> {
        let sql = |source| OpenError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        // One pending nudge is enough: a checkpoint covers every frame written so far.
        let (nudge, nudges) = sync_channel::<()>(1);
        install_hook(writer, nudge).map_err(sql)?;
        let thread = std::thread::Builder::new()
            .name("oplog-checkpoint".into())
            .spawn(move || {
                while nudges.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "background WAL checkpoint failed; the writer will checkpoint itself if the WAL keeps growing");
                    }
                }
            })
            .map_err(OpenError::Thread)?;
        Ok(Self {
            thread: Some(thread),
        })
    }
}

fn install_hook(writer: &mut Connection, nudge: SyncSender<()>) -> rusqlite::Result<()> {
    writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        let pages = i64::from(pages);
        if pages >= WAL_BACKSTOP_PAGES {
            // The commit has happened whatever this returns, and an error from the hook
            // would fail the put that made it; a checkpoint that cannot run now (the
            // checkpoint thread is mid-way) is simply tried again at the next commit.
            if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                tracing::debug!(error = %e, pages, "inline WAL checkpoint deferred");
            }
        } else if pages >= WAL_CHECKPOINT_PAGES {
            // full or disconnected: a checkpoint is already due or the store is closing
            let _ = nudge.try_send(());
        }
        Ok(())
    }))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_thread_checkpoints_once_the_wal_passes_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut w = Connection::open(&path).unwrap();
        w.pragma_update(None, "journal_mode", "WAL").unwrap();
        w.pragma_update(None, "synchronous", "NORMAL").unwrap();
        w.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let cp = Checkpointer::start(&path, &mut w).unwrap();
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();
        // one page per commit, just past the threshold (the backstop is far away, so
        // the writer itself does not checkpoint)
        let rows = WAL_CHECKPOINT_PAGES + 10;
        for k in 0..rows {
            w.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [k])
                .unwrap();
        }
        // the checkpoint copies the pages into the database file
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while db_len() < before + 3000 * u64::try_from(WAL_CHECKPOINT_PAGES).unwrap() {
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
