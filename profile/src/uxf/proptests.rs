//! Property tests of the whole module: generated tokens survive ingest → CAR → import
//! → assemble (modulo the documented normalizations), the CAR, JSON, CBOR and element
//! decoders never panic on random or mutated bytes, and one flipped byte anywhere in a
//! CAR is rejected.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value as J, json};

use super::{Element, UxfPackage, decode_cbor};

fn hex_of(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), len).prop_map(hex::encode)
}

fn maybe_upper(s: String, upper: bool) -> String {
    if upper { s.to_ascii_uppercase() } else { s }
}

fn state() -> impl Strategy<Value = J> {
    (hex_of(1..=40), prop::option::of(hex_of(0..=8)))
        .prop_map(|(p, d)| json!({"predicate": p, "data": d}))
}

fn auth() -> impl Strategy<Value = J> {
    (hex_of(33..=33), hex_of(64..=72), hex_of(32..=34))
        .prop_map(|(k, s, h)| json!({"algorithm": "secp256k1", "publicKey": k, "signature": s, "stateHash": h}))
}

fn proof() -> impl Strategy<Value = J> {
    (
        prop::option::of(auth()),
        hex_of(3..=34),
        prop::collection::vec((prop::option::of(hex_of(1..=32)), "[0-9]{1,90}"), 1..4),
        prop::option::of(hex_of(32..=32)),
        hex_of(1..=120),
    )
        .prop_map(|(a, root, steps, th, cert)| {
            let steps: Vec<J> = steps
                .into_iter()
                .map(|(d, p)| {
                    // the SDK prints paths in canonical decimal
                    let p = p.trim_start_matches('0');
                    json!({"data": d, "path": if p.is_empty() { "0" } else { p }})
                })
                .collect();
            json!({"authenticator": a, "merkleTreePath": {"root": root, "steps": steps},
                   "transactionHash": th, "unicityCertificate": cert})
        })
}

fn reason() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Null),
        ("[A-Z_]{1,12}", hex_of(0..=16), any::<u32>()).prop_map(
            |(t, h, n)| json!({"type": t, "hex": h, "n": n, "nested": {"a": [1, "x", null]}})
        ),
    ]
}

fn leaf_token() -> impl Strategy<Value = J> {
    (
        hex_of(32..=32),
        hex_of(32..=32),
        state(),
        prop::option::of(proof()),
        prop::collection::vec(("[A-Z]{3}", "[0-9]{1,12}"), 0..3),
        reason(),
        any::<bool>(),
    )
        .prop_map(|(id, salt, st, gp, coins, reason, upper)| {
            let coins: Vec<J> = coins.into_iter().map(|(c, a)| json!([c, a])).collect();
            json!({
                "version": "2.0",
                "state": st,
                "genesis": {
                    "data": {"tokenId": maybe_upper(id, upper), "tokenType": "00".repeat(31) + "01",
                             "coinData": coins, "tokenData": "", "salt": salt,
                             "recipient": "DIRECT://r", "recipientDataHash": null, "reason": reason},
                    "inclusionProof": gp
                },
                "transactions": [],
                "nametags": []
            })
        })
}

fn token() -> impl Strategy<Value = J> {
    (
        leaf_token(),
        prop::collection::vec(
            (
                state(),
                prop::option::of(proof()),
                hex_of(32..=32),
                prop::option::of("[a-z ]{0,12}"),
                prop::option::of(auth()),
                any::<bool>(),
            ),
            0..4,
        ),
        prop::collection::vec(leaf_token(), 0..2),
    )
        .prop_map(|(mut t, txs, nametags)| {
            let txs: Vec<J> = txs
                .into_iter()
                .map(|(src, p, salt, msg, pending, no_data)| {
                    let data = if no_data {
                        J::Null
                    } else {
                        json!({"sourceState": src, "recipient": "DIRECT://x", "salt": salt,
                               "recipientDataHash": null, "message": msg, "nametags": []})
                    };
                    let mut tx = json!({"data": data, "inclusionProof": p});
                    if let Some(a) = pending {
                        tx["_wallet"] = json!({"authenticator": a});
                    }
                    tx
                })
                .collect();
            t["transactions"] = J::Array(txs);
            t["nametags"] = J::Array(nametags);
            t
        })
}

/// The documented normalizations: byte fields `""` ≡ `null`, hex lower-cased, the
/// synthesized `data` of a transaction without data, source states restated.
fn norm(v: &J) -> J {
    match v {
        J::String(s) if s.is_empty() => J::Null,
        J::String(s) if s.bytes().all(|c| c.is_ascii_hexdigit()) => {
            J::String(s.to_ascii_lowercase())
        }
        J::Array(a) => J::Array(a.iter().map(norm).collect()),
        J::Object(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

/// What reassembly gives for a transaction whose `data` was null: the derived source
/// state with empty fields (spec §7); and the derived source states of transactions
/// with data (§3.4) replace whatever the input said only when they agree — so compare
/// everything but the transactions' `data` of data-less ones.
fn expected(token: &J) -> J {
    let mut t = token.clone();
    let txs = t["transactions"].as_array().cloned().unwrap_or_default();
    let n = txs.len();
    let mut out = Vec::new();
    let gdest = txs
        .first()
        .and_then(|x| {
            x["data"]["sourceState"]
                .as_object()
                .map(|_| x["data"]["sourceState"].clone())
        })
        .unwrap_or_else(|| token["state"].clone());
    let mut prev = gdest;
    for (i, tx) in txs.iter().enumerate() {
        let mut tx = tx.clone();
        let src = if i == 0 {
            prev.clone()
        } else if tx["data"].is_object() {
            tx["data"]["sourceState"].clone()
        } else {
            prev.clone()
        };
        if tx["data"].is_null() {
            tx["data"] = json!({"sourceState": src, "recipient": "", "salt": "", "recipientDataHash": null, "message": null, "nametags": []});
        } else {
            tx["data"]["sourceState"] = src.clone();
        }
        prev = txs
            .get(i + 1)
            .and_then(|x| {
                x["data"]["sourceState"]
                    .as_object()
                    .map(|_| x["data"]["sourceState"].clone())
            })
            .unwrap_or_else(|| token["state"].clone());
        let _ = n;
        out.push(tx);
    }
    t["transactions"] = J::Array(out);
    norm(&t)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ingest_car_import_assemble_returns_the_token(tok in token()) {
        let mut pkg = UxfPackage::new(1_700_000_000);
        pkg.ingest(&tok, 1_700_000_000).unwrap();
        let id = pkg.manifest().keys().next().unwrap().clone();
        let want = expected(&tok);
        prop_assert_eq!(norm(&pkg.assemble(&id).unwrap().to_json()), want.clone());
        let car = pkg.to_car().unwrap();
        let back = UxfPackage::from_car(&car).unwrap();
        prop_assert!(back.verify().valid);
        prop_assert_eq!(norm(&back.assemble(&id).unwrap().to_json()), want.clone());
        // the root CID (envelope) is the same after re-export
        prop_assert_eq!(back.car_blocks().unwrap()[0].0, pkg.car_blocks().unwrap()[0].0);
        let json = UxfPackage::from_json(&pkg.to_json().unwrap()).unwrap();
        prop_assert_eq!(json.to_car().unwrap(), car);
    }

    #[test]
    fn one_flipped_byte_is_rejected(tok in token(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut pkg = UxfPackage::new(1_700_000_000);
        pkg.ingest(&tok, 1_700_000_000).unwrap();
        let mut car = pkg.to_car().unwrap();
        // skip the header: varint + header bytes
        let header_len = usize::from(car[0]) + 1;
        let i = header_len + pos.index(car.len() - header_len);
        car[i] ^= 1 << bit;
        prop_assert!(UxfPackage::from_car(&car).is_err(), "flip at {} accepted", i);
    }
}

fn sample_car() -> Vec<u8> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let tok = token().new_tree(&mut runner).unwrap().current();
    let mut pkg = UxfPackage::new(1);
    pkg.ingest(&tok, 1).unwrap();
    pkg.to_car().unwrap()
}

#[test]
fn every_single_bit_flip_of_a_car_is_rejected() {
    let car = sample_car();
    let header_len = usize::from(car[0]) + 1;
    for i in header_len..car.len() {
        for bit in 0..8 {
            let mut c = car.clone();
            c[i] ^= 1 << bit;
            assert!(
                UxfPackage::from_car(&c).is_err(),
                "flip at byte {i} bit {bit} accepted"
            );
        }
    }
}

/// Cases for the never-panic properties: 100 000 by default (every `cargo test` run,
/// CI included); `UXF_FUZZ_CASES` raises or lowers it.
fn fuzz_cases() -> u32 {
    std::env::var("UXF_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// A small one-token package (a fast JSON fuzz seed).
fn small_json() -> Vec<u8> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let tok = leaf_token().new_tree(&mut runner).unwrap().current();
    let mut pkg = UxfPackage::new(1);
    pkg.ingest(&tok, 1).unwrap();
    pkg.to_json().unwrap().into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    #[test]
    fn car_import_never_panics_on_mutations(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)) {
        thread_local!(static CAR: Vec<u8> = sample_car());
        let mut car = CAR.with(Clone::clone);
        for (i, b, op) in edits {
            let n = car.len().max(1);
            let at = i.index(n);
            match op {
                0 if at < car.len() => car[at] = b,
                1 => car.insert(at.min(car.len()), b),
                _ => { car.truncate(at); }
            }
        }
        let _ = UxfPackage::from_car(&car);
    }

    #[test]
    fn decoders_never_panic_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = UxfPackage::from_car(&data);
        let _ = decode_cbor(&data);
        let _ = Element::from_block(&data);
        let _ = UxfPackage::from_json(&String::from_utf8_lossy(&data));
    }

    #[test]
    fn json_import_never_panics_on_mutations(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        thread_local!(static JSON: Vec<u8> = small_json());
        let mut j = JSON.with(Clone::clone);
        for (i, b) in edits {
            let at = i.index(j.len());
            j[at] = b" {}[]\",:0123456789abcdefABCDEFnulltrue-"[usize::from(b) % 39];
        }
        let _ = UxfPackage::from_json(&String::from_utf8_lossy(&j));
    }
}
