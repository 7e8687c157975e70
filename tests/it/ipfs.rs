//! The gateway client against real HTTP servers on 127.0.0.1: the embedded gateway
//! (honest), and small axum servers that tamper, truncate, stall, stay silent or
//! stream without end. Checks failover order, the per-gateway failure report, the
//! typed errors, the size caps, the Kubo fallbacks, and the local cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sphere_profile::ipfs::block::{DAG_CBOR, RAW};
use sphere_profile::ipfs::server::RunningGateway;
use sphere_profile::ipfs::{
    BlockCache, Car, CarError, CarLimits, FailureCause, FetchError, GatewayConfig, GatewayUrl,
    IpfsClient, PinError, Source, VerifiedBlock,
};

// ------------------------------------------------------------------ fixtures

/// A dag-cbor block holding a CBOR array of links (hand-encoded).
fn links_block(cids: &[Vec<u8>]) -> VerifiedBlock {
    let mut out = vec![0x99];
    out.extend_from_slice(&u16::try_from(cids.len()).unwrap().to_be_bytes());
    for c in cids {
        out.extend_from_slice(&[0xd8, 0x2a, 0x58, u8::try_from(c.len() + 1).unwrap(), 0x00]);
        out.extend_from_slice(c);
    }
    VerifiedBlock::from_data(DAG_CBOR, out).unwrap()
}

/// Root → `n` raw leaves of `size` bytes (distinct contents).
pub(crate) fn sample_car(n: usize, size: usize) -> Car {
    let leaves: Vec<VerifiedBlock> = (0..n)
        .map(|i| {
            let mut data = vec![0u8; size];
            data[..8].copy_from_slice(&(i as u64).to_be_bytes());
            VerifiedBlock::from_data(RAW, data).unwrap()
        })
        .collect();
    let root = links_block(
        &leaves
            .iter()
            .map(|b| b.cid().to_bytes())
            .collect::<Vec<_>>(),
    );
    let root_cid = *root.cid();
    let mut blocks = vec![root];
    blocks.extend(leaves);
    Car::from_blocks(root_cid, blocks, &CarLimits::default()).unwrap()
}

pub(crate) fn gw(url: &str) -> GatewayUrl {
    GatewayUrl::parse(url).unwrap()
}

/// Short timeouts so that failing gateways fail fast.
fn fast_config() -> GatewayConfig {
    GatewayConfig::default()
        .with_first_byte_timeout(Duration::from_millis(800))
        .with_stall_timeout(Duration::from_millis(300))
        .with_total_budget(Duration::from_secs(20))
        .with_max_attempts(2)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(20))
}

/// An embedded gateway on loopback with an in-memory block store.
pub(crate) async fn honest() -> (RunningGateway, Arc<BlockCache>) {
    let store = Arc::new(BlockCache::in_memory().unwrap());
    let g = RunningGateway::start(
        "127.0.0.1:0".parse().unwrap(),
        store.clone(),
        CarLimits::default(),
    )
    .await
    .unwrap();
    (g, store)
}

/// Serves `router` on a free loopback port until the test ends.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/")
}

/// Answers every request with `body` (a CAR or a block), whatever the endpoint.
async fn serve_bytes(body: Vec<u8>) -> String {
    let body = Arc::new(body);
    serve(Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/vnd.ipld.car")],
                body.as_ref().clone(),
            )
        }
    }))
    .await
}

/// A CAR whose last block has one byte changed.
fn tampered(car: &Car) -> Vec<u8> {
    let mut bytes = car.encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    bytes
}

/// Sends the first `n` bytes of `body`, then nothing more, never ending.
async fn serve_stalling(body: Vec<u8>, n: usize) -> String {
    let first = body[..n].to_vec();
    serve(Router::new().fallback(move || {
        let first = first.clone();
        async move {
            let s = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                .chain(futures::stream::pending());
            Response::new(Body::from_stream(s))
        }
    }))
    .await
}

/// Never sends response headers.
async fn serve_silent() -> String {
    serve(Router::new().fallback(|| async {
        futures::future::pending::<()>().await;
        StatusCode::OK
    }))
    .await
}

use futures::StreamExt;

// ------------------------------------------------------------------ fetch

#[tokio::test]
async fn pin_then_fetch_through_the_embedded_gateway() {
    let (g, store) = honest().await;
    let car = sample_car(20, 4096);
    let client = IpfsClient::new(fast_config().with_gateway(gw(&g.url()))).unwrap();
    let pinned = client.pin_car(&car).await.unwrap();
    assert_eq!(pinned.root, *car.root());
    assert_eq!(pinned.endpoint, "dag/import");
    assert!(store.is_pinned(car.root()).unwrap());
    assert_eq!(store.len().unwrap(), 21);

    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    assert_eq!(
        fetched.source,
        Source::Gateway {
            url: g.url(),
            endpoint: "GET /ipfs/{cid}?format=car"
        }
    );
    assert!(fetched.failures.is_empty());
    g.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tampering_gateway_first_is_skipped_and_reported() {
    let car = sample_car(10, 1024);
    let (g, _store) = honest().await;
    let client = IpfsClient::new(fast_config().with_gateway(gw(&g.url()))).unwrap();
    client.pin_car(&car).await.unwrap();

    let liar = serve_bytes(tampered(&car)).await;
    let client =
        IpfsClient::new(fast_config().with_gateways(vec![gw(&liar), gw(&g.url())])).unwrap();
    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    assert!(matches!(&fetched.source, Source::Gateway { url, .. } if *url == g.url()));
    assert_eq!(fetched.failures.len(), 1, "{:?}", fetched.failures);
    let f = &fetched.failures[0];
    assert_eq!(f.gateway, liar);
    assert_eq!(f.attempts, 1, "a lying gateway is not retried");
    assert!(
        matches!(&f.cause, FailureCause::Tampered(CarError::Block(_))),
        "{f}"
    );
}

#[tokio::test]
async fn a_gateway_serving_another_dag_is_reported_as_wrong_root() {
    let car = sample_car(3, 100);
    let other = sample_car(4, 100);
    let liar = serve_bytes(other.encode()).await;
    let client = IpfsClient::new(fast_config().with_gateway(gw(&liar))).unwrap();
    let err = client.fetch_car(car.root()).await.unwrap_err();
    assert!(
        matches!(
            err.failures()[0].cause,
            FailureCause::Tampered(CarError::WrongRoot { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn all_gateways_bad_gives_a_typed_error_naming_each() {
    let car = sample_car(10, 1024);
    let bytes = car.encode();
    let tamper = serve_bytes(tampered(&car)).await;
    let truncate = serve_bytes(bytes[..bytes.len() / 2].to_vec()).await;
    let stall = serve_stalling(bytes.clone(), 100).await;
    let silent = serve_silent().await;
    let client = IpfsClient::new(fast_config().with_gateways(vec![
        gw(&tamper),
        gw(&truncate),
        gw(&stall),
        gw(&silent),
    ]))
    .unwrap();
    // Waits for the outcome; the guard only keeps a broken client from hanging the suite.
    let err = tokio::time::timeout(Duration::from_secs(60), client.fetch_car(car.root()))
        .await
        .expect("the client gives up by itself")
        .unwrap_err();
    let FetchError::AllFailed { cid, failures } = &err else {
        panic!("expected AllFailed, got {err}");
    };
    assert_eq!(cid, car.root());
    let by = |url: &str| failures.iter().find(|f| f.gateway == url).unwrap();
    assert!(matches!(by(&tamper).cause, FailureCause::Tampered(_)));
    assert!(matches!(by(&truncate).cause, FailureCause::Tampered(_)));
    assert!(matches!(by(&stall).cause, FailureCause::Stalled(_)));
    assert_eq!(by(&stall).attempts, 2, "stalls are retried");
    assert!(matches!(
        by(&silent).cause,
        FailureCause::FirstByteTimeout(_)
    ));
    // gateways are tried in the configured order
    let order: Vec<&str> = failures.iter().map(|f| f.gateway.as_str()).collect();
    assert_eq!(order, [&tamper, &truncate, &stall, &silent]);
    // the message names every gateway
    let msg = err.to_string();
    for url in [&tamper, &truncate, &stall, &silent] {
        assert!(msg.contains(url.as_str()), "{msg}");
    }
}

#[tokio::test]
async fn the_budget_bounds_a_fetch_from_a_stalling_gateway() {
    let car = sample_car(3, 100);
    let stall = serve_stalling(car.encode(), 10).await;
    let budget = Duration::from_millis(400);
    let client = IpfsClient::new(
        fast_config()
            .with_stall_timeout(Duration::from_secs(600))
            .with_total_budget(budget)
            .with_gateway(gw(&stall)),
    )
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), client.fetch_car(car.root()))
        .await
        .expect("the budget ends the fetch")
        .unwrap_err();
    let FetchError::Budget {
        budget: b,
        failures,
        ..
    } = &err
    else {
        panic!("expected Budget, got {err}");
    };
    assert_eq!(*b, budget);
    assert_eq!(failures[0].cause, FailureCause::Budget);
}

#[tokio::test]
async fn an_oversize_car_is_refused_without_reading_it_all() {
    // An endless but well-formed CAR: a header, then the same valid 60 KiB block
    // again and again, so the client verifies frame after frame until the byte cap.
    const TOTAL_FRAMES: u64 = 4096; // about 240 MiB if read to the end
    let block = VerifiedBlock::from_data(RAW, vec![7u8; 60_000]).unwrap();
    let once = sphere_profile::ipfs::car::encode(block.cid(), std::slice::from_ref(&block));
    let twice = sphere_profile::ipfs::car::encode(block.cid(), &[block.clone(), block.clone()]);
    let frame = twice[once.len()..].to_vec();
    let frame_len = frame.len() as u64;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let endless = serve(Router::new().fallback(move || {
        let counter = counter.clone();
        let (once, frame) = (once.clone(), frame.clone());
        async move {
            let head = futures::stream::once(async move { Ok::<_, std::io::Error>(once) });
            let tail = futures::stream::iter(1..TOTAL_FRAMES).map(move |_| {
                counter.fetch_add(frame_len, Ordering::SeqCst);
                Ok::<_, std::io::Error>(frame.clone())
            });
            Response::new(Body::from_stream(head.chain(tail)))
        }
    }))
    .await;
    let liar_length = serve(Router::new().fallback(|| async {
        // Declares 1 GiB and sends nothing: refused from the header alone.
        let s = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        let mut r = Response::new(Body::from_stream(s));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, "1073741824".parse().unwrap());
        r
    }))
    .await;
    let limit = 1024 * 1024;
    let car = block.clone();
    let client = IpfsClient::new(
        fast_config()
            .with_limits(CarLimits::default().with_max_bytes(limit))
            .with_gateways(vec![gw(&endless), gw(&liar_length)]),
    )
    .unwrap();
    let err = client.fetch_car(car.cid()).await.unwrap_err();
    let f = err.failures();
    assert_eq!(f[0].cause, FailureCause::TooLarge { limit });
    assert_eq!(f[1].cause, FailureCause::TooLarge { limit });
    let total = TOTAL_FRAMES * frame_len;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < total / 8,
        "the server produced {sent} of {total} bytes: the client read too much"
    );
}

#[tokio::test]
async fn a_car_over_the_block_count_cap_is_refused() {
    let car = sample_car(50, 10);
    let liar = serve_bytes(car.encode()).await;
    let client = IpfsClient::new(
        fast_config()
            .with_limits(CarLimits::default().with_max_blocks(10))
            .with_gateway(gw(&liar)),
    )
    .unwrap();
    let err = client.fetch_car(car.root()).await.unwrap_err();
    assert_eq!(
        err.failures()[0].cause,
        FailureCause::Tampered(CarError::TooManyBlocks { limit: 10 })
    );
}

/// A Kubo-like gateway without the trustless and dag endpoints: only the block
/// API of the embedded gateway answers.
async fn block_api_only() -> (String, Arc<BlockCache>) {
    let store = Arc::new(BlockCache::in_memory().unwrap());
    let inner = sphere_profile::ipfs::server::router(store.clone(), CarLimits::default());
    let gone = || async { StatusCode::NOT_FOUND.into_response() };
    let router = Router::new()
        .route("/ipfs/{cid}", get(gone))
        .route("/api/v0/dag/import", post(gone))
        .route("/api/v0/dag/export", post(gone))
        .fallback_service(inner);
    (serve(router).await, store)
}

#[tokio::test]
async fn without_dag_endpoints_the_client_falls_back_to_blocks() {
    let (url, store) = block_api_only().await;
    let car = sample_car(12, 256);
    let client = IpfsClient::new(fast_config().with_gateway(gw(&url))).unwrap();
    let pinned = client.pin_car(&car).await.unwrap();
    assert_eq!(pinned.endpoint, "block/put");
    assert_eq!(pinned.failures[0].endpoint, "dag/import");
    assert_eq!(store.len().unwrap(), 13);
    assert!(store.is_pinned(car.root()).unwrap());

    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    assert!(matches!(
        fetched.source,
        Source::Gateway {
            endpoint: "block/get",
            ..
        }
    ));
    let endpoints: Vec<_> = fetched.failures.iter().map(|f| f.endpoint).collect();
    assert_eq!(endpoints, ["GET /ipfs/{cid}?format=car", "dag/export"]);
}

#[tokio::test]
async fn a_block_walk_detects_a_lying_block_server() {
    let car = sample_car(4, 64);
    // block/get answers every request with the root's bytes: right for the root,
    // wrong for every leaf.
    let root_bytes = car.blocks()[0].data().to_vec();
    let gone = || async { StatusCode::NOT_FOUND.into_response() };
    let router = Router::new()
        .route("/ipfs/{cid}", get(gone))
        .route("/api/v0/dag/export", post(gone))
        .route(
            "/api/v0/block/get",
            post(move || {
                let b = root_bytes.clone();
                async move { b }
            }),
        );
    let url = serve(router).await;
    let client = IpfsClient::new(fast_config().with_gateway(gw(&url))).unwrap();
    let err = client.fetch_car(car.root()).await.unwrap_err();
    let last = err.failures().last().unwrap();
    assert_eq!(last.endpoint, "block/get");
    assert!(
        matches!(last.cause, FailureCause::Tampered(CarError::Block(_))),
        "{last}"
    );
}

// ------------------------------------------------------------------ pin

#[tokio::test]
async fn pin_fails_over_past_a_broken_gateway() {
    let broken =
        serve(Router::new().fallback(|| async {
            (StatusCode::INTERNAL_SERVER_ERROR, "disk full").into_response()
        }))
        .await;
    let (g, store) = honest().await;
    let car = sample_car(5, 100);
    let client =
        IpfsClient::new(fast_config().with_gateways(vec![gw(&broken), gw(&g.url())])).unwrap();
    let pinned = client.pin_car(&car).await.unwrap();
    assert_eq!(pinned.gateway, g.url());
    assert_eq!(pinned.failures.len(), 1);
    assert_eq!(pinned.failures[0].attempts, 2, "5xx is retried");
    assert!(matches!(
        &pinned.failures[0].cause,
        FailureCause::Status { status: 500, message } if message == "disk full"
    ));
    assert!(store.is_pinned(car.root()).unwrap());
}

#[tokio::test]
async fn pin_refuses_an_invalid_car_before_sending() {
    let car = sample_car(3, 10);
    let client = IpfsClient::new(fast_config().with_gateway(gw("http://127.0.0.1:9/"))).unwrap();
    let err = client.pin_car_bytes(&tampered(&car)).await.unwrap_err();
    assert!(
        matches!(err, PinError::InvalidCar(CarError::Block(_))),
        "{err}"
    );
}

// ------------------------------------------------------------------ cache

#[tokio::test]
async fn the_local_cache_is_read_first_and_filled_by_fetches() {
    let (g, _store) = honest().await;
    let url = g.url();
    let car = sample_car(8, 512);
    IpfsClient::new(fast_config().with_gateway(gw(&url)))
        .unwrap()
        .pin_car(&car)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(BlockCache::open(&dir.path().join("profile.db")).unwrap());
    let client = IpfsClient::new(fast_config().with_gateway(gw(&url)))
        .unwrap()
        .with_cache(cache.clone());
    let first = client.fetch_car(car.root()).await.unwrap();
    assert!(matches!(first.source, Source::Gateway { .. }));
    assert_eq!(cache.len().unwrap(), 9);

    // With the gateway gone, the cache alone serves the DAG.
    g.shutdown().await.unwrap();
    let second = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(second.source, Source::Local);
    assert_eq!(second.car, car);
}

#[tokio::test]
async fn an_oversize_pin_reply_is_refused() {
    let chatty = serve(Router::new().fallback(|| async {
        let max = usize::try_from(sphere_profile::ipfs::client::MAX_JSON_BYTES).unwrap();
        (
            [(header::CONTENT_TYPE, "application/json")],
            " ".repeat(max + 1),
        )
    }))
    .await;
    let car = sample_car(2, 10);
    let client = IpfsClient::new(fast_config().with_gateway(gw(&chatty))).unwrap();
    let err = client.pin_car(&car).await.unwrap_err();
    let PinError::AllFailed { failures, .. } = &err else {
        panic!("expected AllFailed, got {err}");
    };
    assert_eq!(
        failures[0].cause,
        FailureCause::TooLarge {
            limit: sphere_profile::ipfs::client::MAX_JSON_BYTES
        }
    );
}
