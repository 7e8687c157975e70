//! `sphere-cli gateway` as a process: it prints its address, serves the official
//! Kubo RPC client (`kubo-rpc-client` from npm, run with node), keeps its blocks
//! across a restart, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sphere_profile::ipfs::block::{DAG_CBOR, RAW, cid_of};
use sphere_profile::ipfs::{
    Car, CarLimits, GatewayConfig, GatewayUrl, IpfsClient, Source, VerifiedBlock,
};

/// A running gateway; killed on drop if the test did not stop it.
pub(crate) struct Gateway {
    child: Child,
    pub(crate) url: String,
}

impl Gateway {
    pub(crate) fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sphere-cli"))
            .args(["gateway", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sphere-cli gateway");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self { child, url }
    }

    /// Sends SIGTERM and waits (up to 20 s) for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "gateway exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "gateway did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dag-cbor block holding a CBOR array of links to `cids` (hand-encoded: array
/// header, then per link tag 42 + byte string 0x00 ‖ binary CID).
fn links_block(cids: &[Vec<u8>]) -> VerifiedBlock {
    let mut out = vec![0x99];
    out.extend_from_slice(&u16::try_from(cids.len()).unwrap().to_be_bytes());
    for c in cids {
        out.extend_from_slice(&[0xd8, 0x2a, 0x58, u8::try_from(c.len() + 1).unwrap(), 0x00]);
        out.extend_from_slice(c);
    }
    VerifiedBlock::from_data(DAG_CBOR, out).unwrap()
}

/// A two-level DAG: root → 4 inner nodes → 40 raw leaves of 1 KiB.
pub(crate) fn sample_car() -> Car {
    let mut blocks = Vec::new();
    let mut inner = Vec::new();
    for i in 0..4u32 {
        let leaves: Vec<VerifiedBlock> = (0..10u32)
            .map(|j| {
                let mut data = vec![u8::try_from(i * 10 + j).unwrap(); 1024];
                data.extend_from_slice(format!("leaf {i}/{j}").as_bytes());
                VerifiedBlock::from_data(RAW, data).unwrap()
            })
            .collect();
        let node = links_block(
            &leaves
                .iter()
                .map(|b| b.cid().to_bytes())
                .collect::<Vec<_>>(),
        );
        inner.push(node.cid().to_bytes());
        blocks.push(node);
        blocks.extend(leaves);
    }
    let root = links_block(&inner);
    let root_cid = *root.cid();
    blocks.push(root);
    Car::from_blocks(root_cid, blocks, &CarLimits::default()).unwrap()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn gateway_prints_its_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("gw"));
    assert!(dir.path().join("gw").join("gateway.db").exists());
    gw.stop();
}

#[test]
fn gateway_json_line_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sphere-cli"))
        .args(["--json", "gateway", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = v["listening"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
}

#[test]
fn a_taken_port_is_a_user_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sphere-cli"))
        .args(["gateway", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn kubo_rpc_client_round_trips_a_car_through_the_gateway() {
    let root = repo_root();
    let script = root.join("e2e/js/ipfs-kubo-roundtrip.mjs");
    assert!(
        root.join("e2e/js/node_modules/kubo-rpc-client").exists(),
        "kubo-rpc-client is not installed: run `npm ci` in e2e/js (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let car = sample_car();
    let car_path = dir.path().join("sample.car");
    std::fs::write(&car_path, car.encode()).unwrap();
    // A CAR whose last block's bytes were altered: the gateway must refuse it.
    let mut bad = car.encode();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let bad_path = dir.path().join("bad.car");
    std::fs::write(&bad_path, &bad).unwrap();

    let data_dir = dir.path().join("gw");
    let gw = Gateway::start(&data_dir);
    let out = Command::new("node")
        .arg(&script)
        .arg(&gw.url)
        .arg(&car_path)
        .arg(&bad_path)
        .current_dir(&root)
        .output()
        .expect("node must be on PATH");
    assert!(
        out.status.success(),
        "node failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // dag/import answered with our root and no pin error
    assert_eq!(report["imported"][0]["cid"], car.root().to_string());
    assert_eq!(report["imported"][0]["pinErrorMsg"], "");
    // dag/export gave back exactly our blocks, in the same order
    let exported = std::fs::read(report["exportedPath"].as_str().unwrap()).unwrap();
    let back = Car::decode_expecting(&exported, car.root(), &CarLimits::default()).unwrap();
    assert_eq!(back.blocks(), car.blocks());
    assert_eq!(exported, car.encode());
    // block/put + block/get: the CID the gateway returned is the one we compute
    assert_eq!(
        report["blockCid"],
        cid_of(RAW, b"sphere kubo-rpc-client block")
            .unwrap()
            .to_string()
    );
    assert_eq!(report["blockRoundTrip"], true);
    // pin/ls lists the imported root as a recursive pin
    let pins = report["pins"].as_array().unwrap();
    assert!(
        pins.iter()
            .any(|p| p["cid"] == car.root().to_string() && p["type"] == "recursive"),
        "{pins:?}"
    );
    // the tampered CAR was refused with a 400 and a message
    assert_eq!(report["badCarStatus"], 400, "{report}");
    assert!(
        report["badCarError"]
            .as_str()
            .unwrap()
            .contains("bytes do not hash to the CID"),
        "{report}"
    );
    gw.stop();

    // The blocks survive a restart and verify through the Rust client's trustless path.
    let gw = Gateway::start(&data_dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fetched = rt.block_on(async {
        let client = IpfsClient::new(
            GatewayConfig::default().with_gateway(GatewayUrl::parse(&gw.url).unwrap()),
        )
        .unwrap();
        client.fetch_car(car.root()).await.unwrap()
    });
    assert_eq!(fetched.car, car);
    assert!(
        matches!(fetched.source, Source::Gateway { endpoint, .. } if endpoint.starts_with("GET /ipfs"))
    );
    assert!(fetched.failures.is_empty());
    gw.stop();
}

/// A running gateway under `dir`, and the sample CAR written to `dir/in.car`.
fn gateway_and_car_file(dir: &Path) -> (Gateway, Car, PathBuf) {
    let gateway = Gateway::start(&dir.join("gw"));
    let car = sample_car();
    let car_path = dir.join("in.car");
    std::fs::write(&car_path, car.encode()).unwrap();
    (gateway, car, car_path)
}

/// `sphere-cli ARGS` (the `ipfs` commands take no data dir).
fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sphere-cli"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn ipfs_pin_and_fetch_round_trip_through_the_cli_with_a_dead_gateway_first() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, car, car_path) = gateway_and_car_file(dir.path());
    // A closed port first: the client fails over to the live gateway and says so.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let pin = cli(&[
        "--json",
        "ipfs",
        "pin",
        car_path.to_str().unwrap(),
        "--gateway",
        &dead,
        "--gateway",
        &gateway.url,
    ]);
    assert!(
        pin.status.success(),
        "{}",
        String::from_utf8_lossy(&pin.stderr)
    );
    let pinned: serde_json::Value = serde_json::from_slice(&pin.stdout).unwrap();
    assert_eq!(pinned["root"], car.root().to_string());
    assert!(
        String::from_utf8_lossy(&pin.stderr).contains(&dead),
        "the failed gateway is reported"
    );

    let out = dir.path().join("out.car");
    let fetch = cli(&[
        "--json",
        "ipfs",
        "fetch",
        &car.root().to_string(),
        "-o",
        out.to_str().unwrap(),
        "--gateway",
        &dead,
        "--gateway",
        &gateway.url,
    ]);
    assert!(
        fetch.status.success(),
        "{}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let fetched = Car::decode(&std::fs::read(&out).unwrap(), &CarLimits::default()).unwrap();
    assert_eq!(fetched.root(), car.root());
    assert_eq!(fetched.blocks().len(), car.blocks().len());

    // Bad input is a user error, not a crash.
    let bad = cli(&[
        "ipfs",
        "fetch",
        "not-a-cid",
        "-o",
        out.to_str().unwrap(),
        "--gateway",
        &gateway.url,
    ]);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    gateway.stop();
}

#[test]
fn ipfs_has_answers_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, car, car_path) = gateway_and_car_file(dir.path());
    let pin = cli(&[
        "ipfs",
        "pin",
        car_path.to_str().unwrap(),
        "--gateway",
        &gateway.url,
    ]);
    assert!(
        pin.status.success(),
        "{}",
        String::from_utf8_lossy(&pin.stderr)
    );

    // Available: exit 0, the gateway and the root block's size.
    let root = car.root().to_string();
    let has = cli(&["--json", "ipfs", "has", &root, "--gateway", &gateway.url]);
    assert_eq!(
        has.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&has.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&has.stdout).unwrap();
    assert_eq!(v["available"], true);
    assert_eq!(v["gateway"], format!("{}/", gateway.url));
    assert_eq!(v["content_length"], car.blocks()[0].data().len());

    // Absent: exit 1, one JSON object saying so, no error text.
    let absent = cid_of(RAW, b"not pinned anywhere").unwrap().to_string();
    let has = cli(&["--json", "ipfs", "has", &absent, "--gateway", &gateway.url]);
    assert_eq!(has.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&has.stdout).unwrap();
    assert_eq!(v["available"], false);
    assert_eq!(v["absent"][0], format!("{}/", gateway.url));
    let human = cli(&["ipfs", "has", &absent, "--gateway", &gateway.url]);
    assert_eq!(human.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&human.stdout).contains("is not available"));

    // Nobody could be asked: exit 2 (unknown, not "absent").
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let has = cli(&["ipfs", "has", &root, "--gateway", &dead]);
    assert_eq!(
        has.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&has.stderr)
    );

    // Not a CID: a user error.
    let bad = cli(&["ipfs", "has", "not-a-cid", "--gateway", &gateway.url]);
    assert_eq!(bad.status.code(), Some(1));
    gateway.stop();
}
