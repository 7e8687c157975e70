//! Per (side, version) construction of the pointer commitments, and decoding back
//! to a CID (`shared/spec/pointer.md` §1.3–§2.7, v2 flavour).
//!
//! ```text
//! stateHash(side, v) = SHA-256(xorSeed ‖ side ‖ be32(v) ‖ "state")
//! xorKey(side, v)    = SHA-256(xorSeed ‖ side ‖ be32(v) ‖ "xor")
//! padding(v)         = HKDF-Expand(padSeed, be32(v) ‖ "pad", 63 − cidLen)
//! payload            = cidLen[1] ‖ cid ‖ padding      (64 bytes; A = [0..32], B = [32..64])
//! ct(side)           = part(side) XOR xorKey(side, v) (the request's transactionHash)
//! signing key        = secp256k1 scalar signingSeed; witness = sign(SHA-256(CBOR[ssh, ct]))
//! ```
//!
//! Sides: A = 0x00, B = 0x01. Versions run from [`VERSION_MIN`] to [`VERSION_MAX`].
//! Everything is deterministic, so a publish retried after a crash produces
//! byte-identical requests. Decoding checks the length prefix, that the CID decodes
//! exactly within it, that its multihash is sha2-256 with a 32-byte digest, and that
//! the padding after it is the one this wallet would have written.

use cid::Cid;
use hkdf::Hkdf;
use k256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use sphere_profile::keys::PointerSeeds;
use sphere_profile::secret::Secret32;
use zeroize::Zeroizing;

use crate::certificate::{public_key, sign_recoverable};
use crate::error::DecodeError;
use crate::wire::{self, CertificationData, CertificationRequest, Predicate};

/// Lowest version.
pub const VERSION_MIN: u32 = 1;
/// Highest version (2^31 − 1).
pub const VERSION_MAX: u32 = 0x7fff_ffff;
/// Longest binary CID a pointer can carry.
pub const CID_MAX_BYTES: usize = 63;
/// Bytes per side.
pub const PART_LEN: usize = 32;
/// Multihash code of sha2-256, the only hash accepted on decode.
pub const SHA2_256: u64 = 0x12;
/// Info prefix of the health-check key: SHA-256(this ‖ signingPubKey).
pub const HEALTH_CHECK_LABEL: &[u8] = b"profile-pointer-health-check";

/// One of the two commitments of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// First half of the payload (byte 0x00).
    A,
    /// Second half of the payload (byte 0x01).
    B,
}

impl Side {
    /// Both sides, A first.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    /// The byte mixed into the hashes.
    pub fn byte(self) -> u8 {
        match self {
            Side::A => 0x00,
            Side::B => 0x01,
        }
    }

    /// "A" or "B".
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }
}

/// The keys a wallet's pointer chain is built from.
pub struct PointerKeys {
    signing: SigningKey,
    public_key: [u8; 33],
    xor_seed: Secret32,
    pad_seed: Secret32,
}

impl std::fmt::Debug for PointerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointerKeys")
            .field("public_key", &hex::encode(self.public_key))
            .finish_non_exhaustive()
    }
}

/// Why pointer keys could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The signing seed is zero or not below the group order (probability ~2⁻¹²⁷).
    #[error("pointer signing seed is not a valid secp256k1 scalar")]
    InvalidSigningSeed,
}

/// Everything derived for one side of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideCommitment {
    /// Which side.
    pub side: Side,
    /// Which version.
    pub version: u32,
    /// The source state hash (SMT "state").
    pub state_hash: [u8; 32],
    /// The XOR key.
    pub xor_key: [u8; 32],
    /// The blinded half of the payload (the request's transactionHash).
    pub ciphertext: [u8; 32],
    /// The SMT key.
    pub state_id: [u8; 32],
    /// 65-byte signature r‖s‖v.
    pub witness: [u8; 65],
    /// The signing public key.
    pub public_key: [u8; 33],
}

impl SideCommitment {
    /// The certification data (SDK 3.0.1 shape, `expiresAt` = null).
    pub fn certification_data(&self) -> CertificationData {
        CertificationData {
            lock_script: Predicate::signature(&self.public_key),
            source_state_hash: self.state_hash.to_vec(),
            transaction_hash: self.ciphertext.to_vec(),
            expires_at: None,
            witness: self.witness.to_vec(),
        }
    }

    /// The certification request.
    pub fn request(&self) -> CertificationRequest {
        CertificationRequest {
            state_id: self.state_id,
            data: self.certification_data(),
            aggregate_request_count: 0,
        }
    }
}

/// Both sides of a version, and the payload they blind.
#[derive(Debug, Clone)]
pub struct VersionCommitments {
    /// The version.
    pub version: u32,
    /// The 64-byte payload (secret: it holds the CID in clear).
    pub payload: Zeroizing<[u8; 64]>,
    /// The padding used.
    pub padding: Vec<u8>,
    /// Side A.
    pub a: SideCommitment,
    /// Side B.
    pub b: SideCommitment,
}

impl VersionCommitments {
    /// The commitment of `side`.
    pub fn side(&self, side: Side) -> &SideCommitment {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

fn check_version(v: u32) -> Result<(), DecodeError> {
    if (VERSION_MIN..=VERSION_MAX).contains(&v) {
        Ok(())
    } else {
        Err(DecodeError::VersionOutOfRange(v))
    }
}

impl PointerKeys {
    /// Builds the keys from the wallet's pointer seeds (v2: the signing scalar is
    /// the signing seed itself).
    pub fn new(seeds: &PointerSeeds) -> Result<Self, KeysError> {
        let signing = SigningKey::from_slice(seeds.signing_seed.expose())
            .map_err(|_| KeysError::InvalidSigningSeed)?;
        Ok(Self {
            public_key: public_key(&signing),
            signing,
            xor_seed: seeds.xor_seed.clone(),
            pad_seed: seeds.pad_seed.clone(),
        })
    }

    /// The compressed signing public key: the wallet's stable pointer pseudonym.
    pub fn public_key(&self) -> &[u8; 33] {
        &self.public_key
    }

    /// The lock script (signature predicate over the public key).
    pub fn lock_script(&self) -> Predicate {
        Predicate::signature(&self.public_key)
    }

    fn seeded_hash(&self, side: Side, v: u32, label: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.xor_seed.expose());
        h.update([side.byte()]);
        h.update(v.to_be_bytes());
        h.update(label);
        h.finalize().into()
    }

    /// SHA-256(xorSeed ‖ side ‖ be32(v) ‖ "state").
    pub fn state_hash(&self, side: Side, v: u32) -> [u8; 32] {
        self.seeded_hash(side, v, b"state")
    }

    /// SHA-256(xorSeed ‖ side ‖ be32(v) ‖ "xor").
    pub fn xor_key(&self, side: Side, v: u32) -> [u8; 32] {
        self.seeded_hash(side, v, b"xor")
    }

    /// The StateId of (side, v).
    pub fn state_id(&self, side: Side, v: u32) -> [u8; 32] {
        wire::state_id(&self.lock_script(), &self.state_hash(side, v))
    }

    /// The health-check key: the StateId over SHA-256("profile-pointer-health-check" ‖ pk).
    pub fn health_check_state_id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(HEALTH_CHECK_LABEL);
        h.update(self.public_key);
        let ssh: [u8; 32] = h.finalize().into();
        wire::state_id(&self.lock_script(), &ssh)
    }

    /// HKDF-Expand(padSeed, be32(v) ‖ "pad", 63 − cidLen).
    pub fn padding(&self, v: u32, cid_len: usize) -> Vec<u8> {
        let len = CID_MAX_BYTES.saturating_sub(cid_len);
        let mut out = vec![0u8; len];
        if len > 0 {
            let hk =
                Hkdf::<Sha256>::from_prk(self.pad_seed.expose()).expect("32-byte PRK is valid");
            let mut info = [0u8; 7];
            info[..4].copy_from_slice(&v.to_be_bytes());
            info[4..].copy_from_slice(b"pad");
            hk.expand(&info, &mut out)
                .expect("at most 62 bytes is a valid HKDF length");
        }
        out
    }

    /// The payload for `cid` at `v`: cidLen ‖ cid ‖ padding.
    pub fn payload(
        &self,
        v: u32,
        cid: &[u8],
    ) -> Result<(Zeroizing<[u8; 64]>, Vec<u8>), DecodeError> {
        check_version(v)?;
        if cid.is_empty() || cid.len() > CID_MAX_BYTES {
            return Err(DecodeError::CidTooLarge(cid.len()));
        }
        let padding = self.padding(v, cid.len());
        let mut full = Zeroizing::new([0u8; 64]);
        full[0] = cid.len() as u8;
        full[1..=cid.len()].copy_from_slice(cid);
        full[1 + cid.len()..].copy_from_slice(&padding);
        Ok((full, padding))
    }

    /// Builds one side from its plaintext half.
    pub fn side(&self, side: Side, v: u32, part: &[u8; 32]) -> SideCommitment {
        let state_hash = self.state_hash(side, v);
        let xor_key = self.xor_key(side, v);
        let mut ciphertext = [0u8; 32];
        for ((c, p), k) in ciphertext.iter_mut().zip(part).zip(&xor_key) {
            *c = p ^ k;
        }
        let digest = wire::signed_digest(&state_hash, &ciphertext);
        SideCommitment {
            side,
            version: v,
            state_hash,
            xor_key,
            ciphertext,
            state_id: wire::state_id(&self.lock_script(), &state_hash),
            witness: sign_recoverable(&self.signing, &digest),
            public_key: self.public_key,
        }
    }

    /// Both sides of `cid` at `v`.
    pub fn build(&self, v: u32, cid: &Cid) -> Result<VersionCommitments, DecodeError> {
        let cid_bytes = Zeroizing::new(cid.to_bytes());
        let (payload, padding) = self.payload(v, &cid_bytes)?;
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a.copy_from_slice(&payload[..32]);
        b.copy_from_slice(&payload[32..]);
        Ok(VersionCommitments {
            version: v,
            a: self.side(Side::A, v, &a),
            b: self.side(Side::B, v, &b),
            payload,
            padding,
        })
    }

    /// XOR-decodes the two ciphertexts of `v` back to a CID, with every check.
    pub fn decode(&self, v: u32, ct_a: &[u8; 32], ct_b: &[u8; 32]) -> Result<Cid, DecodeError> {
        check_version(v)?;
        let mut full = Zeroizing::new([0u8; 64]);
        let (ka, kb) = (self.xor_key(Side::A, v), self.xor_key(Side::B, v));
        for i in 0..32 {
            full[i] = ct_a[i] ^ ka[i];
            full[32 + i] = ct_b[i] ^ kb[i];
        }
        let len = usize::from(full[0]);
        if len == 0 || len > CID_MAX_BYTES {
            return Err(DecodeError::BadLength(full[0]));
        }
        let cid_bytes = &full[1..=len];
        let cid = Cid::read_bytes(cid_bytes).map_err(|e| DecodeError::BadCid(e.to_string()))?;
        if cid.to_bytes().as_slice() != cid_bytes {
            return Err(DecodeError::BadCid(
                "does not fill its length prefix".into(),
            ));
        }
        check_publishable(&cid)?;
        if full[1 + len..] != self.padding(v, len)[..] {
            return Err(DecodeError::BadPadding);
        }
        Ok(cid)
    }
}

/// Whether `cid` can be published *and found again*: 1..=63 bytes in binary form
/// and a 32-byte sha2-256 multihash ([`PointerKeys::decode`] refuses anything else,
/// so publishing it would burn a version no device can read).
pub fn check_publishable(cid: &Cid) -> Result<(), DecodeError> {
    let len = cid.encoded_len();
    if len == 0 || len > CID_MAX_BYTES {
        return Err(DecodeError::CidTooLarge(len));
    }
    if cid.hash().code() != SHA2_256 || cid.hash().size() != 32 {
        return Err(DecodeError::UnsupportedHash(cid.hash().code()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use multihash_codetable::{Code, MultihashDigest};
    use proptest::prelude::*;

    fn keys() -> PointerKeys {
        PointerKeys::new(&PointerSeeds::derive(&Secret32::new([1u8; 32]))).unwrap()
    }

    #[test]
    fn build_then_decode_round_trips() {
        let k = keys();
        let cid = Cid::new_v1(0x71, Code::Sha2_256.digest(b"snapshot"));
        for v in [1, 2, 1000, VERSION_MAX] {
            let c = k.build(v, &cid).unwrap();
            assert_eq!(k.decode(v, &c.a.ciphertext, &c.b.ciphertext).unwrap(), cid);
            assert!(
                k.decode(
                    v.saturating_sub(1).max(1) + u32::from(v == 1),
                    &c.a.ciphertext,
                    &c.b.ciphertext
                )
                .is_err()
            );
        }
        assert_eq!(
            k.build(0, &cid).unwrap_err(),
            DecodeError::VersionOutOfRange(0)
        );
    }

    proptest! {
        #[test]
        fn decode_of_random_ciphertexts_never_panics(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), v in 0u32..5) {
            let _ = keys().decode(v, &a, &b);
        }

        #[test]
        fn flipped_ciphertext_bit_never_decodes_to_the_same_cid(byte in 0usize..64, bit in 0u8..8) {
            let k = keys();
            let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(b"x"));
            let c = k.build(3, &cid).unwrap();
            let (mut a, mut b) = (c.a.ciphertext, c.b.ciphertext);
            if byte < 32 { a[byte] ^= 1 << bit } else { b[byte - 32] ^= 1 << bit }
            prop_assert_ne!(k.decode(3, &a, &b).ok(), Some(cid));
        }
    }
}
