//! One content-addressed block: computing its CID, checking bytes against a CID,
//! and reading the CIDs a dag-cbor block links to.
//!
//! Accepted CIDs are CIDv1 with a sha2-256 multihash and the dag-cbor (0x71) or raw
//! (0x55) codec: the only kinds this project writes. Anything else is refused with a
//! [`BlockError`], never guessed at.
//!
//! Links are found by a single forward scan over the CBOR item heads with a counter
//! of items still owed (no recursion, no allocation per item), picking up every
//! byte string under tag 42. Indefinite lengths, which DAG-CBOR forbids, are refused.
//! A [`VerifiedBlock`] can only be built by checking its bytes, so code that takes
//! one (the block store, the CAR writer) cannot be handed unchecked data.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use cid::Cid;
use sha2::{Digest, Sha256};

use super::error::BlockError;

/// Multicodec of dag-cbor.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Largest block accepted anywhere (bytes): 2 MiB, twice Kubo's default 1 MiB block
/// limit, and below iroh-car's 4 MiB frame cap.
pub const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;

/// The CIDv1 (sha2-256) of `data` under `codec`.
///
/// # Errors
/// [`BlockError::UnsupportedCodec`] for a codec other than dag-cbor or raw.
pub fn cid_of(codec: u64, data: &[u8]) -> Result<Cid, BlockError> {
    let digest = Sha256::digest(data);
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, digest.as_slice())
        .expect("a 32-byte digest fits a 64-byte multihash");
    let cid = Cid::new_v1(codec, mh);
    if codec != DAG_CBOR && codec != RAW {
        return Err(BlockError::UnsupportedCodec { cid, codec });
    }
    Ok(cid)
}

/// Checks that `cid` is a kind this module accepts (CIDv1, sha2-256, dag-cbor or raw).
///
/// # Errors
/// The [`BlockError`] naming what is unsupported.
pub fn check_cid(cid: &Cid) -> Result<(), BlockError> {
    if cid.version() == cid::Version::V0 {
        return Err(BlockError::CidV0 { cid: *cid });
    }
    if cid.hash().code() != SHA2_256 || cid.hash().size() != 32 {
        return Err(BlockError::UnsupportedHash {
            cid: *cid,
            code: cid.hash().code(),
        });
    }
    if cid.codec() != DAG_CBOR && cid.codec() != RAW {
        return Err(BlockError::UnsupportedCodec {
            cid: *cid,
            codec: cid.codec(),
        });
    }
    Ok(())
}

/// Checks `data` against `cid`: supported kind, size within `max_len`, and
/// SHA-256(data) equal to the CID's digest.
///
/// # Errors
/// The first [`BlockError`] found.
pub fn verify(cid: &Cid, data: &[u8], max_len: usize) -> Result<(), BlockError> {
    check_cid(cid)?;
    if data.len() > max_len {
        return Err(BlockError::TooLarge {
            cid: *cid,
            len: data.len(),
            limit: max_len,
        });
    }
    if Sha256::digest(data).as_slice() != cid.hash().digest() {
        return Err(BlockError::HashMismatch { cid: *cid });
    }
    Ok(())
}

/// A block whose bytes were checked against its CID.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedBlock {
    cid: Cid,
    data: Vec<u8>,
}

impl std::fmt::Debug for VerifiedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBlock")
            .field("cid", &self.cid)
            .field("len", &self.data.len())
            .finish()
    }
}

impl VerifiedBlock {
    /// Verifies `data` against `cid` (see [`verify`]) with the default block limit.
    ///
    /// # Errors
    /// The [`BlockError`] that [`verify`] reports.
    pub fn new(cid: Cid, data: Vec<u8>) -> Result<Self, BlockError> {
        Self::with_limit(cid, data, MAX_BLOCK_BYTES)
    }

    /// Verifies `data` against `cid` with a block-size limit of `max_len` bytes.
    ///
    /// # Errors
    /// The [`BlockError`] that [`verify`] reports.
    pub fn with_limit(cid: Cid, data: Vec<u8>, max_len: usize) -> Result<Self, BlockError> {
        verify(&cid, &data, max_len)?;
        Ok(Self { cid, data })
    }

    /// Verifies `data` against `cid` with a block-size limit, copying the bytes only
    /// once they matched.
    ///
    /// # Errors
    /// The [`BlockError`] that [`verify`] reports.
    pub fn from_slice(cid: Cid, data: &[u8], max_len: usize) -> Result<Self, BlockError> {
        verify(&cid, data, max_len)?;
        Ok(Self {
            cid,
            data: data.to_vec(),
        })
    }

    /// A block read back from this crate's own store, where only verified blocks
    /// are written. Used by the embedded gateway, whose clients re-verify anyway.
    #[cfg(feature = "server")]
    pub(crate) fn from_store(cid: Cid, data: Vec<u8>) -> Self {
        Self { cid, data }
    }

    /// Hashes `data` under `codec` into a new block.
    ///
    /// # Errors
    /// [`BlockError::UnsupportedCodec`] or [`BlockError::TooLarge`].
    pub fn from_data(codec: u64, data: Vec<u8>) -> Result<Self, BlockError> {
        let cid = cid_of(codec, &data)?;
        if data.len() > MAX_BLOCK_BYTES {
            return Err(BlockError::TooLarge {
                cid,
                len: data.len(),
                limit: MAX_BLOCK_BYTES,
            });
        }
        Ok(Self { cid, data })
    }

    /// The block's CID.
    #[must_use]
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Gives the bytes back.
    #[must_use]
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The CIDs this block links to (none for raw blocks), in the order they
    /// appear, duplicates kept.
    ///
    /// # Errors
    /// [`BlockError::MalformedCbor`] if a dag-cbor block is not well-formed.
    pub fn links(&self) -> Result<Vec<Cid>, BlockError> {
        links(&self.cid, &self.data)
    }
}

/// The CIDs that block `cid` with bytes `data` links to. Raw blocks have none; a
/// dag-cbor block's links are its tag-42 byte strings (a 0x00 multibase prefix
/// followed by the binary CID).
///
/// # Errors
/// [`BlockError::MalformedCbor`] for truncated or indefinite-length CBOR, trailing
/// bytes, or a tag-42 item that is not a valid CID.
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, BlockError> {
    if cid.codec() != DAG_CBOR {
        return Ok(Vec::new());
    }
    let bad = |reason| BlockError::MalformedCbor { cid: *cid, reason };
    let mut out = Vec::new();
    let mut pos: usize = 0;
    // Items still owed by the enclosing arrays and maps (starting with the root item).
    let mut owed: u64 = 1;
    let mut next_is_link = false;
    while owed > 0 {
        owed = owed.saturating_sub(1);
        let initial = *data.get(pos).ok_or_else(|| bad("truncated"))?;
        pos = pos.checked_add(1).ok_or_else(|| bad("overflow"))?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg: u64 = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n: usize = match info {
                    24 => 1,
                    25 => 2,
                    26 => 4,
                    _ => 8,
                };
                let end = pos.checked_add(n).ok_or_else(|| bad("overflow"))?;
                let bytes = data.get(pos..end).ok_or_else(|| bad("truncated"))?;
                pos = end;
                bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            31 => return Err(bad("indefinite length is not allowed in dag-cbor")),
            _ => return Err(bad("reserved additional information")),
        };
        let was_link = std::mem::take(&mut next_is_link);
        match major {
            0 | 1 | 7 => {
                if was_link {
                    return Err(bad("tag 42 must wrap a byte string"));
                }
            }
            2 | 3 => {
                let len = usize::try_from(arg).map_err(|_| bad("length overflow"))?;
                let end = pos.checked_add(len).ok_or_else(|| bad("overflow"))?;
                let bytes = data.get(pos..end).ok_or_else(|| bad("truncated"))?;
                if was_link {
                    if major != 2 {
                        return Err(bad("tag 42 must wrap a byte string"));
                    }
                    let (prefix, raw) = bytes
                        .split_first()
                        .ok_or_else(|| bad("empty CID in tag 42"))?;
                    if *prefix != 0 {
                        return Err(bad("tag 42 CID lacks the 0x00 prefix"));
                    }
                    let link =
                        Cid::try_from(raw).map_err(|_| bad("tag 42 holds an invalid CID"))?;
                    out.push(link);
                }
                pos = end;
            }
            4 | 5 => {
                if was_link {
                    return Err(bad("tag 42 must wrap a byte string"));
                }
                let items = if major == 5 {
                    arg.checked_mul(2).ok_or_else(|| bad("length overflow"))?
                } else {
                    arg
                };
                owed = owed
                    .checked_add(items)
                    .ok_or_else(|| bad("length overflow"))?;
                // Every owed item takes at least one byte: more than that cannot be real.
                let left = data.len().saturating_sub(pos);
                if owed > left as u64 {
                    return Err(bad("truncated"));
                }
            }
            6 => {
                if was_link {
                    return Err(bad("tag 42 must wrap a byte string"));
                }
                next_is_link = arg == 42;
                owed = owed.checked_add(1).ok_or_else(|| bad("length overflow"))?;
            }
            _ => return Err(bad("unknown major type")),
        }
    }
    if pos != data.len() {
        return Err(bad("trailing bytes after the item"));
    }
    Ok(out)
}

#[cfg(test)]
#[expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests index fixtures they built"
)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(v).unwrap()
    }

    #[test]
    fn hello_has_the_well_known_raw_cid() {
        let cid = cid_of(RAW, b"hello").unwrap();
        assert_eq!(
            cid.to_string(),
            "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
        );
        verify(&cid, b"hello", MAX_BLOCK_BYTES).unwrap();
        assert_eq!(
            verify(&cid, b"hellO", MAX_BLOCK_BYTES),
            Err(BlockError::HashMismatch { cid })
        );
        assert!(matches!(
            verify(&cid, b"hello", 4),
            Err(BlockError::TooLarge {
                len: 5,
                limit: 4,
                ..
            })
        ));
    }

    #[test]
    fn unsupported_kinds_are_refused() {
        let v0: Cid = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
            .parse()
            .unwrap();
        assert!(matches!(check_cid(&v0), Err(BlockError::CidV0 { .. })));
        let pb = Cid::new_v1(0x70, *cid_of(RAW, b"x").unwrap().hash());
        assert!(matches!(
            check_cid(&pb),
            Err(BlockError::UnsupportedCodec { codec: 0x70, .. })
        ));
        let blake = Cid::new_v1(
            RAW,
            cid::multihash::Multihash::<64>::wrap(0x1e, &[0; 32]).unwrap(),
        );
        assert!(matches!(
            check_cid(&blake),
            Err(BlockError::UnsupportedHash { code: 0x1e, .. })
        ));
    }

    #[test]
    fn links_are_found_in_nested_dag_cbor() {
        let a = cid_of(RAW, b"a").unwrap();
        let b = cid_of(DAG_CBOR, b"\xa0").unwrap();
        let mut m = BTreeMap::new();
        m.insert("first", ipld_core::ipld::Ipld::Link(a));
        m.insert(
            "nested",
            ipld_core::ipld::Ipld::List(vec![
                ipld_core::ipld::Ipld::Integer(-5),
                ipld_core::ipld::Ipld::Bytes(vec![1, 2, 3]),
                ipld_core::ipld::Ipld::Map(BTreeMap::from([(
                    "deep".to_owned(),
                    ipld_core::ipld::Ipld::Link(b),
                )])),
                ipld_core::ipld::Ipld::Float(1.5),
                ipld_core::ipld::Ipld::Null,
            ]),
        );
        let data = cbor(&m);
        let block = VerifiedBlock::from_data(DAG_CBOR, data).unwrap();
        assert_eq!(block.links().unwrap(), vec![a, b]);
        // raw blocks have no links even if they look like CBOR
        let raw = VerifiedBlock::from_data(RAW, block.data().to_vec()).unwrap();
        assert!(raw.links().unwrap().is_empty());
    }

    #[test]
    fn malformed_cbor_is_refused() {
        let cid = cid_of(DAG_CBOR, b"").unwrap();
        for bad in [
            &b""[..],
            b"\x9f\xff",                             // indefinite array
            b"\x82\x01",                             // truncated array
            b"\x01\x02",                             // trailing byte
            b"\xd8\x2a\x01",                         // tag 42 on an int
            b"\xd8\x2a\x42\x01\x02",                 // tag 42 without the 0x00 prefix
            b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", // huge byte string
            b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", // huge array
        ] {
            assert!(
                matches!(links(&cid, bad), Err(BlockError::MalformedCbor { .. })),
                "{bad:x?}"
            );
        }
    }

    proptest! {
        #[test]
        fn link_scan_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let cid = cid_of(DAG_CBOR, &data).unwrap();
            let _ = links(&cid, &data);
        }

        #[test]
        fn link_scan_agrees_with_the_decoder_on_valid_cbor(
            ints in proptest::collection::vec(any::<i64>(), 0..20),
            n_links in 0usize..5,
        ) {
            let link_cids: Vec<Cid> = (0..n_links)
                .map(|i| cid_of(RAW, &[u8::try_from(i).unwrap()]).unwrap())
                .collect();
            let v = ipld_core::ipld::Ipld::List(vec![
                ipld_core::ipld::Ipld::List(ints.into_iter().map(|i| ipld_core::ipld::Ipld::Integer(i.into())).collect()),
                ipld_core::ipld::Ipld::List(link_cids.iter().copied().map(ipld_core::ipld::Ipld::Link).collect()),
            ]);
            let data = cbor(&v);
            let cid = cid_of(DAG_CBOR, &data).unwrap();
            prop_assert_eq!(links(&cid, &data).unwrap(), link_cids);
        }

        #[test]
        fn mutated_blocks_fail_verification(data in proptest::collection::vec(any::<u8>(), 1..256), at in any::<usize>(), flip in 1u8..) {
            let cid = cid_of(RAW, &data).unwrap();
            let mut bad = data.clone();
            let i = at % bad.len();
            bad[i] ^= flip;
            prop_assert_eq!(verify(&cid, &bad, MAX_BLOCK_BYTES), Err(BlockError::HashMismatch { cid }));
        }
    }
}
