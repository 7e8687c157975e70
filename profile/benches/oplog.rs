//! OpLog benchmark (a bench binary, `harness = false`): the figures of
//! `docs/benchmarks.md` § OpLog. Run with
//!
//! ```text
//! cargo bench -p sphere-profile --bench oplog
//! ```
//!
//! Every store uses the default durability ([`Durability::Process`], the one the
//! crash tests check) unless a line says otherwise. The baseline is raw SQLite with
//! the same pragmas: one `INSERT` + `COMMIT` per row, measured in the same run.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]

use std::time::{Duration, Instant};

mod common;
use common::{Steal, load_average, process_cpu};

use sphere_profile::keys::WalletKeys;
use sphere_profile::oplog::entry::{self, Draft, Entry, LogKeys, Op};
use sphere_profile::oplog::{Durability, RECENT_ROWS, Store, StoreConfig, sigbatch};
use sphere_profile::secret::Secret32;

const VALUE: [u8; 45] = [0x5a; 45];

fn keys() -> WalletKeys {
    WalletKeys::from_address_key(&Secret32::new([9; 32])).unwrap()
}

fn open(dir: &std::path::Path, name: &str, d: Durability) -> Store {
    Store::open(
        &dir.join(name),
        &keys().oplog,
        [1; 8],
        StoreConfig::default().with_durability(d),
    )
    .unwrap()
}

fn baseline(dir: &std::path::Path, n: usize, sync: &str) -> f64 {
    let c = rusqlite::Connection::open(dir.join(format!("baseline-{sync}.db"))).unwrap();
    let _: String = c
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    c.pragma_update(None, "synchronous", sync).unwrap();
    c.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
        .unwrap();
    let t = Instant::now();
    for i in 0..n {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        c.prepare_cached("INSERT INTO t VALUES (?1, ?2)")
            .unwrap()
            .execute(rusqlite::params![format!("k/{i:08}"), VALUE.as_slice()])
            .unwrap();
        c.execute_batch("COMMIT").unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Raw SQLite doing a 16-writer group commit's table writes and nothing else: on the
/// store's own tables (a fresh store's file), per transaction 16 `state` rows, one
/// `entries` row of a 16-op entry's size and the `devices` row; one thread, no
/// crypto, no async. With `interleaved`, the 16 keys of a commit are neighbours in
/// one range (`k/{i·16+w}`) instead of one in each writer's range (`wNN/i`):
/// the pages a commit dirties, and so the WAL frames it writes, differ. Puts/s.
fn group_baseline(dir: &std::path::Path, commits: u64, interleaved: bool) -> f64 {
    let path = dir.join(format!("group-baseline-{interleaved}.db"));
    drop(open(
        dir,
        path.file_name().unwrap().to_str().unwrap(),
        Durability::Process,
    ));
    let c = rusqlite::Connection::open(&path).unwrap();
    let _: String = c
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let dev: i64 = c
        .query_row("SELECT idx FROM devices LIMIT 1", [], |r| r.get(0))
        .unwrap();
    // a sealed 16-op entry: 36-byte prev, 65-byte signature, ≈ 64 bytes per op of body
    let (prev, sig, body) = ([1u8; 36], [3u8; 65], vec![7u8; 16 * 64]);
    let t = Instant::now();
    for i in 0..commits {
        let seq = i as i64 + 1;
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut put = c
            .prepare_cached(
                "INSERT OR REPLACE INTO state (key, clock, dev, seq, op, tomb, value) VALUES (?1, ?2, ?3, ?2, ?4, 0, NULL)",
            )
            .unwrap();
        for w in 0..16u64 {
            let key = if interleaved {
                format!("k/{:08}", i * 16 + w)
            } else {
                format!("w{w:02}/{i:08}")
            };
            put.execute(rusqlite::params![key, seq, dev, w as i64])
                .unwrap();
        }
        c.prepare_cached(
            "INSERT INTO entries (id, prev, clock, wall, ctx, body, sig) VALUES ((?1 << 40) | ?2, ?3, ?2, 0, x'80', ?4, ?5)",
        )
        .unwrap()
        .execute(rusqlite::params![dev, seq, prev.as_slice(), body.as_slice(), sig.as_slice()])
        .unwrap();
        c.prepare_cached("UPDATE devices SET seq = ?2, head = ?3, clock = ?2 WHERE idx = ?1")
            .unwrap()
            .execute(rusqlite::params![dev, seq, prev.as_slice()])
            .unwrap();
        c.execute_batch("COMMIT").unwrap();
    }
    (16 * commits) as f64 / t.elapsed().as_secs_f64()
}

/// Prints [`group_baseline`] for both key layouts; returns the writers'-ranges one.
fn print_group_baselines(dir: &std::path::Path) -> f64 {
    let ranges = group_baseline(dir, 20_000, false);
    let one = group_baseline(dir, 20_000, true);
    println!(
        "baseline  raw SQLite, store's tables, 16 puts per COMMIT:   {ranges:>10.0} puts/s  (keys in 16 writers' ranges; {one:.0} puts/s with the 16 keys in one range)"
    );
    ranges
}

/// 16 tasks, each putting `per` keys of its own range (`wNN/…`) one awaited put at a
/// time.
async fn sixteen_writers(store: &Store, per: usize) {
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    s.put(format!("w{w:02}/{i:08}"), VALUE.to_vec())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// [`sixteen_writers`] on `rt` into a new store `name`, `per` puts each: puts/s, puts
/// per CPU-second of this process, puts per entry, host steal time in percent.
fn sixteen_writer_run(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    name: &str,
    per: usize,
) -> (f64, f64, f64, f64) {
    let store = open(dir, name, Durability::Process);
    let t = Instant::now();
    let c = process_cpu().as_secs_f64();
    let steal = Steal::start();
    rt.block_on(sixteen_writers(&store, per));
    let puts = (16 * per) as f64;
    let rate = puts / t.elapsed().as_secs_f64();
    let cpu_rate = puts / (process_cpu().as_secs_f64() - c);
    let steal = steal.percent();
    let entries = rt.block_on(store.version_vector()).unwrap().get(&[1; 8]);
    (rate, cpu_rate, puts / entries as f64, steal)
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    println!(
        "machine   {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Components: sealing (encrypt + sign) and verifying one single-op entry.
    let lk = LogKeys::new(&keys().oplog).unwrap();
    let ops = [Op {
        key: "k/00000001".into(),
        value: Some(VALUE.to_vec()),
    }];
    let draft = Draft {
        device: [1; 8],
        seq: 2,
        prev: Some(entry::cid_of(b"p")),
        ctx: vec![],
        clock: 2,
        wall_ms: 1_700_000_000_000,
    };
    let t = Instant::now();
    let mut last = None;
    for _ in 0..2_000 {
        last = Some(Entry::seal(&lk, draft.clone(), &ops).unwrap());
    }
    let seal_us = t.elapsed().as_secs_f64() / 2_000.0 * 1e6;
    let e = last.unwrap();
    let t = Instant::now();
    for _ in 0..2_000 {
        entry::verify(&e, &lk).unwrap();
    }
    let verify_us = t.elapsed().as_secs_f64() / 2_000.0 * 1e6;
    let t = Instant::now();
    for _ in 0..2_000 {
        e.open(&lk).unwrap();
    }
    let open_us = t.elapsed().as_secs_f64() / 2_000.0 * 1e6;
    // A catch-up page's worth of distinct entries, checked the way ingest does.
    let page: Vec<Entry> = (0..1_024u64)
        .map(|i| {
            let d = Draft {
                seq: i + 2,
                ..draft.clone()
            };
            Entry::seal(&lk, d, &ops).unwrap()
        })
        .collect();
    let t = Instant::now();
    let verdicts = sigbatch::verify_many(&page, &lk);
    let batch_us = t.elapsed().as_secs_f64() / page.len() as f64 * 1e6;
    assert!(verdicts.iter().all(Result::is_ok));
    println!(
        "entry     seal (encrypt + sign) {seal_us:.1} µs, verify {verify_us:.1} µs, verify in groups of {} {batch_us:.1} µs ({:.2}× alone), open body {open_us:.1} µs",
        sigbatch::GROUP,
        batch_us / verify_us
    );
    // The bytes of a 16-write group entry: encoded three times per commit (header,
    // signed part, whole), decoded and re-encoded once per entry ingested.
    let group_ops: Vec<Op> = (0..16)
        .map(|w| Op {
            key: format!("w{w:02}/00000001"),
            value: Some(VALUE.to_vec()),
        })
        .collect();
    let big = Entry::seal(&lk, draft.clone(), &group_ops).unwrap();
    let bytes = big.encode();
    let t = Instant::now();
    for _ in 0..20_000 {
        std::hint::black_box(std::hint::black_box(&big).encode());
    }
    let encode_us = t.elapsed().as_secs_f64() / 20_000.0 * 1e6;
    let t = Instant::now();
    for _ in 0..20_000 {
        std::hint::black_box(entry::decode(std::hint::black_box(&bytes)).unwrap());
    }
    let decode_us = t.elapsed().as_secs_f64() / 20_000.0 * 1e6;
    let t = Instant::now();
    for _ in 0..20_000 {
        std::hint::black_box(entry::cid_of(std::hint::black_box(&bytes)));
    }
    let hash_us = t.elapsed().as_secs_f64() / 20_000.0 * 1e6;
    println!(
        "entry     16-op entry ({} B): encode {encode_us:.2} µs, decode {decode_us:.2} µs; baseline SHA-256 of its bytes {hash_us:.2} µs ({:.1}× / {:.1}×)",
        bytes.len(),
        encode_us / hash_us,
        decode_us / hash_us
    );

    let c = process_cpu().as_secs_f64();
    let base = baseline(dir, 20_000, "NORMAL");
    let base_cpu = 20_000.0 / (process_cpu().as_secs_f64() - c);
    println!(
        "baseline  raw SQLite, 1 INSERT+COMMIT per row, WAL NORMAL: {base:>10.0} rows/s  ({base_cpu:.0} rows per CPU-second)"
    );
    if std::env::args().any(|a| a == "--single-profile") {
        let store = open(dir, "single-profile.db", Durability::Process);
        rt.block_on(async {
            for i in 0..30_000 {
                store
                    .put(format!("k/{i:08}"), VALUE.to_vec())
                    .await
                    .unwrap();
            }
        });
        return;
    }
    if std::env::args().any(|a| a == "--conc-profile") {
        let group = print_group_baselines(dir);
        let (conc, conc_cpu, per_entry, steal) =
            sixteen_writer_run(&rt, dir, "conc-profile.db", 20_000);
        println!(
            "put       16 concurrent writers:                            {conc:>10.0} puts/s  ({:.2}× group baseline; {per_entry:.1} puts per entry; {conc_cpu:.0} puts per CPU-second; host steal {steal:.0} %)",
            conc / group
        );
        return;
    }

    let base_full = baseline(dir, 3_000, "FULL");
    println!("baseline  raw SQLite, 1 INSERT+COMMIT per row, WAL FULL:   {base_full:>10.0} rows/s");

    // 1. Single awaited put, 100k entries: also the profile for get/open/size.
    let n = 100_000;
    let store = open(dir, "single.db", Durability::Process);
    let t = Instant::now();
    let c = process_cpu().as_secs_f64();
    rt.block_on(async {
        for i in 0..n {
            store
                .put(format!("k/{i:08}"), VALUE.to_vec())
                .await
                .unwrap();
        }
    });
    let single = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "put       single awaited put (100k):                        {single:>10.0} puts/s  ({:.2}× baseline; {:.0} puts per CPU-second)",
        single / base,
        n as f64 / (process_cpu().as_secs_f64() - c)
    );

    // 2. get p50 at 100k keys, one op per entry.
    let gets: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::with_capacity(20_000);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = format!("k/{:08}", x % n as u64);
            let t = Instant::now();
            let got = store.get(&k).await.unwrap();
            v.push(t.elapsed());
            assert_eq!(got.as_deref(), Some(VALUE.as_slice()));
        }
        v
    });
    println!(
        "get       p50 / p99 at 100k keys (1 op per entry):          {:>10.1} µs / {:.1} µs",
        pct(gets.clone(), 0.5).as_secs_f64() * 1e6,
        pct(gets, 0.99).as_secs_f64() * 1e6
    );

    if std::env::args().any(|a| a == "--get-parts") {
        let c = rusqlite::Connection::open_with_flags(
            dir.join("single.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        if std::env::args().any(|a| a == "--mmap") {
            c.pragma_update(None, "mmap_size", 1i64 << 30).unwrap();
        }
        if std::env::args().any(|a| a == "--cache") {
            c.pragma_update(None, "cache_size", -64_000).unwrap();
        }
        for sql in [
            "SELECT clock FROM state WHERE key = ?1",
            "SELECT s.clock, d.id FROM state s JOIN devices d ON d.idx = s.dev WHERE s.key = ?1",
            "SELECT s.clock, e.body FROM state s JOIN entries e ON e.id = (s.dev << 40) | s.seq WHERE s.key = ?1",
            "SELECT s.clock, (SELECT body FROM entries e WHERE e.id = (s.dev << 40) | s.seq) FROM state s WHERE s.key = ?1",
            "SELECT s.clock, s.tomb, s.value, s.seq, s.op, d.id, e.prev, e.clock, e.wall, e.ctx, e.body, e.sig, s.key FROM state s JOIN devices d ON d.idx = s.dev LEFT JOIN entries e ON s.value IS NULL AND s.tomb = 0 AND e.id = (s.dev << 40) | s.seq WHERE s.key = ?1",
        ] {
            let plan: Vec<String> = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(["k/00000001"], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            println!("plan {plan:?}");
            let mut v = Vec::new();
            for i in 0..20_000u64 {
                // the newest keys may still sit in `recent`: these queries read `state`
                let k = format!("k/{:08}", (i * 7919) % (n - RECENT_ROWS) as u64);
                let t = Instant::now();
                let mut st = c.prepare_cached(sql).unwrap();
                let mut rows = st.query([&k]).unwrap();
                let row = rows.next().unwrap().unwrap();
                let _: i64 = row.get(0).unwrap();
                v.push(t.elapsed());
            }
            println!(
                "raw SQL p50 {:.1} µs: {}",
                pct(v, 0.5).as_secs_f64() * 1e6,
                &sql[..30]
            );
        }
        let lk = LogKeys::new(&keys().oplog).unwrap();
        let e = Entry::seal(&lk, draft.clone(), &ops).unwrap();
        let t = Instant::now();
        for _ in 0..20_000 {
            std::hint::black_box(e.header_bytes());
        }
        println!(
            "header encode {:.2} µs",
            t.elapsed().as_secs_f64() / 20_000.0 * 1e6
        );
        return;
    }
    if std::env::args().any(|a| a == "--get-profile") {
        // For `perf record`: gets only.
        rt.block_on(async {
            for i in 0..300_000u64 {
                let k = format!("k/{:08}", (i * 7919) % n as u64);
                store.get(&k).await.unwrap().unwrap();
            }
        });
        return;
    }

    // 3. Size after VACUUM, then reopen time.
    rt.block_on(store.vacuum()).unwrap();
    drop(store);
    let bytes = std::fs::metadata(dir.join("single.db")).unwrap().len();
    println!(
        "size      bytes per entry (45-byte value, after VACUUM):    {:>10.1} B  ({} bytes / {n})",
        bytes as f64 / n as f64,
        bytes
    );
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = open(dir, "single.db", Durability::Process);
        let vv = rt.block_on(s.version_vector()).unwrap();
        opens.push(t.elapsed());
        assert_eq!(vv.get(&[1; 8]), n as u64);
        drop(s);
    }
    println!(
        "open      100k-entry profile, open + first read (median of 5):{:>8.1} ms",
        pct(opens, 0.5).as_secs_f64() * 1e3
    );

    // 4. 16 concurrent writers (group commit), against raw SQLite doing only the
    // table writes of the same groups.
    let group = print_group_baselines(dir);
    let (conc, conc_cpu, per_entry, steal) = sixteen_writer_run(&rt, dir, "concurrent.db", 20_000);
    println!(
        "put       16 concurrent writers:                            {conc:>10.0} puts/s  ({:.2}× group baseline; {per_entry:.1} puts per entry; {conc_cpu:.0} puts per CPU-second; host steal {steal:.0} %)",
        conc / group,
    );

    // The same on a single-threaded runtime: writers can only join a group if the
    // leader lets them run before it commits.
    let rt1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (conc1, _, per_entry, steal) = sixteen_writer_run(&rt1, dir, "concurrent-1.db", 5_000);
    println!(
        "put       16 concurrent writers, single-threaded runtime:   {conc1:>10.0} puts/s  ({:.2}× group baseline; {per_entry:.1} puts per entry; host steal {steal:.0} %)",
        conc1 / group,
    );

    // 5. put_batch of 100 keys.
    let store = open(dir, "batch.db", Durability::Process);
    let batches = 2_000;
    let t = Instant::now();
    let c = process_cpu().as_secs_f64();
    rt.block_on(async {
        for b in 0..batches {
            store
                .put_batch((0..100).map(|i| (format!("b/{b:06}/{i:03}"), VALUE.to_vec())))
                .await
                .unwrap();
        }
    });
    let batch = (batches * 100) as f64 / t.elapsed().as_secs_f64();
    println!(
        "put_batch 100 keys per batch:                               {batch:>10.0} keys/s  ({:.2}× baseline; {:.0} keys per CPU-second)",
        batch / base,
        (batches * 100) as f64 / (process_cpu().as_secs_f64() - c)
    );
    let gets: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..10_000u64 {
            let k = format!("b/{:06}/{:03}", (i * 7919) % batches as u64, i % 100);
            let t = Instant::now();
            store.get(&k).await.unwrap().unwrap();
            v.push(t.elapsed());
        }
        v
    });
    println!(
        "get       p50 at 200k keys in 100-op entries:               {:>10.1} µs",
        pct(gets, 0.5).as_secs_f64() * 1e6
    );
    drop(store);

    // 6. The same single put with power-loss durability, for reference.
    let store = open(dir, "full.db", Durability::PowerLoss);
    let n = 3_000;
    let t = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            store
                .put(format!("k/{i:08}"), VALUE.to_vec())
                .await
                .unwrap();
        }
    });
    let full = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "put       single awaited put, Durability::PowerLoss (FULL): {full:>10.0} puts/s  ({:.2}× FULL baseline)",
        full / base_full
    );
    let t = Instant::now();
    rt.block_on(sixteen_writers(&store, 1_000));
    println!(
        "put       16 concurrent writers, PowerLoss (FULL):          {:>10.0} puts/s",
        16_000.0 / t.elapsed().as_secs_f64()
    );
}
