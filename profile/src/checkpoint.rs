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
//! many and small, through [`wake_on_growth`], a WAL hook that replaces SQLite's
//! auto-checkpoint.
//!
//! # Why the hook finishes the last stretch itself
//!
//! The WAL only starts over from its beginning when a write transaction begins while
//! every frame in it has been copied. Under a steady stream of commits a background
//! checkpoint never gets there: commits land while it runs, so it ends a little behind,
//! and woken again at once it chases those few frames, with two fsyncs per round,
//! forever (measured on the 16-writer OpLog load: 2,415 rounds in 5 s, a fifth of the
//! process's CPU). So the hook asks for one round at a time, and once a round has
//! ended within [`finish_frames`] of the WAL's end (or after [`MAX_ROUNDS`] rounds),
//! the writer copies that remainder itself, in its hook, right after its commit (a few
//! milliseconds, once per `threshold` frames); its next transaction then starts the
//! WAL over.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

/// A checkpoint thread with its own connection. Dropping it stops and joins the
/// thread even while [`Waker`]s live on (a WAL hook holds one for as long as its
/// connection is open); their later wake-ups are ignored.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: Option<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// What the checkpoint thread reports to whoever woke it.
#[derive(Debug, Default)]
struct Progress {
    /// A round asked for through [`Waker::wake_for`] is queued or running.
    busy: AtomicBool,
    /// `(round, frames)`: the last finished checkpoint had copied the WAL's first
    /// `frames` frames; `round` is the tag it was asked with.
    done: Mutex<(u64, i64)>,
    /// Checkpoints the thread has run.
    rounds: AtomicU64,
    /// Set when the [`Checkpointer`] is dropped: the thread ends at its next wake-up.
    stop: AtomicBool,
}

/// Wakes a [`Checkpointer`].
#[derive(Debug, Clone)]
pub(crate) struct Waker {
    tx: SyncSender<u64>,
    progress: Arc<Progress>,
}

impl Waker {
    /// Asks for a checkpoint; never blocks. Wake-ups coalesce: one pending is enough,
    /// as a checkpoint covers every frame written before it starts.
    pub(crate) fn wake(&self) {
        // full: one is already due; disconnected: the thread is stopping
        let _ = self.tx.try_send(0);
    }

    /// Asks for one checkpoint tagged `round` unless one asked this way is still
    /// queued or running.
    fn wake_for(&self, round: u64) {
        if !self.progress.busy.swap(true, Ordering::AcqRel) && self.tx.try_send(round).is_err() {
            self.progress.busy.store(false, Ordering::Release);
        }
    }

    /// Whether a round asked with [`Waker::wake_for`] is queued or running.
    fn busy(&self) -> bool {
        self.progress.busy.load(Ordering::Acquire)
    }

    /// How many WAL frames the last finished round tagged `round` had copied.
    fn copied_in(&self, round: u64) -> Option<i64> {
        let (r, frames) = *self
            .progress
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (r == round).then_some(frames)
    }
}

impl Checkpointer {
    /// Opens a second connection on `path` and starts the thread `name`.
    pub(crate) fn start(path: &Path, name: &str) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(std::io::Error::other)?;
        let (tx, rx) = sync_channel::<u64>(1);
        let progress = Arc::new(Progress::default());
        let report = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(round) = rx.recv() {
                    if report.stop.load(Ordering::Acquire) {
                        break;
                    }
                    // (busy flag, WAL frames, frames copied)
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        r.get::<_, i64>(2)
                    }) {
                        Ok(copied) => {
                            *report.done.lock().unwrap_or_else(PoisonError::into_inner) =
                                (round, copied);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "background WAL checkpoint failed; the backstop checkpoints inline if the WAL keeps growing");
                        }
                    }
                    report.rounds.fetch_add(1, Ordering::Relaxed);
                    report.busy.store(false, Ordering::Release);
                }
            })?;
        Ok(Self {
            wake: Some(Waker { tx, progress }),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint; never blocks.
    pub(crate) fn wake(&self) {
        if let Some(w) = &self.wake {
            w.wake();
        }
    }

    /// How many checkpoints the thread has run.
    #[cfg(test)]
    fn rounds(&self) -> u64 {
        self.wake
            .as_ref()
            .map_or(0, |w| w.progress.rounds.load(Ordering::Relaxed))
    }

    /// A handle that wakes this checkpointer (for a WAL hook).
    pub(crate) fn waker(&self) -> Option<Waker> {
        self.wake.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Waiting for every sender to go would hang while a hook's waker lives on
        // (a drop order slip, or unwinding from a panic): flag the stop, then make
        // sure a wake-up is queued, so the thread sees the flag at its next one.
        if let Some(w) = self.wake.take() {
            w.progress.stop.store(true, Ordering::Release);
            w.wake();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How close to the WAL's end a background round must have got before the writer
/// copies the rest itself: an eighth of the threshold, so the writer's share is
/// small and the background thread still does nearly all of the copying.
fn finish_frames(threshold: i64) -> i64 {
    (threshold / 8).max(1)
}

/// Background rounds asked per stretch of WAL before the writer finishes inline even
/// if the rounds do not get within [`finish_frames`] (commits outpacing the copy):
/// the first copies the bulk, the next ones what came in meanwhile.
const MAX_ROUNDS: u32 = 3;

/// What the hook does after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing: the WAL is small, or a background round is under way.
    Wait,
    /// Ask the thread for a round, tagged.
    Wake(u64),
    /// Checkpoint on the writer's connection now.
    Inline,
}

/// The hook's memory between commits (module docs: why it finishes inline).
#[derive(Debug)]
struct Cycle {
    threshold: i64,
    backstop: i64,
    /// Tags the rounds asked since the WAL last passed `threshold` or was finished
    /// inline, so that a report from before is not taken for news.
    tag: u64,
    /// Rounds asked under `tag`.
    asked: u32,
    /// The WAL was at or above `threshold` at the last commit.
    over: bool,
}

impl Cycle {
    fn new(threshold: i64, backstop: i64) -> Self {
        Self {
            threshold,
            backstop,
            tag: 0,
            asked: 0,
            over: false,
        }
    }

    fn next_tag(&mut self) {
        self.tag = self.tag.wrapping_add(1);
        self.asked = 0;
    }

    /// The step after a commit left `pages` frames in the WAL. `busy`: a round is
    /// queued or running; `copied(tag)`: frames the last finished round tagged `tag`
    /// had copied.
    fn step(&mut self, pages: i64, busy: bool, copied: impl Fn(u64) -> Option<i64>) -> Step {
        if pages < self.threshold {
            self.over = false;
            return Step::Wait;
        }
        if !self.over {
            self.over = true;
            self.next_tag();
        }
        if pages >= self.backstop {
            self.next_tag();
            return Step::Inline;
        }
        if busy {
            return Step::Wait;
        }
        let finish = copied(self.tag).is_some_and(|c| {
            pages.saturating_sub(c) <= finish_frames(self.threshold) || self.asked >= MAX_ROUNDS
        });
        if finish {
            self.next_tag();
            Step::Inline
        } else {
            self.asked = self.asked.saturating_add(1);
            Step::Wake(self.tag)
        }
    }
}

/// Installs a WAL hook on `writer` that replaces SQLite's auto-checkpoint: once the
/// WAL holds `threshold` frames it asks `waker`'s thread for one round at a time,
/// finishes the last stretch inline (module docs), and checkpoints inline (passive)
/// from `backstop` frames on, which bounds the WAL should the thread fall behind.
pub(crate) fn wake_on_growth(
    writer: &mut Connection,
    waker: Waker,
    threshold: i64,
    backstop: i64,
) -> rusqlite::Result<()> {
    let mut cycle = Cycle::new(threshold, backstop);
    writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        let pages = i64::from(pages);
        match cycle.step(pages, waker.busy(), |tag| waker.copied_in(tag)) {
            Step::Wait => {}
            Step::Wake(tag) => waker.wake_for(tag),
            Step::Inline => {
                // The commit has happened whatever this returns, and an error from the
                // hook would fail the write that made it; a checkpoint that cannot run
                // now (the thread is mid-way) is simply tried again at a later commit.
                if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    tracing::debug!(error = %e, pages, "inline WAL checkpoint deferred");
                }
            }
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: i64 = 1_000;

    /// A writer connection in WAL mode, `synchronous=NORMAL` as the crate's stores
    /// use, on `t.db` in `dir`.
    fn wal_writer(dir: &Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("t.db");
        let w = Connection::open(&path).unwrap();
        w.pragma_update(None, "journal_mode", "WAL").unwrap();
        w.pragma_update(None, "synchronous", "NORMAL").unwrap();
        (path, w)
    }

    /// Rows in the database file itself, leaving the WAL aside: what checkpoints
    /// have copied.
    fn rows_in_the_database_file(dir: &Path, path: &Path) -> i64 {
        let copy = dir.join("copy.db");
        std::fs::copy(path, &copy).unwrap();
        let c = Connection::open(&copy).unwrap();
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_background_thread_checkpoints_once_the_wal_passes_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut w) = wal_writer(dir.path());
        // the table goes into the database file; the WAL starts empty
        w.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        let cp = Checkpointer::start(&path, "test-checkpoint").unwrap();
        // The backstop is far away, so the writer itself does not checkpoint.
        wake_on_growth(&mut w, cp.waker().unwrap(), THRESHOLD, 4 * THRESHOLD).unwrap();
        // Commit rows until the WAL holds the threshold's frames (its header is 32
        // bytes, a frame 24 plus a 4 KiB page); the commit that gets there wakes the
        // thread, and nothing is written after it.
        let wal = dir.path().join("t.db-wal");
        let frames = || std::fs::metadata(&wal).map_or(0, |m| (m.len().saturating_sub(32)) / 4_120);
        let mut rows = 0i64;
        while frames() < THRESHOLD as u64 {
            w.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [rows])
                .unwrap();
            rows += 1;
        }
        assert_eq!(rows_in_the_database_file(dir.path(), &path), 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while cp.rounds() == 0 || cp.waker().unwrap().busy() {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The one round ran after the last commit, so it copied every row.
        assert_eq!(cp.rounds(), 1);
        assert_eq!(rows_in_the_database_file(dir.path(), &path), rows);
        drop(cp);
        let n: i64 = w
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, rows);
        let ok: String = w
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    /// The writer's hook holds a waker for as long as its connection is open; dropping
    /// the checkpointer first must still stop its thread (it once waited for every
    /// waker to go, and a test that panicked with its writer alive hung CI).
    #[test]
    fn dropping_the_checkpointer_stops_its_thread_while_a_hook_holds_a_waker() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut w) = wal_writer(dir.path());
        let cp = Checkpointer::start(&path, "test-checkpoint").unwrap();
        wake_on_growth(&mut w, cp.waker().unwrap(), 1, 1_000).unwrap();
        w.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .unwrap();
        let (done_tx, done_rx) = sync_channel(1);
        std::thread::spawn(move || {
            drop(cp);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the checkpointer's drop did not return");
        // The hook's later wake-ups go nowhere, and writes carry on.
        w.execute("INSERT INTO t VALUES (1)", []).unwrap();
    }

    #[test]
    fn the_hook_asks_one_round_at_a_time_and_finishes_near_the_end_inline() {
        let mut c = Cycle::new(1_000, 10_000);
        let none = |_| None;
        assert_eq!(c.step(999, false, none), Step::Wait);
        assert_eq!(c.step(1_000, false, none), Step::Wake(1));
        // while the round runs, nothing more is asked
        assert_eq!(c.step(1_400, true, none), Step::Wait);
        // it ended 400 frames short: more than an eighth of the threshold, ask again
        assert_eq!(
            c.step(1_450, false, |t| (t == 1).then_some(1_050)),
            Step::Wake(1)
        );
        // it ended 100 short: the writer finishes
        assert_eq!(
            c.step(1_500, false, |t| (t == 1).then_some(1_400)),
            Step::Inline
        );
        // the WAL started over; a report from the last stretch is no news
        assert_eq!(c.step(20, false, |_| Some(1_400)), Step::Wait);
        assert_eq!(
            c.step(1_500, false, |t| (t == 1).then_some(1_400)),
            Step::Wake(3)
        );
    }

    #[test]
    fn the_hook_finishes_inline_after_a_few_rounds_that_do_not_catch_up() {
        let mut c = Cycle::new(1_000, 100_000);
        let mut pages = 1_000;
        let mut steps = Vec::new();
        for _ in 0..=MAX_ROUNDS {
            // each round copies what was there when asked; twice as much comes in meanwhile
            let copied = pages;
            pages += 2_000;
            steps.push(c.step(pages, false, |_| Some(copied)));
        }
        assert_eq!(steps.pop(), Some(Step::Inline));
        assert!(
            steps.iter().all(|s| matches!(s, Step::Wake(_))),
            "{steps:?}"
        );
    }

    #[test]
    fn the_hook_checkpoints_inline_at_the_backstop_even_while_a_round_runs() {
        let mut c = Cycle::new(1_000, 4_000);
        assert_eq!(c.step(1_000, false, |_| None), Step::Wake(1));
        assert_eq!(c.step(4_000, true, |_| None), Step::Inline);
    }

    /// Under a steady stream of commits the WAL starts over from its beginning after
    /// at most a few background rounds each time (before, the thread chased the last
    /// few frames round after round and the WAL grew until the backstop).
    #[test]
    fn under_steady_commits_the_wal_starts_over_after_a_few_rounds() {
        const SMALL: i64 = 200;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).unwrap();
        setup.pragma_update(None, "journal_mode", "WAL").unwrap();
        setup
            .execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);
                 WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k < 63)
                 INSERT INTO t SELECT k, zeroblob(100) FROM n;",
            )
            .unwrap();
        drop(setup);
        let cp = Checkpointer::start(&path, "test-checkpoint").unwrap();
        let mut w = Connection::open(&path).unwrap();
        w.pragma_update(None, "synchronous", "NORMAL").unwrap();
        // The backstop is far away: the hook's finish is what starts the WAL over.
        wake_on_growth(&mut w, cp.waker().unwrap(), SMALL, 1_000 * SMALL).unwrap();
        let wal = dir.path().join("t.db-wal");
        // A restart writes a new WAL header with new salts (bytes 16..24).
        let salts = || {
            let head = std::fs::read(&wal).unwrap_or_default();
            head.get(16..24).map(<[u8]>::to_vec)
        };
        w.execute("UPDATE t SET v = randomblob(100) WHERE k = 0", [])
            .unwrap();
        let mut last = salts();
        assert!(last.is_some(), "no WAL");
        let mut restarts = 0u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut i = 0i64;
        while restarts < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL did not start over 3 times ({restarts}) in {} background rounds",
                cp.rounds()
            );
            w.execute("UPDATE t SET v = randomblob(100) WHERE k = ?1", [i % 64])
                .unwrap();
            i += 1;
            if i % 50 == 0 {
                let now = salts();
                if now != last {
                    restarts += 1;
                    last = now;
                }
            }
        }
        let rounds = cp.rounds();
        assert!(
            rounds <= (restarts + 1) * u64::from(MAX_ROUNDS),
            "{rounds} background rounds for {restarts} restarts"
        );
        // 4 KiB pages + 24-byte frame headers: the WAL never got near the backstop
        let frames = std::fs::metadata(&wal).unwrap().len() / 4_120;
        assert!(frames < 100 * SMALL as u64, "{frames} frames in the WAL");
    }
}
