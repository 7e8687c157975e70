//! OpLog integration tests (issue 4): LWW convergence under any delivery order,
//! tombstone ordering, the pending table across restarts, typed rejections and
//! forks, snapshots and pruning, catch-up paging, and `ingest` on mutated bytes.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers abort the test on any failure"
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sphere_profile::keys::{OplogKeys, WalletKeys};
use sphere_profile::oplog::entry::{self, Draft, Entry, LogKeys, Op};
use sphere_profile::oplog::{
    Change, MAX_ENTRY_BYTES, Rejected, Snapshot, Store, StoreConfig, StoreError, VersionVector,
};
use sphere_profile::secret::Secret32;

fn wallet(n: u8) -> WalletKeys {
    WalletKeys::from_address_key(&Secret32::new([n; 32])).unwrap()
}

fn mem(keys: &OplogKeys, dev: u8) -> Store {
    mem_with(keys, dev, StoreConfig::default())
}

fn mem_with(keys: &OplogKeys, dev: u8, config: StoreConfig) -> Store {
    Store::in_memory(keys, [dev; 8], config).unwrap()
}

/// `recent` thresholds for the stores of one test: every write moved into `state`
/// at once, every other transaction or so, and (the default) hardly ever.
fn recent_config(i: usize) -> StoreConfig {
    match i % 3 {
        0 => StoreConfig::default().with_recent_rows(1),
        1 => StoreConfig::default().with_recent_rows(3),
        _ => StoreConfig::default(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every entry `s` holds, in (device, seq) order.
async fn all_entries(s: &Store) -> Vec<Vec<u8>> {
    let mut vv = VersionVector::default();
    let mut out = Vec::new();
    loop {
        let page = s.entries_since(&vv, 64).await.unwrap();
        for b in &page.entries {
            let e = entry::decode(b).unwrap();
            vv.advance(e.device, e.seq);
        }
        out.extend(page.entries);
        if !page.more {
            return out;
        }
    }
}

/// The LWW state computed independently from the entries: the write with the
/// greatest (clock, device, op) per key.
fn model(keys: &OplogKeys, entries: &[Vec<u8>]) -> BTreeMap<String, Option<Vec<u8>>> {
    let lk = LogKeys::new(keys).unwrap();
    type Order = (u64, [u8; 8], usize);
    let mut best: BTreeMap<String, (Order, Option<Vec<u8>>)> = BTreeMap::new();
    for b in entries {
        let e = entry::decode_verified(b, &lk).unwrap();
        for (i, op) in e.open(&lk).unwrap().into_iter().enumerate() {
            let order = (e.clock, e.device, i);
            match best.get(&op.key) {
                Some((o, _)) if *o >= order => {}
                _ => {
                    best.insert(op.key, (order, op.value));
                }
            }
        }
    }
    best.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

async fn state(s: &Store, keys: &[String]) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut m = BTreeMap::new();
    for k in keys {
        if let Some(r) = s.record(k).await.unwrap() {
            m.insert(k.clone(), r.value);
        }
    }
    m
}

#[derive(Debug, Clone)]
enum Step {
    Put {
        dev: usize,
        key: u8,
        val: u8,
    },
    Del {
        dev: usize,
        key: u8,
    },
    Sync {
        from: usize,
        to: usize,
    },
    /// One entry of 36 ops (every key six times): big enough that the store writes
    /// it, and any ingest holding it, straight to `state`.
    Batch {
        dev: usize,
        val: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..6u8, any::<u8>()).prop_map(|(dev, key, val)| Step::Put { dev, key, val }),
        2 => (0..3usize, 0..6u8).prop_map(|(dev, key)| Step::Del { dev, key }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync { from, to }),
        1 => (0..3usize, any::<u8>()).prop_map(|(dev, val)| Step::Batch { dev, val }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Random interleavings of the same entries, applied to three stores in
    /// different orders, chunkings and with duplicates, give identical state
    /// digests, equal to the independently computed LWW model — point reads and
    /// scans alike, whichever of `recent` and `state` each record sits in.
    #[test]
    fn lww_convergence_any_order(
        steps in proptest::collection::vec(step(), 1..40),
        perms in proptest::collection::vec(proptest::collection::vec(any::<proptest::sample::Index>(), 64), 3),
        chunk in 1..6usize,
    ) {
        let w = wallet(1);
        rt().block_on(async {
            let writers: Vec<Store> =
                (0..3).map(|d| mem_with(&w.oplog, 10 + d as u8, recent_config(d))).collect();
            for s in &steps {
                match s {
                    Step::Put { dev, key, val } => {
                        writers[*dev].put(format!("k{key}"), vec![*val; 3]).await.unwrap();
                    }
                    Step::Del { dev, key } => {
                        writers[*dev].delete(format!("k{key}")).await.unwrap();
                    }
                    Step::Batch { dev, val } => {
                        let ops = (0..36u8).map(|i| (format!("k{}", i % 6), vec![val.wrapping_add(i); 3]));
                        writers[*dev].put_batch(ops).await.unwrap();
                    }
                    Step::Sync { from, to } => {
                        let es = all_entries(&writers[*from]).await;
                        writers[*to].ingest(es).await.unwrap();
                    }
                }
            }
            let mut entries = Vec::new();
            for s in &writers {
                for e in all_entries(s).await {
                    if !entries.contains(&e) {
                        entries.push(e);
                    }
                }
            }
            let expected = model(&w.oplog, &entries);
            let keys: Vec<String> = (0..6).map(|k| format!("k{k}")).collect();
            let mut digests = Vec::new();
            for (r, perm) in perms.iter().enumerate() {
                let mut order = entries.clone();
                // Shuffle with the generated indices, then duplicate a few.
                let n = order.len();
                for (i, idx) in perm.iter().enumerate().take(n) {
                    order.swap(i, idx.index(n));
                }
                if let Some(first) = order.first().cloned() {
                    order.push(first);
                }
                let s = mem_with(&w.oplog, 20 + r as u8, recent_config(r));
                for c in order.chunks(chunk) {
                    let rep = s.ingest(c.to_vec()).await.unwrap();
                    prop_assert!(rep.rejected.is_empty(), "{:?}", rep.rejected);
                }
                prop_assert_eq!(state(&s, &keys).await, expected.clone());
                let live: Vec<(String, Vec<u8>)> = expected
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                    .collect();
                prop_assert_eq!(s.scan("k").await.unwrap(), live.clone());
                // a page boundary inside the map: the first two, then the rest
                let first = s.scan_page("k", None, 2).await.unwrap();
                let rest = match first.last() {
                    Some((k, _)) => s.scan_page("k", Some(k.as_str()), 64).await.unwrap(),
                    None => Vec::new(),
                };
                prop_assert_eq!([first, rest].concat(), live);
                digests.push(s.state_digest().await.unwrap());
            }
            prop_assert_eq!(digests[0], digests[1]);
            prop_assert_eq!(digests[1], digests[2]);
            Ok(())
        })?;
    }

    /// `ingest` never panics on mutated entry bytes and never applies them.
    #[test]
    fn ingest_never_panics_on_mutated_bytes(
        muts in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<proptest::sample::Index>(),
        noise in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let w = wallet(1);
        rt().block_on(async {
            let a = mem(&w.oplog, 1);
            a.put("k", b"v".to_vec()).await.unwrap();
            a.put("k2", b"v2".to_vec()).await.unwrap();
            let good = all_entries(&a).await;
            let mut bad = good[1].clone();
            for (i, b) in &muts {
                let i = i.index(bad.len());
                bad[i] = *b;
            }
            let truncated = good[0][..cut.index(good[0].len())].to_vec();
            let b = mem(&w.oplog, 2);
            let rep = b.ingest(vec![bad.clone(), truncated, noise.clone()]).await.unwrap();
            if bad != good[1] {
                prop_assert!(rep.applied.is_empty());
            }
            prop_assert!(b.integrity_check().await.unwrap().is_empty());
            Ok(())
        })?;
    }
}

#[test]
fn tombstones_win_and_lose_exactly_by_clock_then_device() {
    let w = wallet(2);
    rt().block_on(async {
        // Equal clocks (1): the higher device id wins, whichever is the tombstone.
        for (put_dev, del_dev, tomb_wins) in [(1u8, 2u8, true), (3, 2, false)] {
            let p = mem(&w.oplog, put_dev);
            let d = mem(&w.oplog, del_dev);
            assert_eq!(p.put("k", b"v".to_vec()).await.unwrap().clock, 1);
            assert_eq!(d.delete("k").await.unwrap().clock, 1);
            let mut es = all_entries(&p).await;
            es.extend(all_entries(&d).await);
            for order in [es.clone(), es.iter().rev().cloned().collect()] {
                let s = mem(&w.oplog, 9);
                s.ingest(order).await.unwrap();
                let r = s.record("k").await.unwrap().unwrap();
                assert_eq!(r.value.is_none(), tomb_wins, "put {put_dev} del {del_dev}");
                assert_eq!(r.clock, 1);
                assert_eq!(r.device, [put_dev.max(del_dev); 8]);
                assert_eq!(s.get("k").await.unwrap().is_none(), tomb_wins);
            }
        }
        // A higher clock wins against a higher device id: the low device saw the
        // tombstone, so its put carries clock 2.
        let low = mem(&w.oplog, 1);
        let high = mem(&w.oplog, 9);
        high.delete("k").await.unwrap();
        low.ingest(all_entries(&high).await).await.unwrap();
        assert_eq!(low.put("k", b"back".to_vec()).await.unwrap().clock, 2);
        high.ingest(all_entries(&low).await).await.unwrap();
        assert_eq!(high.get("k").await.unwrap(), Some(b"back".to_vec()));
        // And a later tombstone (clock 3) deletes it again everywhere.
        assert_eq!(high.delete("k").await.unwrap().clock, 3);
        low.ingest(all_entries(&high).await).await.unwrap();
        assert_eq!(low.get("k").await.unwrap(), None);
        assert_eq!(
            low.state_digest().await.unwrap(),
            high.state_digest().await.unwrap()
        );
    });
}

#[test]
fn out_of_order_ingestion_resolves_from_the_pending_table_after_a_restart() {
    let w = wallet(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    rt().block_on(async {
        let writer = mem(&w.oplog, 7);
        for i in 0..4 {
            writer.put(format!("k{i}"), vec![i]).await.unwrap();
        }
        let es = all_entries(&writer).await;
        let s = Store::open(&path, &w.oplog, [1; 8], StoreConfig::default()).unwrap();
        let r = s.ingest(vec![es[3].clone(), es[1].clone()]).await.unwrap();
        assert_eq!(r.pending.len(), 2);
        let r = s.ingest(vec![es[2].clone()]).await.unwrap();
        assert_eq!(r.pending.len(), 1);
        assert_eq!(s.version_vector().await.unwrap().get(&[7; 8]), 0);
        assert_eq!(s.get("k3").await.unwrap(), None);
        s.shutdown().await.unwrap();

        let s = Store::open(&path, &w.oplog, [1; 8], StoreConfig::default()).unwrap();
        assert_eq!(s.version_vector().await.unwrap().get(&[7; 8]), 0);
        let mut sub = s.subscribe();
        let r = s.ingest(vec![es[0].clone()]).await.unwrap();
        assert_eq!(
            r.applied.len(),
            4,
            "the first entry and the three pending ones"
        );
        assert_eq!(s.version_vector().await.unwrap().get(&[7; 8]), 4);
        for i in 0..4u8 {
            assert_eq!(s.get(&format!("k{i}")).await.unwrap(), Some(vec![i]));
        }
        let mut seqs = Vec::new();
        for _ in 0..4 {
            match sub.recv().await.unwrap() {
                Change::Entry(c) => seqs.push(c.seq),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        assert_eq!(
            s.state_digest().await.unwrap(),
            writer.state_digest().await.unwrap()
        );
    });
}

#[test]
fn a_full_pending_table_rejects_new_gaps_and_drains_once_the_gap_is_filled() {
    let w = wallet(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    let cap = 3;
    let config = || StoreConfig::default().with_max_pending(cap);
    rt().block_on(async {
        let writer = mem(&w.oplog, 7);
        for i in 0..8u8 {
            writer.put(format!("k{i}"), vec![i]).await.unwrap();
        }
        let es = all_entries(&writer).await;
        let s = Store::open(&path, &w.oplog, [1; 8], config()).unwrap();
        // seq 1 is missing: seqs 2..=4 fill the table, 5 and 6 are refused
        let r = s.ingest(es[1..6].to_vec()).await.unwrap();
        assert_eq!(r.pending.len(), cap);
        let reasons: Vec<_> = r
            .rejected
            .iter()
            .map(|(i, why)| (*i, why.clone()))
            .collect();
        assert_eq!(reasons.len(), 2);
        for (i, why) in reasons {
            assert!(i >= cap, "the first gaps are kept, later ones refused: {i}");
            assert!(
                matches!(why, Rejected::PendingFull { max } if max == cap),
                "{why:?}"
            );
        }
        // a duplicate of a kept entry is still recognised while full
        let r = s.ingest(vec![es[1].clone()]).await.unwrap();
        assert_eq!((r.pending.len(), r.rejected.len()), (1, 0));
        s.shutdown().await.unwrap();

        // the cap holds across a restart, and the gap filler drains the table
        let s = Store::open(&path, &w.oplog, [1; 8], config()).unwrap();
        let r = s.ingest(vec![es[6].clone()]).await.unwrap();
        assert!(matches!(r.rejected[0].1, Rejected::PendingFull { .. }));
        let r = s.ingest(vec![es[0].clone()]).await.unwrap();
        assert_eq!(r.applied.len(), 4, "seq 1 and the three pending ones");
        assert_eq!(s.version_vector().await.unwrap().get(&[7; 8]), 4);
        // the refused entries are accepted now that there is room (and no gap)
        let r = s.ingest(es[4..8].to_vec()).await.unwrap();
        assert_eq!(r.applied.len(), 4);
        assert_eq!(
            s.state_digest().await.unwrap(),
            writer.state_digest().await.unwrap()
        );
    });
}

#[test]
fn rejections_are_typed_and_a_fork_raises_an_event() {
    let w = wallet(4);
    let other = wallet(5);
    rt().block_on(async {
        let s = mem(&w.oplog, 1);
        // Foreign log: another wallet's entry.
        let o = mem(&other.oplog, 2);
        o.put("k", b"v".to_vec()).await.unwrap();
        let r = s.ingest(all_entries(&o).await).await.unwrap();
        assert!(
            matches!(r.rejected[..], [(0, Rejected::ForeignLog { .. })]),
            "{r:?}"
        );
        // Another wallet's key signing for our log id.
        let mut forged_keys = other.oplog.clone();
        forged_keys.log_id = w.oplog.log_id;
        let forged = Entry::seal(
            &LogKeys::new(&forged_keys).unwrap(),
            Draft {
                device: [3; 8],
                seq: 1,
                prev: None,
                ctx: vec![],
                clock: 1,
                wall_ms: 0,
            },
            &[Op {
                key: "k".into(),
                value: Some(b"evil".to_vec()),
            }],
        )
        .unwrap();
        // A bad signature: a valid entry with one signature byte changed.
        let a = mem(&w.oplog, 4);
        a.put("k", b"v".to_vec()).await.unwrap();
        let mut bad = entry::decode(&all_entries(&a).await[0]).unwrap();
        bad.sig[10] ^= 0x40;
        let r = s
            .ingest(vec![
                forged.encode(),
                bad.encode(),
                vec![0u8; MAX_ENTRY_BYTES + 1],
            ])
            .await
            .unwrap();
        assert!(
            matches!(r.rejected[0], (0, Rejected::WrongKey { .. })),
            "{r:?}"
        );
        assert!(
            matches!(r.rejected[1], (1, Rejected::BadSignature { .. })),
            "{r:?}"
        );
        assert!(
            matches!(r.rejected[2], (2, Rejected::TooLarge { .. })),
            "{r:?}"
        );
        assert!(r.applied.is_empty());
        assert_eq!(s.get("k").await.unwrap(), None);
        // Oversize writes are refused before they reach the log.
        let too_big = vec![0u8; sphere_profile::oplog::MAX_VALUE_BYTES + 1];
        assert!(matches!(
            s.put("big", too_big).await,
            Err(StoreError::Invalid(_))
        ));
        let too_many: Vec<(String, Vec<u8>)> = (0..=sphere_profile::oplog::MAX_OPS)
            .map(|i| (i.to_string(), vec![]))
            .collect();
        assert!(matches!(
            s.put_batch(too_many).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.ingest(vec![Vec::new(); sphere_profile::oplog::MAX_INGEST + 1])
                .await,
            Err(StoreError::IngestTooLarge { .. })
        ));
        // A fork: a cloned device writes a different seq 1.
        let twin1 = mem(&w.oplog, 6);
        let twin2 = mem(&w.oplog, 6);
        twin1.put("x", b"1".to_vec()).await.unwrap();
        twin2.put("x", b"2".to_vec()).await.unwrap();
        s.ingest(all_entries(&twin1).await).await.unwrap();
        let mut sub = s.subscribe();
        let r = s.ingest(all_entries(&twin2).await).await.unwrap();
        let Some((0, Rejected::Fork(f))) = r.rejected.first() else {
            panic!("{r:?}")
        };
        assert_eq!(f.seq, 1);
        assert_eq!(f.device, hex::encode([6u8; 8]));
        match sub.recv().await.unwrap() {
            Change::Fork(ev) => assert_eq!(*ev, **f),
            other => panic!("unexpected {other:?}"),
        }
        // The known entry stays.
        assert_eq!(s.get("x").await.unwrap(), Some(b"1".to_vec()));
        // Re-delivering the known entry is a duplicate, not a fork.
        let r = s.ingest(all_entries(&twin1).await).await.unwrap();
        assert_eq!((r.duplicates.len(), r.rejected.len()), (1, 0));
    });
}

#[test]
fn an_entry_whose_clock_does_not_count_up_is_refused_in_order_or_from_pending() {
    let w = wallet(4);
    let keys = LogKeys::new(&w.oplog).unwrap();
    let seal = |seq: u64, prev: Option<&Entry>, clock: u64, value: &[u8]| {
        Entry::seal(
            &keys,
            Draft {
                device: [7; 8],
                seq,
                prev: prev.map(Entry::id),
                ctx: vec![],
                clock,
                wall_ms: 0,
            },
            &[Op {
                key: "k".into(),
                value: Some(value.to_vec()),
            }],
        )
        .unwrap()
    };
    let first = seal(1, None, 5, b"first");
    let same_clock = seal(2, Some(&first), 5, b"same clock");
    let lower_clock = seal(2, Some(&first), 4, b"lower clock");
    let counted_up = seal(2, Some(&first), 6, b"counted up");
    rt().block_on(async {
        let s = mem(&w.oplog, 1);
        let r = s
            .ingest(vec![
                first.encode(),
                same_clock.encode(),
                lower_clock.encode(),
            ])
            .await
            .unwrap();
        assert_eq!(r.applied, vec![first.id()], "{r:?}");
        for (i, (at, why)) in r.rejected.iter().enumerate() {
            assert_eq!(*at, i + 1);
            let Rejected::ClockNotIncreasing {
                seq,
                clock,
                previous,
                ..
            } = why
            else {
                panic!("{r:?}")
            };
            assert_eq!((*seq, *previous), (2, 5));
            assert_eq!(*clock, [5, 4][i]);
        }
        assert_eq!(r.rejected.len(), 2);
        assert_eq!(s.get("k").await.unwrap(), Some(b"first".to_vec()));
        // The refusal leaves the chain open for a well-formed successor.
        let r = s.ingest(vec![counted_up.encode()]).await.unwrap();
        assert_eq!(r.applied, vec![counted_up.id()], "{r:?}");
        assert_eq!(s.get("k").await.unwrap(), Some(b"counted up".to_vec()));

        // Arriving before its predecessor, the bad entry waits in `pending` and is
        // refused (not applied) once the predecessor lands.
        let t = mem(&w.oplog, 2);
        let r = t.ingest(vec![same_clock.encode()]).await.unwrap();
        assert_eq!(r.pending, vec![same_clock.id()], "{r:?}");
        let r = t.ingest(vec![first.encode()]).await.unwrap();
        assert_eq!(r.applied, vec![first.id()], "{r:?}");
        assert_eq!(t.get("k").await.unwrap(), Some(b"first".to_vec()));
        assert_eq!(t.version_vector().await.unwrap().get(&[7; 8]), 1);
    });
}

#[test]
fn snapshot_round_trip_and_pruning_of_entries_every_device_passed() {
    let w = wallet(6);
    rt().block_on(async {
        let a = mem(&w.oplog, 1);
        let b = mem(&w.oplog, 2);
        for i in 0..5u8 {
            a.put(format!("a{i}"), vec![i]).await.unwrap();
            b.put(format!("b{i}"), vec![i]).await.unwrap();
        }
        a.delete("a0").await.unwrap();
        // Exchange, then each writes once more so its causal context tells the other
        // what it has passed.
        let ea = all_entries(&a).await;
        b.ingest(ea).await.unwrap();
        a.ingest(all_entries(&b).await).await.unwrap();
        b.put("b-after", b"x".to_vec()).await.unwrap();
        a.put("a-after", b"y".to_vec()).await.unwrap();
        a.ingest(all_entries(&b).await).await.unwrap();
        let before = a.state_digest().await.unwrap();
        let removed = a.prune().await.unwrap();
        // A's entries 1..=6 were declared seen by B (its last entry's context); A's
        // seq 7 is not yet. B's 1..=6 are all here, and A and B are the only devices.
        assert_eq!(removed, 6 + 6);
        assert_eq!(a.state_digest().await.unwrap(), before);
        assert_eq!(a.get("a3").await.unwrap(), Some(vec![3]));
        assert_eq!(a.get("a0").await.unwrap(), None);
        assert!(matches!(
            a.entries_since(&VersionVector::default(), 100).await,
            Err(StoreError::Pruned { .. })
        ));
        // A snapshot moves the state to a new device, sealed under the wallet key.
        let sealed = a.export_snapshot().await.unwrap().seal(a.keys());
        let c = mem(&w.oplog, 3);
        let snap = Snapshot::open(&sealed, c.keys()).unwrap();
        c.import_snapshot(snap).await.unwrap();
        assert_eq!(c.state_digest().await.unwrap(), before);
        assert_eq!(
            c.version_vector().await.unwrap(),
            a.version_vector().await.unwrap()
        );
        // Live entries continue after the snapshot.
        let vv = c.version_vector().await.unwrap();
        a.put("later", b"z".to_vec()).await.unwrap();
        let page = a.entries_since(&vv, 100).await.unwrap();
        assert_eq!(page.entries.len(), 1);
        let r = c.ingest(page.entries).await.unwrap();
        assert_eq!(r.applied.len(), 1);
        assert_eq!(
            c.state_digest().await.unwrap(),
            a.state_digest().await.unwrap()
        );
        // Another wallet cannot open it.
        let stranger = mem(&wallet(7).oplog, 4);
        assert!(Snapshot::open(&sealed, stranger.keys()).is_err());
    });
}

#[test]
fn entries_since_pages_in_device_and_sequence_order() {
    let w = wallet(8);
    rt().block_on(async {
        let a = mem(&w.oplog, 1);
        let b = mem(&w.oplog, 2);
        for i in 0..30u32 {
            a.put(format!("a{i}"), vec![1]).await.unwrap();
        }
        for i in 0..20u32 {
            b.put(format!("b{i}"), vec![2]).await.unwrap();
        }
        a.ingest(all_entries(&b).await).await.unwrap();
        let mut vv = VersionVector::default();
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = a.entries_since(&vv, 7).await.unwrap();
            assert!(page.entries.len() <= 7);
            pages += 1;
            for e in &page.entries {
                let e = entry::decode(e).unwrap();
                vv.advance(e.device, e.seq);
                seen.push((e.device, e.seq));
            }
            if !page.more {
                break;
            }
        }
        assert_eq!(seen.len(), 50);
        assert!(pages >= 8);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(vv, a.version_vector().await.unwrap());
    });
}

#[test]
fn file_and_memory_stores_behave_alike() {
    let w = wallet(9);
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let file = Store::open(
            &dir.path().join("p.db"),
            &w.oplog,
            [1; 8],
            StoreConfig::default(),
        )
        .unwrap();
        for s in [mem(&w.oplog, 1), file] {
            let mut sub = s.subscribe();
            s.put("a.1", b"x".to_vec()).await.unwrap();
            s.put_batch([("a.2", b"y".to_vec()), ("b.1", b"z".to_vec())])
                .await
                .unwrap();
            s.write(vec![
                Op {
                    key: "a.3".into(),
                    value: Some(b"first".to_vec()),
                },
                Op {
                    key: "a.3".into(),
                    value: Some(b"second".to_vec()),
                },
            ])
            .await
            .unwrap();
            s.delete("a.1").await.unwrap();
            assert_eq!(s.get("a.1").await.unwrap(), None);
            assert_eq!(s.get("a.3").await.unwrap(), Some(b"second".to_vec()));
            assert_eq!(
                s.scan("a.").await.unwrap(),
                vec![
                    ("a.2".to_owned(), b"y".to_vec()),
                    ("a.3".to_owned(), b"second".to_vec())
                ]
            );
            assert_eq!(s.scan_page("", Some("a.2"), 1).await.unwrap().len(), 1);
            let mut n = 0;
            while let Ok(Change::Entry(c)) = sub.try_recv() {
                assert!(!c.bytes.is_empty());
                n += 1;
            }
            assert_eq!(n, 4);
            // Concurrent writers share entries (group commit) and all land.
            let mut tasks = Vec::new();
            for t in 0..16 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..20 {
                        s.put(format!("c/{t}/{i}"), vec![t]).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(s.scan("c/").await.unwrap().len(), 320);
            assert!(s.integrity_check().await.unwrap().is_empty());
        }
    });
}

/// Writers lead their own group commits on the runtime's threads while the store
/// thread applies another device's pages: writes that meet a busy connection hand
/// the lead to the store thread. Everything lands, in gapless entries whose content
/// is exactly the state, and the file reopens clean.
#[test]
fn concurrent_writers_and_ingest_share_the_connection_and_lose_nothing() {
    let w = wallet(11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Another device's 600 entries, to ingest in pages meanwhile.
        let other = mem(&w.oplog, 2);
        for i in 0..600 {
            other.put(format!("o/{i:04}"), vec![2; 45]).await.unwrap();
        }
        let theirs = all_entries(&other).await;

        let s = Store::open(&path, &w.oplog, [1; 8], StoreConfig::default()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..100 {
                    let written = s
                        .put(format!("w/{t:02}/{i:03}"), vec![t; 45])
                        .await
                        .unwrap();
                    seqs.push(written.seq);
                }
                seqs
            }));
        }
        let ingester = {
            let s = s.clone();
            tokio::spawn(async move {
                for page in theirs.chunks(50) {
                    let report = s.ingest(page.to_vec()).await.unwrap();
                    assert_eq!(report.applied.len(), page.len());
                }
            })
        };
        for t in tasks {
            let seqs = t.await.unwrap();
            assert!(
                seqs.windows(2).all(|p| p[0] < p[1]),
                "one writer's puts commit in order"
            );
        }
        ingester.await.unwrap();

        let entries = all_entries(&s).await;
        let mine: Vec<Entry> = entries
            .iter()
            .map(|b| entry::decode(b).unwrap())
            .filter(|e| e.device == [1; 8])
            .collect();
        let seqs: Vec<u64> = mine.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=mine.len() as u64).collect::<Vec<_>>(), "gapless");
        assert!(mine.len() < 1600, "some writes shared an entry");
        let vv = s.version_vector().await.unwrap();
        assert_eq!(vv.get(&[2; 8]), 600);
        assert_eq!(vv.get(&[1; 8]), mine.len() as u64);

        let keys: Vec<String> = model(&w.oplog, &entries).into_keys().collect();
        assert_eq!(keys.len(), 1600 + 600);
        assert_eq!(state(&s, &keys).await, model(&w.oplog, &entries));
        assert!(s.integrity_check().await.unwrap().is_empty());
        drop(s);

        let reopened = Store::open(&path, &w.oplog, [1; 8], StoreConfig::default()).unwrap();
        assert_eq!(reopened.version_vector().await.unwrap(), vv);
        assert_eq!(reopened.scan("w/").await.unwrap().len(), 1600);
        assert!(reopened.integrity_check().await.unwrap().is_empty());
    });
}
