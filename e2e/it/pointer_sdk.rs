//! The official `@unicitylabs/state-transition-sdk@3.0.1` (npm, installed in
//! `e2e/js` by `npm ci`) as a real peer of the embedded aggregator:
//!
//! * the SDK submits a certification request and verifies the returned inclusion
//!   proof with its own `InclusionProofVerificationRule` → `OK`;
//! * our client fetches the proof of the SDK's request and verifies it in Rust;
//! * the SDK verifies the proofs of the two sides our pointer published.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use serde_json::Value;
use sphere_pointer::client::{AggregatorClient, ClientConfig};
use sphere_pointer::proof::{self, ProofOutcome};
use sphere_pointer::server::{AggregatorConfig, AggregatorServer};
use sphere_pointer::state::PointerState;
use sphere_pointer::wire::Predicate;
use sphere_pointer::{Pointer, PointerConfig, Side};
use sphere_profile::keys::PointerSeeds;
use sphere_profile::secret::Secret32;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/js")
}

fn node(args: &[&str]) -> Value {
    let dir = js_dir();
    assert!(
        dir.join("node_modules/@unicitylabs/state-transition-sdk")
            .exists(),
        "run `npm ci` in {} first (scripts/test does)",
        dir.display()
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .arg("pointer-sdk-interop.mjs")
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "node {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one json line")
}

fn h32(v: &Value) -> [u8; 32] {
    let mut b = [0u8; 32];
    hex::decode_to_slice(v.as_str().expect("hex string"), &mut b).expect("32 hex bytes");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_and_our_aggregator_and_client_agree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let srv = AggregatorServer::start(
        tmp.path(),
        "127.0.0.1:0".parse().expect("addr"),
        AggregatorConfig::default().with_round_interval(Duration::from_millis(50)),
    )
    .await
    .expect("aggregator starts");
    let url = srv.url();
    let tb: &Path = srv
        .trust_base_path()
        .expect("persistent server exports its trust base");
    let tb = tb.to_str().expect("utf-8 path").to_owned();

    // 1. The SDK submits and verifies with its own rule.
    let sdk = tokio::task::spawn_blocking({
        let (url, tb) = (url.clone(), tb.clone());
        move || node(&["submit", &url, &tb])
    })
    .await
    .expect("join");
    assert_eq!(sdk["submit"], "SUCCESS");
    assert_eq!(sdk["status"], "OK", "{sdk}");
    assert_eq!(sdk["tampered"], "TRANSACTION_HASH_MISMATCH");

    // 2. Our client fetches the proof of the SDK's request and verifies it in Rust.
    let client = AggregatorClient::new(&url, ClientConfig::default()).expect("client");
    let mut pk = [0u8; 33];
    hex::decode_to_slice(sdk["publicKey"].as_str().expect("hex"), &mut pk).expect("33 bytes");
    let sid = h32(&sdk["stateId"]);
    let bytes = client.inclusion_proof(&sid).await.expect("proof fetched");
    let out = proof::verify_bytes(
        srv.trust_base(),
        &Predicate::signature(&pk),
        &h32(&sdk["sourceStateHash"]),
        &sid,
        &bytes,
    )
    .expect("the SDK's proof verifies in Rust");
    assert!(matches!(out, ProofOutcome::Included { .. }));
    assert_eq!(out.transaction_hash(), Some(h32(&sdk["transactionHash"])));

    // 3. Our pointer publishes; the SDK verifies both sides.
    let seeds = PointerSeeds::derive(&Secret32::new([0x33; 32]));
    let pointer = Pointer::new(
        &seeds,
        client,
        srv.trust_base().clone(),
        PointerState::in_memory().expect("state"),
        PointerConfig::default(),
    )
    .expect("pointer");
    let cid = Cid::new_v1(0x71, Code::Sha2_256.digest(b"sdk interop"));
    let v = pointer.publish(&cid).await.expect("published").version;
    let built = pointer.keys().build(v, &cid).expect("derive");
    for side in Side::BOTH {
        let c = built.side(side).clone();
        let (url, tb) = (url.clone(), tb.clone());
        let r = tokio::task::spawn_blocking(move || {
            node(&[
                "verify",
                &url,
                &tb,
                &hex::encode(c.public_key),
                &hex::encode(c.state_hash),
                &hex::encode(c.ciphertext),
            ])
        })
        .await
        .expect("join");
        assert_eq!(r["status"], "OK", "side {}: {r}", side.name());
        assert_eq!(r["stateId"], hex::encode(built.side(side).state_id));
    }
    srv.shutdown().await;
}
