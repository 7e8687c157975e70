//! Pin + fetch + verify of a 10 MiB, 1 000-block CAR over loopback, against the
//! embedded gateway (SQLite file store, WAL), compared with a baseline measured in
//! the same run: the same bytes uploaded and downloaded over the same kind of
//! loopback HTTP connection by a server that neither parses nor stores them.
//!
//! Run: `cargo bench -p sphere-profile --bench ipfs`. Prints medians and ratios,
//! the process CPU time per run (user + system of all threads, client and gateway
//! together, `CLOCK_PROCESS_CPUTIME_ID`), and the load average before and after; the
//! figures go into `docs/benchmarks.md` (IPFS section). `-- --profile` runs only the
//! on-disk pin+fetch loop, for `perf record`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]
#![allow(missing_docs, reason = "a benchmark binary")]

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{load_average, process_cpu};

use axum::Router;
use axum::routing::{get, post};
use sphere_profile::ipfs::block::{DAG_CBOR, RAW};
use sphere_profile::ipfs::server::RunningGateway;
use sphere_profile::ipfs::{
    BlockCache, Car, CarLimits, GatewayConfig, GatewayUrl, IpfsClient, VerifiedBlock,
};

const BLOCKS: usize = 1000;
const CAR_TARGET: usize = 10 * 1024 * 1024;
const WARMUP: usize = 3;
const RUNS: usize = 15;

/// A root linking 999 raw leaves; about 10 MiB in all. `seed` makes every CAR new.
fn make_car(seed: u64) -> Car {
    let leaf_size = CAR_TARGET / BLOCKS;
    let leaves: Vec<VerifiedBlock> = (0..BLOCKS - 1)
        .map(|i| {
            let mut data = vec![0u8; leaf_size];
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64);
            for chunk in data.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let bytes = x.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            VerifiedBlock::from_data(RAW, data).unwrap()
        })
        .collect();
    let mut root = vec![0x99];
    root.extend_from_slice(&u16::try_from(leaves.len()).unwrap().to_be_bytes());
    for l in &leaves {
        let c = l.cid().to_bytes();
        root.extend_from_slice(&[0xd8, 0x2a, 0x58, u8::try_from(c.len() + 1).unwrap(), 0]);
        root.extend_from_slice(&c);
    }
    let root = VerifiedBlock::from_data(DAG_CBOR, root).unwrap();
    let cid = *root.cid();
    let mut blocks = vec![root];
    blocks.extend(leaves);
    Car::from_blocks(cid, blocks, &CarLimits::default()).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// CPU time per timed run of the last [`measure`], for the report.
static LAST_CPU: std::sync::Mutex<Duration> = std::sync::Mutex::new(Duration::ZERO);

/// Times `f` on fresh CARs: WARMUP untimed runs, then RUNS timed ones (the CARs are
/// built before each timed section, outside the CPU count too).
fn measure(rt: &tokio::runtime::Runtime, mut f: impl AsyncFnMut(&Car, Vec<u8>)) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut cpu = Duration::ZERO;
    for i in 0..WARMUP + RUNS {
        let car = make_car(i as u64 + 1);
        let bytes = car.encode();
        let cpu0 = process_cpu();
        let start = Instant::now();
        rt.block_on(f(&car, bytes));
        if i >= WARMUP {
            times.push(start.elapsed());
            cpu += process_cpu().saturating_sub(cpu0);
        }
    }
    *LAST_CPU.lock().unwrap() = cpu / RUNS as u32;
    times
}

fn last_cpu_ms() -> f64 {
    LAST_CPU.lock().unwrap().as_secs_f64() * 1e3
}

/// Medians of pin+fetch+verify and of the pin alone, against a gateway over `store`.
fn pin_fetch(rt: &tokio::runtime::Runtime, store: Arc<BlockCache>) -> (Duration, Duration, f64) {
    let gw = rt
        .block_on(RunningGateway::start(
            "127.0.0.1:0".parse().unwrap(),
            store,
            CarLimits::default(),
        ))
        .unwrap();
    let client = IpfsClient::new(
        GatewayConfig::default().with_gateway(GatewayUrl::parse(&gw.url()).unwrap()),
    )
    .unwrap();
    let mut pin_times = Vec::new();
    let full = median(measure(rt, async |car, _bytes| {
        let t = Instant::now();
        client.pin_car(car).await.unwrap();
        pin_times.push(t.elapsed());
        let fetched = client.fetch_car(car.root()).await.unwrap();
        assert_eq!(fetched.car.blocks().len(), BLOCKS);
    }));
    let pin = median(pin_times.split_off(WARMUP));
    let cpu = last_cpu_ms();
    rt.block_on(gw.shutdown()).unwrap();
    (full, pin, cpu)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `-- --profile`: only the on-disk pin+fetch loop, for `perf record`.
    if std::env::args().any(|a| a == "--profile") {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = Arc::new(BlockCache::open(&dir.path().join("gateway.db")).unwrap());
        let (full, pin, _) = pin_fetch(&rt, on_disk);
        println!("pin+fetch {full:?}, pin {pin:?}");
        return;
    }
    let sample = make_car(0);
    let car_len = sample.encode().len();
    println!(
        "IPFS bench: CAR of {} blocks, {car_len} bytes ({:.2} MiB); {RUNS} runs after {WARMUP} warm-ups, medians",
        sample.blocks().len(),
        car_len as f64 / 1048576.0
    );

    // Baseline: the same bytes up and down over loopback HTTP, no parsing, no storage.
    let blob: Arc<std::sync::Mutex<axum::body::Bytes>> = Arc::default();
    let (up, down) = (blob.clone(), blob.clone());
    let router = Router::new()
        .route(
            "/up",
            post(move |b: axum::body::Bytes| {
                let up = up.clone();
                async move {
                    *up.lock().unwrap() = b;
                }
            }),
        )
        .route(
            "/down",
            get(move || {
                let down = down.clone();
                async move { down.lock().unwrap().clone() }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
    let base_url = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, router).await });
        format!("http://{addr}")
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let load_before = load_average();
    let baseline = median(measure(&rt, async |_car, bytes| {
        http.post(format!("{base_url}/up"))
            .body(bytes)
            .send()
            .await
            .unwrap();
        let back = http
            .get(format!("{base_url}/down"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(back.len(), car_len);
    }));
    let baseline_cpu = last_cpu_ms();

    // Verification alone (no network): decode + re-hash + DAG walk.
    let verify_only = median(measure(&rt, async |car, bytes| {
        let back = Car::decode_expecting(&bytes, car.root(), &CarLimits::default()).unwrap();
        assert_eq!(back.blocks().len(), BLOCKS);
    }));
    let verify_cpu = last_cpu_ms();

    // Where the time goes: hashing alone, and the SQLite store alone.
    let hash_only = median(measure(&rt, async |_car, bytes| {
        use sha2::Digest;
        std::hint::black_box(sha2::Sha256::digest(&bytes));
    }));
    let dir0 = tempfile::tempdir().unwrap();
    let disk = BlockCache::open(&dir0.path().join("store.db")).unwrap();
    let mut get_times = Vec::new();
    let sqlite_put = median(measure(&rt, async |car, _bytes| {
        disk.put_and_pin(car.blocks(), &[*car.root()]).unwrap();
        let t = Instant::now();
        for b in car.blocks() {
            std::hint::black_box(disk.get(b.cid()).unwrap().unwrap());
        }
        get_times.push(t.elapsed());
    }));
    let sqlite_get = median(get_times.split_off(WARMUP));
    let sqlite_cpu = last_cpu_ms();

    // The real thing: pin (dag/import into the gateway's SQLite) + fetch (trustless
    // CAR) + verify every block, fresh client without a cache; the gateway's store
    // first on disk (WAL file), then in memory.
    let dir = tempfile::tempdir().unwrap();
    let on_disk = Arc::new(BlockCache::open(&dir.path().join("gateway.db")).unwrap());
    let (full_disk, pin_disk, cpu_disk) = pin_fetch(&rt, on_disk);
    let (full_mem, pin_mem, cpu_mem) = pin_fetch(&rt, Arc::new(BlockCache::in_memory().unwrap()));
    println!(
        "load average before {load_before}, after {}",
        load_average()
    );

    println!(
        "baseline  HTTP up+down, no verify : {:>8.1} ms  {:>7.1} MB/s  cpu {baseline_cpu:.0} ms/run",
        baseline.as_secs_f64() * 1e3,
        mbps(car_len, baseline)
    );
    println!(
        "verify    decode+hash+walk only   : {:>8.1} ms  {:>7.1} MB/s  cpu {verify_cpu:.0} ms/run",
        verify_only.as_secs_f64() * 1e3,
        mbps(car_len, verify_only)
    );
    println!(
        "sha-256   one pass over the CAR   : {:>8.1} ms  {:>7.1} MB/s",
        hash_only.as_secs_f64() * 1e3,
        mbps(car_len, hash_only)
    );
    println!(
        "sqlite    put+get (incl. re-hash) : {:>8.1} ms  {:>7.1} MB/s  (get alone {:.1} ms)  cpu {sqlite_cpu:.0} ms/run",
        sqlite_put.as_secs_f64() * 1e3,
        mbps(car_len, sqlite_put),
        sqlite_get.as_secs_f64() * 1e3
    );
    for (label, full, pin, cpu) in [
        ("gateway store on disk", full_disk, pin_disk, cpu_disk),
        ("gateway store in memory", full_mem, pin_mem, cpu_mem),
    ] {
        println!("-- {label}");
        println!(
            "pin       dag/import              : {:>8.1} ms  {:>7.1} MB/s",
            pin.as_secs_f64() * 1e3,
            mbps(car_len, pin)
        );
        println!(
            "pin+fetch+verify                  : {:>8.1} ms  {:>7.1} MB/s  (target >= 100 MB/s)  cpu {cpu:.0} ms/run",
            full.as_secs_f64() * 1e3,
            mbps(car_len, full)
        );
        println!(
            "ratio to the HTTP baseline        : {:.2}x its time",
            full.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}
