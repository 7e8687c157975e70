//! Discovery that checks the content (spec §5.2, §10): the pointer's content check
//! is the verified IPFS client fetching the snapshot CAR from real gateways on
//! loopback (the embedded gateway, and a lying one), against the embedded
//! aggregator. Covers walk-back past unfetchable versions, CAR_UNAVAILABLE and the
//! publish refusal it causes, and the operator overrides with an injected clock.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::pointer_flow::device_with;
use axum::Router;
use axum::http::header;
use cid::Cid;
use k256::ecdsa::SigningKey;
use sphere_pointer::error::{DiscoverError, OverrideError, PublishError};
use sphere_pointer::events::{EVENT_CHANNEL_CAP, PointerEvent};
use sphere_pointer::pointer::{
    CAR_LOSS_MIN_ATTEMPTS, ContentCheck, ContentStatus, WALKBACK_HARD_CEILING,
};
use sphere_pointer::server::{AggregatorConfig, AggregatorServer};
use sphere_pointer::state::PointerState;
use sphere_pointer::{Clock, Pointer, PointerConfig};
use sphere_profile::ipfs::block::RAW;
use sphere_profile::ipfs::server::RunningGateway;
use sphere_profile::ipfs::{
    BlockCache, Car, CarLimits, FailureCause, GatewayConfig, GatewayUrl, IpfsClient, VerifiedBlock,
};
use tokio::sync::mpsc;

async fn aggregator() -> AggregatorServer {
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    AggregatorServer::start_in_memory(
        key,
        addr,
        AggregatorConfig::default().with_round_interval(Duration::from_millis(30)),
    )
    .await
    .unwrap()
}

async fn gateway() -> RunningGateway {
    RunningGateway::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(BlockCache::in_memory().unwrap()),
        CarLimits::default(),
    )
    .await
    .unwrap()
}

/// A small snapshot stand-in: one raw block whose bytes name `tag`.
fn snapshot(tag: &str) -> Car {
    let b = VerifiedBlock::from_data(RAW, format!("snapshot {tag}").into_bytes()).unwrap();
    let root = *b.cid();
    Car::from_blocks(root, vec![b], &CarLimits::default()).unwrap()
}

fn ipfs(urls: &[String]) -> IpfsClient {
    IpfsClient::new(
        GatewayConfig::default()
            .with_gateways(urls.iter().map(|u| GatewayUrl::parse(u).unwrap()).collect())
            .with_max_attempts(1)
            .with_first_byte_timeout(Duration::from_secs(5))
            .with_total_budget(Duration::from_secs(20)),
    )
    .unwrap()
}

/// The content check the CLI builds: the CAR fetches with every block verified.
fn car_check(client: IpfsClient) -> ContentCheck {
    Arc::new(move |cid: Cid| {
        let client = client.clone();
        Box::pin(async move {
            match client.fetch_car(&cid).await {
                Ok(_) => ContentStatus::Valid,
                Err(_) => ContentStatus::Unavailable,
            }
        })
    })
}

fn device(agg: &AggregatorServer, tag: u8, config: PointerConfig) -> Pointer {
    device_with(agg, tag, PointerState::in_memory().unwrap(), config)
}

fn drain(mut rx: mpsc::Receiver<PointerEvent>) -> Vec<PointerEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// Answers every request with `body`, whatever the endpoint (a lying gateway).
async fn serve_bytes(body: Vec<u8>) -> String {
    let body = Arc::new(body);
    let router = Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/vnd.ipld.car")],
                body.as_ref().clone(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/")
}

#[tokio::test]
async fn discovery_fetches_the_car_and_walks_back_past_unfetchable_versions() {
    let agg = aggregator().await;
    let gw = gateway().await;
    let pin = ipfs(&[gw.url()]);
    let writer = device(&agg, 21, PointerConfig::default());
    let (s1, s2) = (snapshot("one"), snapshot("two"));
    pin.pin_car(&s1).await.unwrap();
    writer.publish(s1.root()).await.unwrap();
    // Version 2's CAR is on no gateway.
    writer.publish(s2.root()).await.unwrap();

    let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAP);
    let reader = device(&agg, 21, PointerConfig::default())
        .with_content_check(car_check(ipfs(&[gw.url()])))
        .with_events(tx);
    let d = reader.discover().await.unwrap();
    assert_eq!((d.valid_version, d.cid), (1, Some(*s1.root())));
    assert_eq!(d.included_version, 2);
    assert!(d.content_checked);
    assert_eq!(d.skipped, vec![(2, "CAR unavailable".to_owned())]);
    assert!(
        drain(rx).contains(&PointerEvent::VersionSkippedUnfetchable {
            version: 2,
            attempts: 1
        })
    );
    // A fetchable version was found: not CAR_UNAVAILABLE, publishing is allowed.
    assert_eq!(reader.local_state().unwrap().car_unavailable, None);
    assert_eq!(reader.local_state().unwrap().local_version, 1);

    // Once the CAR is pinned, version 2 is the answer.
    pin.pin_car(&s2).await.unwrap();
    let d = reader.discover().await.unwrap();
    assert_eq!((d.valid_version, d.cid), (2, Some(*s2.root())));
    agg.shutdown().await;
}

#[tokio::test]
async fn no_fetchable_version_is_car_unavailable_and_refuses_publishing() {
    let agg = aggregator().await;
    let gw = gateway().await;
    let pin = ipfs(&[gw.url()]);
    let writer = device(&agg, 22, PointerConfig::default());
    let (s1, s2) = (snapshot("lost one"), snapshot("lost two"));
    writer.publish(s1.root()).await.unwrap();
    writer.publish(s2.root()).await.unwrap();

    let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAP);
    let reader = device(&agg, 22, PointerConfig::default())
        .with_content_check(car_check(ipfs(&[gw.url()])))
        .with_events(tx);
    assert!(matches!(
        reader.discover().await,
        Err(DiscoverError::ContentUnavailable { version: 2 })
    ));
    let st = reader.local_state().unwrap();
    assert_eq!((st.local_version, st.car_unavailable), (0, Some(2)));
    let events = drain(rx);
    assert!(events.contains(&PointerEvent::CarUnavailable { version: 2 }));
    assert!(events.iter().any(|e| matches!(
        e,
        PointerEvent::VersionSkippedUnfetchable { version: 1, .. }
    )));
    // Publishing now could bury a snapshot nobody has seen: refused, nothing sent.
    let mine = snapshot("reader's state");
    assert!(matches!(
        reader.publish(mine.root()).await,
        Err(PublishError::CarUnavailable { version: 2 })
    ));
    assert_eq!(reader.local_state().unwrap().marker, None);
    // A later discovery that fetches the CAR lifts it.
    pin.pin_car(&s2).await.unwrap();
    assert_eq!(reader.discover().await.unwrap().valid_version, 2);
    assert_eq!(reader.local_state().unwrap().car_unavailable, None);
    assert_eq!(reader.publish(mine.root()).await.unwrap().version, 3);
    // Its own version 3's CAR was never pinned: walking below its own commit
    // only because CARs are missing is CAR_UNAVAILABLE, not WALKBACK_FLOOR.
    assert!(matches!(
        reader.discover().await,
        Err(DiscoverError::ContentUnavailable { version: 3 })
    ));
    assert_eq!(reader.local_state().unwrap().local_version, 3);
    agg.shutdown().await;
}

#[tokio::test]
async fn a_gateway_serving_tampered_bytes_is_not_believed() {
    let agg = aggregator().await;
    let gw = gateway().await;
    let s1 = snapshot("genuine");
    ipfs(&[gw.url()]).pin_car(&s1).await.unwrap();
    let writer = device(&agg, 23, PointerConfig::default());
    writer.publish(s1.root()).await.unwrap();
    let mut bad = s1.encode();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let liar = serve_bytes(bad).await;

    // Only the liar: its bytes do not hash to the CID, so the CAR is unavailable.
    let fooled = device(&agg, 23, PointerConfig::default())
        .with_content_check(car_check(ipfs(std::slice::from_ref(&liar))));
    assert!(matches!(
        fooled.discover().await,
        Err(DiscoverError::ContentUnavailable { version: 1 })
    ));
    // Liar first, honest second: the liar is skipped (and named), the CAR verifies.
    let both = ipfs(&[liar.clone(), gw.url()]);
    let fetched = both.fetch_car(s1.root()).await.unwrap();
    assert_eq!(fetched.car.encode(), s1.encode());
    assert!(matches!(
        fetched.failures[0].cause,
        FailureCause::Tampered(_)
    ));
    let reader = device(&agg, 23, PointerConfig::default()).with_content_check(car_check(both));
    assert_eq!(reader.discover().await.unwrap().cid, Some(*s1.root()));
    agg.shutdown().await;
}

#[tokio::test]
async fn car_loss_is_accepted_only_after_twelve_attempts_over_a_day() {
    let agg = aggregator().await;
    let gw = gateway().await;
    let pin = ipfs(&[gw.url()]);
    let writer = device(&agg, 24, PointerConfig::default());
    let lost = snapshot("never pinned");
    writer.publish(lost.root()).await.unwrap();

    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::Relaxed))
    };
    let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAP);
    let operator = device(
        &agg,
        24,
        PointerConfig::default()
            .with_operator_overrides(true)
            .with_clock(clock),
    )
    .with_content_check(car_check(ipfs(&[gw.url()])))
    .with_events(tx);
    let mine = snapshot("operator's state");
    pin.pin_car(&mine).await.unwrap();

    // Each failed discovery records one attempt; 2 h 10 min apart. Twelve of
    // them span only 11 × 2 h 10 min < 24 h: still refused at the twelfth.
    let step = 2 * 3600 + 600;
    for n in 1..=CAR_LOSS_MIN_ATTEMPTS {
        assert!(matches!(
            operator.discover().await,
            Err(DiscoverError::ContentUnavailable { version: 1 })
        ));
        match operator.accept_car_loss(1, mine.root()).await {
            Err(OverrideError::CarLossNotPersistent {
                attempts,
                span_secs,
                ..
            }) => assert_eq!((attempts, span_secs), (n, u64::from(n - 1) * step)),
            other => panic!("accepted too early after {n} discoveries: {other:?}"),
        }
        assert_eq!(operator.local_state().unwrap().car_unavailable, Some(1));
        now.fetch_add(step, Ordering::Relaxed);
    }
    assert!(matches!(
        operator.publish(mine.root()).await,
        Err(PublishError::CarUnavailable { version: 1 })
    ));
    // A thirteenth failure, past 24 h: accepted, and the local state is
    // republished at max(local 0, lost 1) + 1 before anything advances.
    assert!(operator.discover().await.is_err());
    let republished = operator.accept_car_loss(1, mine.root()).await.unwrap();
    assert_eq!(republished.version, 2);
    let st = operator.local_state().unwrap();
    assert_eq!(
        (st.local_version, st.car_unavailable, st.local_cid),
        (2, None, Some(mine.root().to_string()))
    );
    let events = drain(rx);
    assert!(events.contains(&PointerEvent::CarLossAccepted {
        version: 1,
        republished_at: 2
    }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PointerEvent::CarLossPending { version: 1, .. }))
    );
    // A third device finds the republished state and fetches it.
    let third =
        device(&agg, 24, PointerConfig::default()).with_content_check(car_check(ipfs(&[gw.url()])));
    let d = third.discover().await.unwrap();
    assert_eq!((d.valid_version, d.cid), (2, Some(*mine.root())));
    agg.shutdown().await;
}

#[tokio::test]
async fn car_loss_is_not_accepted_when_the_car_turns_up() {
    let agg = aggregator().await;
    let gw = gateway().await;
    let pin = ipfs(&[gw.url()]);
    let writer = device(&agg, 25, PointerConfig::default());
    let late = snapshot("pinned late");
    writer.publish(late.root()).await.unwrap();
    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let clock = {
        let now = now.clone();
        Clock::from_fn(move || now.load(Ordering::Relaxed))
    };
    let operator = device(
        &agg,
        25,
        PointerConfig::default()
            .with_operator_overrides(true)
            .with_clock(clock),
    )
    .with_content_check(car_check(ipfs(&[gw.url()])));
    for _ in 0..CAR_LOSS_MIN_ATTEMPTS {
        assert!(operator.discover().await.is_err());
        now.fetch_add(3 * 3600, Ordering::Relaxed);
    }
    pin.pin_car(&late).await.unwrap();
    assert!(matches!(
        operator.accept_car_loss(1, late.root()).await,
        Err(OverrideError::CarAvailable { version: 1 })
    ));
    let st = operator.local_state().unwrap();
    assert_eq!((st.local_version, st.car_unavailable), (0, None));
    assert_eq!(operator.discover().await.unwrap().valid_version, 1);
    agg.shutdown().await;
}

#[tokio::test]
async fn corrupt_streak_override_applies_to_one_discovery_only() {
    let agg = aggregator().await;
    let gw = gateway().await;
    let pin = ipfs(&[gw.url()]);
    let writer = device(&agg, 26, PointerConfig::default());
    let good = snapshot("good");
    pin.pin_car(&good).await.unwrap();
    writer.publish(good.root()).await.unwrap();
    // Versions 2..=5 carry CIDs whose bytes are on the gateway but are not
    // snapshots of this wallet: the check below calls them invalid.
    let mut junk = Vec::new();
    for n in 0..4 {
        let s = snapshot(&format!("junk {n}"));
        pin.pin_car(&s).await.unwrap();
        writer.publish(s.root()).await.unwrap();
        junk.push(*s.root());
    }
    let fetch = ipfs(&[gw.url()]);
    let check: ContentCheck = Arc::new(move |cid: Cid| {
        let (fetch, junk) = (fetch.clone(), junk.clone());
        Box::pin(async move {
            match fetch.fetch_car(&cid).await {
                Ok(_) if junk.contains(&cid) => ContentStatus::Invalid,
                Ok(_) => ContentStatus::Valid,
                Err(_) => ContentStatus::Unavailable,
            }
        })
    });
    let strict = |overrides: bool| {
        device(
            &agg,
            26,
            PointerConfig::default()
                .with_walkback_limit(3)
                .with_operator_overrides(overrides),
        )
        .with_content_check(check.clone())
    };
    let denied = strict(false);
    assert!(matches!(
        denied.discover().await,
        Err(DiscoverError::CorruptStreak(3))
    ));
    assert!(matches!(
        denied.accept_corrupt_streak(Some(10)),
        Err(OverrideError::CapabilityDenied { .. })
    ));
    let op = strict(true);
    assert_eq!(op.accept_corrupt_streak(Some(10)).unwrap(), 10);
    let d = op.discover().await.unwrap();
    assert_eq!((d.valid_version, d.skipped.len()), (1, 4));
    // The override is spent: the next discovery stops at the configured limit.
    assert!(matches!(
        op.discover().await,
        Err(DiscoverError::CorruptStreak(3))
    ));
    assert_eq!(
        op.accept_corrupt_streak(None).unwrap(),
        WALKBACK_HARD_CEILING
    );
    agg.shutdown().await;
}
