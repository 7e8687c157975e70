//! Every vector of `golden/pointer/pointer-vectors-v2flavour-sdk3.0.1.json`:
//! primitives, per side/version derivations, ciphertexts, state ids, signatures,
//! CBOR and JSON-RPC bodies, the SMT example, and the full proof.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::str::FromStr;

use serde_json::Value;
use sphere_pointer::certificate::{TrustBase, UnicityCertificate, public_key, sign_recoverable};
use sphere_pointer::derive::{PointerKeys, Side};
use sphere_pointer::error::VerifyError;
use sphere_pointer::proof::{self, ProofOutcome};
use sphere_pointer::smt::{InclusionCertificate, Tree, leaf_hash};
use sphere_pointer::wire::{
    self, CertificationData, CertificationRequest, Predicate, ProofResponse,
};
use sphere_profile::keys::PointerSeeds;
use sphere_profile::secret::Secret32;

fn vectors() -> Value {
    let path = crate::shared_dir().join("golden/pointer/pointer-vectors-v2flavour-sdk3.0.1.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("not a hex string: {v}")),
    )
    .unwrap()
}

fn h32(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap()
}

fn h33(v: &Value) -> [u8; 33] {
    h(v).try_into().unwrap()
}

#[test]
fn primitives_match_the_sdk() {
    let g = vectors();
    for p in g["primitives"].as_array().unwrap() {
        let secret = h32(&p["secret_hex"]);
        let key = k256::ecdsa::SigningKey::from_slice(&secret).unwrap();
        let pk = public_key(&key);
        assert_eq!(pk, h33(&p["publicKey_hex"]));
        let lock = Predicate::signature(&pk);
        assert_eq!(lock.encode(), h(&p["lockScript_cbor_hex"]));
        let ssh = h32(&p["sourceStateHash_hex"]);
        let txh = h32(&p["transactionHash_hex"]);
        assert_eq!(
            wire::state_id_preimage(&lock, &ssh),
            h(&p["stateId_preimage_cbor_hex"])
        );
        let sid = wire::state_id(&lock, &ssh);
        assert_eq!(sid, h32(&p["stateId_hex"]));
        assert_eq!(
            wire::signature_preimage(&ssh, &txh),
            h(&p["signature_preimage_cbor_hex"])
        );
        let digest = wire::signed_digest(&ssh, &txh);
        assert_eq!(digest, h32(&p["signed_digest_hex"]));
        let sig = sign_recoverable(&key, &digest);
        assert_eq!(sig.to_vec(), h(&p["witness_signature_hex_r_s_v"]));
        let data = CertificationData {
            lock_script: lock,
            source_state_hash: ssh.to_vec(),
            transaction_hash: txh.to_vec(),
            expires_at: None,
            witness: sig.to_vec(),
        };
        assert_eq!(data.encode(), h(&p["sdk301_certificationData_cbor_hex"]));
        let req = CertificationRequest {
            state_id: sid,
            data,
            aggregate_request_count: 0,
        };
        let bytes = req.encode();
        assert_eq!(bytes, h(&p["sdk301_certificationRequest_cbor_hex"]));
        assert_eq!(CertificationRequest::decode(&bytes).unwrap(), req);
        assert_eq!(
            req.jsonrpc_body(serde_json::json!(1)),
            p["sdk301_jsonrpc_body"]
        );
        assert_eq!(
            serde_json::json!({"stateId": hex::encode(sid)}),
            p["get_inclusion_proof_v2_params"]
        );
        let rt: u64 = p["referenceTime_for_sdk301_leaf"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(wire::leaf_value(&txh, rt), h32(&p["leafValue_sdk301_hex"]));
    }
}

#[test]
fn pointer_vectors_match_for_both_keys_and_versions() {
    let g = vectors();
    for p in g["pointer"].as_array().unwrap() {
        let seeds = PointerSeeds::derive(&Secret32::new(h32(&p["walletPrivateKey_hex"])));
        assert_eq!(seeds.pointer_secret.expose(), &h32(&p["pointerSecret_hex"]));
        assert_eq!(seeds.signing_seed.expose(), &h32(&p["signingSeed_hex"]));
        assert_eq!(seeds.xor_seed.expose(), &h32(&p["xorSeed_hex"]));
        assert_eq!(seeds.pad_seed.expose(), &h32(&p["padSeed_hex"]));
        let keys = PointerKeys::new(&seeds).unwrap();
        assert_eq!(keys.public_key(), &h33(&p["signingPubKey_hex"]));
        assert_eq!(
            keys.health_check_state_id(),
            h32(&p["healthCheck_stateId_hex"])
        );
        let cid_bytes = h(&p["cid_hex"]);
        assert_eq!(cid_bytes.len() as u64, p["cidLen"].as_u64().unwrap());
        let cid = cid::Cid::read_bytes(cid_bytes.as_slice()).unwrap();
        for (vname, vv) in p["versions"].as_object().unwrap() {
            let v: u32 = vname.trim_start_matches('v').parse().unwrap();
            let built = keys.build(v, &cid).unwrap();
            assert_eq!(built.padding, h(&vv["padding_hex"]), "{vname} padding");
            assert_eq!(
                built.payload.to_vec(),
                h(&vv["full_hex"]),
                "{vname} payload"
            );
            assert_eq!(built.payload[..32].to_vec(), h(&vv["partA_hex"]));
            assert_eq!(built.payload[32..].to_vec(), h(&vv["partB_hex"]));
            for side in Side::BOTH {
                let s = &vv["sides"][side.name()];
                let c = built.side(side);
                let label = format!("{} {vname} side {}", p["label"], side.name());
                let mut pre = seeds.xor_seed.expose().to_vec();
                pre.push(side.byte());
                pre.extend_from_slice(&v.to_be_bytes());
                pre.extend_from_slice(b"state");
                assert_eq!(pre, h(&s["stateHash_preimage_hex"]), "{label}");
                assert_eq!(c.state_hash, h32(&s["stateHashDigest_hex"]), "{label}");
                assert_eq!(c.state_hash, h32(&s["sourceStateHash_hex"]), "{label}");
                assert_eq!(c.xor_key, h32(&s["xorKey_hex"]), "{label}");
                assert_eq!(c.ciphertext, h32(&s["ciphertext_hex"]), "{label}");
                assert_eq!(c.ciphertext, h32(&s["transactionHash_hex"]), "{label}");
                assert_eq!(keys.lock_script().encode(), h(&s["lockScript_cbor_hex"]));
                assert_eq!(
                    wire::state_id_preimage(&keys.lock_script(), &c.state_hash),
                    h(&s["stateId_preimage_cbor_hex"])
                );
                assert_eq!(c.state_id, h32(&s["stateId_hex"]), "{label}");
                assert_eq!(keys.state_id(side, v), c.state_id);
                assert_eq!(
                    wire::signature_preimage(&c.state_hash, &c.ciphertext),
                    h(&s["signature_preimage_cbor_hex"])
                );
                assert_eq!(
                    wire::signed_digest(&c.state_hash, &c.ciphertext),
                    h32(&s["signed_digest_hex"])
                );
                assert_eq!(
                    c.witness.to_vec(),
                    h(&s["witness_signature_hex_r_s_v"]),
                    "{label}"
                );
                assert_eq!(
                    c.certification_data().encode(),
                    h(&s["sdk301_certificationData_cbor_hex"]),
                    "{label}"
                );
                assert_eq!(
                    c.request().encode(),
                    h(&s["sdk301_certificationRequest_cbor_hex"]),
                    "{label}"
                );
                assert_eq!(
                    c.request().jsonrpc_body(serde_json::json!(1)),
                    s["sdk301_jsonrpc_body"]
                );
                assert_eq!(
                    serde_json::json!({"stateId": hex::encode(c.state_id)}),
                    s["get_inclusion_proof_v2_params"]
                );
                assert_eq!(
                    wire::leaf_value(&c.ciphertext, 1_767_225_600),
                    h32(&s["leafValue_sdk301_hex"]),
                    "{label}"
                );
            }
            assert!(vv["decode_roundtrip_ok"].as_bool().unwrap());
            let decoded = keys
                .decode(v, &built.a.ciphertext, &built.b.ciphertext)
                .unwrap();
            assert_eq!(decoded, cid);
            assert_eq!(
                decoded.to_string(),
                cid::Cid::from_str(&cid.to_string()).unwrap().to_string()
            );
        }
    }
}

#[test]
fn smt_example_roots_and_certificates() {
    let g = vectors();
    let s = &g["smt_v2_example"];
    let leaves = s["leaves"].as_array().unwrap();
    // SDK 3.0.1 leaf values, and the 2.0.x rule (raw transaction hash) for the switch.
    for (value_field, root_field, cert_field) in [
        (
            "value_sdk301_hex",
            "sdk301_root_hex",
            "sdk301_inclusion_certificate_for_first_leaf_hex",
        ),
        (
            "value_sdk20x_hex",
            "sdk20x_style_root_hex",
            "sdk20x_inclusion_certificate_for_first_leaf_hex",
        ),
    ] {
        let mut tree = Tree::new();
        for l in leaves {
            tree.insert(h32(&l["key_stateId_hex"]), h32(&l[value_field]))
                .unwrap();
        }
        let root = tree.root();
        assert_eq!(root, h32(&s[root_field]), "{root_field}");
        let first = &leaves[0];
        let key = h32(&first["key_stateId_hex"]);
        let cert = tree.certificate(&key).unwrap();
        assert_eq!(cert.encode(), h(&s[cert_field]), "{cert_field}");
        let decoded = InclusionCertificate::decode(&h(&s[cert_field])).unwrap();
        assert_eq!(decoded.root(&key, &h32(&first[value_field])).unwrap(), root);
        assert_ne!(leaf_hash(&key, &h32(&first[value_field])), root);
    }
}

fn full_proof_fixture() -> (TrustBase, Value, Value) {
    let g = vectors();
    let fp = g["smt_v2_example"]["full_proof_example"].clone();
    let tb = TrustBase::from_json(fp["trust_base_json"].to_string().as_bytes()).unwrap();
    let p1 = g["pointer"][0]["versions"]["v1"]["sides"]["A"].clone();
    (tb, fp, p1)
}

#[test]
fn unicity_certificate_verifies_and_reencodes() {
    let (tb, fp, _) = full_proof_fixture();
    let bytes = h(&fp["unicity_certificate_cbor_hex"]);
    let uc = UnicityCertificate::decode(&bytes).unwrap();
    assert_eq!(uc.encode(), bytes);
    assert_eq!(uc.seal.hash, h(&fp["seal_hash_hex"]));
    assert_eq!(
        uc.unicity_tree_root().unwrap().to_vec(),
        h(&fp["seal_hash_hex"])
    );
    uc.verify(&tb).unwrap();
    // The validator secret signs exactly the seal the SDK produced.
    let key = k256::ecdsa::SigningKey::from_slice(&h(&fp["validator_secret_hex"])).unwrap();
    assert_eq!(public_key(&key).to_vec(), h(&fp["validator_pubkey_hex"]));
    let sig = sign_recoverable(&key, &uc.seal.signing_hash());
    assert_eq!(uc.seal.signatures.as_ref().unwrap()["node-1"], sig.to_vec());
}

#[test]
fn full_proof_example_verifies() {
    let (tb, fp, side) = full_proof_fixture();
    let bytes = h(&fp["get_inclusion_proof_v2_result_hex"]);
    let resp = ProofResponse::decode(&bytes).unwrap();
    assert_eq!(resp.encode(), bytes);
    let lock = Predicate::signature(&h33(&g_pk(&side)));
    let ssh = h32(&side["sourceStateHash_hex"]);
    let sid = h32(&side["stateId_hex"]);
    assert_eq!(fp["verification_status"], "OK");
    let out = proof::verify(&tb, &lock, &ssh, &sid, &resp).unwrap();
    assert_eq!(
        out.transaction_hash(),
        Some(h32(&side["transactionHash_hex"]))
    );
    assert!(matches!(
        out,
        ProofOutcome::Included {
            block_number: 5,
            ..
        }
    ));

    // Not certified: the UC still verifies, the outcome is "absent".
    let nc = h(&fp["not_certified_result_hex"]);
    assert_eq!(
        proof::verify_bytes(&tb, &lock, &ssh, &sid, &nc).unwrap(),
        ProofOutcome::Absent
    );
}

#[test]
fn tampered_full_proofs_are_rejected() {
    let (tb, fp, side) = full_proof_fixture();
    let resp = ProofResponse::decode(&h(&fp["get_inclusion_proof_v2_result_hex"])).unwrap();
    let lock = Predicate::signature(&h33(&g_pk(&side)));
    let ssh = h32(&side["sourceStateHash_hex"]);
    let sid = h32(&side["stateId_hex"]);

    // Another transaction hash: the path no longer reaches the root (the SDK
    // reports TRANSACTION_HASH_MISMATCH against an expected hash; we read the hash
    // from the proof, so it is the path that breaks).
    let mut r = resp.clone();
    r.leaf.as_mut().unwrap().certification_data.transaction_hash[0] ^= 1;
    assert_eq!(
        proof::verify(&tb, &lock, &ssh, &sid, &r),
        Err(VerifyError::PathInvalid)
    );

    // Wrong sibling.
    let mut r = resp.clone();
    r.leaf.as_mut().unwrap().certificate.siblings[0][5] ^= 1;
    assert_eq!(
        proof::verify(&tb, &lock, &ssh, &sid, &r),
        Err(VerifyError::PathInvalid)
    );

    // Wrong root in the input record: the seal no longer matches.
    let mut r = resp.clone();
    r.unicity_certificate.input_record.hash[0] ^= 1;
    assert_eq!(
        proof::verify(&tb, &lock, &ssh, &sid, &r),
        Err(VerifyError::PathInvalid)
    );

    // Forged seal signature.
    let mut r = resp.clone();
    r.unicity_certificate
        .seal
        .signatures
        .as_mut()
        .unwrap()
        .get_mut("node-1")
        .unwrap()[10] ^= 1;
    assert!(matches!(
        proof::verify(&tb, &lock, &ssh, &sid, &r),
        Err(VerifyError::Untrusted(_))
    ));

    // Another network.
    let mut r = resp.clone();
    r.unicity_certificate.seal.network_id = 1;
    assert!(matches!(
        proof::verify(&tb, &lock, &ssh, &sid, &r),
        Err(VerifyError::Untrusted(_))
    ));

    // Asking with the other side's state: certification data mismatch.
    let other =
        h32(&vectors()["pointer"][0]["versions"]["v1"]["sides"]["B"]["sourceStateHash_hex"]);
    assert_eq!(
        proof::verify(&tb, &lock, &other, &sid, &resp),
        Err(VerifyError::CertificationDataMismatch)
    );

    // Corrupted witness.
    let mut r = resp.clone();
    r.leaf.as_mut().unwrap().certification_data.witness[7] ^= 1;
    assert_eq!(
        proof::verify(&tb, &lock, &ssh, &sid, &r),
        Err(VerifyError::NotAuthenticated)
    );

    // Every single-byte mutation of the encoded proof either fails to decode or fails
    // to verify, except mutations of bytes the SDK does not cover either (none here
    // change the outcome to another included hash).
    let bytes = h(&fp["get_inclusion_proof_v2_result_hex"]);
    for i in 0..bytes.len() {
        let mut m = bytes.clone();
        m[i] ^= 0x01;
        if let Ok(ProofOutcome::Included {
            transaction_hash, ..
        }) = proof::verify_bytes(&tb, &lock, &ssh, &sid, &m)
        {
            // The only accepted mutations are in fields no rule covers (the block
            // number, and non-signed metadata); the leaf must be unchanged.
            assert_eq!(
                transaction_hash,
                h32(&side["transactionHash_hex"]),
                "byte {i}"
            );
        }
    }
}

fn g_pk(side: &Value) -> Value {
    // The lock script is d99878 83 01 41 01 5821 <pk33>: the key is its last 33 bytes.
    let ls = h(&side["lockScript_cbor_hex"]);
    Value::String(hex::encode(&ls[ls.len() - 33..]))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Random mutations (several bytes changed, or truncation) of the SDK's proof:
    /// decoding never panics, and nothing but the original leaf is ever accepted.
    #[test]
    fn mutated_sdk_proofs_never_verify_to_another_leaf(
        edits in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 1..6),
        cut in proptest::option::of(0usize..2000),
    ) {
        let (tb, fp, side) = full_proof_fixture();
        let mut bytes = h(&fp["get_inclusion_proof_v2_result_hex"]);
        for (i, b) in edits {
            let n = bytes.len();
            bytes[i % n] ^= b | 1;
        }
        if let Some(c) = cut {
            let n = bytes.len();
            bytes.truncate(c % n);
        }
        let lock = Predicate::signature(&h33(&g_pk(&side)));
        let ssh = h32(&side["sourceStateHash_hex"]);
        let sid = h32(&side["stateId_hex"]);
        if let Ok(ProofOutcome::Included { transaction_hash, .. }) =
            proof::verify_bytes(&tb, &lock, &ssh, &sid, &bytes)
        {
            proptest::prop_assert_eq!(transaction_hash, h32(&side["transactionHash_hex"]));
        }
        let _ = UnicityCertificate::decode(&bytes);
        let _ = CertificationRequest::decode(&bytes);
    }
}

#[test]
fn a_certificate_from_a_newer_epoch_reports_a_stale_trust_base() {
    let (_, fp, side) = full_proof_fixture();
    let resp = ProofResponse::decode(&h(&fp["get_inclusion_proof_v2_result_hex"])).unwrap();
    // A trust base of an older epoch (0) with other validators: the epoch-1 seal
    // cannot verify, and the error says to ship a newer trust base.
    let other = k256::ecdsa::SigningKey::from_slice(&[0x77; 32]).unwrap();
    let mut json = TrustBase::single("node-1", &public_key(&other), 3).json;
    json.epoch = "0".into();
    let old = TrustBase::from_parsed(json).unwrap();
    let lock = Predicate::signature(&h33(&g_pk(&side)));
    assert_eq!(
        proof::verify(
            &old,
            &lock,
            &h32(&side["sourceStateHash_hex"]),
            &h32(&side["stateId_hex"]),
            &resp
        ),
        Err(VerifyError::TrustBaseStale {
            cert: 1,
            trusted: 0
        })
    );
}
