//! `init`, `status` and `mnemonic` through the binary: new, imported (prompt and
//! scripted) and every bad input of issue 2.

use crate::harness::{cli, dir_in, workdir};

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const PASSWORD: &str = "correct horse battery staple";

/// The address id of the abandon…about wallet, from the SDK-computed vectors.
fn abandon_address_id() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/direct-address.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["vectors"][0]["addressId"].as_str().unwrap().to_owned()
}

#[test]
fn new_wallet_shows_its_mnemonic_once_and_status_matches() {
    let work = workdir();
    let dir = dir_in(&work, "a");
    let created = cli(&dir, &["--json", "init", "--words", "12"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .run();
    let out = created.json();
    assert!(
        created.stderr().contains("shown once"),
        "no warning: {}",
        created.stderr()
    );
    let phrase = out["mnemonic"].as_str().unwrap().to_owned();
    assert_eq!(phrase.split(' ').count(), 12);
    assert_eq!(out["generated"], true);
    assert_eq!(out["mnemonic_stored"], true);

    let status = cli(&dir, &["status", "--json"]).run().json();
    for field in ["address_id", "direct_address", "public_key", "device_id"] {
        assert_eq!(status[field], out[field], "{field}");
    }
    assert!(
        status.get("mnemonic").is_none(),
        "status must never show the mnemonic"
    );
    for file in ["wallet.json", "keys.json"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            !text.contains(&phrase),
            "{file} holds the plaintext mnemonic"
        );
    }

    let revealed = cli(&dir, &["--json", "mnemonic"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .run()
        .json();
    assert_eq!(revealed["mnemonic"], phrase.as_str());
}

#[test]
fn scripted_import_derives_the_known_identity() {
    let work = workdir();
    let dir = dir_in(&work, "b");
    let out = cli(&dir, &["--json", "init", "--mnemonic-stdin"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .stdin(&format!("  {}\n", ABANDON.to_uppercase()))
        .run()
        .json();
    assert_eq!(out["address_id"], abandon_address_id().as_str());
    assert_eq!(
        out["public_key"],
        "03aaeb52dd7494c361049de67cc680e83ebcbbbdbeb13637d92cd845f70308af5e"
    );
    assert_eq!(out["generated"], false);
    assert!(
        out.get("mnemonic").is_none(),
        "an imported mnemonic is never echoed"
    );
}

#[test]
fn interactive_import_prompts_on_the_terminal() {
    let work = workdir();
    let dir = dir_in(&work, "c");
    let run = cli(&dir, &["init", "--import"])
        .stdin(&format!("{ABANDON}\n{PASSWORD}\n{PASSWORD}\n"))
        .run_in_pty();
    let out = run.ok();
    assert!(
        out.contains("Mnemonic (words separated by spaces):"),
        "{out}"
    );
    assert!(out.contains("Repeat password:"), "{out}");
    let status = cli(&dir, &["status", "--json"]).run().json();
    assert_eq!(status["address_id"], abandon_address_id().as_str());
    let revealed = cli(&dir, &["--json", "mnemonic"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .run()
        .json();
    assert_eq!(revealed["mnemonic"], ABANDON);
}

#[test]
fn no_store_mnemonic_needs_no_password_and_keeps_none() {
    let work = workdir();
    let dir = dir_in(&work, "d");
    let out = cli(
        &dir,
        &["--json", "init", "--mnemonic-stdin", "--no-store-mnemonic"],
    )
    .stdin(ABANDON)
    .run()
    .json();
    assert_eq!(out["mnemonic_stored"], false);
    let err = cli(&dir, &["mnemonic"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .run()
        .fails_with(1);
    assert!(err.contains("does not store its mnemonic"), "{err}");
}

#[test]
fn wrong_password_is_refused() {
    let work = workdir();
    let dir = dir_in(&work, "e");
    cli(&dir, &["init", "--mnemonic-stdin"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .stdin(ABANDON)
        .run()
        .ok();
    let err = cli(&dir, &["mnemonic"])
        .env("SPHERE_PASSWORD", "not it")
        .run()
        .fails_with(1);
    assert!(err.contains("wrong password"), "{err}");
}

#[test]
fn bad_mnemonics_are_refused_and_create_nothing() {
    let work = workdir();
    let cases = [
        (
            ABANDON.replace("about", "abuot"),
            "not in the BIP39 English list",
        ),
        (ABANDON.replace("about", "abandon"), "checksum"),
        ("abandon abandon abandon".to_owned(), "12 or 24 words"),
        (String::new(), "12 or 24 words"),
    ];
    for (i, (phrase, message)) in cases.iter().enumerate() {
        let dir = dir_in(&work, &format!("bad{i}"));
        let err = cli(&dir, &["init", "--mnemonic-stdin"])
            .env("SPHERE_PASSWORD", PASSWORD)
            .stdin(phrase)
            .run()
            .fails_with(1);
        assert!(err.contains(message), "case {i}: {err}");
        assert!(
            !dir.join("wallet.json").exists(),
            "case {i} left a wallet behind"
        );
    }
}

#[test]
fn existing_wallet_is_never_overwritten() {
    let work = workdir();
    let dir = dir_in(&work, "f");
    cli(&dir, &["init", "--mnemonic-stdin"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .stdin(ABANDON)
        .run()
        .ok();
    let before = std::fs::read(dir.join("wallet.json")).unwrap();
    let keys_before = std::fs::read(dir.join("keys.json")).unwrap();
    let err = cli(&dir, &["init"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .run()
        .fails_with(1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(dir.join("wallet.json")).unwrap(), before);
    assert_eq!(std::fs::read(dir.join("keys.json")).unwrap(), keys_before);
}

#[test]
fn missing_password_without_a_terminal_is_a_clear_error() {
    let work = workdir();
    let dir = dir_in(&work, "g");
    let err = cli(&dir, &["init", "--mnemonic-stdin"])
        .stdin(ABANDON)
        .run()
        .fails_with(1);
    assert!(
        err.contains("SPHERE_PASSWORD") && err.contains("--no-store-mnemonic"),
        "{err}"
    );
    assert!(!dir.join("wallet.json").exists());
    let err = cli(&dir, &["init", "--import"])
        .env("SPHERE_PASSWORD", PASSWORD)
        .run()
        .fails_with(1);
    assert!(err.contains("--mnemonic-stdin"), "{err}");
}

#[test]
fn status_of_an_empty_dir_says_to_init() {
    let work = workdir();
    let out = cli(&dir_in(&work, "none"), &["--json", "status"]).run();
    let err = out.fails_with(1);
    assert!(err.contains("sphere-cli init"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["exit_code"], 1);
}
