//! Discovery cost on loopback HTTP for a latest version of 1, 1,000 and 1,000,000:
//! RPC count (expected O(log v)) and wall time of a cold discovery (fresh device
//! state), against the embedded aggregator.
//!
//! Seeding: the aggregator's state is filled directly (`Core::admit_unchecked`),
//! not through 2 million JSON-RPC submissions. Every seeded request is a real,
//! signed pointer commitment of the wallet; versions below the latest carry side A
//! only (probe(v) = A OR B, so the search sees them as included exactly as with
//! both sides), the latest carries both. The discovery itself goes over HTTP.
//!
//! Run: `cargo bench -p sphere-pointer --bench discovery` (add `-- --quick` to skip
//! the 1,000,000 case). Ratios are against the v = 1 case measured in the same run.

use std::time::{Duration, Instant};

use cid::Cid;
use k256::ecdsa::SigningKey;
use multihash_codetable::{Code, MultihashDigest};
use sphere_pointer::client::{AggregatorClient, ClientConfig};
use sphere_pointer::derive::{PointerKeys, Side};
use sphere_pointer::server::{AggregatorConfig, AggregatorServer};
use sphere_pointer::state::PointerState;
use sphere_pointer::{Pointer, PointerConfig};
use sphere_profile::keys::PointerSeeds;
use sphere_profile::secret::Secret32;

const RUNS: usize = 9;

struct Row {
    latest: u32,
    rpcs: u64,
    probes: u32,
    median: Duration,
    seed: Duration,
}

fn seeds() -> PointerSeeds {
    PointerSeeds::derive(&Secret32::new([0x5e; 32]))
}

fn cid_for(v: u32) -> Cid {
    Cid::new_v1(0x71, Code::Sha2_256.digest(&v.to_be_bytes()))
}

async fn case(latest: u32) -> Row {
    let srv = AggregatorServer::start_in_memory(
        SigningKey::from_slice(&[0x42; 32]).expect("key"),
        "127.0.0.1:0".parse().expect("addr"),
        AggregatorConfig::default()
            .with_round_interval(Duration::from_secs(3600))
            .with_max_pending(usize::MAX),
    )
    .await
    .expect("server");
    let keys = PointerKeys::new(&seeds()).expect("keys");
    let t = Instant::now();
    // Sign on every core; the aggregator takes the requests in one round.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let chunks: Vec<Vec<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let keys = &keys;
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut v = 1 + t;
                    while v <= latest {
                        let built = keys.build(v, &cid_for(v)).expect("derive");
                        out.push(built.side(Side::A).request());
                        if v == latest {
                            out.push(built.side(Side::B).request());
                        }
                        v += threads;
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signer"))
            .collect()
    });
    srv.with_core(|c| {
        c.admit_unchecked(chunks.into_iter().flatten());
        c.close_round().expect("round");
    });
    let seed = t.elapsed();
    let mut times = Vec::new();
    let mut rpcs = 0;
    let mut probes = 0;
    // One warm-up run (connections, caches), then RUNS measured ones.
    for run in 0..=RUNS {
        let client = AggregatorClient::new(&srv.url(), ClientConfig::default()).expect("client");
        let p = Pointer::new(
            &seeds(),
            client,
            srv.trust_base().clone(),
            PointerState::in_memory().expect("state"),
            PointerConfig::default(),
        )
        .expect("pointer");
        let t = Instant::now();
        let d = p.discover().await.expect("discovery");
        if run > 0 {
            times.push(t.elapsed());
        }
        assert_eq!(d.valid_version, latest);
        assert_eq!(d.cid, Some(cid_for(latest)));
        rpcs = p.client().rpc_count();
        probes = d.probes;
    }
    times.sort();
    srv.shutdown().await;
    Row {
        latest,
        rpcs,
        probes,
        median: times[RUNS / 2],
        seed,
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cases = vec![1u32, 1_000];
    if !quick {
        cases.push(1_000_000);
    }
    let rows: Vec<Row> = cases.into_iter().map(|v| rt.block_on(case(v))).collect();
    let base = &rows[0];
    let line = format!(
        "| {:>9} | {:>7} | {:>6} | {:>4} | {:>9} | {:>9} | {:>10} | {:>9} |",
        "latest v", "log2 v", "probes", "RPCs", "RPCs ×v=1", "median ms", "time ×v=1", "seeding s"
    );
    let mut out = vec![line, "|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned()];
    for r in &rows {
        out.push(format!(
            "| {:>9} | {:>7.1} | {:>6} | {:>4} | {:>9.2} | {:>9.2} | {:>10.2} | {:>9.1} |",
            r.latest,
            f64::from(r.latest).log2(),
            r.probes,
            r.rpcs,
            r.rpcs as f64 / base.rpcs as f64,
            r.median.as_secs_f64() * 1e3,
            r.median.as_secs_f64() / base.median.as_secs_f64(),
            r.seed.as_secs_f64(),
        ));
    }
    let text = out.join("\n");
    std::io::Write::write_all(&mut std::io::stdout(), format!("{text}\n").as_bytes())
        .expect("stdout");
}
