//! [`Store`]: the OpLog handle. One store thread owns the writing SQLite
//! connection; the handle sends it commands over a bounded channel, each with a
//! oneshot reply.
//!
//! **Group commit.** When the thread picks up a write it also drains every write
//! already queued behind it (up to [`MAX_OPS`] operations and the body limit) and
//! commits them as *one* entry in *one* `BEGIN IMMEDIATE` transaction; every caller's
//! future resolves after that commit. Concurrent writers thus share the signature, the
//! entry overhead and the commit. If a group fails, its writes are retried one by one
//! so each caller gets its own outcome.
//!
//! **Reads** (`get`, `scan`, version vectors, catch-up pages) of a file store run on a
//! second, read-only connection in the caller's thread (WAL readers never block the
//! writer and see every committed write); an in-memory store has one connection and
//! sends reads to its thread.
//!
//! Every `async` method is cancel-safe in the sense that dropping its future never
//! corrupts the store; a write whose future is dropped after it was queued may still
//! commit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cid::Cid;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::db::{self, Db, Record, WAL_BACKSTOP_PAGES, WAL_CHECKPOINT_PAGES};
use super::entry::{self, DeviceId, LogKeys, MAX_BODY_PLAINTEXT, MAX_OPS, Op};
use super::error::{DecodeError, OpenError, StoreError};
use super::sigbatch;
use super::{
    CHANGE_CAP, COMMAND_CAP, Change, Durability, IngestReport, MAX_INGEST, MAX_PAGE, MAX_PENDING,
    Page, Snapshot, VersionVector,
};
use crate::checkpoint::{Checkpointer, wake_on_growth};
use crate::datadir::DataDir;
use crate::keys::OplogKeys;

/// Longest a group commit waits for writers that were in the previous group to
/// send their next write. Zero cost for a single writer (its previous group had one
/// write, so it never waits).
pub const GROUP_LINGER: std::time::Duration = std::time::Duration::from_micros(100);

/// How long the store thread keeps polling for the next command after finishing one
/// before it sleeps. A writer that awaits each put sends the next one a few µs after
/// the reply; catching it while still awake saves the sleep/wake-up round trip through
/// the kernel (tens of µs on a VM), which is a large share of a single put.
pub const IDLE_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Store settings. Defaults: [`Durability::Process`], at most [`MAX_PENDING`] pending
/// entries.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    durability: Durability,
    max_pending: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            max_pending: MAX_PENDING,
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
    Write { ops: Vec<Op>, reply: Reply<Written> },
    Run(Job),
}

struct Inner {
    tx: Option<mpsc::Sender<Command>>,
    reader: Option<Mutex<Connection>>,
    keys: LogKeys,
    device: DeviceId,
    changes: broadcast::Sender<Change>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the thread; joining it closes the connection and
        // releases the data dir lock before the last handle is gone.
        self.tx.take();
        self.reader.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The OpLog: a cloneable handle to one store thread.
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
        let thread_changes = changes.clone();
        let thread = std::thread::Builder::new()
            .name("oplog-store".into())
            .spawn(move || {
                run(db, rx, &thread_changes);
                // `run` closed the writer connection; the checkpoint thread's goes next,
                // and the lock only after both.
                drop(checkpointer);
                drop(dir);
            })
            .map_err(OpenError::Thread)?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Some(tx),
                reader,
                keys: log_keys,
                device,
                changes,
                thread: Some(thread),
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
    /// in-memory stores.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &LogKeys) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(reader) = &self.inner.reader {
            let conn = reader
                .lock()
                .map_err(|_| StoreError::Corrupt("reader connection poisoned".into()))?;
            return f(&conn, &self.inner.keys);
        }
        self.run_job(move |db, _| f(&db.conn, &db.keys)).await
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::Write { ops, reply }).await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// The value of `key`, or `None` if it was never written or is deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.record(key).await?.and_then(|r| r.value))
    }

    /// The full record of `key`, tombstones included.
    pub async fn record(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let key = key.to_owned();
        self.read(move |c, k| db::record(c, k, &key)).await
    }

    /// Every live `(key, value)` whose key starts with `prefix`, in key order.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |c, k| db::scan(c, k, &prefix, None, usize::MAX))
            .await
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
        self.read(move |c, k| db::scan(c, k, &prefix, after.as_deref(), limit))
            .await
    }

    /// Subscribes to committed entries (local and remote) and forks.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Each device's highest contiguous sequence number.
    pub async fn version_vector(&self) -> Result<VersionVector, StoreError> {
        self.read(|c, _| db::version_vector(c)).await
    }

    /// Each device's head (seq and entry id) with its Lamport clock.
    pub async fn heads(&self) -> Result<Vec<(entry::Head, u64)>, StoreError> {
        self.read(|c, _| db::heads(c)).await
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
        self.read(move |c, k| db::entries_since(c, k, &since, limit))
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
            let rows = db::export_rows(&tx, &db.keys)?;
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

    /// SHA-256 over every record (see `docs/formats.md` §5.5): equal iff two stores
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

/// The store thread: commands in order, writes group-committed.
fn run(mut db: Db, mut rx: mpsc::Receiver<Command>, changes: &broadcast::Sender<Change>) {
    let mut next: Option<Command> = None;
    // Writers in the previous group: when several writers are active, the ones just
    // acknowledged are about to send their next write; waiting briefly for them
    // (at most GROUP_LINGER) lets them share the next entry instead of the one after.
    let mut last_group = 1usize;
    loop {
        let cmd = match next.take().or_else(|| spin_recv(&mut rx)) {
            Some(c) => c,
            None => match rx.blocking_recv() {
                Some(c) => c,
                None => break,
            },
        };
        match cmd {
            Command::Run(job) => job(&mut db, changes),
            Command::Write { ops, reply } => {
                let mut group = vec![(ops, reply)];
                let linger_until = std::time::Instant::now() + GROUP_LINGER;
                let mut n_ops = group.iter().map(|(o, _)| o.len()).sum::<usize>();
                let mut bytes: usize = group
                    .iter()
                    .flat_map(|(o, _)| o.iter())
                    .map(Op::encoded_bound)
                    .sum();
                loop {
                    match rx.try_recv() {
                        Ok(Command::Write { ops, reply }) => {
                            let b: usize = ops.iter().map(Op::encoded_bound).sum();
                            if n_ops.saturating_add(ops.len()) > MAX_OPS
                                || bytes.saturating_add(b) > MAX_BODY_PLAINTEXT
                            {
                                next = Some(Command::Write { ops, reply });
                                break;
                            }
                            n_ops = n_ops.saturating_add(ops.len());
                            bytes = bytes.saturating_add(b);
                            group.push((ops, reply));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => {
                            if group.len() >= last_group
                                || std::time::Instant::now() >= linger_until
                            {
                                break;
                            }
                            std::thread::yield_now();
                        }
                    }
                }
                last_group = group.len();
                commit_group(&mut db, group, changes);
            }
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
        let keys = WalletKeys::from_address_key(&Secret32::new([3; 32])).unwrap();
        Store::in_memory(&keys.oplog, [device; 8], StoreConfig::default()).unwrap()
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
}
