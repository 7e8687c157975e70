//! UXF golden vectors (`shared/golden/uxf/`, produced by the TypeScript reference),
//! checked through the library: element bytes and hashes, CAR bytes, JSON, round trips,
//! ops, instance chains, edge cases and micro vectors.
#![expect(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::path::PathBuf;

use serde_json::Value as J;
use sphere_profile::uxf::{
    Child, ContentHash, Element, ElementType, ErrorCode, Header, UxfPackage, Value, key,
};

const T0: u64 = 1_700_000_000;

fn golden() -> PathBuf {
    let shared = std::env::var("SPHERE_SHARED_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from,
    );
    shared.join("golden/uxf")
}

fn read_json(rel: &str) -> J {
    let p = golden().join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn read_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(golden().join(rel)).unwrap()
}

fn input(name: &str) -> J {
    read_json(&format!("inputs/{name}.json"))
}

fn package_of(names: &[&str]) -> UxfPackage {
    let mut p = UxfPackage::new(T0);
    for n in names {
        p.ingest(&input(n), T0).unwrap();
    }
    p
}

/// Pool order, hashes, canonical bytes and the JSON wire form of every element.
fn check_elements(pkg: &UxfPackage, rel: &str) {
    let want = read_json(rel);
    let want = want.as_array().unwrap();
    assert_eq!(pkg.pool().len(), want.len(), "{rel}: element count");
    for ((h, el), w) in pkg.pool().iter().zip(want) {
        assert_eq!(h.to_hex(), w["hash"].as_str().unwrap(), "{rel}: pool order");
        assert_eq!(h.to_cid_string(), w["cid"].as_str().unwrap());
        assert_eq!(u64::from(el.ty.id()), w["typeId"].as_u64().unwrap());
        assert_eq!(el.ty.name(), w["type"].as_str().unwrap());
        let bytes = el.canonical_bytes().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            w["canonicalCborHex"].as_str().unwrap(),
            "{rel} {h}"
        );
        assert_eq!(ContentHash::digest(&bytes), *h);
    }
}

fn check_car(pkg: &UxfPackage, rel: &str) {
    let car = pkg.to_car().unwrap();
    let want = read_bytes(rel);
    assert_eq!(car.len(), want.len(), "{rel}: CAR length");
    assert!(car == want, "{rel}: CAR bytes differ");
}

#[test]
fn per_token_elements_car_and_json() {
    for t in ["A", "B", "C", "D"] {
        let pkg = package_of(&[&format!("token-{t}")]);
        check_elements(&pkg, &format!("per-token/{t}/elements.json"));
        check_car(&pkg, &format!("per-token/{t}/package.car"));
        check_json(&pkg, &format!("per-token/{t}/package.uxf.json"));
    }
}

#[test]
fn all_six_elements_car_and_json() {
    let mut pkg = UxfPackage::new(T0);
    let mut sizes = Vec::new();
    for t in ["A", "B", "C", "D", "E", "F"] {
        pkg.ingest(&input(&format!("token-{t}")), T0).unwrap();
        sizes.push(pkg.pool().len());
    }
    assert_eq!(sizes, [8, 22, 48, 64, 79, 87]);
    check_elements(&pkg, "all-six/elements.json");
    check_car(&pkg, "all-six/package.car");
    check_json(&pkg, "all-six/package.uxf.json");
    // ingest_all gives the same bytes
    let tokens: Vec<J> = ["A", "B", "C", "D", "E", "F"]
        .iter()
        .map(|t| input(&format!("token-{t}")))
        .collect();
    let mut p2 = UxfPackage::new(T0);
    p2.ingest_all(&tokens, T0).unwrap();
    assert_eq!(p2.to_car().unwrap(), pkg.to_car().unwrap());
    // type distribution from the README
    let counts: Vec<(&str, usize)> = pkg
        .type_counts()
        .into_iter()
        .map(|(t, n)| (t.name(), n))
        .collect();
    for (name, n) in [
        ("token-root", 7),
        ("genesis", 7),
        ("genesis-data", 7),
        ("inclusion-proof", 12),
        ("authenticator", 12),
        ("smt-path", 12),
        ("unicity-certificate", 11),
        ("token-state", 9),
        ("transaction", 5),
        ("transaction-data", 5),
    ] {
        assert!(counts.contains(&(name, n)), "{name}: {counts:?}");
    }
}

fn check_json(pkg: &UxfPackage, rel: &str) {
    let want = read_json(rel);
    let got: J = serde_json::from_str(&pkg.to_json().unwrap()).unwrap();
    assert_eq!(got, want, "{rel}");
    // element order equals the pool order
    let order: Vec<&String> = want["elements"].as_object().unwrap().keys().collect();
    assert_eq!(order.len(), pkg.pool().len());
}

#[test]
fn summary_roots_and_car_ids() {
    let s = read_json("summary.json");
    for t in ["A", "B", "C", "D", "E", "F"] {
        let w = &s[t];
        let pkg = package_of(&[&format!("token-{t}")]);
        let (id, root) = pkg.manifest().first().unwrap();
        assert_eq!(id, w["tokenId"].as_str().unwrap());
        assert_eq!(root.to_hex(), w["rootHash"].as_str().unwrap());
        assert_eq!(pkg.pool().len() as u64, w["elementCount"].as_u64().unwrap());
        let car = pkg.to_car().unwrap();
        assert_eq!(car.len() as u64, w["carBytes"].as_u64().unwrap(), "{t}");
        let blocks = pkg.car_blocks().unwrap();
        assert_eq!(
            blocks[0].0.to_cid_string(),
            w["carRootCid"].as_str().unwrap()
        );
        assert_eq!(
            ContentHash::digest(&car).to_hex(),
            w["carSha256"].as_str().unwrap()
        );
    }
}

fn assert_token_eq(got: &Value, want: &J, what: &str) {
    assert_eq!(&got.to_json(), want, "{what}");
}

#[test]
fn roundtrip_in_memory_car_and_json() {
    let pkg = package_of(&[
        "token-A", "token-B", "token-C", "token-D", "token-E", "token-F",
    ]);
    let car = pkg.to_car().unwrap();
    let from_car = UxfPackage::from_car(&car).unwrap();
    let from_json = UxfPackage::from_json(&pkg.to_json().unwrap()).unwrap();
    assert_eq!(from_car.pool().len(), 87);
    for t in ["A", "B", "C", "D", "E", "F"] {
        let id = input(&format!("token-{t}"))["genesis"]["data"]["tokenId"]
            .as_str()
            .unwrap()
            .to_owned();
        let mem = pkg.assemble(&id).unwrap();
        assert_token_eq(
            &mem,
            &read_json(&format!("roundtrip/token-{t}.assembled-in-memory.json")),
            t,
        );
        assert_token_eq(&mem, &input(&format!("token-{t}")), t);
        assert_token_eq(
            &from_car.assemble(&id).unwrap(),
            &read_json(&format!(
                "roundtrip/token-{t}.assembled-after-car-import.json"
            )),
            t,
        );
        assert_token_eq(
            &from_json.assemble(&id).unwrap(),
            &read_json(&format!(
                "roundtrip/token-{t}.assembled-after-json-import.json"
            )),
            t,
        );
    }
    // fromCar(x).toCar(): same root CID, same block set, different bytes (§8.4)
    let re = from_car.to_car().unwrap();
    assert_eq!(
        re,
        read_bytes("roundtrip/all-six.reexported-after-car-import.car")
    );
    assert_ne!(re, car);
    // JSON re-export after JSON import is byte-identical CAR
    assert_eq!(from_json.to_car().unwrap(), car);
    let after: J = serde_json::from_str(&from_car.to_json().unwrap()).unwrap();
    assert_eq!(
        after,
        read_json("roundtrip/all-six.package-json-after-car-import.json")
    );
    let v = from_car.verify();
    assert!(v.valid);
    assert_eq!(v.stats.elements_checked, 87);
    assert_eq!(v.stats.tokens_checked, 6);
}

#[test]
fn micro_vectors() {
    for m in read_json("micro/elements.json").as_array().unwrap() {
        let el = element_from_golden(&m["element"]);
        let bytes = el.canonical_bytes().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            m["canonicalCborHex"].as_str().unwrap(),
            "{}",
            m["name"]
        );
        let h = el.hash().unwrap();
        assert_eq!(h.to_hex(), m["hash"].as_str().unwrap());
        assert_eq!(h.to_cid_string(), m["cid"].as_str().unwrap());
    }
    let a = read_json("micro/anatomy-token-state.json");
    let el = element_from_golden(&read_json("micro/elements.json")[0]["element"]);
    let full = hex::encode(el.canonical_bytes().unwrap());
    assert_eq!(full, a["fullCanonicalCborHex"].as_str().unwrap());
    for part in ["headerCborHex", "contentCborHex", "childrenCborHex"] {
        assert!(full.contains(a[part].as_str().unwrap()), "{part}");
    }
    let ty = a["typeCborHex"].as_str().unwrap();
    assert!(full.starts_with(&format!("a46474797065{ty}")));
}

/// A golden element in the generator's JSON form (`type` as a tag, `{"$bytes": hex}`).
fn element_from_golden(e: &J) -> Element {
    let h = &e["header"];
    let header = Header {
        representation: h["representation"].as_u64().unwrap(),
        semantics: h["semantics"].as_u64().unwrap(),
        kind: key(h["kind"].as_str().unwrap().to_owned()),
        predecessor: h["predecessor"]
            .as_str()
            .map(|p| ContentHash::from_hex(p).unwrap()),
    };
    let ty = match &e["type"] {
        J::String(s) => ElementType::from_name(s).unwrap(),
        n => ElementType::from_id(n.as_u64().unwrap()).unwrap(),
    };
    let content = e["content"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let val = match v.get("$bytes") {
                Some(b) => Value::Bytes(hex::decode(b.as_str().unwrap()).unwrap()),
                None => Value::from_json(v),
            };
            (key(k.clone()), val)
        })
        .collect();
    let children = e["children"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let c = match v {
                J::Null => Child::Null,
                J::String(s) => Child::Link(ContentHash::from_hex(s).unwrap()),
                J::Array(a) => Child::Links(
                    a.iter()
                        .map(|x| ContentHash::from_hex(x.as_str().unwrap()).unwrap())
                        .collect(),
                ),
                _ => panic!(),
            };
            (key(k.clone()), c)
        })
        .collect();
    Element {
        header,
        ty,
        content,
        children,
    }
}

#[test]
fn edge_cases_accepted_and_rejected() {
    let s = read_json("edge/summary.json");
    for (case, w) in s.as_object().unwrap() {
        let file = format!("inputs/edge-{case}.json");
        if !golden().join(&file).exists() {
            continue;
        }
        let token = read_json(&file);
        let mut pkg = UxfPackage::new(T0);
        let res = pkg.ingest(&token, T0);
        if w["ok"].as_bool().unwrap() {
            let root = res.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(root.to_hex(), w["rootHash"].as_str().unwrap(), "{case}");
            assert_eq!(
                pkg.pool().len() as u64,
                w["elementCount"].as_u64().unwrap(),
                "{case}"
            );
            assert_eq!(
                pkg.car_blocks().unwrap()[0].0.to_cid_string(),
                w["carRootCid"].as_str().unwrap(),
                "{case}"
            );
            let dir = golden().join(format!("edge/{case}"));
            if dir.exists() {
                check_elements(&pkg, &format!("edge/{case}/elements.json"));
                check_car(&pkg, &format!("edge/{case}/package.car"));
                check_json(&pkg, &format!("edge/{case}/package.uxf.json"));
                let back = UxfPackage::from_car(&pkg.to_car().unwrap()).unwrap();
                let id = pkg.manifest().keys().next().unwrap().clone();
                assert_token_eq(
                    &back.assemble(&id).unwrap(),
                    &read_json(&format!("edge/{case}/assembled-after-car-import.json")),
                    case,
                );
            }
        } else {
            let e = res.unwrap_err();
            match w.get("code").and_then(J::as_str) {
                Some(code) => {
                    assert_eq!(e.code().as_str(), code, "{case}");
                    assert_eq!(e.to_string(), w["error"].as_str().unwrap(), "{case}");
                }
                None => {
                    assert_eq!(e.code(), ErrorCode::SmtPath, "{case}");
                    assert_eq!(e.message, w["error"].as_str().unwrap());
                }
            }
        }
    }
}

#[test]
fn edge_reason_string_decode_quirk() {
    let q = read_json("edge/reason-string-decode-quirk.json");
    let mut base = input("edge-reason-string");
    for (key, w) in q.as_object().unwrap() {
        let reason: J = serde_json::from_str(key).unwrap();
        base["genesis"]["data"]["reason"] = reason;
        let mut pkg = UxfPackage::new(T0);
        let root = pkg.ingest(&base, T0).unwrap();
        assert_eq!(root.to_hex(), w["rootHash"].as_str().unwrap(), "{key}");
        let id = pkg.manifest().keys().next().unwrap().clone();
        let tok = pkg.assemble(&id).unwrap().to_json();
        assert_eq!(
            tok["genesis"]["data"]["reason"], w["assembledInMemory"],
            "{key}"
        );
        let back = UxfPackage::from_car(&pkg.to_car().unwrap()).unwrap();
        let tok = back.assemble(&id).unwrap().to_json();
        assert_eq!(
            tok["genesis"]["data"]["reason"], w["assembledAfterCar"],
            "{key}"
        );
    }
}

fn hashes(v: &J) -> Vec<ContentHash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| ContentHash::from_hex(h.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn ops_verify_diff_apply_delta() {
    let s = read_json("ops/summary.json");
    let all = package_of(&[
        "token-A", "token-B", "token-C", "token-D", "token-E", "token-F",
    ]);
    let v = all.verify();
    let w = &s["verifyAllSix"];
    assert_eq!(v.valid, w["valid"].as_bool().unwrap());
    assert!(v.errors.is_empty() && v.warnings.is_empty());
    assert_eq!(
        v.stats.tokens_checked as u64,
        w["stats"]["tokensChecked"].as_u64().unwrap()
    );
    assert_eq!(
        v.stats.elements_checked as u64,
        w["stats"]["elementsChecked"].as_u64().unwrap()
    );
    assert_eq!(
        v.stats.orphaned_elements as u64,
        w["stats"]["orphanedElements"].as_u64().unwrap()
    );

    let ab = package_of(&["token-A", "token-B"]);
    let abc = package_of(&["token-A", "token-B", "token-C"]);
    let d = ab.diff(&abc);
    let w = &s["diff_AB_to_ABC"];
    let added: Vec<ContentHash> = d.added_elements.keys().copied().collect();
    assert_eq!(added, hashes(&w["addedElements"]));
    assert!(
        d.removed_elements.is_empty()
            && d.removed_tokens.is_empty()
            && d.added_chain_entries.is_empty()
    );
    let tokens: Vec<(String, String)> = d
        .added_tokens
        .iter()
        .map(|(k, v)| (k.clone(), v.to_hex()))
        .collect();
    let want: Vec<(String, String)> = w["addedTokens"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(tokens, want);
    let mut applied = ab.clone();
    applied.apply_delta(&d).unwrap();
    assert_eq!(
        applied.pool().len() as u64,
        s["applyDelta_resultPoolSize"].as_u64().unwrap()
    );
    assert_eq!(applied.manifest(), abc.manifest());
    // a tampered element in a delta is refused
    let mut bad = d.clone();
    if let Some((_, el)) = bad.added_elements.first_mut() {
        el.header.kind = "tampered".into();
    }
    assert_eq!(
        ab.clone().apply_delta(&bad).unwrap_err().code(),
        ErrorCode::VerificationFailed
    );
}

/// Reference quirk (spec §9.1): gc() does not follow `nametagRefs`, so removing D
/// collects NAMETAG_ALICE although E still needs it through its transfer data.
#[test]
fn ops_gc_quirk_nametagrefs_are_not_edges() {
    let s = read_json("ops/summary.json");
    let mut all = package_of(&[
        "token-A", "token-B", "token-C", "token-D", "token-E", "token-F",
    ]);
    let d_id = input("token-D")["genesis"]["data"]["tokenId"]
        .as_str()
        .unwrap()
        .to_owned();
    let e_id = input("token-E")["genesis"]["data"]["tokenId"]
        .as_str()
        .unwrap()
        .to_owned();
    all.remove_token(&d_id, T0).unwrap();
    assert_eq!(
        all.gc() as u64,
        s["gc"]["afterRemoveD_removed"].as_u64().unwrap()
    );
    let e = all.assemble(&e_id).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MissingElement);
    assert!(
        e.to_string()
            .contains("a7305665792db2ad52530e26b2bf69b96bc4625180c200eb2b1334fff2bb9be4")
    );
    all.remove_token(&e_id, T0).unwrap();
    assert_eq!(
        all.gc() as u64,
        s["gc"]["afterRemoveE_removed"].as_u64().unwrap()
    );
    assert_eq!(
        all.pool().len() as u64,
        s["gc"]["finalPoolSize"].as_u64().unwrap()
    );
}

/// Reference quirk (spec §9.1): a CAR of E alone lacks the nametag sub-DAG, verify()
/// of the in-memory package counts it as 8 orphans, and the imported E cannot be
/// assembled.
#[test]
fn ops_quirk_nametagrefs_not_exported_and_orphaned() {
    let e = package_of(&["token-E"]);
    assert_eq!(e.pool().len(), 23);
    let v = e.verify();
    assert!(v.valid);
    assert_eq!(v.stats.orphaned_elements, 8);
    assert_eq!(v.warnings[0].code, "VERIFICATION_FAILED");
    assert_eq!(
        v.warnings[0].message,
        "8 orphaned element(s) found in pool (not reachable from any manifest root)"
    );
    let back = UxfPackage::from_car(&e.to_car().unwrap()).unwrap();
    assert_eq!(back.pool().len(), 15);
    let v = back.verify();
    assert!(v.valid && v.stats.orphaned_elements == 0);
    let id = e.manifest().keys().next().unwrap().clone();
    let err = back.assemble(&id).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[UXF:MISSING_ELEMENT] Element a7305665792db2ad52530e26b2bf69b96bc4625180c200eb2b1334fff2bb9be4 not in pool"
    );
}

fn outcome_json(o: &sphere_profile::uxf::JoinOutcome) -> J {
    serde_json::json!({
        "kind": o.kind(),
        "rootHash": o.root().to_hex(),
        "losers": o.losers().iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
    })
}

#[test]
fn ops_join_and_merge() {
    use sphere_profile::uxf::{MergeOptions, resolve_token_root};
    use std::collections::HashSet;
    let s = read_json("ops/summary.json");
    let w = &s["join_C_prefix_vs_full"];
    let mut pool = package_of(&["token-C-at-state-1"]);
    let prefix = *pool.manifest().values().next().unwrap();
    assert_eq!(prefix.to_hex(), w["rootPrefix"].as_str().unwrap());
    let full_pkg = package_of(&["token-C"]);
    let full = *full_pkg.manifest().values().next().unwrap();
    assert_eq!(full.to_hex(), w["rootFull"].as_str().unwrap());
    let mut merged_pool = pool.pool().clone();
    merged_pool.extend(full_pkg.pool().iter().map(|(h, e)| (*h, e.clone())));
    let none = HashSet::new();
    let o = resolve_token_root(&[prefix, full], &merged_pool, &none).unwrap();
    assert_eq!(outcome_json(&o), w["outcome"]);
    let o = resolve_token_root(&[full, prefix], &merged_pool, &none).unwrap();
    assert_eq!(outcome_json(&o), w["outcomeReversedOrder"]);

    let w = &s["merge_prefixIntoFull"];
    let report = pool.merge(&full_pkg, &MergeOptions::default(), T0).unwrap();
    assert_eq!(report.skipped.len(), w["skipped"].as_array().unwrap().len());
    let manifest: serde_json::Map<String, J> = pool
        .manifest()
        .iter()
        .map(|(k, v)| (k.clone(), J::String(v.to_hex())))
        .collect();
    assert_eq!(J::Object(manifest), w["manifestAfter"]);
    assert_eq!(
        pool.pool().len() as u64,
        w["poolSizeAfter"].as_u64().unwrap()
    );
    assert_eq!(pool.verify().valid, w["verify"].as_bool().unwrap());
    // sibling preservation: the loser stays in the pool until gc
    assert!(pool.pool().contains_key(&prefix));
    assert_eq!(pool.gc(), 1);

    let w = &s["join_divergent"];
    let mut p = package_of(&["token-A-divergent-1", "token-A-divergent-2"]);
    let c = hashes(&w["candidates"]);
    let o = resolve_token_root(&c, p.pool(), &none).unwrap();
    assert_eq!(outcome_json(&o), w["outcome"]);
    let o = resolve_token_root(&[c[1], c[0]], p.pool(), &none).unwrap();
    assert_eq!(outcome_json(&o), w["outcome"]);
    // merging a divergent fork keeps the deterministic winner and both forks' elements
    let fork1 = package_of(&["token-A-divergent-1"]);
    p.merge(&fork1, &MergeOptions::default(), T0).unwrap();
    assert_eq!(
        p.manifest().values().next().unwrap().to_hex(),
        w["outcome"]["rootHash"].as_str().unwrap()
    );
}

#[test]
fn instance_chain_vectors() {
    let s = read_json("instance-chain/summary.json");
    let mut pkg = package_of(&["token-A"]);
    let original = ContentHash::from_hex(s["original"].as_str().unwrap()).unwrap();
    let mut el = pkg.pool()[&original].clone();
    el.header.kind = "consolidated-proof".into();
    el.header.predecessor = Some(original);
    assert_eq!(
        hex::encode(el.canonical_bytes().unwrap()),
        s["newInstanceCanonicalCborHex"].as_str().unwrap()
    );
    let new = pkg.add_instance(original, el).unwrap();
    assert_eq!(new.to_hex(), s["newInstance"].as_str().unwrap());
    let json: J = serde_json::from_str(&pkg.to_json().unwrap()).unwrap();
    assert_eq!(json["instanceChainIndex"], s["instanceChainIndexJson"]);
    assert_eq!(json, read_json("instance-chain/package.uxf.json"));
    let car = pkg.to_car().unwrap();
    assert_eq!(car, read_bytes("instance-chain/package.car"));
    // quirk (spec §9.2): the head is not in the CAR, so import rebuilds no chain
    let back = UxfPackage::from_car(&car).unwrap();
    assert!(back.chains().is_empty());
    assert_eq!(s["rebuiltFromCar"], serde_json::json!({}));
    let id = pkg.manifest().keys().next().unwrap().clone();
    assert_eq!(pkg.assemble(&id).unwrap().to_json(), input("token-A"));
    let v = pkg.verify();
    let w = &s["verify"];
    assert_eq!(v.valid, w["valid"].as_bool().unwrap());
    assert_eq!(
        v.stats.elements_checked as u64,
        w["stats"]["elementsChecked"].as_u64().unwrap()
    );
    assert_eq!(
        v.stats.instance_chains_checked as u64,
        w["stats"]["instanceChainsChecked"].as_u64().unwrap()
    );
    assert_eq!(
        v.stats.orphaned_elements as u64,
        w["stats"]["orphanedElements"].as_u64().unwrap()
    );
    // JSON keeps the chain
    let again = UxfPackage::from_json(&pkg.to_json().unwrap()).unwrap();
    assert_eq!(again.chains().len(), 1);
    // a wrong predecessor is refused
    let mut bad = pkg.pool()[&original].clone();
    bad.header.kind = "zk-proof".into();
    bad.header.predecessor = Some(original);
    assert_eq!(
        pkg.add_instance(original, bad).unwrap_err().code(),
        ErrorCode::InvalidInstanceChain
    );
}

#[test]
fn assemble_at_historical_state() {
    let pkg = package_of(&["token-C"]);
    let id = pkg.manifest().keys().next().unwrap().clone();
    let at1 = pkg.assemble_at_state(&id, 1).unwrap().to_json();
    assert_eq!(at1, input("token-C-at-state-1"));
    let full = pkg.assemble_at_state(&id, 3).unwrap().to_json();
    assert_eq!(full, input("token-C"));
    assert_eq!(
        pkg.assemble_at_state(&id, 4).unwrap_err().code(),
        ErrorCode::StateIndexOutOfRange
    );
    assert_eq!(
        pkg.assemble_at_state(&id, 1 << 32).unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        pkg.assemble("00").unwrap_err().code(),
        ErrorCode::TokenNotFound
    );
}

#[test]
fn real_token_from_issue_295_round_trips() {
    let shared =
        golden().join("../../uxf-upstream-fixtures/user-reported-issue-295-real-token.json");
    let doc: J = serde_json::from_slice(&std::fs::read(shared).unwrap()).unwrap();
    let token = &doc["token"];
    let mut pkg = UxfPackage::new(T0);
    pkg.ingest(token, T0).unwrap();
    let id = pkg.manifest().keys().next().unwrap().clone();
    let back = UxfPackage::from_car(&pkg.to_car().unwrap()).unwrap();
    assert!(back.verify().valid);
    let mut want = token.clone();
    want.as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with('_'));
    let got = back.assemble(&id).unwrap().to_json();
    assert_eq!(normalize(got), normalize(want));
}

/// The documented normalizations (spec §7): byte fields `""` ≡ `null`, `coinData`
/// `null` ≡ `[]`, hex lower-cased.
fn normalize(v: J) -> J {
    match v {
        J::String(s) if s.is_empty() => J::Null,
        J::String(s) if s.len() >= 2 && s.bytes().all(|c| c.is_ascii_hexdigit()) => {
            J::String(s.to_ascii_lowercase())
        }
        J::Array(a) => J::Array(a.into_iter().map(normalize).collect()),
        J::Object(o) => J::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let v = if k == "coinData" && v.is_null() {
                        J::Array(vec![])
                    } else {
                        v
                    };
                    (k, normalize(v))
                })
                .collect(),
        ),
        other => other,
    }
}

/// JOIN rule 4 (spec §10.2): a longer pending history is enriched with the verified
/// proof a shorter sibling holds; the synthetic root is never exported.
#[test]
fn join_enriches_longer_pending_chain_with_verified_proof() {
    use sphere_profile::uxf::{JoinOutcome, KIND_ENRICHED_SYNTHETIC, MergeOptions};
    use std::collections::HashSet;
    let proven = input("token-B");
    let mut pending = proven.clone();
    pending["transactions"][0]["inclusionProof"] = J::Null;
    let tx1 = serde_json::json!({
        "data": {"sourceState": proven["state"].clone(), "recipient": "DIRECT://carol", "salt": "cc".repeat(32),
                 "recipientDataHash": null, "message": null, "nametags": []},
        "inclusionProof": null
    });
    pending["transactions"].as_array_mut().unwrap().push(tx1);
    pending["state"] = serde_json::json!({"predicate": "c0".repeat(32), "data": null});

    let mut target = package_of(&[]);
    target.ingest(&pending, T0).unwrap();
    let source = package_of(&["token-B"]);
    let id = proven["genesis"]["data"]["tokenId"].as_str().unwrap();
    let proven_root = source.manifest()[id];
    let tx0 = match source.pool()[&proven_root].child("transactions") {
        Some(Child::Links(v)) => v[0],
        _ => panic!(),
    };
    let proof = source.pool()[&tx0].child_link("inclusionProof").unwrap();

    // without verified proofs: plain longest-valid is impossible (tx0 differs) → divergent
    let mut plain = target.clone();
    let r = plain.merge(&source, &MergeOptions::default(), T0).unwrap();
    assert_eq!(r.joined[0].1.kind(), "divergent");

    let opts = MergeOptions {
        verified_proofs: HashSet::from([proof]),
        ..Default::default()
    };
    let r = target.merge(&source, &opts, T0).unwrap();
    let (_, outcome) = &r.joined[0];
    let JoinOutcome::Enriched {
        root,
        synthetic,
        losers,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(synthetic.header.kind, KIND_ENRICHED_SYNTHETIC);
    assert_eq!(losers.len(), 2);
    assert_eq!(target.manifest()[id], *root);
    let tok = target.assemble(id).unwrap().to_json();
    assert_eq!(tok["transactions"].as_array().unwrap().len(), 2);
    assert_eq!(
        tok["transactions"][0]["inclusionProof"],
        proven["transactions"][0]["inclusionProof"]
    );
    assert!(tok["transactions"][1]["inclusionProof"].is_null());
    assert_eq!(
        target.to_car().unwrap_err().code(),
        ErrorCode::VerificationFailed
    );
}
