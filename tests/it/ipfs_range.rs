//! Resuming CAR downloads with HTTP `Range`, against real loopback servers: one that
//! cuts the connection mid-body once and then honours `Range` (the client must ask
//! for `bytes=N-` and verify across the seam), one that cuts once and then ignores
//! `Range` (the client must start over), one that compresses (refused, skipped).
//! Also the embedded gateway's own `Range` and `HEAD` answers, and
//! `IpfsClient::has`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use sphere_profile::ipfs::block::RAW;

use super::ipfs::{gw, honest, sample_car};
use sphere_profile::ipfs::{FailureCause, FetchError, GatewayConfig, IpfsClient, Source};

fn config() -> GatewayConfig {
    GatewayConfig::default()
        .with_first_byte_timeout(Duration::from_secs(5))
        .with_stall_timeout(Duration::from_secs(5))
        .with_total_budget(Duration::from_secs(30))
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(5), Duration::from_millis(10))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/")
}

/// What a flaky server saw: the `Range` header of each request, and the body bytes
/// it sent in all.
#[derive(Default)]
struct Seen {
    ranges: Vec<Option<String>>,
    sent: usize,
}

/// One raw HTTP/1.1 answer: status line and headers (without the blank line), the
/// body, and how many body bytes to write before closing the socket (all if `None`).
struct Answer {
    head: String,
    body: Vec<u8>,
    cut: Option<usize>,
}

/// A plain TCP server on loopback speaking just enough HTTP/1.1 to control exactly
/// where a body stops: it reads each request's headers, asks `answer` (with the
/// request number, from 0, and the `Range` header), writes the answer with
/// `Connection: close`, and closes the socket, mid-body when the answer says so.
async fn serve_raw<F>(answer: F) -> String
where
    F: Fn(usize, Option<String>) -> Answer + Send + Sync + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => req.extend_from_slice(&buf[..k]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let range = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("range").then(|| v.trim().to_owned())
            });
            let a = answer(n, range);
            n += 1;
            let head = format!(
                "{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                a.head,
                a.body.len()
            );
            let upto = a.cut.unwrap_or(a.body.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&a.body[..upto]).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("http://{addr}/")
}

/// Serves `car`. The first request gets `cut` bytes of a `Content-Length` it never
/// completes, then the socket closes. Later requests get the rest with 206 when
/// they carry `Range: bytes=N-` and `honour_range`, otherwise the whole CAR (200).
async fn serve_flaky(car: Vec<u8>, cut: usize, honour_range: bool) -> (String, Arc<Mutex<Seen>>) {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s = seen.clone();
    let url = serve_raw(move |n, range| {
        let mut seen = s.lock().unwrap();
        seen.ranges.push(range.clone());
        const CAR: &str = "Content-Type: application/vnd.ipld.car";
        if n == 0 {
            seen.sent += cut;
            return Answer {
                head: format!("HTTP/1.1 200 OK\r\n{CAR}"),
                body: car.clone(),
                cut: Some(cut),
            };
        }
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        match start {
            Some(from) if honour_range => {
                seen.sent += car.len() - from;
                Answer {
                    head: format!(
                        "HTTP/1.1 206 Partial Content\r\n{CAR}\r\nContent-Range: bytes {from}-{}/{}",
                        car.len() - 1,
                        car.len()
                    ),
                    body: car[from..].to_vec(),
                    cut: None,
                }
            }
            _ => {
                seen.sent += car.len();
                Answer {
                    head: format!("HTTP/1.1 200 OK\r\n{CAR}"),
                    body: car.clone(),
                    cut: None,
                }
            }
        }
    })
    .await;
    (url, seen)
}

#[tokio::test]
async fn a_cut_download_resumes_with_range_and_verifies_across_the_seam() {
    let car = sample_car(40, 3000);
    let bytes = car.encode();
    // Cut in the middle of a block frame, well past the header.
    let cut = bytes.len() / 2 + 17;
    let (url, seen) = serve_flaky(bytes.clone(), cut, true).await;
    let client = IpfsClient::new(config().with_gateway(gw(&url))).unwrap();
    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    assert!(matches!(
        fetched.source,
        Source::Gateway {
            endpoint: "GET /ipfs/{cid}?format=car",
            ..
        }
    ));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.ranges,
        vec![None, Some(format!("bytes={cut}-"))],
        "the retry asks for the rest"
    );
    assert_eq!(seen.sent, bytes.len(), "no byte was sent twice");
}

#[tokio::test]
async fn a_break_after_the_last_byte_ends_with_416_and_the_car_is_kept() {
    // The first answer promises 10 bytes more than the CAR and closes after the CAR;
    // the resumed request is past the end (416), so what arrived is checked as it is.
    let car = sample_car(8, 700);
    let bytes = car.encode();
    let len = bytes.len();
    let ranges: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let r = ranges.clone();
    let url = serve_raw(move |n, range| {
        r.lock().unwrap().push(range);
        if n == 0 {
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0; 10]);
            return Answer {
                head: "HTTP/1.1 200 OK".into(),
                body: padded,
                cut: Some(len),
            };
        }
        Answer {
            head: format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}"),
            body: Vec::new(),
            cut: None,
        }
    })
    .await;
    let client = IpfsClient::new(config().with_gateway(gw(&url))).unwrap();
    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    assert_eq!(
        *ranges.lock().unwrap(),
        vec![None, Some(format!("bytes={len}-"))]
    );
}

#[tokio::test]
async fn a_server_ignoring_range_is_read_again_from_the_start() {
    let car = sample_car(30, 2000);
    let bytes = car.encode();
    let cut = bytes.len() / 3;
    let (url, seen) = serve_flaky(bytes.clone(), cut, false).await;
    let client = IpfsClient::new(config().with_gateway(gw(&url))).unwrap();
    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.ranges, vec![None, Some(format!("bytes={cut}-"))]);
    assert_eq!(
        seen.sent,
        cut + bytes.len(),
        "the 200 answer was read whole"
    );
}

#[tokio::test]
async fn a_resumed_tail_that_does_not_match_is_refused() {
    // The retry gets a tail from another CAR: the seam is verified, not trusted.
    let car = sample_car(10, 1000);
    let bytes = car.encode();
    let cut = bytes.len() / 2;
    let mut forged = bytes.clone();
    for b in &mut forged[cut + 50..cut + 60] {
        *b ^= 0xff;
    }
    let url = serve_raw(move |n, _range| {
        if n == 0 {
            return Answer {
                head: "HTTP/1.1 200 OK".into(),
                body: forged.clone(),
                cut: Some(cut),
            };
        }
        Answer {
            head: format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {cut}-{}/{}",
                forged.len() - 1,
                forged.len()
            ),
            body: forged[cut..].to_vec(),
            cut: None,
        }
    })
    .await;
    let client = IpfsClient::new(config().with_gateway(gw(&url))).unwrap();
    let err = client.fetch_car(car.root()).await.unwrap_err();
    let first = &err.failures()[0];
    assert!(matches!(first.cause, FailureCause::Tampered(_)), "{err}");
    assert_eq!(first.attempts, 2);
}

#[tokio::test]
async fn a_compressed_answer_is_refused_and_the_gateway_skipped() {
    let car = sample_car(5, 500);
    let bytes = car.encode();
    let zipped = serve(Router::new().fallback(move || {
        let bytes = bytes.clone();
        async move {
            (
                [
                    (header::CONTENT_TYPE, "application/vnd.ipld.car"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                bytes,
            )
        }
    }))
    .await;
    let (honest, _) = honest().await;
    IpfsClient::new(config().with_gateway(gw(&honest.url())))
        .unwrap()
        .pin_car(&car)
        .await
        .unwrap();
    let client =
        IpfsClient::new(config().with_gateways(vec![gw(&zipped), gw(&honest.url())])).unwrap();
    let fetched = client.fetch_car(car.root()).await.unwrap();
    assert_eq!(fetched.car, car);
    assert_eq!(fetched.failures.len(), 1, "{:?}", fetched.failures);
    let f = &fetched.failures[0];
    assert_eq!(f.gateway, zipped);
    assert_eq!(f.attempts, 1, "not retried");
    assert_eq!(f.cause, FailureCause::ContentEncoding("gzip".into()));
}

#[tokio::test]
async fn the_embedded_gateway_serves_ranges_and_head() {
    let car = sample_car(20, 1500);
    let bytes = car.encode();
    let (g, store) = honest().await;
    let client = IpfsClient::new(config().with_gateway(gw(&g.url()))).unwrap();
    client.pin_car(&car).await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let car_url = format!("{}ipfs/{}?format=car", g.url(), car.root());

    // open-ended and closed ranges of the CAR
    for (range, from, to) in [
        ("bytes=100-".to_owned(), 100, bytes.len()),
        ("bytes=0-9".to_owned(), 0, 10),
        (
            format!("bytes={}-", bytes.len() - 1),
            bytes.len() - 1,
            bytes.len(),
        ),
        ("bytes=5000-5999".to_owned(), 5000, 6000),
    ] {
        let r = http
            .get(&car_url)
            .header(header::RANGE, &range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes {from}-{}/{}", to - 1, bytes.len()).as_str(),
            "{range}"
        );
        assert_eq!(r.content_length(), Some((to - from) as u64));
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &bytes[from..to],
            "{range}"
        );
    }
    // past the end
    let r = http
        .get(&car_url)
        .header(header::RANGE, format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        format!("bytes */{}", bytes.len()).as_str()
    );
    // several ranges are answered with the whole body
    let r = http
        .get(&car_url)
        .header(header::RANGE, "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..]);
    // a raw block
    let leaf = &car.blocks()[3];
    let r = http
        .get(format!("{}ipfs/{}?format=raw", g.url(), leaf.cid()))
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &leaf.data()[10..20]);

    // HEAD: the block, the whole CAR, an absent CID
    let r = http
        .head(format!("{}ipfs/{}", g.url(), car.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_LENGTH],
        car.blocks()[0].data().len().to_string().as_str()
    );
    let r = http.head(&car_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_LENGTH],
        bytes.len().to_string().as_str()
    );
    let absent = sphere_profile::ipfs::block::cid_of(RAW, b"absent").unwrap();
    let r = http
        .head(format!("{}ipfs/{absent}", g.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // a root whose leaves are absent is there as a block, not as a CAR
    let partial = sample_car(2, 10);
    store.put_many([&partial.blocks()[0]]).unwrap();
    let r = http
        .head(format!("{}ipfs/{}", g.url(), partial.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .head(format!("{}ipfs/{}?format=car", g.url(), partial.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    g.shutdown().await.unwrap();
}

#[tokio::test]
async fn has_probes_the_gateways_in_order() {
    let car = sample_car(3, 100);
    let (g, _) = honest().await;
    let (empty, _) = honest().await;
    let broken = serve(Router::new().fallback(|| async { StatusCode::SERVICE_UNAVAILABLE })).await;
    IpfsClient::new(config().with_gateway(gw(&g.url())))
        .unwrap()
        .pin_car(&car)
        .await
        .unwrap();

    let client = IpfsClient::new(config().with_max_attempts(2).with_gateways(vec![
        gw(&broken),
        gw(&empty.url()),
        gw(&g.url()),
    ]))
    .unwrap();
    let probe = client.has(car.root()).await.unwrap();
    let found = probe.found.unwrap();
    assert_eq!(found.gateway, g.url());
    assert_eq!(
        found.content_length,
        Some(car.blocks()[0].data().len() as u64)
    );
    assert_eq!(probe.absent, vec![empty.url()]);
    assert_eq!(probe.failures.len(), 1);
    assert_eq!(probe.failures[0].gateway, broken);
    assert_eq!(probe.failures[0].attempts, 2, "5xx is retried");

    // absent everywhere it could be asked
    let absent = sphere_profile::ipfs::block::cid_of(RAW, b"nowhere").unwrap();
    let probe = client.has(&absent).await.unwrap();
    assert!(probe.found.is_none());
    assert_eq!(probe.absent, vec![empty.url(), g.url()]);

    // nobody answered: an error, not "absent"
    let only_broken = IpfsClient::new(config().with_gateway(gw(&broken))).unwrap();
    assert!(matches!(
        only_broken.has(&absent).await,
        Err(FetchError::AllFailed { .. })
    ));
}
