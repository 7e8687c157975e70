//! Publish and discovery against the embedded aggregator over loopback HTTP:
//! round trip between two devices, a lying aggregator, two devices racing for one
//! version, and a crash between the two side submissions.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use k256::ecdsa::SigningKey;
use multihash_codetable::{Code, MultihashDigest};
use sphere_pointer::client::{AggregatorClient, ClientConfig};
use sphere_pointer::error::{DecodeError, DiscoverError, PublishError, VerifyError};
use sphere_pointer::server::{AggregatorConfig, AggregatorServer, Fault};
use sphere_pointer::state::PointerState;
use sphere_pointer::{Pointer, PointerConfig, Side};
use sphere_profile::keys::PointerSeeds;
use sphere_profile::secret::Secret32;

const LOOPBACK: &str = "127.0.0.1:0";

async fn server() -> AggregatorServer {
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let addr: SocketAddr = LOOPBACK.parse().unwrap();
    AggregatorServer::start_in_memory(
        key,
        addr,
        AggregatorConfig::default().with_round_interval(Duration::from_millis(30)),
    )
    .await
    .unwrap()
}

pub(crate) fn seeds(tag: u8) -> PointerSeeds {
    PointerSeeds::derive(&Secret32::new([tag; 32]))
}

fn device(srv: &AggregatorServer, tag: u8, state: PointerState) -> Pointer {
    device_with(srv, tag, state, PointerConfig::default())
}

/// A device of wallet `tag` on `srv`, with test-sized back-off, confirmation timeout
/// and first probe.
pub(crate) fn device_with(
    srv: &AggregatorServer,
    tag: u8,
    state: PointerState,
    config: PointerConfig,
) -> Pointer {
    let client = AggregatorClient::new(
        &srv.url(),
        ClientConfig::default().with_backoff(Duration::from_millis(10), Duration::from_millis(100)),
    )
    .unwrap();
    Pointer::new(
        &seeds(tag),
        client,
        srv.trust_base().clone(),
        state,
        config
            .with_confirm_timeout(Duration::from_secs(20))
            .with_initial_probe(16),
    )
    .unwrap()
}

fn cid(n: u32) -> Cid {
    Cid::new_v1(0x71, Code::Sha2_256.digest(&n.to_be_bytes()))
}

#[tokio::test]
async fn a_second_device_discovers_what_the_first_published() {
    let srv = server().await;
    let d1 = device(&srv, 1, PointerState::in_memory().unwrap());
    assert_eq!(d1.discover().await.unwrap().cid, None);
    for n in 1..=3 {
        let p = d1.publish(&cid(n)).await.unwrap();
        assert_eq!(p.version, n);
    }
    let d2 = device(&srv, 1, PointerState::in_memory().unwrap());
    let found = d2.discover().await.unwrap();
    assert_eq!((found.valid_version, found.cid), (3, Some(cid(3))));
    // The second device continues the chain.
    assert_eq!(d2.publish(&cid(4)).await.unwrap().version, 4);
    let again = d1.discover().await.unwrap();
    assert_eq!(again.cid, Some(cid(4)));
    // Another wallet sees nothing.
    let other = device(&srv, 2, PointerState::in_memory().unwrap());
    assert_eq!(other.discover().await.unwrap().cid, None);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_cid_discovery_could_not_read_back_is_refused_before_any_version_is_used() {
    let srv = server().await;
    let d1 = device(&srv, 4, PointerState::in_memory().unwrap());
    let identity: Cid = "bafkqaaa".parse().unwrap();
    let sha512 = Cid::new_v1(0x71, Code::Sha2_512.digest(b"x"));
    for bad in [identity, sha512] {
        let err = d1.publish(&bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                PublishError::Cid(DecodeError::UnsupportedHash(_) | DecodeError::CidTooLarge(_))
            ),
            "{bad}: {err:?}"
        );
    }
    // No version was burnt: the first good publish is version 1, and a second
    // device finds it.
    assert_eq!(d1.publish(&cid(1)).await.unwrap().version, 1);
    let d2 = device(&srv, 4, PointerState::in_memory().unwrap());
    assert_eq!(d2.discover().await.unwrap().cid, Some(cid(1)));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_lying_aggregator_is_never_believed() {
    let srv = server().await;
    let d1 = device(&srv, 3, PointerState::in_memory().unwrap());
    d1.publish(&cid(7)).await.unwrap();
    let a = d1.keys().state_id(Side::A, 1);
    let b = d1.keys().state_id(Side::B, 1);
    type Expect = fn(&VerifyError) -> bool;
    let cases: Vec<(Fault, Expect)> = vec![
        (Fault::WrongPath, |e| matches!(e, VerifyError::PathInvalid)),
        (Fault::WrongRoot, |e| matches!(e, VerifyError::PathInvalid)),
        (Fault::BadSeal, |e| matches!(e, VerifyError::Untrusted(_))),
        (Fault::Swap(vec![(a, b), (b, a)]), |e| {
            matches!(e, VerifyError::CertificationDataMismatch)
        }),
    ];
    for (fault, expected) in cases {
        srv.with_core(|c| c.set_fault(Some(fault.clone())));
        let fresh = device(&srv, 3, PointerState::in_memory().unwrap());
        match fresh.discover().await {
            Err(DiscoverError::Untrusted { source, .. }) => {
                assert!(expected(&source), "{fault:?}: {source:?}");
            }
            other => panic!("{fault:?} was believed: {other:?}"),
        }
        // The lie leaves the device blocked from publishing (it cannot know the
        // latest version).
        assert!(matches!(
            fresh.publish(&cid(8)).await,
            Err(PublishError::Blocked { .. })
        ));
    }
    srv.with_core(|c| c.set_fault(None));
    let fresh = device(&srv, 3, PointerState::in_memory().unwrap());
    assert_eq!(fresh.discover().await.unwrap().cid, Some(cid(7)));
    srv.shutdown().await;
}

#[tokio::test]
async fn two_devices_racing_for_a_version_end_consistent() {
    let srv = server().await;
    let d1 = Arc::new(device(&srv, 4, PointerState::in_memory().unwrap()));
    let d2 = Arc::new(device(&srv, 4, PointerState::in_memory().unwrap()));
    // Both believe version 1 is next and publish different CIDs at once.
    let (r1, r2) = tokio::join!(
        {
            let d = d1.clone();
            async move { d.publish(&cid(100)).await }
        },
        {
            let d = d2.clone();
            async move { d.publish(&cid(200)).await }
        }
    );
    let (p1, p2) = (r1.unwrap(), r2.unwrap());
    assert_ne!(p1.version, p2.version, "one version cannot hold both CIDs");
    assert!(
        p1.conflicts + p2.conflicts >= 1,
        "someone must have lost a race"
    );
    let latest = p1.version.max(p2.version);
    let winner_cid = if p1.version > p2.version {
        cid(100)
    } else {
        cid(200)
    };
    for d in [&d1, &d2] {
        let found = d.discover().await.unwrap();
        assert_eq!((found.valid_version, found.cid), (latest, Some(winner_cid)));
    }
    let fresh = device(&srv, 4, PointerState::in_memory().unwrap());
    assert_eq!(fresh.discover().await.unwrap().cid, Some(winner_cid));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_crash_between_the_two_sides_is_recovered_on_restart() {
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pointer.db");
    {
        let d = device(&srv, 5, PointerState::open(&db).unwrap());
        d.publish(&cid(1)).await.unwrap();
        // Crash: marker written, side A submitted, side B never sent.
        assert_eq!(d.begin_and_submit_side_a_only(&cid(2)).await.unwrap(), 2);
    }
    // Version 2 has side A only: not valid, so discovery still returns version 1.
    let probe = device(&srv, 5, PointerState::in_memory().unwrap());
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let d = probe.discover().await.unwrap();
            if d.included_version == 2 {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!((seen.valid_version, seen.cid), (1, Some(cid(1))));

    // Restart with the same state file; publishing the same CID resumes version 2
    // with identical bytes (side A answers STATE_ID_EXISTS, B is new).
    let d = device(&srv, 5, PointerState::open(&db).unwrap());
    assert_eq!(d.local_state().unwrap().marker.unwrap().version, 2);
    assert_eq!(d.publish(&cid(2)).await.unwrap().version, 2);
    assert_eq!(d.local_state().unwrap().marker, None);
    assert_eq!(probe.discover().await.unwrap().cid, Some(cid(2)));

    // A crash followed by a publish of ANOTHER CID never reuses the version's pad:
    // the interrupted CID is finished at 3, the new one goes to 4.
    d.begin_and_submit_side_a_only(&cid(3)).await.unwrap();
    assert_eq!(d.publish(&cid(4)).await.unwrap().version, 4);
    let found = probe.discover().await.unwrap();
    assert_eq!((found.valid_version, found.cid), (4, Some(cid(4))));
    assert!(found.skipped.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn busy_answers_are_retried_without_losing_the_version() {
    let srv = server().await;
    let d = device(&srv, 6, PointerState::in_memory().unwrap());
    srv.set_busy(3);
    assert_eq!(d.publish(&cid(9)).await.unwrap().version, 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_and_unavailable_content_in_the_walk_back() {
    use sphere_pointer::pointer::{ContentCheck, ContentStatus};
    let srv = server().await;
    let d = device(&srv, 7, PointerState::in_memory().unwrap());
    for n in 1..=3 {
        d.publish(&cid(n)).await.unwrap();
    }
    // Version 3's content is invalid: discovery walks back to 2 and says why.
    let bad = cid(3);
    let check: ContentCheck = Arc::new(move |c| {
        Box::pin(async move {
            if c == bad {
                ContentStatus::Invalid
            } else {
                ContentStatus::Valid
            }
        })
    });
    let fresh = device(&srv, 7, PointerState::in_memory().unwrap()).with_content_check(check);
    let found = fresh.discover().await.unwrap();
    assert_eq!((found.valid_version, found.cid), (2, Some(cid(2))));
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(found.skipped[0].0, 3);

    // Unavailable content stops discovery (CAR_UNAVAILABLE) when not skipping, and
    // the local version does not advance.
    let gone: ContentCheck = Arc::new(|_| Box::pin(async { ContentStatus::Unavailable }));
    let client = AggregatorClient::new(&srv.url(), ClientConfig::default()).unwrap();
    let strict = Pointer::new(
        &seeds(7),
        client,
        srv.trust_base().clone(),
        PointerState::in_memory().unwrap(),
        PointerConfig::default()
            .with_initial_probe(16)
            .with_skip_unavailable(false),
    )
    .unwrap()
    .with_content_check(gone);
    assert!(matches!(
        strict.discover().await,
        Err(DiscoverError::ContentUnavailable { version: 3 })
    ));
    assert_eq!(strict.local_state().unwrap().local_version, 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn unreachable_aggregator_blocks_publishing_until_a_discovery_succeeds() {
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pointer.db");
    // A port nobody listens on: bind, read the port, close.
    let dead = {
        let l = std::net::TcpListener::bind(LOOPBACK).unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let client = AggregatorClient::new(
        &dead,
        ClientConfig::default()
            .with_attempts(2)
            .with_backoff(Duration::from_millis(5), Duration::from_millis(10)),
    )
    .unwrap();
    let offline = Pointer::new(
        &seeds(8),
        client,
        srv.trust_base().clone(),
        PointerState::open(&db).unwrap(),
        PointerConfig::default(),
    )
    .unwrap();
    assert!(matches!(
        offline.discover().await,
        Err(DiscoverError::ProofUnavailable { .. })
    ));
    assert_eq!(
        offline.local_state().unwrap().blocked.as_deref(),
        Some("network_timeout")
    );
    // Publishing first retries discovery; still unreachable, so nothing is sent.
    assert!(offline.publish(&cid(1)).await.is_err());
    assert_eq!(offline.local_state().unwrap().marker, None);
    drop(offline);

    // Reachable again: the transient block clears and the publish goes through.
    let online = device(&srv, 8, PointerState::open(&db).unwrap());
    assert_eq!(online.publish(&cid(1)).await.unwrap().version, 1);
    assert_eq!(online.local_state().unwrap().blocked, None);

    // A permanent reason (here: a lying aggregator) needs the operator.
    online.clear_blocked().unwrap();
    srv.with_core(|c| c.set_fault(Some(Fault::BadSeal)));
    assert!(online.discover().await.is_err());
    srv.with_core(|c| c.set_fault(None));
    assert!(matches!(
        online.publish(&cid(2)).await,
        Err(PublishError::Blocked { .. })
    ));
    online.clear_blocked().unwrap();
    assert_eq!(online.publish(&cid(2)).await.unwrap().version, 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn the_profile_anchors_through_the_pointer() {
    use sphere_profile::Anchor;
    let srv = server().await;
    let d = device(&srv, 9, PointerState::in_memory().unwrap());
    assert_eq!(Anchor::latest(&d).await.unwrap(), None);
    Anchor::publish(&d, cid(41)).await.unwrap();
    Anchor::publish(&d, cid(42)).await.unwrap();
    let other = device(&srv, 9, PointerState::in_memory().unwrap());
    assert_eq!(Anchor::latest(&other).await.unwrap(), Some(cid(42)));
    srv.shutdown().await;
}

#[tokio::test]
async fn an_aggregator_hiding_versions_cannot_roll_a_device_back() {
    let srv = server().await;
    let d = device(&srv, 10, PointerState::in_memory().unwrap());
    d.publish(&cid(1)).await.unwrap();
    d.publish(&cid(2)).await.unwrap();
    srv.with_core(|c| c.set_fault(Some(Fault::HideLeaves)));
    // A fresh device cannot tell (v2 has no exclusion proofs) and sees nothing…
    let fresh = device(&srv, 10, PointerState::in_memory().unwrap());
    assert_eq!(fresh.discover().await.unwrap().cid, None);
    // …but the device that committed version 2 refuses to walk below it.
    assert!(matches!(
        d.discover().await,
        Err(DiscoverError::WalkbackFloor { local: 2 })
    ));
    assert_eq!(d.local_state().unwrap().local_version, 2);
    srv.with_core(|c| c.set_fault(None));
    assert_eq!(d.discover().await.unwrap().cid, Some(cid(2)));
    srv.shutdown().await;
}

#[tokio::test]
async fn publish_and_discovery_report_events() {
    use sphere_pointer::events::{EVENT_CHANNEL_CAP, PointerEvent};
    let srv = server().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL_CAP);
    let d = device(&srv, 11, PointerState::in_memory().unwrap()).with_events(tx);
    d.publish(&cid(5)).await.unwrap();
    d.discover().await.unwrap();
    drop(d);
    let mut seen = Vec::new();
    while let Some(e) = rx.recv().await {
        seen.push(e);
    }
    assert!(seen.contains(&PointerEvent::PublishStarted { version: 1 }));
    assert!(seen.contains(&PointerEvent::PublishConfirmed { version: 1 }));
    assert!(seen.iter().any(|e| matches!(e, PointerEvent::SideSubmitted { version: 1, status, .. } if status == "SUCCESS")));
    assert!(seen.contains(&PointerEvent::Discovered {
        valid_version: 1,
        included_version: 1
    }));
    assert!(
        seen.iter()
            .any(|e| matches!(e, PointerEvent::Probe { included: true, .. }))
    );
    srv.shutdown().await;
}

/// A loopback HTTP "server" that answers every connection with `reply` (or never
/// answers when `reply` is `None`), counting connections.
async fn raw_server(reply: Option<&'static str>) -> (String, Arc<std::sync::atomic::AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                match reply {
                    Some(body) => {
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    None => {
                        // Hold the connection open without answering until the peer gives up.
                        let _ = sock.read(&mut buf).await;
                    }
                }
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn the_client_times_out_retries_and_fails_closed_on_garbage() {
    use sphere_pointer::error::RpcError;
    let (silent, _) = raw_server(None).await;
    let client = AggregatorClient::new(
        &silent,
        ClientConfig::default()
            .with_probe_timeout(Duration::from_millis(200))
            .with_attempts(3)
            .with_backoff(Duration::from_millis(5), Duration::from_millis(10)),
    )
    .unwrap();
    match client.inclusion_proof(&[0u8; 32]).await {
        Err(e @ RpcError::Network(_)) => assert!(e.is_transient()),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(client.rpc_count(), 3, "every attempt is made");

    let (garbage, hits) = raw_server(Some(
        "{\"jsonrpc\":\"2.0\",\"result\":\"zz\",\"id\":\"wrong\"}",
    ))
    .await;
    let client = AggregatorClient::new(&garbage, ClientConfig::default()).unwrap();
    assert!(matches!(
        client.inclusion_proof(&[0u8; 32]).await,
        Err(RpcError::Protocol(_))
    ));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a protocol error is not retried"
    );
}
