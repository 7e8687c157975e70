//! [`Store`]: the OpLog handle. The one writing SQLite connection sits behind a
//! mutex, shared by the writers and a store thread that runs jobs (ingest, snapshots,
//! pruning, reads of an in-memory store) sent over a bounded channel, each with a
//! oneshot reply.
//!
//! **Group commit, led by a writer.** A write is queued; the writer that finds no
//! commit under way becomes the leader: it yields once (so writers that are ready to
//! run queue first), then until as many writes have queued as the largest group since
//! such a wait last ran out (at most [`GROUP_LINGER`]), then commits every
//! queued write (up to [`MAX_OPS`] operations and the body limit per entry) as *one*
//! entry in *one* `BEGIN IMMEDIATE` transaction, on its own task. While writes are
//! still queued it gathers and commits again: the writes that queued during a commit
//! then share the next entry with the writers it just answered. Every caller's future
//! resolves after its commit. Concurrent writers thus share the signature, the entry
//! overhead and the commit, and a lone writer never waits for another thread to wake
//! up. When a job holds the connection, the leader hands the lead to the store thread
//! instead of blocking its task. If a group fails, its writes are retried one by one so
//! each caller gets its own outcome.
//!
//! **Reads** (`get`, `scan`, version vectors, catch-up pages) of a file store run on a
//! second, read-only connection in the caller's thread (WAL readers never block the
//! writer and see every committed write); an in-memory store has one connection and
//! sends reads to its thread. Reads of the map also consult the writer's in-memory
//! index of the `recent` table, which both share (`oplog/recent.rs`).
//!
//! Every `async` method is cancel-safe in the sense that dropping its future never
//! corrupts the store; a write whose future is dropped after it was queued may still
//! commit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use cid::Cid;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::db::{self, Db, Record, WAL_BACKSTOP_PAGES, WAL_CHECKPOINT_PAGES};
use super::entry::{self, DeviceId, LogKeys, MAX_BODY_PLAINTEXT, MAX_OPS, Op};
use super::error::{DecodeError, OpenError, StoreError};
use super::recent::RecentIndex;
use super::sigbatch;
use super::{
    CHANGE_CAP, COMMAND_CAP, Change, Durability, IngestReport, MAX_INGEST, MAX_PAGE, MAX_PENDING,
    Page, RECENT_ROWS, Snapshot, VersionVector,
};
use crate::checkpoint::{Checkpointer, wake_on_growth};
use crate::datadir::DataDir;
use crate::keys::OplogKeys;

/// Longest a leader yields before committing a group, waiting for as many writes to
/// queue as the largest group since such a wait last ran out. A lone writer only
/// yields once (after at most one such wait it expects one write, its own).
pub const GROUP_LINGER: std::time::Duration = std::time::Duration::from_micros(100);

/// How long the store thread keeps polling for the next command after finishing one
/// before it sleeps. The sync layer sends its next page's job a few µs after the
/// previous one; catching it while still awake saves the sleep/wake-up round trip
/// through the kernel (tens of µs on a VM).
pub const IDLE_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Store settings. Defaults: [`Durability::Process`], at most [`MAX_PENDING`] pending
/// entries, a group-commit linger of [`GROUP_LINGER`], [`RECENT_ROWS`] rows in
/// `recent` before they move into `state`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    durability: Durability,
    max_pending: usize,
    group_linger: std::time::Duration,
    recent_rows: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            max_pending: MAX_PENDING,
            group_linger: GROUP_LINGER,
            recent_rows: RECENT_ROWS,
        }
    }
}

impl StoreConfig {
    /// How durable a write is when `put` returns (default [`Durability::Process`]).
    #[must_use]
    pub fn with_durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// The configured durability.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Keeps at most `n` entries waiting for a predecessor (clamped to
    /// 1..=[`MAX_PENDING`]); more are rejected with
    /// [`Rejected::PendingFull`](super::Rejected::PendingFull) until the gap is filled.
    #[must_use]
    pub fn with_max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.clamp(1, MAX_PENDING);
        self
    }

    /// The configured pending cap.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Moves the newest winning writes from the small `recent` table into `state`
    /// once `recent` holds `n` rows (at least 1; default [`RECENT_ROWS`]). A tuning
    /// knob: reads and the stored map are the same for every `n`.
    #[must_use]
    pub fn with_recent_rows(mut self, n: usize) -> Self {
        self.recent_rows = n.max(1);
        self
    }

    /// The configured `recent` threshold.
    pub fn recent_rows(&self) -> usize {
        self.recent_rows
    }

    /// How long a group-commit leader waits for company at most (default
    /// [`GROUP_LINGER`], clamped to one second). Longer lets more concurrent writes
    /// share an entry when writers are slow to come back; zero commits whatever has
    /// queued after one yield.
    #[must_use]
    pub fn with_group_linger(mut self, d: std::time::Duration) -> Self {
        self.group_linger = d.min(std::time::Duration::from_secs(1));
        self
    }

    /// The configured group-commit linger.
    pub fn group_linger(&self) -> std::time::Duration {
        self.group_linger
    }
}

/// The receipt of a committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The entry that holds the write.
    pub id: Cid,
    /// Its sequence number.
    pub seq: u64,
    /// Its Lamport clock.
    pub clock: u64,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
type Job = Box<dyn FnOnce(&mut Db, &broadcast::Sender<Change>) + Send>;

enum Command {
    /// Commit the queued writes: a writer became their leader while a job held the
    /// database, and handed the lead to the thread instead of waiting for the lock.
    Lead,
    Run(Job),
}

/// What the store thread and the writers share.
struct Core {
    /// The one writing connection. The store thread locks it for each job; a
    /// writer that leads locks it to commit the queued writes.
    db: Mutex<Db>,
    writes: WriteQueue,
    changes: broadcast::Sender<Change>,
}

impl Core {
    /// The connection, waiting for it. A panic while it was held cannot leave a
    /// half-applied write behind (every write is one transaction), so a poisoned
    /// lock is used as is.
    fn lock_db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection if nobody holds it.
    fn try_lock_db(&self) -> Option<std::sync::MutexGuard<'_, Db>> {
        match self.db.try_lock() {
            Ok(db) => Some(db),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Writes waiting to be committed, and whether someone is committing them.
///
/// Group commit without a hand-off: the writer that finds no leader becomes it and
/// commits everything queued (its own write and whatever queued behind it) in one
/// entry and one transaction, on its own task; writers that find a leader wait for
/// its reply. A single writer therefore commits on its own thread, with no wake-up of
/// another thread on its path.
struct WriteQueue {
    waiting: Mutex<std::collections::VecDeque<(Vec<Op>, Reply<Written>)>>,
    leader: AtomicBool,
    /// How many writes a leader waits for before it commits: the largest group
    /// since a wait last ran out (then: as many as had come).
    expected: AtomicUsize,
    /// The longest such a wait lasts ([`StoreConfig::with_group_linger`]).
    linger: std::time::Duration,
}

impl WriteQueue {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(Vec<Op>, Reply<Written>)>> {
        // The queue is only pushed to and drained; a panic elsewhere cannot leave it
        // half-updated.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives up the lead if no write is queued; whether it did. A writer that queued
    /// just before the release but still saw a leader is waiting on us, so the lead is
    /// taken back unless that writer (or another) took it.
    fn release_lead(&self) -> bool {
        if !self.lock().is_empty() {
            return false;
        }
        self.leader.store(false, Ordering::SeqCst);
        self.lock().is_empty() || self.leader.swap(true, Ordering::SeqCst)
    }

    /// Records a group about to be committed: a larger one raises what leaders wait
    /// for.
    fn note_group(&self, len: usize) {
        self.expected.fetch_max(len, Ordering::Relaxed);
    }

    /// The queued writes up to the entry caps, oldest first (at least one if any).
    fn take_group(&self) -> Vec<(Vec<Op>, Reply<Written>)> {
        let mut waiting = self.lock();
        let mut group = Vec::new();
        let (mut n_ops, mut bytes) = (0usize, 0usize);
        while let Some((ops, _)) = waiting.front() {
            let b: usize = ops.iter().map(Op::encoded_bound).sum();
            if !group.is_empty()
                && (n_ops.saturating_add(ops.len()) > MAX_OPS
                    || bytes.saturating_add(b) > MAX_BODY_PLAINTEXT)
            {
                break;
            }
            n_ops = n_ops.saturating_add(ops.len());
            bytes = bytes.saturating_add(b);
            group.extend(waiting.pop_front());
        }
        group
    }
}

/// The leader's wait for company before it commits a group: until as many writes
/// as [`WriteQueue::expected`] have queued, or at most [`WriteQueue::linger`].
async fn gather(core: &Core) {
    let expected = core.writes.expected.load(Ordering::Relaxed);
    let until = std::time::Instant::now() + core.writes.linger;
    loop {
        let queued = core.writes.lock().len();
        if queued >= expected {
            return;
        }
        if std::time::Instant::now() >= until {
            // Fewer writers than before: from now on expect only those that came.
            core.writes.expected.store(queued.max(1), Ordering::Relaxed);
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Commits the next group of queued writes as one entry; false if none was queued.
/// Called only by the leader, with the database locked.
fn commit_next_group(core: &Core, db: &mut Db) -> bool {
    let group = core.writes.take_group();
    if group.is_empty() {
        return false;
    }
    core.writes.note_group(group.len());
    commit_group(db, group, &core.changes);
    true
}

/// Commits queued writes until none is left, then gives up the lead. Called only by
/// the leader, with the database locked.
fn lead(core: &Core, db: &mut Db) {
    loop {
        while commit_next_group(core, db) {}
        if core.writes.release_lead() {
            return;
        }
    }
}

/// Leadership held across an `.await`: if the writer's future is dropped before the
/// lead was passed on, the drop commits the queue, so no write waits forever.
struct LeaderDuty<'a> {
    core: &'a Core,
    armed: bool,
}

impl Drop for LeaderDuty<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut db = self.core.lock_db();
            lead(self.core, &mut db);
        }
    }
}

/// Field order matters: after [`Drop::drop`], fields drop in declaration order, so
/// the writer connection (the last `Core`) closes, then the checkpoint thread's
/// connection, and the data dir lock is released only once no connection is open.
struct Inner {
    tx: Option<mpsc::Sender<Command>>,
    reader: Option<Mutex<Connection>>,
    /// The index of `recent`, which readers consult with the reader connection.
    recent: Arc<RecentIndex>,
    keys: LogKeys,
    device: DeviceId,
    thread: Option<JoinHandle<()>>,
    core: Arc<Core>,
    /// Held for its drop: stops the checkpoint thread.
    _checkpointer: Option<Checkpointer>,
    /// Held for its drop: releases the data dir lock.
    _dir: Option<DataDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which drops its share of `core`.
        self.tx.take();
        self.reader.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The OpLog: a cloneable handle to one writing connection and its store thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &hex::encode(self.inner.device))
            .finish_non_exhaustive()
    }
}

/// Parses a data dir's device id (16 hex characters).
pub fn parse_device_id(hex_id: &str) -> Result<DeviceId, OpenError> {
    let bytes = hex::decode(hex_id).map_err(|_| OpenError::DeviceId(hex_id.to_owned()))?;
    DeviceId::try_from(bytes.as_slice()).map_err(|_| OpenError::DeviceId(hex_id.to_owned()))
}

impl Store {
    /// Opens (creating if needed) the OpLog database at `path` for the wallet's
    /// `keys`, written as `device`. The caller must ensure one process per database
    /// (see [`Store::open_data_dir`], which holds the data dir lock).
    pub fn open(
        path: &Path,
        keys: &OplogKeys,
        device: DeviceId,
        config: StoreConfig,
    ) -> Result<Self, OpenError> {
        Self::open_inner(Some(path), keys, device, config, None)
    }

    /// An in-memory store (same engine, nothing on disk): for tests and tools.
    pub fn in_memory(
        keys: &OplogKeys,
        device: DeviceId,
        config: StoreConfig,
    ) -> Result<Self, OpenError> {
        Self::open_inner(None, keys, device, config, None)
    }

    /// Opens the Profile OpLog of a locked data dir; the store keeps the lock until
    /// its thread has closed the database.
    pub fn open_data_dir(dir: DataDir, config: StoreConfig) -> Result<Self, OpenError> {
        let keys = dir.keys()?;
        let device = parse_device_id(&dir.info().device_id)?;
        let path = dir.profile_db();
        Self::open_inner(Some(&path), &keys.oplog, device, config, Some(dir))
    }

    fn open_inner(
        path: Option<&Path>,
        keys: &OplogKeys,
        device: DeviceId,
        config: StoreConfig,
        dir: Option<DataDir>,
    ) -> Result<Self, OpenError> {
        let log_keys = LogKeys::new(keys)?;
        let name = path.map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
        let sql = |source| OpenError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = match path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .map_err(sql)?;
        db::configure(&conn, config.durability, path.is_none()).map_err(sql)?;
        let (mut db, _) = Db::init(conn, log_keys.clone(), device)?;
        db.max_pending = config.max_pending;
        db.recent_limit = config.recent_rows;
        // WAL checkpoints on their own thread (crate::checkpoint): commits never wait
        // for one.
        let checkpointer = match path {
            Some(p) => {
                let c = Checkpointer::start(p, "oplog-checkpoint").map_err(OpenError::Thread)?;
                if let Some(w) = c.waker() {
                    wake_on_growth(&mut db.conn, w, WAL_CHECKPOINT_PAGES, WAL_BACKSTOP_PAGES)
                        .map_err(sql)?;
                }
                Some(c)
            }
            None => None,
        };
        let reader = match path {
            Some(p) => {
                let r = Connection::open_with_flags(
                    p,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql)?;
                r.pragma_update(None, "cache_size", -16_000).map_err(sql)?;
                r.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(sql)?;
                Some(Mutex::new(r))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(COMMAND_CAP);
        let (changes, _) = broadcast::channel(CHANGE_CAP);
        let db_recent = Arc::clone(&db.recent);
        let core = Arc::new(Core {
            db: Mutex::new(db),
            writes: WriteQueue {
                waiting: Mutex::default(),
                leader: AtomicBool::new(false),
                expected: AtomicUsize::new(1),
                linger: config.group_linger,
            },
            changes,
        });
        let thread_core = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("oplog-store".into())
            .spawn(move || run(&thread_core, rx))
            .map_err(OpenError::Thread)?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Some(tx),
                reader,
                recent: db_recent,
                keys: log_keys,
                device,
                core,
                thread: Some(thread),
                _checkpointer: checkpointer,
                _dir: dir,
            }),
        })
    }

    /// This store's device id.
    pub fn device(&self) -> DeviceId {
        self.inner.device
    }

    /// The wallet's parsed OpLog keys (for [`super::verify`] and snapshots).
    pub fn keys(&self) -> &LogKeys {
        &self.inner.keys
    }

    async fn send(&self, cmd: Command) -> Result<(), StoreError> {
        let tx = self.inner.tx.as_ref().ok_or(StoreError::Stopped)?;
        tx.send(cmd).await.map_err(|_| StoreError::Stopped)
    }

    /// Runs `f` on the store thread with exclusive access.
    async fn run_job<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db, &broadcast::Sender<Change>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Run(Box::new(move |db, ch| {
            let _ = reply.send(f(db, ch));
        })))
        .await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs a read-only query on the reader connection, or on the store thread for
    /// in-memory stores. The query gets the index of `recent` too.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &RecentIndex, &LogKeys) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(reader) = &self.inner.reader {
            let conn = reader
                .lock()
                .map_err(|_| StoreError::Corrupt("reader connection poisoned".into()))?;
            return f(&conn, &self.inner.recent, &self.inner.keys);
        }
        self.run_job(move |db, _| f(&db.conn, &db.recent, &db.keys))
            .await
    }

    /// Writes `value` under `key`; resolves once the write is committed (see
    /// [`Durability`]).
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Written, StoreError> {
        self.write(vec![Op {
            key: key.into(),
            value: Some(value.into()),
        }])
        .await
    }

    /// Deletes `key` (writes a tombstone that replicates like any write).
    pub async fn delete(&self, key: impl Into<String>) -> Result<Written, StoreError> {
        self.write(vec![Op {
            key: key.into(),
            value: None,
        }])
        .await
    }

    /// Writes many keys as one entry, atomically.
    pub async fn put_batch<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Written, StoreError> {
        self.write(
            items
                .into_iter()
                .map(|(k, v)| Op {
                    key: k.into(),
                    value: Some(v.into()),
                })
                .collect(),
        )
        .await
    }

    /// Writes a batch of puts and deletes as one entry, atomically; a later
    /// operation on the same key wins.
    pub async fn write(&self, ops: Vec<Op>) -> Result<Written, StoreError> {
        check_batch(&ops)?;
        let core = &self.inner.core;
        let (reply, rx) = oneshot::channel();
        core.writes.lock().push_back((ops, reply));
        if !core.writes.leader.swap(true, Ordering::SeqCst) {
            let mut duty = LeaderDuty { core, armed: true };
            // One yield lets the writers that are already runnable queue first:
            // without it, on a single-threaded runtime a leader whose own reply is
            // ready at once never gives them the chance, and every entry held one
            // write (measured: 10k puts/s for 16 writers, no better than one).
            tokio::task::yield_now().await;
            loop {
                gather(core).await;
                let Some(mut db) = core.try_lock_db() else {
                    // A job (an ingest, a snapshot) holds the database: rather than
                    // block this task until it ends, the store thread commits after it.
                    self.send(Command::Lead).await?;
                    duty.armed = false;
                    break;
                };
                commit_next_group(core, &mut db);
                drop(db);
                if core.writes.release_lead() {
                    duty.armed = false;
                    break;
                }
                // Writes queued while this group committed wait for us, and the
                // writers just answered are about to write again: gathering again,
                // rather than committing those few at once, lets both share the
                // next entry.
            }
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// The value of `key`, or `None` if it was never written or is deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.record(key).await?.and_then(|r| r.value))
    }

    /// The full record of `key`, tombstones included.
    pub async fn record(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let key = key.to_owned();
        self.read(move |c, r, k| db::record(c, r, k, &key)).await
    }

    /// Every live `(key, value)` whose key starts with `prefix`, in key order.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan_page(prefix, None, usize::MAX).await
    }

    /// One page of [`Store::scan`]: at most `limit` records with keys after `after`.
    pub async fn scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        self.read(move |c, r, k| db::scan(c, r, k, &prefix, after.as_deref(), limit))
            .await
    }

    /// Subscribes to committed entries (local and remote) and forks.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.core.changes.subscribe()
    }

    /// Each device's highest contiguous sequence number.
    pub async fn version_vector(&self) -> Result<VersionVector, StoreError> {
        self.read(|c, _, _| db::version_vector(c)).await
    }

    /// Each device's head (seq and entry id) with its Lamport clock.
    pub async fn heads(&self) -> Result<Vec<(entry::Head, u64)>, StoreError> {
        self.read(|c, _, _| db::heads(c)).await
    }

    /// Entries the holder of `since` lacks, at most `limit` (≤ [`MAX_PAGE`]); when
    /// `more` is set, advance `since` by the page and ask again. Fails with
    /// [`StoreError::Pruned`] when they are no longer kept (use a snapshot).
    pub async fn entries_since(
        &self,
        since: &VersionVector,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let since = since.clone();
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |c, _, k| db::entries_since(c, k, &since, limit))
            .await
    }

    /// Verifies and applies remote entries: each is applied, kept pending until its
    /// predecessor arrives, recognised as a duplicate, or rejected with a reason.
    /// [`Store::verify_batch`] then [`Store::apply_verified`]: decoding and signature
    /// checks run off the store thread, in parallel; one transaction applies all.
    pub async fn ingest(&self, entries: Vec<Vec<u8>>) -> Result<IngestReport, StoreError> {
        let verified = self.verify_batch(entries).await?;
        self.apply_verified(verified).await
    }

    /// The first half of [`Store::ingest`]: decodes, verifies (log id, signer,
    /// signature, low-S, recovery id) and opens every entry, on up to
    /// [`MAX_VERIFY_THREADS`] threads for batches of at least [`PARALLEL_VERIFY_MIN`]
    /// entries. Nothing is written; a caller can verify the next batch while the
    /// store applies this one.
    pub async fn verify_batch(&self, entries: Vec<Vec<u8>>) -> Result<Verified, StoreError> {
        if entries.len() > MAX_INGEST {
            return Err(StoreError::IngestTooLarge {
                len: entries.len(),
                max: MAX_INGEST,
            });
        }
        if entries.len() < PARALLEL_VERIFY_MIN {
            return Ok(verify_all(entries, &self.inner.keys));
        }
        let keys = self.inner.keys.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || verify_all(entries, &keys))
                .await
                .map_err(|_| StoreError::Corrupt("entry verification panicked".into())),
            Err(_) => Ok(verify_all(entries, &keys)),
        }
    }

    /// The second half of [`Store::ingest`]: applies a verified batch in one
    /// transaction on the store thread. Batches are applied in the order of the calls.
    pub async fn apply_verified(&self, verified: Verified) -> Result<IngestReport, StoreError> {
        let Verified { items, mut report } = verified;
        if items.is_empty() {
            return Ok(report);
        }
        self.run_job(move |db, ch| {
            let mut changes = Vec::new();
            db.ingest(items, &mut report, &mut changes)?;
            for c in changes {
                let _ = ch.send(c);
            }
            report.rejected.sort_by_key(|(i, _)| *i);
            Ok(report)
        })
        .await
    }

    /// The materialized state and the heads it covers.
    pub async fn export_snapshot(&self) -> Result<Snapshot, StoreError> {
        // One read transaction so rows and heads are consistent.
        self.run_job(|db, _| {
            let tx = db.conn.unchecked_transaction()?;
            let heads = db::heads(&tx)?;
            let rows = db::export_rows(&tx, &db.recent, &db.keys)?;
            tx.finish()?;
            Ok(Snapshot { heads, rows })
        })
        .await
    }

    /// Merges a snapshot (typically from [`Snapshot::open`]); returns how many of its
    /// records won.
    pub async fn import_snapshot(&self, snapshot: Snapshot) -> Result<usize, StoreError> {
        self.run_job(move |db, ch| {
            let (n, changes) = db.import(&snapshot)?;
            for c in changes {
                let _ = ch.send(c);
            }
            Ok(n)
        })
        .await
    }

    /// Deletes entries that every known device has passed (as their causal contexts
    /// declare); values still winning are kept sealed in the state. Returns how many
    /// entries were removed.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        self.run_job(|db, _| db.prune()).await
    }

    /// SHA-256 over every record (see `docs/formats.md` §5.2): equal iff two stores
    /// hold the same state.
    pub async fn state_digest(&self) -> Result<[u8; 32], StoreError> {
        self.read(db::state_digest).await
    }

    /// `PRAGMA integrity_check`: empty when the database is sound.
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.run_job(|db, _| {
            let mut stmt = db.conn.prepare("PRAGMA integrity_check")?;
            let rows: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
        .await
    }

    /// Checkpoints the WAL and rebuilds the file compactly (`VACUUM`).
    pub async fn vacuum(&self) -> Result<(), StoreError> {
        self.run_job(|db, _| {
            db.conn.execute_batch("VACUUM")?;
            db.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Waits for the commands queued before this call, then drops this handle. If it
    /// was the last one, the store thread stops and the database is closed (and the
    /// data dir lock released) before this resolves; while other clones are alive
    /// the store keeps running for them.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        let inner = self.inner;
        // Wait for everything queued so far, then let the last handle join.
        let (reply, rx) = oneshot::channel::<()>();
        if let Some(tx) = &inner.tx {
            let _ = tx
                .send(Command::Run(Box::new(move |_, _| {
                    let _ = reply.send(());
                })))
                .await;
            let _ = rx.await;
        }
        drop(inner);
        Ok(())
    }
}

/// Most threads [`Store::verify_batch`] uses (bounded by the machine's cores).
pub const MAX_VERIFY_THREADS: usize = 4;
/// Smallest batch [`Store::verify_batch`] verifies on several threads; smaller ones
/// (live gossip) are verified in the caller, without a thread hand-off.
pub const PARALLEL_VERIFY_MIN: usize = 16;

/// A batch of entries that passed [`Store::verify_batch`], ready for
/// [`Store::apply_verified`].
#[derive(Debug, Default)]
pub struct Verified {
    items: Vec<VerifiedEntry>,
    report: IngestReport,
}

impl Verified {
    /// `(device, seq)` of every entry that passed verification, in input order.
    pub fn positions(&self) -> impl Iterator<Item = (DeviceId, u64)> + '_ {
        self.items.iter().map(|v| (v.entry.device, v.entry.seq))
    }

    /// How many entries passed verification.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no entry passed verification.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One verified entry: its index in the input, the decoded entry, its opened
/// operations, its id and its bytes.
#[derive(Debug)]
pub(crate) struct VerifiedEntry {
    pub(crate) index: usize,
    pub(crate) entry: entry::Entry,
    pub(crate) ops: Vec<Op>,
    pub(crate) id: Cid,
    pub(crate) bytes: Vec<u8>,
}

/// Decodes, verifies and opens one thread's share of a batch; results in input order.
/// Signatures are checked together ([`sigbatch::verify_many`]), with the same
/// verdicts as checking them one by one.
fn verify_chunk(
    chunk: Vec<(usize, Vec<u8>)>,
    keys: &LogKeys,
) -> Vec<Result<VerifiedEntry, (usize, super::Rejected)>> {
    let mut results = Vec::with_capacity(chunk.len());
    let mut decoded = Vec::with_capacity(chunk.len());
    let mut positions = Vec::with_capacity(chunk.len());
    for (index, bytes) in chunk {
        match entry::decode_remote(&bytes) {
            Ok(e) => {
                decoded.push(e);
                positions.push((index, bytes));
            }
            Err(r) => results.push(Err((index, r))),
        }
    }
    let verdicts = sigbatch::verify_many(&decoded, keys);
    for ((e, (index, bytes)), verdict) in decoded.into_iter().zip(positions).zip(verdicts) {
        results.push(
            verdict
                .and_then(|()| open_verified(index, e, bytes, keys))
                .map_err(|r| (index, r)),
        );
    }
    results.sort_by_key(|r| match r {
        Ok(v) => v.index,
        Err((i, _)) => *i,
    });
    results
}

fn open_verified(
    index: usize,
    e: entry::Entry,
    bytes: Vec<u8>,
    keys: &LogKeys,
) -> Result<VerifiedEntry, super::Rejected> {
    let ops = e.open(keys).map_err(|reason| super::Rejected::BadBody {
        device: hex::encode(e.device),
        seq: e.seq,
        reason,
    })?;
    Ok(VerifiedEntry {
        index,
        id: entry::cid_of(&bytes),
        entry: e,
        ops,
        bytes,
    })
}

/// Verifies `entries` (in order) on up to [`MAX_VERIFY_THREADS`] scoped threads.
fn verify_all(entries: Vec<Vec<u8>>, keys: &LogKeys) -> Verified {
    let threads = if entries.len() < PARALLEL_VERIFY_MIN {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, MAX_VERIFY_THREADS)
    };
    let total = entries.len();
    let mut results: Vec<Result<VerifiedEntry, (usize, super::Rejected)>> =
        Vec::with_capacity(total);
    if threads <= 1 {
        results.extend(verify_chunk(
            entries.into_iter().enumerate().collect(),
            keys,
        ));
    } else {
        // Contiguous chunks, one per thread, joined back in input order.
        let per = total.div_ceil(threads);
        let mut chunks: Vec<Vec<(usize, Vec<u8>)>> = Vec::with_capacity(threads);
        let mut it = entries.into_iter().enumerate().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(per).collect());
        }
        let run = |chunk: Vec<(usize, Vec<u8>)>| verify_chunk(chunk, keys);
        std::thread::scope(|s| {
            // The first chunk runs on this thread, the others on scoped threads.
            let mut chunks = chunks.into_iter();
            let first = chunks.next().unwrap_or_default();
            let handles: Vec<_> = chunks.map(|chunk| s.spawn(move || run(chunk))).collect();
            results.extend(run(first));
            for h in handles {
                match h.join() {
                    Ok(part) => results.extend(part),
                    // Verification never panics on input; if a thread did, its
                    // entries are simply not applied (the peer sends them again).
                    Err(_) => tracing::error!("an entry verification thread panicked"),
                }
            }
        });
    }
    let mut verified = Verified {
        items: Vec::with_capacity(results.len()),
        report: IngestReport::default(),
    };
    for r in results {
        match r {
            Ok(v) => verified.items.push(v),
            Err(x) => verified.report.rejected.push(x),
        }
    }
    verified
}

fn check_batch(ops: &[Op]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Err(DecodeError::Field {
            field: "body",
            reason: "an entry holds at least one operation",
        }
        .into());
    }
    if ops.len() > MAX_OPS {
        return Err(DecodeError::TooLarge {
            what: "operations",
            len: ops.len(),
            max: MAX_OPS,
        }
        .into());
    }
    ops.iter().try_for_each(Op::check)?;
    let bound = ops
        .iter()
        .map(Op::encoded_bound)
        .fold(0usize, usize::saturating_add);
    if bound > MAX_BODY_PLAINTEXT {
        return Err(DecodeError::TooLarge {
            what: "batch",
            len: bound,
            max: MAX_BODY_PLAINTEXT,
        }
        .into());
    }
    Ok(())
}

/// The store thread: jobs in order, and the writers' lead when they hand it over.
fn run(core: &Core, mut rx: mpsc::Receiver<Command>) {
    loop {
        let cmd = match spin_recv(&mut rx) {
            Some(c) => c,
            None => match rx.blocking_recv() {
                Some(c) => c,
                None => break,
            },
        };
        let mut db = core.lock_db();
        match cmd {
            Command::Run(job) => job(&mut db, &core.changes),
            Command::Lead => lead(core, &mut db),
        }
    }
}

/// Polls for a command for at most [`IDLE_SPIN`] without sleeping.
fn spin_recv(rx: &mut mpsc::Receiver<Command>) -> Option<Command> {
    let until = std::time::Instant::now() + IDLE_SPIN;
    loop {
        match rx.try_recv() {
            Ok(c) => return Some(c),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() >= until => {
                return None;
            }
            Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
}

fn commit_group(
    db: &mut Db,
    group: Vec<(Vec<Op>, Reply<Written>)>,
    changes: &broadcast::Sender<Change>,
) {
    // Move every op into one batch; `bounds` splits it again if the group fails.
    let mut ops = Vec::with_capacity(group.iter().map(|(o, _)| o.len()).sum());
    let mut bounds = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    for (o, reply) in group {
        bounds.push(o.len());
        ops.extend(o);
        replies.push(reply);
    }
    let commit = |db: &mut Db, ops: &[Op]| {
        db.write_local(ops).map(|c| {
            let w = Written {
                id: c.id,
                seq: c.seq,
                clock: c.clock,
            };
            let _ = changes.send(Change::Entry(Arc::new(c)));
            w
        })
    };
    match commit(db, &ops) {
        Ok(w) => {
            for reply in replies {
                let _ = reply.send(Ok(w));
            }
        }
        Err(e) if replies.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = replies.len(), "group commit failed; retrying writes one by one");
            let mut rest = ops.as_slice();
            for (len, reply) in bounds.into_iter().zip(replies) {
                let (mine, tail) = rest.split_at(len.min(rest.len()));
                rest = tail;
                let _ = reply.send(commit(db, mine));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    use super::*;
    use crate::keys::WalletKeys;
    use crate::secret::Secret32;

    fn store(device: u8) -> Store {
        store_with(device, StoreConfig::default())
    }

    fn store_with(device: u8, config: StoreConfig) -> Store {
        let keys = WalletKeys::from_address_key(&Secret32::new([3; 32])).unwrap();
        Store::in_memory(&keys.oplog, [device; 8], config).unwrap()
    }

    /// Rows in `recent` and in `state`.
    async fn map_rows(s: &Store) -> (i64, i64) {
        s.run_job(|db, _| {
            let count = |t: &str| -> Result<i64, StoreError> {
                Ok(db
                    .conn
                    .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?)
            };
            Ok((count("recent")?, count("state")?))
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn recent_moves_into_state_at_the_threshold_and_before_a_prune() {
        let s = store_with(1, StoreConfig::default().with_recent_rows(4));
        s.put_batch([("a", vec![1]), ("b", vec![2]), ("c", vec![3])])
            .await
            .unwrap();
        assert_eq!(map_rows(&s).await, (3, 0));
        // the transaction that brings `recent` to 4 rows moves them all
        s.delete("a").await.unwrap();
        assert_eq!(map_rows(&s).await, (0, 3));
        s.put("b", vec![9]).await.unwrap();
        assert_eq!(map_rows(&s).await, (1, 3));
        assert_eq!(s.get("b").await.unwrap(), Some(vec![9]));
        assert_eq!(s.get("a").await.unwrap(), None);
        // pruning reads `state` alone: everything is moved there first
        s.prune().await.unwrap();
        assert_eq!(map_rows(&s).await, (0, 3));
        assert_eq!(s.get("b").await.unwrap(), Some(vec![9]));
        let live: Vec<String> = s
            .scan("")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(live, ["b", "c"]);
    }

    fn file_store(path: &Path, config: StoreConfig) -> Store {
        let keys = WalletKeys::from_address_key(&Secret32::new([3; 32])).unwrap();
        Store::open(path, &keys.oplog, [1; 8], config).unwrap()
    }

    /// `recent` keeps every winning write as a row; the index and a reopened store
    /// see each key's newest, and so does `state` after the move.
    #[tokio::test]
    async fn a_key_written_twice_in_recent_reads_its_newest_row_after_reopen_and_move() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.db");
        let s = file_store(&path, StoreConfig::default());
        s.put("k", vec![1]).await.unwrap();
        s.put("k", vec![2]).await.unwrap();
        s.delete("gone").await.unwrap();
        assert_eq!(map_rows(&s).await, (3, 0));
        assert_eq!(s.get("k").await.unwrap(), Some(vec![2]));
        let digest = s.state_digest().await.unwrap();
        s.shutdown().await.unwrap();

        let s = file_store(&path, StoreConfig::default());
        assert_eq!(s.get("k").await.unwrap(), Some(vec![2]));
        assert_eq!(s.record("gone").await.unwrap().unwrap().value, None);
        assert_eq!(s.state_digest().await.unwrap(), digest);
        // A batch of 32 writes moves `recent` into `state` first.
        s.put_batch((0..32).map(|i| (format!("z{i:02}"), vec![i])))
            .await
            .unwrap();
        assert_eq!(map_rows(&s).await, (0, 34));
        assert_eq!(s.get("k").await.unwrap(), Some(vec![2]));
        assert_eq!(s.record("gone").await.unwrap().unwrap().value, None);
    }

    /// A page holds `limit` live keys however many tombstones and shadowed rows lie
    /// before them, in `recent` or in `state`.
    #[tokio::test]
    async fn scan_pages_skip_tombstones_and_shadowed_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let s = file_store(&tmp.path().join("p.db"), StoreConfig::default());
        s.put_batch((0..40).map(|i| (format!("k{i:02}"), vec![i])))
            .await
            .unwrap();
        for i in 0..30 {
            s.delete(format!("k{i:02}")).await.unwrap();
        }
        s.put("k35", vec![99]).await.unwrap();
        let keys = |page: Vec<(String, Vec<u8>)>| -> Vec<String> {
            page.into_iter().map(|(k, _)| k).collect()
        };
        for round in ["tombstones in recent", "tombstones in state"] {
            assert_eq!(map_rows(&s).await.0 > 0, round == "tombstones in recent");
            let first = s.scan_page("k", None, 3).await.unwrap();
            assert_eq!(keys(first), ["k30", "k31", "k32"], "{round}");
            let next = s.scan_page("k", Some("k32"), 5).await.unwrap();
            assert_eq!(next[2], ("k35".to_owned(), vec![99]), "{round}");
            assert_eq!(keys(next), ["k33", "k34", "k35", "k36", "k37"], "{round}");
            assert_eq!(s.scan("k").await.unwrap().len(), 10, "{round}");
            s.prune().await.unwrap();
        }
    }

    /// A reader takes `recent`'s index before its read transaction. If the rows it
    /// took moved into `state` in between, and their entries were even pruned, it
    /// reads them from `state`; a newer `state` record beats an older index row.
    #[tokio::test]
    async fn a_reader_with_an_outdated_index_reads_what_state_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let s = file_store(&tmp.path().join("p.db"), StoreConfig::default());
        s.put("a", vec![1]).await.unwrap();
        s.put("b", vec![2]).await.unwrap();
        let stale = RecentIndex::default();
        stale.reset(s.inner.recent.all().into_iter().collect());
        s.put("b", vec![3]).await.unwrap();
        assert_eq!(s.prune().await.unwrap(), 3, "every entry is pruned");
        assert_eq!(map_rows(&s).await.0, 0);
        assert!(s.inner.recent.all().is_empty());
        let stale = Arc::new(stale);
        let st = Arc::clone(&stale);
        let (a, b, page, rows) = s
            .read(move |c, _, k| {
                Ok((
                    db::record(c, &st, k, "a")?,
                    db::record(c, &st, k, "b")?,
                    db::scan(c, &st, k, "", None, 10)?,
                    db::export_rows(c, &st, k)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(a.unwrap().value, Some(vec![1]), "pruned: read from `state`");
        assert_eq!(b.unwrap().value, Some(vec![3]), "`state` is newer");
        assert_eq!(page, [("a".to_owned(), vec![1]), ("b".to_owned(), vec![3])]);
        let values: Vec<_> = rows.into_iter().map(|r| r.value).collect();
        assert_eq!(values, [Some(vec![1]), Some(vec![3])]);
    }

    /// One step of [`a_reader_with_an_older_index_sees_the_map_of_one_moment`].
    #[derive(Debug, Clone)]
    enum MapStep {
        Put(u8, u8),
        Delete(u8),
        /// 32 writes in one entry: `recent` moves into `state` first.
        Batch(u8),
        /// Moves `recent` into `state` and, with one device, prunes every entry.
        Prune,
    }

    fn map_step() -> impl proptest::strategy::Strategy<Value = MapStep> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u8..12, any::<u8>()).prop_map(|(k, v)| MapStep::Put(k, v)),
            3 => (0u8..12).prop_map(MapStep::Delete),
            1 => any::<u8>().prop_map(MapStep::Batch),
            1 => Just(MapStep::Prune),
        ]
    }

    async fn run_step(s: &Store, step: &MapStep) {
        match step {
            MapStep::Put(k, v) => drop(s.put(format!("k{k}"), vec![*v]).await.unwrap()),
            MapStep::Delete(k) => drop(s.delete(format!("k{k}")).await.unwrap()),
            MapStep::Batch(v) => drop(
                s.put_batch((0..32).map(|i| (format!("k{}", i % 14), vec![*v, i])))
                    .await
                    .unwrap(),
            ),
            MapStep::Prune => drop(s.prune().await.unwrap()),
        }
    }

    /// The whole map and its live part, read with `index` as the index of `recent`.
    async fn map_with(
        s: &Store,
        index: Arc<RecentIndex>,
    ) -> (Vec<crate::oplog::SnapshotRow>, Vec<(String, Vec<u8>)>) {
        s.read(move |c, _, k| {
            Ok((
                db::export_rows(c, &index, k)?,
                db::scan(c, &index, k, "k", None, 5)?,
            ))
        })
        .await
        .unwrap()
    }

    fn live_page(rows: &[crate::oplog::SnapshotRow]) -> Vec<(String, Vec<u8>)> {
        rows.iter()
            .filter_map(|r| Some((r.key.clone(), r.value.clone()?)))
            .take(5)
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

        /// A reader takes the index of `recent` before its read transaction. However
        /// many commits, moves into `state` and prunes happen in between, what it reads
        /// is the map as it stood at one moment between the two: the whole map
        /// (`export_rows`) and a page of it (`scan`) each.
        #[test]
        fn a_reader_with_an_older_index_sees_the_map_of_one_moment(
            steps in proptest::collection::vec(map_step(), 1..30),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            threshold in 1usize..6,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (history, (whole, page)) = rt.block_on(async {
                let tmp = tempfile::tempdir().unwrap();
                let config = StoreConfig::default().with_recent_rows(threshold);
                let s = file_store(&tmp.path().join("p.db"), config);
                let at = at.index(steps.len());
                let (mut history, mut stale) = (Vec::new(), None);
                for (i, step) in steps.iter().enumerate() {
                    if i == at {
                        stale = Some(s.inner.recent.all());
                        history.push(map_with(&s, Arc::clone(&s.inner.recent)).await.0);
                    }
                    run_step(&s, step).await;
                    if i >= at {
                        history.push(map_with(&s, Arc::clone(&s.inner.recent)).await.0);
                    }
                }
                let index = RecentIndex::default();
                index.reset(stale.unwrap_or_default().into_iter().collect());
                (history, map_with(&s, Arc::new(index)).await)
            });
            proptest::prop_assert!(history.contains(&whole), "{whole:?} not in {history:?}");
            proptest::prop_assert!(
                history.iter().any(|h| live_page(h) == page),
                "{page:?} not in {history:?}"
            );
        }
    }

    /// Entry rows are keyed by `devices.idx · 2⁴⁰ + seq`: a store that has handed out
    /// the last device number refuses entries of a new device, and keeps working.
    #[tokio::test]
    async fn a_device_past_the_last_rowid_number_is_refused_with_a_typed_error() {
        let s = store(1);
        let other = store(2);
        other.put("x", vec![1]).await.unwrap();
        let page = other
            .entries_since(&VersionVector::default(), 10)
            .await
            .unwrap();
        s.run_job(|db, _| {
            db.conn.execute(
                "INSERT INTO devices (idx, id) VALUES (?1, x'0909090909090909')",
                [db::MAX_DEVICE_IDX],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let err = s.ingest(page.entries).await.unwrap_err();
        assert!(
            matches!(err, StoreError::TooManyDevices { max } if max == db::MAX_DEVICE_IDX),
            "{err:?}"
        );
        assert_eq!(s.get("x").await.unwrap(), None);
        s.put("y", vec![2]).await.unwrap();
        assert_eq!(s.get("y").await.unwrap(), Some(vec![2]));
        assert_eq!(s.version_vector().await.unwrap().get(&[2; 8]), 0);
    }

    #[tokio::test]
    async fn scan_pages_stay_inside_the_prefix_whatever_after_says() {
        let s = store(1);
        for k in ["a/1", "a/2", "b/1", "b/2", "b/3", "c/1"] {
            s.put(k, k.as_bytes().to_vec()).await.unwrap();
        }
        let keys = |page: Vec<(String, Vec<u8>)>| -> Vec<String> {
            page.into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(
            keys(s.scan_page("b/", Some("b/1"), 10).await.unwrap()),
            ["b/2", "b/3"]
        );
        assert_eq!(
            keys(s.scan_page("b/", None, 2).await.unwrap()),
            ["b/1", "b/2"]
        );
        // An `after` below the prefix does not reach keys outside it.
        assert_eq!(
            keys(s.scan_page("b/", Some("a/1"), 10).await.unwrap()),
            ["b/1", "b/2", "b/3"]
        );
        assert!(s.scan_page("b/", Some("b/3"), 10).await.unwrap().is_empty());
        assert_eq!(keys(s.scan("b/").await.unwrap()), ["b/1", "b/2", "b/3"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_verification_keeps_input_order_and_rejects_in_place() {
        let a = store(1);
        for i in 0..40u8 {
            a.put(format!("k{i:02}"), vec![i; 45]).await.unwrap();
        }
        let mut page = a
            .entries_since(&VersionVector::default(), 100)
            .await
            .unwrap()
            .entries;
        assert!(page.len() >= PARALLEL_VERIFY_MIN, "takes the parallel path");
        // Damage entry 20: a byte of its `prev` CID (the pairs after it, `wall` and
        // `clock`, take fewer than 40 bytes), which its signature covers.
        let n = page[20].len();
        page[20][n - 40] ^= 1;
        let b = store(2);
        let verified = b.verify_batch(page.clone()).await.unwrap();
        assert_eq!(verified.len(), 39);
        let positions: Vec<u64> = verified.positions().map(|(_, s)| s).collect();
        let expected: Vec<u64> = (1..=40).filter(|s| *s != 21).collect();
        assert_eq!(
            positions, expected,
            "verified entries keep their input order"
        );
        let report = b.apply_verified(verified).await.unwrap();
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(
            report.rejected[0].0, 20,
            "rejected where it was in the input"
        );
        assert_eq!(report.applied.len(), 20);
        assert_eq!(report.pending.len(), 19, "the entries after the gap wait");
        // The intact entry fills the gap and releases the rest.
        let page_ok = a
            .entries_since(&VersionVector::default(), 100)
            .await
            .unwrap()
            .entries;
        let report = b.ingest(vec![page_ok[20].clone()]).await.unwrap();
        assert_eq!(report.applied.len(), 20);
        assert_eq!(
            a.state_digest().await.unwrap(),
            b.state_digest().await.unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[expect(
        clippy::await_holding_lock,
        reason = "the test holds the database across a sleep on purpose, as a long job would"
    )]
    async fn a_write_while_a_job_holds_the_database_is_committed_by_the_store_thread() {
        let a = store(1);
        let held = a.inner.core.db.lock().unwrap();
        let writer = a.clone();
        let put = tokio::spawn(async move { writer.put("k", b"v".to_vec()).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !put.is_finished(),
            "nothing commits while the database is held"
        );
        drop(held);
        let written = tokio::time::timeout(std::time::Duration::from_secs(10), put)
            .await
            .expect("the store thread took the lead")
            .unwrap()
            .unwrap();
        assert_eq!(written.seq, 1);
        assert_eq!(a.get("k").await.unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_dropped_while_it_waits_for_company_still_commits_the_queue() {
        use futures::FutureExt;
        let a = store(1);
        a.put("first", b"1".to_vec()).await.unwrap();
        // As if entries had held three writes: the next leader waits for three.
        a.inner.core.writes.expected.store(3, Ordering::Relaxed);
        // Polled once, the leader queues its write and yields; then it is dropped.
        assert!(a.put("dropped", b"2".to_vec()).now_or_never().is_none());
        assert!(
            !a.inner.core.writes.leader.load(Ordering::SeqCst),
            "the lead was given up"
        );
        assert_eq!(
            a.get("dropped").await.unwrap(),
            Some(b"2".to_vec()),
            "a queued write is committed even if its caller left"
        );
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            a.put("after", b"3".to_vec()),
        )
        .await
        .expect("writes go on")
        .unwrap();
        assert_eq!(next.seq, 3);
    }

    fn store_with_linger(linger: std::time::Duration) -> Store {
        store_with(1, StoreConfig::default().with_group_linger(linger))
    }

    /// A leader waits for as many writes as the largest group so far, even for one
    /// that comes only after it has started waiting. (A linger of a second: no
    /// scheduling hiccup can end the wait early.)
    #[tokio::test(flavor = "current_thread")]
    async fn the_leader_waits_for_as_many_writes_as_the_largest_group() {
        let a = store_with_linger(std::time::Duration::from_secs(1));
        let expected = || a.inner.core.writes.expected.load(Ordering::Relaxed);
        a.inner.core.writes.note_group(3);
        a.inner.core.writes.note_group(2);
        assert_eq!(expected(), 3);
        let (x, y, z) = tokio::join!(
            a.put("x", b"1".to_vec()),
            a.put("y", b"2".to_vec()),
            async {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                a.put("z", b"3".to_vec()).await
            }
        );
        let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
        assert_eq!((x.seq, y.seq, z.seq), (1, 1, 1), "one entry for the three");
        assert_eq!(expected(), 3);
    }

    /// Once a wait runs out, a leader expects only as many writes as came: a lone
    /// writer after a crowd waits once, then not at all.
    #[tokio::test(flavor = "current_thread")]
    async fn after_a_wait_runs_out_the_leader_expects_only_those_that_came() {
        let a = store_with_linger(std::time::Duration::ZERO);
        let expected = || a.inner.core.writes.expected.load(Ordering::Relaxed);
        a.inner.core.writes.note_group(16);
        assert_eq!(a.put("w", b"4".to_vec()).await.unwrap().seq, 1);
        assert_eq!(expected(), 1);
        assert_eq!(a.put("v", b"5".to_vec()).await.unwrap().seq, 2);
        assert_eq!(expected(), 1);
    }

    /// On a single-threaded runtime the writers can only queue behind a leader if the
    /// leader lets them run; before it yielded once, every entry held one write.
    #[tokio::test(flavor = "current_thread")]
    async fn writers_on_a_single_threaded_runtime_share_entries() {
        let a = store(1);
        let tasks: Vec<_> = (0..16)
            .map(|w| {
                let a = a.clone();
                tokio::spawn(async move {
                    for i in 0..20 {
                        a.put(format!("w{w:02}/{i:02}"), vec![w; 45]).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let entries = a.version_vector().await.unwrap().get(&[1; 8]);
        assert!(
            entries <= 320 / 4,
            "{entries} entries for 320 puts by 16 writers"
        );
        assert_eq!(a.scan("w").await.unwrap().len(), 320);
    }
}
