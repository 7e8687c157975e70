//! In-process multi-device sync over real TCP on 127.0.0.1: each device is an OpLog
//! store plus a libp2p node. Tests wait for convergence on store events with a
//! deadline; none sleeps a fixed time.

use std::time::Duration;

use sphere_profile::keys::WalletKeys;
use sphere_profile::oplog::{Store, StoreConfig};
use sphere_profile::secret::Secret32;
use sphere_profile::sync::{Keypair, Multiaddr, Node, Protocol, SyncConfig};

/// How long any test waits for convergence before failing.
const DEADLINE: Duration = Duration::from_secs(30);

struct Device {
    store: Store,
    node: Node,
}

fn wallet(seed: u8) -> WalletKeys {
    WalletKeys::from_address_key(&Secret32::new([seed; 32])).unwrap()
}

async fn device(keys: &WalletKeys, id: u8, config: SyncConfig) -> Device {
    let store = Store::in_memory(&keys.oplog, [id; 8], StoreConfig::default()).unwrap();
    let (node, _task) = Node::start(
        store.clone(),
        &keys.oplog.topic,
        Keypair::generate_ed25519(),
        config,
    )
    .await
    .unwrap();
    Device { store, node }
}

fn addr_of(d: &Device) -> Multiaddr {
    let mut a = d.node.listen_addrs()[0].clone();
    a.push(Protocol::P2p(d.node.peer_id()));
    a
}

/// Waits until every store has the same state digest and holds `keys` keys.
async fn converge(devices: &[&Device], keys: usize) {
    let mut changes: Vec<_> = devices.iter().map(|d| d.store.subscribe()).collect();
    let check = async || {
        let mut digests = Vec::new();
        for d in devices {
            if d.store.scan("").await.unwrap().len() != keys {
                return false;
            }
            digests.push(d.store.state_digest().await.unwrap());
        }
        digests.windows(2).all(|w| w[0] == w[1])
    };
    let wait = async {
        loop {
            if check().await {
                return;
            }
            // Wake on the next change anywhere (or re-check after a short while, since
            // a catch-up round may finish without a change on the store we listen to).
            let any = futures::future::select_all(changes.iter_mut().map(|c| Box::pin(c.recv())));
            let _ = tokio::time::timeout(Duration::from_millis(200), any).await;
        }
    };
    if tokio::time::timeout(DEADLINE, wait).await.is_err() {
        let mut report = String::new();
        for (i, d) in devices.iter().enumerate() {
            let n = d.store.scan("").await.unwrap().len();
            let status = d.node.status().await.unwrap();
            report.push_str(&format!("\ndevice {i}: {n} keys, status {status:?}"));
        }
        panic!("no convergence within {DEADLINE:?}:{report}");
    }
}

/// Waits until the node's status satisfies `pred`: subscribes to events first, then
/// checks, then re-checks after each event, so nothing that already happened is missed.
async fn wait_status(node: &Node, pred: impl Fn(&sphere_profile::sync::SyncStatus) -> bool) {
    let mut events = node.events();
    let wait = async {
        loop {
            if pred(&node.status().await.unwrap()) {
                return;
            }
            let _ = events.recv().await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the node never reached the expected state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_writing_concurrently_converge() {
    let keys = wallet(1);
    let a = device(&keys, 1, SyncConfig::default()).await;
    let b = device(
        &keys,
        2,
        SyncConfig::default().with_peers(vec![addr_of(&a)]),
    )
    .await;
    let c = device(
        &keys,
        3,
        SyncConfig::default().with_peers(vec![addr_of(&a), addr_of(&b)]),
    )
    .await;
    let writes = |d: &Device, name: &'static str| {
        let store = d.store.clone();
        async move {
            for i in 0..50 {
                store
                    .put(
                        format!("{name}.{i}"),
                        format!("value {i} from {name}").into_bytes(),
                    )
                    .await
                    .unwrap();
            }
            store.put("shared", name.as_bytes().to_vec()).await.unwrap();
        }
    };
    tokio::join!(writes(&a, "a"), writes(&b, "b"), writes(&c, "c"));
    converge(&[&a, &b, &c], 151).await;
    assert_eq!(
        b.store.get("a.7").await.unwrap().unwrap(),
        b"value 7 from a"
    );
    let winner = a.store.get("shared").await.unwrap();
    assert_eq!(
        c.store.get("shared").await.unwrap(),
        winner,
        "last writer wins everywhere"
    );
    let status = a.node.status().await.unwrap();
    assert!(
        status.entries_in > 0 && status.entries_out > 0,
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_device_catches_up_a_long_log() {
    let keys = wallet(2);
    let a = device(&keys, 1, SyncConfig::default()).await;
    for i in 0..300 {
        a.store
            .put(format!("k{i}"), vec![i as u8; 45])
            .await
            .unwrap();
    }
    let fresh = device(
        &keys,
        9,
        SyncConfig::default()
            .with_page(64)
            .with_peers(vec![addr_of(&a)]),
    )
    .await;
    converge(&[&a, &fresh], 300).await;
    let status = fresh.node.status().await.unwrap();
    assert!(
        status.peers.iter().any(|p| p.last_catchup_ms.is_some()),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_behind_the_pruning_floor_catches_up_by_snapshot() {
    let keys = wallet(5);
    let a = device(&keys, 1, SyncConfig::default()).await;
    for i in 0..120 {
        a.store
            .put(format!("k{i:03}"), vec![i as u8; 45])
            .await
            .unwrap();
    }
    a.store.delete("k007").await.unwrap();
    // A knows no other device: every entry is below its new floor.
    let pruned = a.store.prune().await.unwrap();
    assert_eq!(pruned, 121, "every entry of the only device is pruned");
    assert!(
        a.store
            .entries_since(&Default::default(), 10)
            .await
            .is_err(),
        "entries below the floor are gone"
    );
    let fresh = device(
        &keys,
        9,
        SyncConfig::default().with_peers(vec![addr_of(&a)]),
    )
    .await;
    converge(&[&a, &fresh], 119).await;
    assert_eq!(
        a.store.state_digest().await.unwrap(),
        fresh.store.state_digest().await.unwrap()
    );
    assert_eq!(
        fresh.store.get("k007").await.unwrap(),
        None,
        "the tombstone came too"
    );
    assert_eq!(
        fresh.store.version_vector().await.unwrap(),
        a.store.version_vector().await.unwrap()
    );
    wait_status(&fresh.node, |s| s.snapshots_in == 1).await;
    wait_status(&a.node, |s| s.snapshots_served == 1).await;
    // Entries written after the snapshot still arrive entry by entry.
    a.store.put("after", b"snapshot".to_vec()).await.unwrap();
    converge(&[&a, &fresh], 120).await;
    assert_eq!(
        fresh.store.get("after").await.unwrap().unwrap(),
        b"snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_alone_converges_when_all_gossip_is_dropped() {
    let keys = wallet(3);
    let lossy = || {
        SyncConfig::default()
            .with_gossip_drop_rate(1.0)
            .with_anti_entropy(Duration::from_millis(300))
    };
    let a = device(&keys, 1, lossy()).await;
    let b = device(&keys, 2, lossy().with_peers(vec![addr_of(&a)])).await;
    wait_status(&b.node, |s| {
        s.peers.iter().any(|p| p.last_catchup_ms.is_some())
    })
    .await;
    for i in 0..40 {
        a.store.put(format!("a{i}"), b"x".to_vec()).await.unwrap();
        b.store.put(format!("b{i}"), b"y".to_vec()).await.unwrap();
    }
    converge(&[&a, &b], 80).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_wallet_learns_nothing_and_pollutes_nothing() {
    let ours = wallet(4);
    let theirs = wallet(5);
    let a = device(&ours, 1, SyncConfig::default()).await;
    let b = device(
        &ours,
        2,
        SyncConfig::default().with_peers(vec![addr_of(&a)]),
    )
    .await;
    a.store.put("secret", b"ours".to_vec()).await.unwrap();
    converge(&[&a, &b], 1).await;

    // A stranger connects to our device. Its topic differs (derived from its own
    // wallet secret), and its catch-up requests name another log.
    let stranger = device(
        &theirs,
        7,
        SyncConfig::default().with_peers(vec![addr_of(&a)]),
    )
    .await;
    stranger
        .store
        .put("spam", b"theirs".to_vec())
        .await
        .unwrap();
    wait_status(&stranger.node, |s| !s.peers.is_empty()).await;
    a.node.catch_up().await.unwrap();
    stranger.node.catch_up().await.unwrap();
    a.store.put("after", b"more".to_vec()).await.unwrap();
    converge(&[&a, &b], 2).await;
    assert!(stranger.store.get("secret").await.unwrap().is_none());
    assert_eq!(stranger.store.scan("").await.unwrap().len(), 1);
    assert!(a.store.get("spam").await.unwrap().is_none());

    // Even a stranger that learned our topic gets its entries rejected and is banned.
    let intruder_keys = WalletKeys::from_address_key(&Secret32::new([6; 32])).unwrap();
    let intruder_store =
        Store::in_memory(&intruder_keys.oplog, [8; 8], StoreConfig::default()).unwrap();
    let (intruder, _t) = Node::start(
        intruder_store.clone(),
        &ours.oplog.topic,
        Keypair::generate_ed25519(),
        SyncConfig::default().with_peers(vec![addr_of(&a)]),
    )
    .await
    .unwrap();
    // Wait until the intruder is a subscribed peer of `a`, then let it write.
    wait_status(&a.node, |s| {
        s.peers.iter().filter(|p| p.wallet_peer).count() == 2
    })
    .await;
    for i in 0..20 {
        intruder_store
            .put(format!("evil{i}"), b"x".to_vec())
            .await
            .unwrap();
    }
    // Entries travel without their log id and signer key (the compact wire form):
    // `a` restores them with its own wallet's, so a foreign entry fails as a bad
    // signature; sent in full it would be a foreign log or a wrong key.
    wait_status(&a.node, |s| {
        ["foreign_log", "wrong_key", "bad_signature"]
            .iter()
            .any(|r| s.rejected.contains_key(*r))
    })
    .await;
    wait_status(&a.node, |s| {
        !s.peers
            .iter()
            .any(|p| p.peer == intruder.peer_id().to_string())
    })
    .await;
    assert!(a.store.scan("evil").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_gossip_never_crashes_a_node() {
    let keys = wallet(10);
    let a = device(&keys, 1, SyncConfig::default().with_max_strikes(1000)).await;
    let b = device(
        &keys,
        2,
        SyncConfig::default().with_peers(vec![addr_of(&a)]),
    )
    .await;
    a.store.put("before", b"1".to_vec()).await.unwrap();
    converge(&[&a, &b], 1).await;
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut junk = Vec::new();
    for len in [0usize, 1, 7, 64, 300, 2048] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                rng_state as u8
            })
            .collect();
        junk.push(bytes);
    }
    // A valid frame around invalid entries, and an unknown version.
    junk.push(sphere_profile::sync::wire::Gossip::new(vec![vec![0xa1, 0x61, 0x76, 0x02]]).encode());
    let mut v2 = sphere_profile::sync::wire::Gossip::new(vec![vec![1]]);
    v2.v = 2;
    junk.push(v2.encode());
    for data in junk {
        b.node.publish_raw(data).await.unwrap();
    }
    wait_status(&a.node, |s| {
        s.rejected.get("wire").copied().unwrap_or(0) >= 6
    })
    .await;
    b.store.put("after", b"2".to_vec()).await.unwrap();
    converge(&[&a, &b], 2).await;
}
