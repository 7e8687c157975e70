//! `sphere-cli pointer discover` fetching the snapshot CAR itself, and the operator
//! overrides, as separate processes: the embedded gateway and aggregator as
//! processes on 127.0.0.1, wallets initialised from one mnemonic, and a lying
//! gateway (a loopback socket answering every request with tampered bytes).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use serde_json::Value;

use crate::gateway_cli::{Gateway, sample_car};
use crate::harness::{Outcome, cli, dir_in, workdir};
use crate::pointer_cli::{Aggregator, init_wallet, start_aggregator};

/// Snapshot CIDs (raw, sha2-256) whose CARs are on no gateway.
const UNPINNED: &str = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";

/// `sphere-cli --data-dir DIR [--json] pointer ARGS --aggregator … --trust-base …`
/// in a clean environment plus `env`.
fn pointer(
    dir: &Path,
    agg: &Aggregator,
    json: bool,
    args: &[&str],
    env: &[(&str, &str)],
) -> Outcome {
    let mut all = Vec::new();
    if json {
        all.push("--json");
    }
    all.push("pointer");
    all.extend_from_slice(args);
    all.extend_from_slice(&["--aggregator", &agg.url, "--trust-base", &agg.trust_base]);
    let mut run = cli(dir, &all);
    for (k, v) in env {
        run = run.env(k, v);
    }
    run.run()
}

/// A loopback "gateway" that answers every request with `body` as a CAR.
fn lying_gateway(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.car\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    url
}

#[test]
fn discover_on_a_second_device_fetches_and_verifies_the_snapshot_car() {
    let work = workdir();
    let agg = start_aggregator(&dir_in(&work, "agg"));
    let gw = Gateway::start(&dir_in(&work, "gw"));
    let (w1, w2) = (dir_in(&work, "w1"), dir_in(&work, "w2"));
    init_wallet(&w1);
    init_wallet(&w2);

    // Device 1 pins its snapshot CAR and anchors the root.
    let car = sample_car();
    let car_file = dir_in(&work, "snapshot.car");
    std::fs::write(&car_file, car.encode()).expect("write car");
    let car_path = car_file.display().to_string();
    let pinned = cli(
        &w1,
        &["--json", "ipfs", "pin", &car_path, "--gateway", &gw.url],
    )
    .run()
    .json();
    let root = pinned["root"].as_str().expect("root").to_owned();
    pointer(&w1, &agg, true, &["publish", "--cid", &root], &[]).json();

    // Device 2, from the mnemonic alone: finds it, fetches and verifies it.
    let out = dir_in(&work, "fetched.car");
    let out_path = out.display().to_string();
    let found = pointer(
        &w2,
        &agg,
        true,
        &["discover", "--gateway", &gw.url, "--out", &out_path],
        &[],
    )
    .json();
    assert_eq!(
        (found["cid"].as_str(), found["version"].as_u64()),
        (Some(root.as_str()), Some(1))
    );
    let written = std::fs::read(&out).expect("--out written");
    assert_eq!(written, std::fs::read(&car_file).expect("pinned car"));
    assert_eq!(found["car"]["fetched"], true);
    assert_eq!(found["car"]["verified"], true);
    assert_eq!(found["car"]["bytes"].as_u64(), Some(written.len() as u64));
    assert_eq!(
        found["car"]["blocks"].as_u64(),
        Some(car.blocks().len() as u64)
    );
    let human = pointer(&w2, &agg, false, &["discover", "--gateway", &gw.url], &[]).ok();
    assert!(
        human.contains(&format!("latest: {root} at version 1"))
            && human.contains("snapshot CAR fetched and verified"),
        "{human}"
    );

    // Device 1 anchors a CID whose CAR is on no gateway: device 2 walks back to
    // the version it can fetch, and says which version it skipped.
    pointer(&w1, &agg, true, &["publish", "--cid", UNPINNED], &[]).json();
    let walked = pointer(&w2, &agg, true, &["discover", "--gateway", &gw.url], &[]);
    let v = walked.json();
    assert_eq!(
        (v["cid"].as_str(), v["version"].as_u64()),
        (Some(root.as_str()), Some(1))
    );
    assert_eq!(v["included_version"], 2);
    assert_eq!(v["skipped"][0]["version"], 2);
    assert_eq!(v["skipped"][0]["reason"], "CAR unavailable");
    assert!(
        walked
            .stderr()
            .contains(&format!("CAR of {UNPINNED} not fetched"))
    );
    // Off a terminal (as here) the walk-back notes still reach stderr in text mode.
    let human = pointer(&w2, &agg, false, &["discover", "--gateway", &gw.url], &[]);
    assert!(
        human.stderr().contains("skipping version 2"),
        "{}",
        human.stderr()
    );

    // A gateway serving tampered bytes is skipped in favour of an honest one …
    let mut bad = car.encode();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let liar = lying_gateway(bad);
    let v = pointer(
        &w2,
        &agg,
        true,
        &["discover", "--gateway", &liar, "--gateway", &gw.url],
        &[],
    )
    .json();
    assert_eq!(v["version"], 1);
    let skipped = v["car"]["skipped_gateways"].to_string();
    assert!(
        skipped.contains(&liar) && skipped.contains("bad data"),
        "{skipped}"
    );
    // … and alone it is not believed: no version is fetchable, CAR_UNAVAILABLE.
    let fooled = pointer(&w2, &agg, false, &["discover", "--gateway", &liar], &[]);
    let err = fooled.fails_with(1);
    assert!(err.contains("CAR_UNAVAILABLE"), "{err}");
    // Publishing is refused in that state, until a discovery fetches the CAR.
    let refused = pointer(&w2, &agg, false, &["publish", "--cid", &root], &[]);
    assert!(refused.fails_with(1).contains("CAR_UNAVAILABLE"));
    pointer(&w2, &agg, true, &["discover", "--gateway", &gw.url], &[]).json();
    let p = pointer(&w2, &agg, true, &["publish", "--cid", &root], &[]).json();
    assert_eq!(p["version"], 3);
}

#[test]
fn overrides_need_the_capability_and_warn_before_each_use() {
    let work = workdir();
    let agg = start_aggregator(&dir_in(&work, "agg"));
    let gw = Gateway::start(&dir_in(&work, "gw"));
    let (w1, w2) = (dir_in(&work, "w1"), dir_in(&work, "w2"));
    init_wallet(&w1);
    init_wallet(&w2);
    let allowed: &[(&str, &str)] = &[("SPHERE_ALLOW_OVERRIDES", "1"), ("NODE_ENV", "development")];
    let production: &[(&str, &str)] =
        &[("SPHERE_ALLOW_OVERRIDES", "1"), ("NODE_ENV", "production")];
    let car_loss = [
        "accept-car-loss",
        "--version",
        "1",
        "--cid",
        UNPINNED,
        "--gateway",
        &gw.url,
    ];
    let streak = [
        "accept-corrupt-streak",
        "--limit",
        "100",
        "--gateway",
        &gw.url,
    ];
    let marker = ["clear-pending-marker"];

    // Without SPHERE_ALLOW_OVERRIDES=1, or in production: denied, exit 1, no warning.
    for env in [&[][..], production] {
        for args in [&car_loss[..], &streak[..], &marker[..]] {
            let o = pointer(&w2, &agg, false, args, env);
            let err = o.fails_with(1);
            assert!(
                err.contains("SPHERE_ALLOW_OVERRIDES=1") && err.contains("CAPABILITY_DENIED"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("OPERATOR OVERRIDE"), "{err}");
        }
    }

    // With it: the warning first, then the override.
    let o = pointer(&w2, &agg, true, &marker, allowed);
    assert!(
        o.stderr().contains("warning: OPERATOR OVERRIDE"),
        "{}",
        o.stderr()
    );
    assert_eq!(o.json()["blocked"], "marker_cleared");
    let o = pointer(&w2, &agg, true, &streak, allowed);
    assert!(o.stderr().contains("warning: OPERATOR OVERRIDE"));
    assert_eq!(o.json()["version"], 0);

    // A limit outside 1..=4096 is refused, not clamped.
    for limit in ["0", "4097"] {
        let o = pointer(
            &w2,
            &agg,
            false,
            &["accept-corrupt-streak", "--limit", limit, "--no-fetch"],
            allowed,
        );
        assert!(o.stderr().contains("is not in 1..=4096"), "{}", o.stderr());
    }

    // acceptCarLoss is refused until the loss is persistent (12 failed fetches
    // over 24 h; one discovery has recorded one).
    pointer(&w1, &agg, true, &["publish", "--cid", UNPINNED], &[]).json();
    let o = pointer(&w2, &agg, false, &["discover", "--gateway", &gw.url], &[]);
    assert!(o.fails_with(1).contains("CAR_UNAVAILABLE"));
    let o = pointer(&w2, &agg, false, &car_loss, allowed);
    let err = o.fails_with(1);
    assert!(err.contains("warning: OPERATOR OVERRIDE"), "{err}");
    assert!(
        err.contains("1 failed fetches") && err.contains("12 over 86400 s"),
        "{err}"
    );
    // Nothing was republished: the aggregator still ends at version 1.
    let v: Value = pointer(&w1, &agg, true, &["discover", "--no-fetch"], &[]).json();
    assert_eq!(v["included_version"], 1);
}
