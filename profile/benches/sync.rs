//! Sync benchmark (a bench binary, `harness = false`): the figures of
//! `docs/benchmarks.md` § Sync. Run with
//!
//! ```text
//! cargo bench -p sphere-profile --bench sync
//! ```
//!
//! Two devices of one wallet, file-backed stores with the default durability, real
//! libp2p nodes on 127.0.0.1. Device B reaches device A through a counting TCP relay
//! (also on loopback) so that the bytes on the wire — Noise, Yamux, gossipsub and
//! catch-up framing included — are measured, and so that a partition is a relay that
//! stops forwarding. Baselines, measured in the same run: for catch-up, copying the
//! same entries store-to-store in-process (`entries_since` + `ingest`, no network);
//! for latency, the local `put` itself.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{load_average, process_cpu};

use sphere_profile::keys::WalletKeys;
use sphere_profile::oplog::{Change, Store, StoreConfig, VersionVector};
use sphere_profile::secret::Secret32;
use sphere_profile::sync::{Keypair, Multiaddr, Node, Protocol, SyncConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const VALUE: [u8; 45] = [0x5a; 45];

fn keys() -> WalletKeys {
    WalletKeys::from_address_key(&Secret32::new([42; 32])).unwrap()
}

fn open(dir: &std::path::Path, name: &str, device: u8) -> Store {
    Store::open(
        &dir.join(name),
        &keys().oplog,
        [device; 8],
        StoreConfig::default(),
    )
    .unwrap()
}

async fn start(store: &Store, peers: Vec<Multiaddr>) -> Node {
    let config = SyncConfig::default().with_peers(peers).with_page(1024);
    Node::start(
        store.clone(),
        &keys().oplog.topic,
        Keypair::generate_ed25519(),
        config,
    )
    .await
    .unwrap()
    .0
}

/// A TCP relay on loopback that counts bytes both ways and can cut every
/// connection (a partition) and accept again (healing).
struct Relay {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    open: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let (b, o) = (bytes.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    continue; // partitioned: drop the connection at once
                }
                let (b, mut cuts) = (b.clone(), cuts.clone());
                // Only cuts after this connection was accepted end it.
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    // Like the nodes' own sockets: no Nagle delay in the measuring relay.
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let up = pump(&mut ri, &mut wo, &b);
                    let down = pump(&mut ro, &mut wi, &b);
                    tokio::select! {
                        _ = async { tokio::join!(up, down) } => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            bytes,
            open,
            cut,
        }
    }

    fn multiaddr(&self, peer: &Node) -> Multiaddr {
        let mut a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", self.addr.port())
            .parse()
            .unwrap();
        a.push(Protocol::P2p(peer.peer_id()));
        a
    }

    fn partition(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    count: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::io::AsyncReadExt::read(from, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn tcp_port(node: &Node) -> SocketAddr {
    let addr = &node.listen_addrs()[0];
    let port = addr
        .iter()
        .find_map(|p| {
            if let Protocol::Tcp(p) = p {
                Some(p)
            } else {
                None
            }
        })
        .unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until `b` holds what `a` holds: the cheap check (B's version vector covers
/// A's) at every change, the state digests (which open every value) only once the
/// vectors match. Returns the time the vectors were seen to match in the check whose
/// digests were equal.
async fn wait_same(a: &Store, b: &Store, timeout: Duration) -> Duration {
    let started = Instant::now();
    // Either side may apply last (A takes B's entries too), so wake on both.
    let mut changes_a = a.subscribe();
    let mut changes_b = b.subscribe();
    loop {
        if b.version_vector()
            .await
            .unwrap()
            .covers(&a.version_vector().await.unwrap())
            && a.version_vector()
                .await
                .unwrap()
                .covers(&b.version_vector().await.unwrap())
        {
            let at = started.elapsed();
            if a.state_digest().await.unwrap() == b.state_digest().await.unwrap() {
                return at;
            }
        }
        assert!(
            started.elapsed() < timeout,
            "no convergence within {timeout:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), async {
            tokio::select! {
                _ = changes_a.recv() => {}
                _ = changes_b.recv() => {}
            }
        })
        .await;
        // Skip the events already queued: one check per burst, not one per entry
        // (the checks run on the same two cores as the nodes being measured).
        for changes in [&mut changes_a, &mut changes_b] {
            while !matches!(
                changes.try_recv(),
                Err(tokio::sync::broadcast::error::TryRecvError::Empty
                    | tokio::sync::broadcast::error::TryRecvError::Closed)
            ) {}
        }
    }
}

async fn write_entries(store: &Store, prefix: &str, n: usize) {
    for i in 0..n {
        store
            .put(format!("{prefix}{i:06}"), VALUE.to_vec())
            .await
            .unwrap();
    }
}

/// Fresh device catching up `n` entries over the network, against the same copy
/// done in-process.
async fn catch_up(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", 1);
    write_entries(&a, "k", n).await;

    // Baseline: the same entries, store to store, no network.
    let copy = open(dir.path(), "copy.db", 3);
    let started = Instant::now();
    let cpu = process_cpu().as_secs_f64() * 1e3;
    let mut since = VersionVector::default();
    loop {
        let page = a.entries_since(&since, 1024).await.unwrap();
        let more = page.more;
        copy.ingest(page.entries).await.unwrap();
        since = copy.version_vector().await.unwrap();
        if !more {
            break;
        }
    }
    let baseline = started.elapsed();
    let baseline_cpu = process_cpu().as_secs_f64() * 1e3 - cpu;

    let node_a = start(&a, vec![]).await;
    let relay = Relay::start(tcp_port(&node_a)).await;
    let b = open(dir.path(), "b.db", 2);
    let started = Instant::now();
    let cpu = process_cpu().as_secs_f64() * 1e3;
    let _node_b = start(&b, vec![relay.multiaddr(&node_a)]).await;
    // Node start-up, plus the wait until the states matched.
    let took = started.elapsed() + wait_same(&a, &b, Duration::from_secs(60)).await;
    let took_cpu = process_cpu().as_secs_f64() * 1e3 - cpu;
    let wire = relay.bytes.load(Ordering::Relaxed);
    println!(
        "catch-up {n} entries: {:.0} ms over the network, CPU {:.0} ms (target ≤ 1000 ms wall); in-process copy {:.0} ms, CPU {:.0} ms; ratio {:.2}×; {:.0} wire bytes/entry",
        took.as_secs_f64() * 1e3,
        took_cpu,
        baseline.as_secs_f64() * 1e3,
        baseline_cpu,
        took.as_secs_f64() / baseline.as_secs_f64(),
        wire as f64 / n as f64
    );
}

/// Each side writes 100 entries while partitioned; time from the relay healing to
/// identical state.
async fn partition_heal() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", 1);
    let b = open(dir.path(), "b.db", 2);
    let node_a = start(&a, vec![]).await;
    let relay = Relay::start(tcp_port(&node_a)).await;
    let node_b = start(&b, vec![relay.multiaddr(&node_a)]).await;
    a.put("hello", VALUE.to_vec()).await.unwrap();
    wait_same(&a, &b, Duration::from_secs(30)).await;

    relay.partition();
    let mut events = node_b.events();
    // Wait until B has seen the connection drop, so the heal is a real reconnect.
    loop {
        if node_b.status().await.unwrap().peers.is_empty() {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
    }
    tokio::join!(write_entries(&a, "a", 100), write_entries(&b, "b", 100));
    relay.heal();
    // Measure from the moment the connection is up again.
    let up = loop {
        match events.recv().await {
            Ok(sphere_profile::sync::SyncEvent::Connected { .. }) => break Instant::now(),
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("{e}"),
        }
    };
    let cpu = process_cpu().as_secs_f64() * 1e3;
    // Time until the wait started, plus the wait until the states matched.
    let took = up.elapsed() + wait_same(&a, &b, Duration::from_secs(60)).await;
    println!(
        "partition heal (100 + 100 entries): converged {:.1} ms after the connection was up, CPU {:.0} ms (target ≤ 50 ms)",
        took.as_secs_f64() * 1e3,
        process_cpu().as_secs_f64() * 1e3 - cpu
    );
}

/// A writes 50 times a second; how long until each write is readable on B.
async fn live_latency(writes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", 1);
    let b = open(dir.path(), "b.db", 2);
    let node_a = start(&a, vec![]).await;
    let relay = Relay::start(tcp_port(&node_a)).await;
    let _node_b = start(&b, vec![relay.multiaddr(&node_a)]).await;
    a.put("warm-up", VALUE.to_vec()).await.unwrap();
    wait_same(&a, &b, Duration::from_secs(30)).await;

    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let mut changes = b.subscribe();
    let seen = tokio::spawn(async move {
        let mut at = Vec::new();
        while at.len() < writes {
            if let Ok(Change::Entry(_)) = changes.recv().await {
                at.push(Instant::now());
            }
        }
        at
    });
    let before = relay.bytes.load(Ordering::Relaxed);
    let mut local = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..writes {
        tick.tick().await;
        let t = Instant::now();
        sent.lock().unwrap().push(t);
        a.put(format!("live{i:05}"), VALUE.to_vec()).await.unwrap();
        local.push(t.elapsed());
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .unwrap()
        .unwrap();
    let wire = relay.bytes.load(Ordering::Relaxed) - before;
    let sent = sent.lock().unwrap().clone();
    let mut lat: Vec<Duration> = sent
        .iter()
        .zip(&seen)
        .map(|(s, v)| v.duration_since(*s))
        .collect();
    // Which writes were slowest, and when: a burst of neighbours is one stall, a
    // spread is something periodic.
    let mut slowest: Vec<(usize, Duration)> = lat.iter().copied().enumerate().collect();
    slowest.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let worst: Vec<String> = slowest
        .iter()
        .take(8)
        .map(|(i, d)| format!("#{i} {:.1}", d.as_secs_f64() * 1e3))
        .collect();
    lat.sort();
    local.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    };
    println!(
        "live latency at 50 writes/s ({writes} writes): p50 {:.2} ms, p99 {:.2} ms (target p99 ≤ 50 ms); local put p50 {:.2} ms, p99 {:.2} ms; ratio p99 {:.1}×",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&local, 0.5),
        pct(&local, 0.99),
        pct(&lat, 0.99) / pct(&local, 0.99)
    );
    println!(
        "live latency, slowest writes (index, ms): {}",
        worst.join(", ")
    );
    println!(
        "wire bytes per live entry (45-byte values, both directions, all framing): {:.0} (target ≤ 300)",
        wire as f64 / writes as f64
    );
}

fn main() {
    if std::env::var_os("SPHERE_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SPHERE_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let quick = std::env::args().any(|a| a == "--quick");
    println!("load average at start: {}", load_average());
    rt.block_on(async {
        catch_up(if quick { 1000 } else { 10_000 }).await;
        partition_heal().await;
        live_latency(if quick { 100 } else { 500 }).await;
    });
    println!("load average at end: {}", load_average());
}
