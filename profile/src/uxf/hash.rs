//! ContentHash: the SHA-256 of an element's canonical DAG-CBOR bytes, and its CID form.
//!
//! # Format
//!
//! 32 bytes, shown as exactly 64 lowercase hex characters. As a CID it is CIDv1,
//! codec dag-cbor (`0x71`), multihash sha2-256 (`0x12`, length 32): the 36 bytes
//! `01 71 12 20 ‖ digest`, in text base32-lower with prefix `b` (`bafyrei…`).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::fmt;

use sha2::{Digest, Sha256};

use super::error::{Result, err};

/// The 4-byte prefix of every UXF CID: CIDv1, dag-cbor, sha2-256, 32 bytes.
pub(crate) const CID_PREFIX: [u8; 4] = [0x01, 0x71, 0x12, 0x20];

/// An element's content hash (also the digest of its block CID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Wraps a digest.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// SHA-256 of `data`.
    pub fn digest(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses exactly 64 lowercase hex characters (`INVALID_HASH` otherwise).
    pub fn from_hex(s: &str) -> Result<Self> {
        if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err!(InvalidHash, "invalid content hash {s:?}"));
        }
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| err!(InvalidHash, "invalid content hash {s:?}"))?;
        Ok(Self(b))
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        super::element::to_hex(&self.0)
    }

    /// The 36 CID bytes.
    pub fn cid_bytes(&self) -> [u8; 36] {
        let mut out = [0u8; 36];
        let (p, d) = out.split_at_mut(4);
        p.copy_from_slice(&CID_PREFIX);
        d.copy_from_slice(&self.0);
        out
    }

    /// The CID.
    pub fn to_cid(&self) -> cid::Cid {
        // The prefix is a valid CIDv1/dag-cbor/sha2-256 header and the digest is 32 bytes.
        cid::Cid::try_from(&self.cid_bytes()[..]).unwrap_or_default()
    }

    /// The CID in text form (`bafyrei…`).
    pub fn to_cid_string(&self) -> String {
        self.to_cid().to_string()
    }

    /// Reads a CID that must be CIDv1 / dag-cbor / sha2-256 / 32 bytes
    /// (`SERIALIZATION_ERROR` otherwise).
    pub fn from_cid_bytes(b: &[u8]) -> Result<Self> {
        match b.split_at_checked(4) {
            Some((p, d)) if p == CID_PREFIX && d.len() == 32 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(d);
                Ok(Self(h))
            }
            _ => Err(err!(
                SerializationError,
                "CID is not CIDv1 dag-cbor sha2-256: {}",
                hex::encode(b)
            )),
        }
    }

    /// Same as [`Self::from_cid_bytes`] for a parsed CID.
    pub fn from_cid(c: &cid::Cid) -> Result<Self> {
        let mh = c.hash();
        match <[u8; 32]>::try_from(mh.digest()) {
            Ok(d) if c.version() == cid::Version::V1 && c.codec() == 0x71 && mh.code() == 0x12 => {
                Ok(Self(d))
            }
            _ => Err(err!(
                SerializationError,
                "CID is not CIDv1 dag-cbor sha2-256: {c}"
            )),
        }
    }
}

impl std::hash::Hash for ContentHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.0.get(..8).unwrap_or(&[0; 8]));
        state.write_u64(u64::from_le_bytes(b));
    }
}

/// Hash-map hasher for [`ContentHash`] keys: the keys are already SHA-256 output, so
/// one folded multiply of their first 8 bytes with a per-process random seed is enough
/// (no SipHash rounds; the seed keeps an attacker who grinds hashes with equal low
/// bits from predicting buckets).
#[derive(Clone, Copy, Debug)]
pub struct BuildContentHasher {
    seed: u64,
}

impl Default for BuildContentHasher {
    fn default() -> Self {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED
            .get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));
        Self { seed }
    }
}

impl std::hash::BuildHasher for BuildContentHasher {
    type Hasher = ContentHasher;
    fn build_hasher(&self) -> ContentHasher {
        ContentHasher {
            seed: self.seed,
            v: 0,
        }
    }
}

/// See [`BuildContentHasher`].
#[derive(Debug)]
pub struct ContentHasher {
    seed: u64,
    v: u64,
}

impl std::hash::Hasher for ContentHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.v = self.v.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.v ^= n;
    }
    fn finish(&self) -> u64 {
        let p =
            u128::from(self.v ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "folding the 128-bit product"
        )]
        let (lo, hi) = (p as u64, (p >> 64) as u64);
        lo ^ hi
    }
}

/// A set of content hashes with [`BuildContentHasher`].
pub(crate) type HashSet = std::collections::HashSet<ContentHash, BuildContentHasher>;
/// A map from content hashes with [`BuildContentHasher`].
pub(crate) type HashMap<V> = std::collections::HashMap<ContentHash, V, BuildContentHasher>;

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_cid_forms() {
        let h = ContentHash::from_hex(
            "3e889d6acee1e3cc628732919d550a76809fa6d1a5b1dabb2cfa6032eda1ebb0",
        )
        .unwrap();
        assert_eq!(
            h.to_cid_string(),
            "bafyreib6rcowvtxb4pggfbzssgovkctwqcp2nunfwhnlwlh2mazo3iplwa"
        );
        assert_eq!(ContentHash::from_cid(&h.to_cid()).unwrap(), h);
        assert!(ContentHash::from_hex(&h.to_hex().to_uppercase()).is_err());
        assert!(ContentHash::from_hex("00").is_err());
    }
}
