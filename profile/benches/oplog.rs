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

use sphere_profile::keys::WalletKeys;
use sphere_profile::oplog::{Durability, Store, StoreConfig};
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

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let base = baseline(dir, 20_000, "NORMAL");
    println!("baseline  raw SQLite, 1 INSERT+COMMIT per row, WAL NORMAL: {base:>10.0} rows/s");
    let base_full = baseline(dir, 3_000, "FULL");
    println!("baseline  raw SQLite, 1 INSERT+COMMIT per row, WAL FULL:   {base_full:>10.0} rows/s");

    // 1. Single awaited put, 100k entries: also the profile for get/open/size.
    let n = 100_000;
    let store = open(dir, "single.db", Durability::Process);
    let t = Instant::now();
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
        "put       single awaited put (100k):                        {single:>10.0} puts/s  ({:.2}× baseline)",
        single / base
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

    // 4. 16 concurrent writers (group commit).
    let store = open(dir, "concurrent.db", Durability::Process);
    let per = 20_000;
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    s.put(format!("w{w:02}/{i:08}"), VALUE.to_vec())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let conc = (16 * per) as f64 / t.elapsed().as_secs_f64();
    let entries = rt.block_on(store.version_vector()).unwrap().get(&[1; 8]);
    println!(
        "put       16 concurrent writers:                            {conc:>10.0} puts/s  ({:.2}× baseline; {:.1} puts per entry)",
        conc / base,
        (16 * per) as f64 / entries as f64
    );
    drop(store);

    // 5. put_batch of 100 keys.
    let store = open(dir, "batch.db", Durability::Process);
    let batches = 2_000;
    let t = Instant::now();
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
        "put_batch 100 keys per batch:                               {batch:>10.0} keys/s  ({:.2}× baseline)",
        batch / base
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
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1_000 {
                    s.put(format!("w{w:02}/{i:08}"), VALUE.to_vec())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!(
        "put       16 concurrent writers, PowerLoss (FULL):          {:>10.0} puts/s",
        16_000.0 / t.elapsed().as_secs_f64()
    );
}
