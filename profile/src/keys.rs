//! Key material: everything a wallet's Profile needs, derived from its BIP39 mnemonic.
//!
//! ```text
//! mnemonic (+ optional passphrase)
//!   └─ BIP39 seed (PBKDF2-HMAC-SHA512, 2048 rounds)
//!       └─ BIP32 m/44'/0'/0'/0/{i}  → address key (secp256k1)
//!           ├─ SHA-256(key) → its public key → DIRECT address → addressId DIRECT_xxxxxx_yyyyyy
//!           ├─ profile value key   HKDF-SHA256(salt "sphere-profile-v1", info "uxf-profile-encryption")
//!           ├─ pointer chain       HKDF(salt ∅, info "uxf-profile-aggregator-pointer-v1")
//!           │                        → signing / xor / pad seeds (HKDF-Expand)
//!           └─ OpLog root (ours)   HKDF(salt "sphere-oplog-v1", info "sphere-oplog-root-v1")
//!                                    → Expand: signing key, body key, log id, gossip topic
//! ```
//!
//! The first three are byte-compatible with the TypeScript Sphere wallet
//! (`shared/spec/profile.md` §1–§2, `shared/spec/pointer.md` §1); the OpLog keys are this
//! project's own and are specified in `docs/formats.md` § "Key derivation".
//!
//! Every secret is a [`Secret32`]: zeroized on drop, `[redacted]` in `Debug`.
//! This module never touches storage or the network.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::sec1::ToSec1Point;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::secret::Secret32;

/// The BIP32 path prefix Sphere derives receive addresses under: `m/44'/0'/0'/0/{i}`.
pub const ADDRESS_PATH_PREFIX: &str = "m/44'/0'/0'/0";

/// HKDF salt of the Profile value key (Sphere-compatible).
pub const PROFILE_KEY_SALT: &[u8] = b"sphere-profile-v1";
/// HKDF info of the Profile value key (Sphere-compatible).
pub const PROFILE_KEY_INFO: &[u8] = b"uxf-profile-encryption";
/// HKDF info of the pointer secret (Sphere-compatible; salt is empty).
pub const POINTER_SECRET_INFO: &[u8] = b"uxf-profile-aggregator-pointer-v1";
/// HKDF-Expand info of the pointer signing seed (Sphere-compatible).
pub const POINTER_SIG_INFO: &[u8] = b"uxf-profile-pointer-sig-v1";
/// HKDF-Expand info of the pointer XOR seed (Sphere-compatible).
pub const POINTER_XOR_INFO: &[u8] = b"uxf-profile-pointer-xor-v1";
/// HKDF-Expand info of the pointer padding seed (Sphere-compatible).
pub const POINTER_PAD_INFO: &[u8] = b"uxf-profile-pointer-pad-v1";

/// HKDF salt of the OpLog root (this project's own).
pub const OPLOG_SALT: &[u8] = b"sphere-oplog-v1";
/// HKDF info of the OpLog root; every OpLog key is an HKDF-Expand of the root.
pub const OPLOG_ROOT_INFO: &[u8] = b"sphere-oplog-root-v1";
/// HKDF info of the OpLog signing key.
pub const OPLOG_SIGNING_INFO: &[u8] = b"sphere-oplog-signing-v1";
/// HKDF info of the OpLog body encryption key.
pub const OPLOG_BODY_INFO: &[u8] = b"sphere-oplog-body-v1";
/// HKDF info of the OpLog log id.
pub const OPLOG_LOG_ID_INFO: &[u8] = b"sphere-oplog-log-id-v1";
/// HKDF info of the gossip topic.
pub const OPLOG_TOPIC_INFO: &[u8] = b"sphere-oplog-topic-v1";

/// Why key material could not be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The phrase is not a valid BIP39 English mnemonic (unknown word, wrong word
    /// count, or bad checksum).
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    /// A derived or supplied 32-byte value is not a valid secp256k1 private key
    /// (zero or not below the group order). Happens with probability ~2⁻¹²⁷.
    #[error("derived value is not a valid secp256k1 private key ({what})")]
    InvalidScalar {
        /// Which key was being derived.
        what: &'static str,
    },
    /// A hex string that should hold key material did not.
    #[error("invalid hex for {what}")]
    Hex {
        /// Which value was being parsed.
        what: &'static str,
    },
    /// The address index is 2^31 or more: the last step of `m/44'/0'/0'/0/{index}`
    /// is unhardened, and BIP32 indexes from 2^31 up are hardened ones.
    #[error("address index {0} is out of range (0..=2147483647)")]
    AddressIndex(u32),
}

/// A BIP39 English mnemonic (12 or 24 words), zeroized on drop, never printed.
pub struct Mnemonic(bip39::Mnemonic);

impl std::fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mnemonic([redacted])")
    }
}

impl Mnemonic {
    /// A new random mnemonic of `words` words (12 or 24), from the OS RNG.
    pub fn generate(words: WordCount) -> Self {
        let mut entropy = Zeroizing::new([0u8; 32]);
        rand::fill(&mut entropy[..]);
        let len = match words {
            WordCount::Twelve => 16,
            WordCount::TwentyFour => 32,
        };
        let m = bip39::Mnemonic::from_entropy_in(bip39::Language::English, &entropy[..len])
            .expect("16 and 32 bytes are valid BIP39 entropy lengths");
        Self(m)
    }

    /// Parses a phrase: words separated by any white space, case-insensitive.
    /// Only 12- and 24-word phrases are accepted.
    pub fn parse(phrase: &str) -> Result<Self, KeyError> {
        let normalized = Zeroizing::new(
            phrase
                .split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" "),
        );
        let words = normalized.split(' ').filter(|w| !w.is_empty()).count();
        if words != 12 && words != 24 {
            return Err(KeyError::Mnemonic(format!(
                "expected 12 or 24 words, got {words}"
            )));
        }
        bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map(Self)
            .map_err(|e| KeyError::Mnemonic(describe_bip39_error(&e)))
    }

    /// The phrase, words separated by single spaces. Handle with care.
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_string())
    }

    /// Number of words.
    pub fn word_count(&self) -> usize {
        self.0.word_count()
    }

    /// The 64-byte BIP39 seed for `passphrase` (empty for Sphere wallets).
    pub fn to_seed(&self, passphrase: &str) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.0.to_seed(passphrase))
    }
}

fn describe_bip39_error(e: &bip39::Error) -> String {
    match e {
        bip39::Error::UnknownWord(i) => format!("word #{} is not in the BIP39 English list", i + 1),
        bip39::Error::InvalidChecksum => {
            "checksum does not match (a word is wrong or out of order)".into()
        }
        bip39::Error::BadWordCount(n) => format!("expected 12 or 24 words, got {n}"),
        other => other.to_string(),
    }
}

/// How many words a generated mnemonic has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordCount {
    /// 128 bits of entropy.
    Twelve,
    /// 256 bits of entropy (the default).
    #[default]
    TwentyFour,
}

type HmacSha512 = Hmac<Sha512>;

/// A BIP32 extended private key (private key and chain code).
struct ExtendedKey {
    key: Secret32,
    chain_code: Secret32,
}

/// Hardened-index offset of BIP32.
const HARDENED: u32 = 0x8000_0000;

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    let mut mac = <HmacSha512 as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA512 accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

fn split64(i: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut l = [0u8; 32];
    let mut r = [0u8; 32];
    l.copy_from_slice(&i[..32]);
    r.copy_from_slice(&i[32..]);
    (l, r)
}

fn scalar_from(bytes: &[u8; 32], what: &'static str) -> Result<k256::Scalar, KeyError> {
    Option::<k256::Scalar>::from(k256::Scalar::from_repr((*bytes).into()))
        .filter(|s| !bool::from(s.is_zero()))
        .ok_or(KeyError::InvalidScalar { what })
}

impl ExtendedKey {
    fn master(seed: &[u8]) -> Result<Self, KeyError> {
        let i = hmac_sha512(b"Bitcoin seed", &[seed]);
        let (mut l, r) = split64(&i);
        scalar_from(&l, "BIP32 master key")?;
        let key = Secret32::new(l);
        zeroize::Zeroize::zeroize(&mut l);
        Ok(Self {
            key,
            chain_code: Secret32::new(r),
        })
    }

    fn child(&self, index: u32) -> Result<Self, KeyError> {
        let i = if index >= HARDENED {
            hmac_sha512(
                self.chain_code.expose(),
                &[&[0u8], self.key.expose(), &index.to_be_bytes()],
            )
        } else {
            let public = compressed_public_key(&self.key)?;
            hmac_sha512(self.chain_code.expose(), &[&public, &index.to_be_bytes()])
        };
        let (mut l, r) = split64(&i);
        let tweak = scalar_from(&l, "BIP32 child tweak")?;
        zeroize::Zeroize::zeroize(&mut l);
        let parent = scalar_from(self.key.expose(), "BIP32 parent key")?;
        let child = tweak + parent;
        if bool::from(child.is_zero()) {
            return Err(KeyError::InvalidScalar {
                what: "BIP32 child key",
            });
        }
        Ok(Self {
            key: Secret32::new(child.to_repr().into()),
            chain_code: Secret32::new(r),
        })
    }
}

/// The 33-byte compressed SEC1 public key of a secp256k1 private key.
pub fn compressed_public_key(private_key: &Secret32) -> Result<[u8; 33], KeyError> {
    let sk = k256::SecretKey::from_bytes(&(*private_key.expose()).into())
        .map_err(|_| KeyError::InvalidScalar { what: "public key" })?;
    let point = sk.public_key().to_sec1_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    Ok(out)
}

/// Derives the private key at `m/44'/0'/0'/0/{index}` from a BIP39 seed.
///
/// # Errors
/// [`KeyError::AddressIndex`] for an index of 2^31 or more (that would derive a
/// hardened child, not the key at the path named); [`KeyError::InvalidScalar`]
/// with negligible probability.
pub fn address_private_key(seed: &[u8], index: u32) -> Result<Secret32, KeyError> {
    if index >= HARDENED {
        return Err(KeyError::AddressIndex(index));
    }
    let path = [44 | HARDENED, HARDENED, HARDENED, 0, index];
    let mut key = ExtendedKey::master(seed)?;
    for step in path {
        key = key.child(step)?;
    }
    Ok(key.key)
}

fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> Secret32 {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let s = Secret32::new(okm);
    zeroize::Zeroize::zeroize(&mut okm);
    s
}

fn hkdf_expand(prk: &Secret32, info: &[u8]) -> Secret32 {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::from_prk(prk.expose())
        .expect("a 32-byte PRK is long enough for HKDF-SHA256")
        .expand(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let s = Secret32::new(okm);
    zeroize::Zeroize::zeroize(&mut okm);
    s
}

/// The Sphere Profile value key: HKDF-SHA256 of the address private key.
pub fn profile_value_key(address_key: &Secret32) -> Secret32 {
    hkdf_sha256(PROFILE_KEY_SALT, address_key.expose(), PROFILE_KEY_INFO)
}

/// The aggregator pointer secret chain (`shared/spec/pointer.md` §1.2).
#[derive(Debug, Clone)]
pub struct PointerSeeds {
    /// HKDF(salt ∅, IKM = address key, info `uxf-profile-aggregator-pointer-v1`).
    pub pointer_secret: Secret32,
    /// Expand(pointerSecret, `uxf-profile-pointer-sig-v1`); the v2 signing scalar.
    pub signing_seed: Secret32,
    /// Expand(pointerSecret, `uxf-profile-pointer-xor-v1`).
    pub xor_seed: Secret32,
    /// Expand(pointerSecret, `uxf-profile-pointer-pad-v1`).
    pub pad_seed: Secret32,
}

impl PointerSeeds {
    /// Derives the chain from the wallet key (Sphere uses the `m/44'/0'/0'/0/0` key).
    pub fn derive(wallet_key: &Secret32) -> Self {
        Self::from_secret(hkdf_sha256(&[], wallet_key.expose(), POINTER_SECRET_INFO))
    }

    /// Expands the seeds from a pointer secret.
    pub fn from_secret(pointer_secret: Secret32) -> Self {
        Self {
            signing_seed: hkdf_expand(&pointer_secret, POINTER_SIG_INFO),
            xor_seed: hkdf_expand(&pointer_secret, POINTER_XOR_INFO),
            pad_seed: hkdf_expand(&pointer_secret, POINTER_PAD_INFO),
            pointer_secret,
        }
    }
}

/// This project's OpLog keys. Every device of a wallet derives the same ones;
/// nobody without the wallet key can.
#[derive(Debug, Clone)]
pub struct OplogKeys {
    /// The root every other OpLog key is expanded from (what a data dir stores).
    pub root: Secret32,
    /// secp256k1 scalar that signs every OpLog entry of the wallet.
    pub signing_key: Secret32,
    /// AES-256-GCM key of entry bodies.
    pub body_key: Secret32,
    /// Binds entries to this wallet's log; public (it is in every entry header).
    pub log_id: [u8; 32],
    /// The gossipsub topic the wallet's devices meet on.
    pub topic: String,
}

impl OplogKeys {
    /// The OpLog root of a wallet (address) private key.
    pub fn root_of(wallet_key: &Secret32) -> Secret32 {
        hkdf_sha256(OPLOG_SALT, wallet_key.expose(), OPLOG_ROOT_INFO)
    }

    /// Expands the OpLog keys from their root.
    pub fn from_root(root: Secret32) -> Result<Self, KeyError> {
        let signing_key = hkdf_expand(&root, OPLOG_SIGNING_INFO);
        scalar_from(signing_key.expose(), "OpLog signing key")?;
        let log_id = *hkdf_expand(&root, OPLOG_LOG_ID_INFO).expose();
        let topic_bytes = hkdf_expand(&root, OPLOG_TOPIC_INFO);
        Ok(Self {
            signing_key,
            body_key: hkdf_expand(&root, OPLOG_BODY_INFO),
            log_id,
            topic: format!(
                "/sphere-profile/oplog/1/{}",
                hex::encode(&topic_bytes.expose()[..16])
            ),
            root,
        })
    }

    /// The compressed public key that verifies this wallet's entries.
    pub fn signing_public_key(&self) -> Result<[u8; 33], KeyError> {
        compressed_public_key(&self.signing_key)
    }
}

/// Everything a Profile needs, derived from one wallet address key. Holds no
/// spending key: the address private key is dropped once these are derived, so a
/// data dir that stores them ([`WalletKeys::stored`]) cannot sign token transfers.
#[derive(Debug, Clone)]
pub struct WalletKeys {
    public_key: [u8; 33],
    direct_address: String,
    /// The Sphere Profile value key (AES-256-GCM of every stored value).
    pub profile_key: Secret32,
    /// The aggregator pointer chain.
    pub pointer: PointerSeeds,
    /// This project's OpLog keys.
    pub oplog: OplogKeys,
}

/// The three secrets a data dir keeps; everything else is expanded from them.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    /// Compressed address public key.
    pub public_key: [u8; 33],
    /// The DIRECT address (public).
    pub direct_address: String,
    /// The Profile value key.
    pub profile_key: Secret32,
    /// The pointer secret (the seeds are expanded from it).
    pub pointer_secret: Secret32,
    /// The OpLog root.
    pub oplog_root: Secret32,
}

impl WalletKeys {
    /// Derives the keys of address `index` (Sphere's default is 0).
    pub fn from_mnemonic(m: &Mnemonic, passphrase: &str, index: u32) -> Result<Self, KeyError> {
        let seed = m.to_seed(passphrase);
        Self::from_address_key(&address_private_key(&seed[..], index)?)
    }

    /// Derives everything from an address private key (also the entry point for the
    /// spec's known-answer tests, which start from a raw key).
    pub fn from_address_key(address_key: &Secret32) -> Result<Self, KeyError> {
        Ok(Self {
            public_key: compressed_public_key(address_key)?,
            direct_address: direct_address(address_key)?,
            profile_key: profile_value_key(address_key),
            pointer: PointerSeeds::derive(address_key),
            oplog: OplogKeys::from_root(OplogKeys::root_of(address_key))?,
        })
    }

    /// Rebuilds the keys from what a data dir stored.
    pub fn from_stored(stored: StoredKeys) -> Result<Self, KeyError> {
        // Reject a public key that is not a curve point before anything trusts it.
        k256::PublicKey::from_sec1_bytes(&stored.public_key).map_err(|_| {
            KeyError::InvalidScalar {
                what: "stored public key",
            }
        })?;
        if address_id(&stored.direct_address).is_none() {
            return Err(KeyError::Hex {
                what: "stored DIRECT address",
            });
        }
        Ok(Self {
            public_key: stored.public_key,
            direct_address: stored.direct_address,
            profile_key: stored.profile_key,
            pointer: PointerSeeds::from_secret(stored.pointer_secret),
            oplog: OplogKeys::from_root(stored.oplog_root)?,
        })
    }

    /// The secrets a data dir keeps to rebuild these keys.
    pub fn stored(&self) -> StoredKeys {
        StoredKeys {
            public_key: self.public_key,
            direct_address: self.direct_address.clone(),
            profile_key: self.profile_key.clone(),
            pointer_secret: self.pointer.pointer_secret.clone(),
            oplog_root: self.oplog.root.clone(),
        }
    }

    /// The 33-byte compressed public key of the address (Sphere's `chainPubkey`).
    pub fn public_key(&self) -> [u8; 33] {
        self.public_key
    }

    /// The Sphere DIRECT address, `DIRECT://…`.
    pub fn direct_address(&self) -> &str {
        &self.direct_address
    }

    /// The Sphere address id, `DIRECT_xxxxxx_yyyyyy`.
    pub fn address_id(&self) -> String {
        address_id(&self.direct_address).expect("a derived DIRECT address has an 85-char body")
    }

    /// `sphere-profile-` + the first 16 hex chars of the public key: the Profile DB
    /// name the TypeScript wallet uses.
    pub fn db_name(&self) -> String {
        format!("sphere-profile-{}", &hex::encode(self.public_key)[..16])
    }
}

/// The token type Sphere's DIRECT address commits to (the Unicity fungible type).
pub const SPHERE_TOKEN_TYPE: [u8; 32] = [
    0xf8, 0xaa, 0x13, 0x83, 0x42, 0x68, 0xd2, 0x93, 0x55, 0xff, 0x12, 0x18, 0x30, 0x66, 0xf0, 0xcb,
    0x90, 0x20, 0x03, 0x62, 0x9b, 0xbc, 0x5e, 0xb9, 0xef, 0x0e, 0xfb, 0xe3, 0x97, 0x86, 0x75, 0x09,
];

/// The Sphere DIRECT address of an address key, e.g. `DIRECT://0000…`.
///
/// Sphere commits to the public key of `SHA-256(address key)` (the state-transition
/// SDK 1.6 `createFromSecret` rule) through an *unmasked predicate reference*:
///
/// ```text
/// ref     = SHA-256( CBOR [ bytes(0x00),                       ; predicate type "unmasked"
///                           bytes(CBOR bytes(token type)),     ; token type, CBOR-wrapped twice
///                           "secp256k1", 0 (SHA-256 id),
///                           bytes(compressed public key) ] )
/// imprint = 0x0000 ‖ ref                                       ; algorithm id, then digest
/// address = "DIRECT://" ‖ hex(imprint) ‖ hex(SHA-256(imprint)[..4])
/// ```
///
/// Known-answer vectors (computed with the official SDK): `tests/vectors/direct-address.json`.
pub fn direct_address(address_key: &Secret32) -> Result<String, KeyError> {
    let token_key = Secret32::new(sha256(address_key.expose()));
    let public = compressed_public_key(&token_key)?;
    let token_type_cbor = serde_ipld_dagcbor::to_vec(serde_bytes::Bytes::new(&SPHERE_TOKEN_TYPE))
        .expect("a byte string always encodes");
    let reference = (
        serde_bytes::Bytes::new(&[0u8]),
        serde_bytes::Bytes::new(&token_type_cbor),
        "secp256k1",
        0u8,
        serde_bytes::Bytes::new(&public),
    );
    let cbor = serde_ipld_dagcbor::to_vec(&reference)
        .expect("a tuple of bytes, text and int always encodes");
    let mut imprint = vec![0u8, 0u8];
    imprint.extend_from_slice(&sha256(&cbor));
    let checksum = sha256(&imprint);
    Ok(format!(
        "DIRECT://{}{}",
        hex::encode(&imprint),
        hex::encode(&checksum[..4])
    ))
}

/// Sphere's address id: `DIRECT_` + first 6 + `_` + last 6 characters of the address
/// body (after `DIRECT://`, or `DIRECT:`, or the whole string), lower-cased.
/// Returns `None` when the body is shorter than 12 characters or not ASCII.
pub fn address_id(direct_address: &str) -> Option<String> {
    let body = direct_address
        .strip_prefix("DIRECT://")
        .or_else(|| direct_address.strip_prefix("DIRECT:"))
        .unwrap_or(direct_address);
    if body.len() < 12 || !body.is_ascii() {
        return None;
    }
    let body = body.to_ascii_lowercase();
    let (head, tail) = (body.get(..6)?, body.get(body.len() - 6..)?);
    Some(format!("DIRECT_{head}_{tail}"))
}

/// SHA-256, the one hash every format here is built on.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABANDON: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    #[test]
    fn bip39_seed_of_the_standard_vector() {
        // BIP39 reference vector (Trezor's vectors.json), passphrase "TREZOR".
        let m = Mnemonic::parse(ABANDON).unwrap();
        assert_eq!(
            hex::encode(&m.to_seed("TREZOR")[..]),
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        );
    }

    #[test]
    fn bip32_address_key_of_the_abandon_mnemonic() {
        let m = Mnemonic::parse(ABANDON).unwrap();
        let keys = WalletKeys::from_mnemonic(&m, "", 0).unwrap();
        assert_eq!(
            hex::encode(keys.public_key()),
            "03aaeb52dd7494c361049de67cc680e83ebcbbbdbeb13637d92cd845f70308af5e"
        );
    }

    #[test]
    fn address_index_must_be_unhardened() {
        let m = Mnemonic::parse(ABANDON).unwrap();
        let seed = m.to_seed("");
        assert!(address_private_key(&seed[..], HARDENED - 1).is_ok());
        for index in [HARDENED, HARDENED + 1, u32::MAX] {
            assert!(
                matches!(
                    address_private_key(&seed[..], index),
                    Err(KeyError::AddressIndex(i)) if i == index
                ),
                "index {index} must be refused"
            );
            assert!(matches!(
                WalletKeys::from_mnemonic(&m, "", index),
                Err(KeyError::AddressIndex(_))
            ));
        }
    }

    #[test]
    fn bip32_test_vector_1_chain() {
        // BIP32 test vector 1: seed 000102…0f, m/0'/1 private key.
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let k = ExtendedKey::master(&seed)
            .unwrap()
            .child(HARDENED)
            .unwrap()
            .child(1)
            .unwrap();
        assert_eq!(
            hex::encode(k.key.expose()),
            "3c6cb8d0f6a264c91ea8b5030fadaa8e538b020f0a387421a12de9319dc93368"
        );
    }

    #[test]
    fn stored_keys_rebuild_the_same_wallet() {
        let keys = WalletKeys::from_address_key(&Secret32::new([1; 32])).unwrap();
        let again = WalletKeys::from_stored(keys.stored()).unwrap();
        assert_eq!(again.public_key(), keys.public_key());
        assert_eq!(again.pointer.xor_seed, keys.pointer.xor_seed);
        assert_eq!(again.oplog.signing_key, keys.oplog.signing_key);
        assert_eq!(again.oplog.topic, keys.oplog.topic);
        assert_eq!(keys.db_name(), "sphere-profile-031b84c5567b1264");
    }

    #[test]
    fn address_id_rules() {
        assert_eq!(
            address_id("DIRECT://0000BE36aaaaaaaaA1B2C3").as_deref(),
            Some("DIRECT_0000be_a1b2c3")
        );
        assert_eq!(
            address_id("DIRECT:0000be36aaaaaaaaa1b2c3").as_deref(),
            Some("DIRECT_0000be_a1b2c3")
        );
        assert_eq!(
            address_id("0000be36aaaaaaaaa1b2c3").as_deref(),
            Some("DIRECT_0000be_a1b2c3")
        );
        assert_eq!(address_id("DIRECT://short"), None);
    }

    #[test]
    fn mnemonic_errors_are_typed_and_specific() {
        let bad_word = ABANDON.replace("about", "abut");
        assert!(
            matches!(Mnemonic::parse(&bad_word), Err(KeyError::Mnemonic(m)) if m.contains("#12"))
        );
        let bad_sum = ABANDON.replace("about", "abandon");
        assert!(
            matches!(Mnemonic::parse(&bad_sum), Err(KeyError::Mnemonic(m)) if m.contains("checksum"))
        );
        assert!(
            matches!(Mnemonic::parse("abandon about"), Err(KeyError::Mnemonic(m)) if m.contains("12 or 24"))
        );
    }

    #[test]
    fn generated_mnemonics_round_trip() {
        for wc in [WordCount::Twelve, WordCount::TwentyFour] {
            let m = Mnemonic::generate(wc);
            let again = Mnemonic::parse(&m.phrase().to_uppercase()).unwrap();
            assert_eq!(again.phrase(), m.phrase());
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let keys = WalletKeys::from_address_key(&Secret32::new([1; 32])).unwrap();
        let shown = format!("{keys:?} {:?}", keys.stored());
        for secret in [
            keys.profile_key.expose(),
            keys.oplog.root.expose(),
            keys.pointer.pointer_secret.expose(),
            keys.pointer.signing_seed.expose(),
            keys.oplog.signing_key.expose(),
            keys.oplog.body_key.expose(),
        ] {
            assert!(!shown.contains(&hex::encode(secret)), "{shown}");
            assert!(!shown.contains(&format!("{:?}", &secret[..4])), "{shown}");
        }
        let m = Mnemonic::parse(ABANDON).unwrap();
        assert!(!format!("{m:?}").contains("abandon"));
    }
}
