//! `sphere-cli uxf` through the built binary: packing the golden inputs gives the
//! reference's CAR bytes, unpack/verify/inspect agree with the golden vectors, and bad
//! bundles exit 1 with the reason.
#![expect(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as J;

/// The UXF golden vectors (under `SPHERE_SHARED_DIR`, else `../shared`).
pub(crate) fn golden() -> PathBuf {
    let shared = std::env::var("SPHERE_SHARED_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from,
    );
    shared.join("golden/uxf")
}

fn cli(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sphere-cli"))
        .args(args)
        .env("HOME", home)
        .env_remove("SPHERE_DATA_DIR")
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn input(t: &str) -> String {
    golden()
        .join(format!("inputs/{t}.json"))
        .display()
        .to_string()
}

#[test]
fn pack_reproduces_golden_cars_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["token-A"], "per-token/A/package.car"),
        (vec!["token-B"], "per-token/B/package.car"),
        (vec!["token-C"], "per-token/C/package.car"),
        (vec!["token-D"], "per-token/D/package.car"),
        (
            vec![
                "token-A", "token-B", "token-C", "token-D", "token-E", "token-F",
            ],
            "all-six/package.car",
        ),
        (
            vec!["edge-pending-authenticator"],
            "edge/pending-authenticator/package.car",
        ),
        (vec!["edge-null-proof"], "edge/null-proof/package.car"),
    ];
    for (tokens, want) in cases {
        let out_car = dir.path().join("out.car");
        let mut args = vec!["uxf".to_owned(), "pack".to_owned()];
        args.extend(tokens.iter().map(|t| input(t)));
        args.extend([
            "-o".into(),
            out_car.display().to_string(),
            "--created-at".into(),
            "1700000000".into(),
        ]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&cli(&a, dir.path()));
        let got = std::fs::read(&out_car).unwrap();
        let want_bytes = std::fs::read(golden().join(want)).unwrap();
        assert!(got == want_bytes, "{want}: CAR differs");
    }
}

#[test]
fn pack_accepts_an_array_file_and_envelope_flags() {
    let dir = tempfile::tempdir().unwrap();
    let arr: Vec<J> = ["token-A", "token-B"]
        .iter()
        .map(|t| serde_json::from_slice(&std::fs::read(input(t)).unwrap()).unwrap())
        .collect();
    let f = dir.path().join("two.json");
    std::fs::write(&f, serde_json::to_vec(&arr).unwrap()).unwrap();
    let car = dir.path().join("two.car");
    let out = cli(
        &[
            "--json",
            "uxf",
            "pack",
            f.to_str().unwrap(),
            "-o",
            car.to_str().unwrap(),
            "--created-at",
            "1735689600",
            "--creator",
            &"aa".repeat(33),
            "--description",
            "inter-wallet-transfer",
        ],
        dir.path(),
    );
    ok(&out);
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tokens"], 2);
    assert_eq!(v["elements"], 22);
    let out = cli(
        &["--json", "uxf", "inspect", car.to_str().unwrap()],
        dir.path(),
    );
    ok(&out);
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["envelope"]["creator"], "aa".repeat(33));
    assert_eq!(v["envelope"]["description"], "inter-wallet-transfer");
    assert_eq!(v["envelope"]["createdAt"], 1_735_689_600);
    assert_eq!(v["root"], J::String(v["root"].as_str().unwrap().to_owned()));
    let bad = cli(
        &[
            "uxf",
            "pack",
            f.to_str().unwrap(),
            "-o",
            car.to_str().unwrap(),
            "--creator",
            "xyz",
        ],
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn unpack_returns_the_tokens_as_after_car_import() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("tokens");
    let car = golden().join("all-six/package.car");
    ok(&cli(
        &[
            "uxf",
            "unpack",
            car.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    ));
    for t in ["A", "B", "C", "D", "E", "F"] {
        let inp: J =
            serde_json::from_slice(&std::fs::read(input(&format!("token-{t}"))).unwrap()).unwrap();
        let id = inp["genesis"]["data"]["tokenId"].as_str().unwrap();
        let got: J =
            serde_json::from_slice(&std::fs::read(out_dir.join(format!("{id}.json"))).unwrap())
                .unwrap();
        let want: J = serde_json::from_slice(
            &std::fs::read(golden().join(format!(
                "roundtrip/token-{t}.assembled-after-car-import.json"
            )))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(got, want, "token {t}");
    }
}

#[test]
fn verify_and_inspect_golden_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let car = golden().join("all-six/package.car");
    let out = cli(
        &["--json", "uxf", "verify", car.to_str().unwrap()],
        dir.path(),
    );
    ok(&out);
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["elements_checked"], 87);
    assert_eq!(v["tokens_checked"], 6);
    let out = cli(
        &["--json", "uxf", "inspect", car.to_str().unwrap()],
        dir.path(),
    );
    ok(&out);
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["root"],
        "bafyreibb6o3hu5mxxqtvqolvcyemcw3yrnh43dm63toomd6m5xkj6n5sxe"
    );
    assert_eq!(v["bytes"], 23_215);
    assert_eq!(v["elements"], 87);
    assert_eq!(v["element_counts"]["inclusion-proof"], 12);
    assert_eq!(v["element_counts"]["unicity-certificate"], 11);
    // the digest's naive sum of per-token element counts (spec §12)
    assert_eq!(v["dedup"]["naive_elements"], 99);
    assert_eq!(v["dedup"]["unique_elements"], 87);
}

#[test]
fn verify_rejects_a_flipped_byte_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut car = std::fs::read(golden().join("per-token/A/package.car")).unwrap();
    let n = car.len();
    car[n - 10] ^= 0x01;
    let p = dir.path().join("bad.car");
    std::fs::write(&p, &car).unwrap();
    let out = cli(&["uxf", "verify", p.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[UXF:"), "{err}");
    let missing = cli(
        &[
            "uxf",
            "verify",
            dir.path().join("nope.car").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_ne!(missing.status.code(), Some(0));
}

/// Reference quirk (spec §9.1) seen from the tool: a bundle of token E alone lacks the
/// nametag its transfer references, so it verifies but cannot be unpacked.
#[test]
fn unpack_of_token_e_alone_fails_like_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let car = dir.path().join("e.car");
    ok(&cli(
        &[
            "uxf",
            "pack",
            &input("token-E"),
            "-o",
            car.to_str().unwrap(),
            "--created-at",
            "1700000000",
        ],
        dir.path(),
    ));
    ok(&cli(&["uxf", "verify", car.to_str().unwrap()], dir.path()));
    let err = unpack_fails(&car, dir.path());
    assert!(err.contains("MISSING_ELEMENT"), "{err}");
}

/// `uxf unpack CAR -o DIR/x` in `dir`: asserts exit 1 and returns stderr.
fn unpack_fails(car: &std::path::Path, dir: &std::path::Path) -> String {
    let out = cli(
        &[
            "uxf",
            "unpack",
            car.to_str().unwrap(),
            "-o",
            dir.join("x").to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bundle of 61 token roots, each listing the one below twice as a nametag: 21 KB,
/// it verifies, and its token would hold 2^61 roots. `unpack` refuses it with a typed
/// error instead of allocating until the process aborts.
#[test]
fn unpack_refuses_a_bundle_whose_token_fans_out_exponentially() {
    use sphere_profile::uxf::{Child, Element, ElementType, UxfPackage, Value};
    let id = "cd".repeat(32);
    let mut elements = serde_json::Map::new();
    let mut put = |el: Element| {
        let h = el.hash().unwrap();
        let content: serde_json::Map<String, J> = el
            .content
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect();
        let children: serde_json::Map<String, J> = el
            .children
            .iter()
            .map(|(k, c)| {
                let v = match c {
                    Child::Null => J::Null,
                    Child::Link(h) => J::String(h.to_hex()),
                    Child::Links(v) => v.iter().map(|h| J::String(h.to_hex())).collect(),
                };
                (k.to_string(), v)
            })
            .collect();
        elements.insert(
            h.to_hex(),
            serde_json::json!({
                "header": {"representation": 1, "semantics": 1, "kind": "default", "predecessor": null},
                "type": el.ty.id(),
                "content": content,
                "children": children,
            }),
        );
        h
    };
    let state = put(Element::new(
        ElementType::TokenState,
        vec![
            ("predicate".into(), Value::Text("ee".repeat(32))),
            ("data".into(), Value::Null),
        ],
        vec![],
    ));
    let gdata = put(Element::new(
        ElementType::GenesisData,
        vec![("tokenId".into(), Value::Text(id.clone()))],
        vec![],
    ));
    let genesis = put(Element::new(
        ElementType::Genesis,
        vec![],
        vec![("data".into(), Child::Link(gdata))],
    ));
    let mut below = None;
    for _ in 0..=60 {
        let nametags = below.map_or_else(Vec::new, |b| vec![b, b]);
        below = Some(put(Element::new(
            ElementType::TokenRoot,
            vec![
                ("tokenId".into(), Value::Text(id.clone())),
                ("version".into(), Value::Text("2.0".into())),
            ],
            vec![
                ("genesis".into(), Child::Link(genesis)),
                ("transactions".into(), Child::Links(vec![])),
                ("state".into(), Child::Link(state)),
                ("nametags".into(), Child::Links(nametags)),
            ],
        )));
    }
    let doc = serde_json::json!({
        "uxf": "1.0.0",
        "metadata": {"version": "1.0.0", "createdAt": 1, "updatedAt": 1},
        "manifest": {id.clone(): below.unwrap().to_hex()},
        "elements": elements,
    });
    let pkg = UxfPackage::from_json(&doc.to_string()).unwrap();
    let car = pkg.to_car().unwrap();
    assert!(car.len() < 32 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fan.car");
    std::fs::write(&p, &car).unwrap();
    ok(&cli(&["uxf", "verify", p.to_str().unwrap()], dir.path()));
    let err = unpack_fails(&p, dir.path());
    assert!(err.contains("LIMIT_EXCEEDED"), "{err}");
}

/// Nametags nest up to 100 token roots; each adds two JSON levels, more than
/// serde_json's default 128 allow. What `unpack` writes, `pack` reads again.
#[test]
fn pack_reads_every_token_unpack_writes() {
    fn tok(i: usize, nametags: Vec<J>) -> J {
        let b = format!("{:02x}", i % 250);
        serde_json::json!({
            "version": "2.0",
            "state": {"predicate": b, "data": null},
            "genesis": {"data": {"tokenId": b.repeat(32), "tokenType": "01", "coinData": null,
                                 "tokenData": null, "salt": "aa", "recipient": "r",
                                 "recipientDataHash": null, "reason": null},
                        "inclusionProof": null},
            "transactions": [],
            "nametags": nametags,
        })
    }
    let mut t = tok(0, vec![]);
    for i in 1..100 {
        t = tok(i, vec![t]);
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("deep.json");
    std::fs::write(&input, serde_json::to_vec(&t).unwrap()).unwrap();
    let pack = |from: &Path, to: &Path| {
        let out = cli(
            &[
                "--json",
                "uxf",
                "pack",
                from.to_str().unwrap(),
                "-o",
                to.to_str().unwrap(),
                "--created-at",
                "1700000000",
            ],
            dir.path(),
        );
        ok(&out);
        let v: J = serde_json::from_slice(&out.stdout).unwrap();
        v["root"].as_str().unwrap().to_owned()
    };
    let car = dir.path().join("deep.car");
    let root = pack(&input, &car);
    let out_dir = dir.path().join("tokens");
    ok(&cli(
        &[
            "uxf",
            "unpack",
            car.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    ));
    let unpacked = out_dir.join(format!("{}.json", "63".repeat(32)));
    assert!(serde_json::from_slice::<J>(&std::fs::read(&unpacked).unwrap()).is_err());
    assert_eq!(pack(&unpacked, &dir.path().join("again.car")), root);
}
