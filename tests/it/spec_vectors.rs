//! Known answers for key derivation, value encryption and the envelope, read from
//! `shared/spec/profile.md` §2–§3, `shared/golden/pointer/`, and this repo's
//! SDK-computed DIRECT address vectors.

use sphere_profile::cipher;
use sphere_profile::envelope::{self, EntryType, Envelope, Originated, StoredValue};
use sphere_profile::keys::{self, Mnemonic, PointerSeeds, WalletKeys};
use sphere_profile::secret::Secret32;

use crate::shared::{between, read_repo_vectors, read_shared};

fn secret(hex_str: &str) -> Secret32 {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut b).unwrap();
    Secret32::new(b)
}

struct ProfileKats {
    profile_key: String,
    plaintext: String,
    blob: String,
    envelope: String,
}

/// Pulls the §2.1, §2.2 and §3.1 known answers out of the spec's prose.
fn profile_kats() -> ProfileKats {
    let spec = read_shared("spec/profile.md");
    let profile_key = between(&spec, "IKM = `01`×32 → profile key", "`", "`").to_owned();
    let plaintext = between(&spec, "IV `000102…0b`, plaintext", "`", "`").to_owned();
    let blob = between(&spec, &format!("{plaintext}` →"), "`", "`").to_owned();
    let envelope = between(
        &spec,
        "Example (payload = KAT above, ts = 1700000000000):",
        "`",
        "`",
    )
    .to_owned();
    ProfileKats {
        profile_key,
        plaintext,
        blob,
        envelope,
    }
}

#[test]
fn profile_value_key_from_spec() {
    let kats = profile_kats();
    let key = keys::profile_value_key(&Secret32::new([1; 32]));
    assert_eq!(hex::encode(key.expose()), kats.profile_key);
}

#[test]
fn aes_gcm_value_blob_from_spec() {
    let kats = profile_kats();
    let key = secret(&kats.profile_key);
    let iv: [u8; 12] = core::array::from_fn(|i| i as u8);
    let blob = cipher::encrypt_with_iv(&key, &iv, kats.plaintext.as_bytes(), &[]);
    assert_eq!(hex::encode(&blob), kats.blob);
    assert_eq!(
        cipher::decrypt(&key, &blob).unwrap(),
        kats.plaintext.as_bytes()
    );
}

#[test]
fn envelope_bytes_from_spec() {
    let kats = profile_kats();
    // The spec writes the payload as a placeholder and separates parts with spaces.
    let expected = kats
        .envelope
        .replace("<payload 101 bytes>", &kats.blob)
        .replace(' ', "");
    let payload = hex::decode(&kats.blob).unwrap();
    assert_eq!(payload.len(), 101);
    let env = Envelope::new(
        1_700_000_000_000,
        EntryType::CacheIndex,
        payload,
        Originated::System,
    );
    assert_eq!(hex::encode(env.encode()), expected);
    assert_eq!(
        envelope::decode(&hex::decode(&expected).unwrap()).unwrap(),
        StoredValue::Envelope(env)
    );
}

#[test]
fn db_name_from_spec() {
    let spec = read_shared("spec/profile.md");
    let expected = between(&spec, "KAT: privkey `01`×32 →", "`", "`");
    let keys = WalletKeys::from_address_key(&Secret32::new([1; 32])).unwrap();
    assert_eq!(keys.db_name(), expected);
}

#[test]
fn pointer_seeds_and_signing_keys_of_spec_keys_1_and_2() {
    let golden: serde_json::Value = serde_json::from_str(&read_shared(
        "golden/pointer/pointer-vectors-v2flavour-sdk3.0.1.json",
    ))
    .unwrap();
    let cases = golden["pointer"].as_array().unwrap();
    assert_eq!(cases.len(), 2, "spec keys #1 and #2");
    for case in cases {
        let wallet = secret(case["walletPrivateKey_hex"].as_str().unwrap());
        let seeds = PointerSeeds::derive(&wallet);
        let label = case["label"].as_str().unwrap();
        assert_eq!(
            hex::encode(seeds.pointer_secret.expose()),
            case["pointerSecret_hex"],
            "{label}"
        );
        assert_eq!(
            hex::encode(seeds.signing_seed.expose()),
            case["signingSeed_hex"],
            "{label}"
        );
        assert_eq!(
            hex::encode(seeds.xor_seed.expose()),
            case["xorSeed_hex"],
            "{label}"
        );
        assert_eq!(
            hex::encode(seeds.pad_seed.expose()),
            case["padSeed_hex"],
            "{label}"
        );
        // v2 flavour: the signing scalar is the seed itself.
        assert_eq!(
            hex::encode(seeds.signing_seed.expose()),
            case["signingScalar_hex"],
            "{label}"
        );
        let public = keys::compressed_public_key(&seeds.signing_seed).unwrap();
        assert_eq!(hex::encode(public), case["signingPubKey_hex"], "{label}");
    }
}

#[test]
fn bip39_bip32_abandon_about_public_key() {
    let m = Mnemonic::parse(
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
    )
    .unwrap();
    let keys = WalletKeys::from_mnemonic(&m, "", 0).unwrap();
    assert_eq!(
        hex::encode(keys.public_key()),
        "03aaeb52dd7494c361049de67cc680e83ebcbbbdbeb13637d92cd845f70308af5e"
    );
}

#[test]
fn direct_address_vectors_computed_by_the_official_sdk() {
    let vectors = read_repo_vectors("direct-address.json");
    let cases = vectors["vectors"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let wallet_key = match case.get("mnemonic").and_then(|m| m.as_str()) {
            Some(phrase) => {
                let m = Mnemonic::parse(phrase).unwrap();
                let key = keys::address_private_key(&m.to_seed("")[..], 0).unwrap();
                assert_eq!(
                    hex::encode(key.expose()),
                    case["walletPrivateKey"],
                    "{name}"
                );
                key
            }
            None => secret(case["walletPrivateKey"].as_str().unwrap()),
        };
        let keys = WalletKeys::from_address_key(&wallet_key).unwrap();
        assert_eq!(
            hex::encode(keys.public_key()),
            case["walletPublicKey"],
            "{name}"
        );
        assert_eq!(keys.direct_address(), case["directAddress"], "{name}");
        assert_eq!(keys.address_id(), case["addressId"], "{name}");
        if let Some(expected) = case.get("expected") {
            assert_eq!(
                keys.direct_address(),
                expected,
                "{name}: Sphere's own golden address"
            );
        }
    }
}
