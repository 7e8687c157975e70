//! CARv1 export and import of a package (spec §8.3–8.5), through iroh-car.
//!
//! # Format
//!
//! ```text
//! varint(len) dag-cbor {"roots": [link(envelope)], "version": 1}
//! per block: varint(36 + len(body)) ‖ 01 71 12 20 ‖ sha256(body) ‖ body
//! ```
//! Blocks in order: the envelope `{creator?, version: "1.0.0", manifest: link,
//! createdAt, updatedAt, description?}` (the single root), the manifest
//! `{tokens: {tokenId hex text: link(root)}}`, then for each manifest root in manifest
//! order a BFS over children (children-map order, arrays expanded, nulls skipped) and
//! predecessors, each block once. Nametags referenced only from `nametagRefs` and
//! unreferenced chain heads are not written, exactly as in the reference (§9).
//!
//! Import checks, in order: total size, one root, envelope present and hashing to the
//! root, its fields, the manifest likewise, block count and size, every block decoded
//! and re-hashed against its CID, every manifest root's type, kind and token id.
//! iroh-car does not verify hashes; this module does.
//!
//! iroh-car is async (tokio I/O traits); both directions run on an in-memory buffer, so
//! its futures never wait, and `futures::executor::block_on` drives them without a
//! runtime (no thread, no reactor; callable from sync code and from inside a runtime).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::collections::VecDeque;

use super::hash::HashSet;

use indexmap::IndexMap;
use iroh_car::{CarHeader, CarReader, CarWriter};

use super::cbor::{self, Cbor};
use super::chain::InstanceChains;
use super::element::Pool;
use super::element::{Element, ElementType, KIND_ENRICHED_SYNTHETIC};
use super::error::{Result, UxfError, err};
use super::hash::ContentHash;
use super::limits::{
    CAR_IMPORT_MAX_BLOCK_BYTES, CAR_IMPORT_MAX_BLOCK_COUNT, CAR_IMPORT_MAX_TOTAL_BYTES,
    MANIFEST_MAX_SIZE, MAX_CREATOR_LENGTH, MAX_DESCRIPTION_LENGTH,
};
use super::package::{Envelope, UXF_VERSION, UxfPackage};
use super::value::Value;

fn car_err(e: &iroh_car::Error) -> UxfError {
    match e {
        iroh_car::Error::Parsing(s) if s == "empty CAR file" => {
            err!(InvalidPackage, "CAR must have exactly one root, found 0")
        }
        iroh_car::Error::LdReadTooLarge(n) => {
            err!(
                InvalidPackage,
                "CAR section of {n} bytes exceeds the block limit"
            )
        }
        other => err!(SerializationError, "invalid CAR: {other}"),
    }
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

impl UxfPackage {
    /// The envelope block bytes for a manifest block hash.
    fn envelope_block(&self, manifest: &ContentHash) -> Vec<u8> {
        let e = &self.envelope;
        let n = 4usize
            .saturating_add(usize::from(e.creator.is_some()))
            .saturating_add(usize::from(e.description.is_some()));
        let mut out = Vec::with_capacity(128);
        cbor::head(&mut out, 5, n as u64);
        if let Some(c) = &e.creator {
            cbor::text(&mut out, "creator");
            cbor::text(&mut out, c);
        }
        cbor::text(&mut out, "version");
        cbor::text(&mut out, &e.version);
        cbor::text(&mut out, "manifest");
        cbor::link(&mut out, manifest);
        cbor::text(&mut out, "createdAt");
        Value::from_f64(e.created_at).write_cbor(&mut out);
        cbor::text(&mut out, "updatedAt");
        Value::from_f64(e.updated_at).write_cbor(&mut out);
        if let Some(d) = &e.description {
            cbor::text(&mut out, "description");
            cbor::text(&mut out, d);
        }
        out
    }

    fn manifest_block(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.manifest.len().saturating_mul(112).saturating_add(16));
        out.push(0xa1);
        cbor::text(&mut out, "tokens");
        cbor::head(&mut out, 5, self.manifest.len() as u64);
        let mut keys: Vec<(&String, &ContentHash)> = self.manifest.iter().collect();
        keys.sort_by(|a, b| cbor::key_order(a.0, b.0));
        for (k, h) in keys {
            cbor::text(&mut out, k);
            cbor::link(&mut out, h);
        }
        out
    }

    /// The blocks of [`Self::to_car`] in file order: envelope, manifest, elements.
    pub fn car_blocks(&self) -> Result<Vec<(ContentHash, Vec<u8>)>> {
        for (id, root) in &self.manifest {
            let el = self
                .pool
                .get(root)
                .ok_or_else(|| err!(MissingElement, "Manifest root {root} of {id} not in pool"))?;
            if el.header.kind == KIND_ENRICHED_SYNTHETIC {
                return Err(err!(
                    VerificationFailed,
                    "refusing to export synthetic root {root}"
                ));
            }
        }
        let manifest = self.manifest_block();
        let manifest_h = ContentHash::digest(&manifest);
        let envelope = self.envelope_block(&manifest_h);
        let envelope_h = ContentHash::digest(&envelope);
        let mut blocks = Vec::with_capacity(self.pool.len().saturating_add(2));
        blocks.push((envelope_h, envelope));
        blocks.push((manifest_h, manifest));
        let mut written: HashSet = [envelope_h, manifest_h].into_iter().collect::<HashSet>();
        let mut queue = VecDeque::new();
        for root in self.manifest.values() {
            queue.push_back(*root);
            while let Some(h) = queue.pop_front() {
                if written.contains(&h) {
                    continue;
                }
                let Some(el) = self.pool.get(&h) else {
                    continue;
                };
                written.insert(h);
                blocks.push((h, el.canonical_bytes()?));
                queue.extend(el.child_hashes());
                if let Some(p) = el.header.predecessor {
                    queue.push_back(p);
                }
            }
        }
        Ok(blocks)
    }

    /// Exports the package as a CARv1 file (spec §8.3).
    pub fn to_car(&self) -> Result<Vec<u8>> {
        let blocks = self.car_blocks()?;
        let root = blocks
            .first()
            .map(|(h, _)| h.to_cid())
            .ok_or_else(|| err!(SerializationError, "no envelope"))?;
        let size: usize = blocks
            .iter()
            .map(|(_, b)| b.len().saturating_add(40))
            .fold(64, usize::saturating_add);
        let out = futures::executor::block_on(async move {
            let mut w = CarWriter::new(CarHeader::new_v1(vec![root]), Vec::with_capacity(size));
            for (h, b) in &blocks {
                w.write(h.to_cid(), b).await?;
            }
            w.finish().await
        })
        .map_err(|e| err!(SerializationError, "CAR write failed: {e}"))?;
        Ok(out)
    }

    /// Imports a CARv1 file with every check of spec §8.5.
    pub fn from_car(data: &[u8]) -> Result<Self> {
        if data.len() > CAR_IMPORT_MAX_TOTAL_BYTES {
            return Err(err!(
                LimitExceeded,
                "CAR of {} bytes exceeds {CAR_IMPORT_MAX_TOTAL_BYTES}",
                data.len()
            ));
        }
        let sections = prescan(data)?;
        // Blocks are decoded as they stream in, so raw block bytes never pile up next to
        // the pool (peak memory). Blocks that do not decode as elements are kept raw (the
        // envelope and manifest among them); their errors are reported after the
        // envelope and manifest checks, in the reference's order of checks.
        // sized once from the framing: no re-growth (and memmove) of the entry vector
        let mut pool: Pool = Pool::with_capacity_and_hasher(sections, Default::default());
        let mut raw: Vec<(cid::Cid, Vec<u8>)> = Vec::new();
        let mut deferred: Vec<(cid::Cid, UxfError)> = Vec::new();
        let roots = futures::executor::block_on(async {
            let mut r = CarReader::new(data).await.map_err(|e| car_err(&e))?;
            let roots = r.header().roots().to_vec();
            let mut count = 0usize;
            let mut buf = Vec::with_capacity(1024);
            while let Some((c, b)) = r.next_block().await.map_err(|e| car_err(&e))? {
                count = count.saturating_add(1);
                if count > CAR_IMPORT_MAX_BLOCK_COUNT {
                    return Err(err!(
                        InvalidPackage,
                        "CAR has more than {CAR_IMPORT_MAX_BLOCK_COUNT} blocks"
                    ));
                }
                if b.len() > CAR_IMPORT_MAX_BLOCK_BYTES {
                    return Err(err!(
                        InvalidPackage,
                        "CAR block {c} of {} bytes exceeds {CAR_IMPORT_MAX_BLOCK_BYTES}",
                        b.len()
                    ));
                }
                if roots.first() == Some(&c) {
                    raw.push((c, b));
                    continue;
                }
                let decoded = ContentHash::from_cid(&c).and_then(|h| {
                    let el = Element::from_block(&b)?;
                    buf.clear();
                    el.write_canonical(&mut buf)?;
                    if ContentHash::digest(&buf) == h {
                        Ok((h, el))
                    } else {
                        Err(err!(
                            VerificationFailed,
                            "block {c} does not hash to its CID"
                        ))
                    }
                });
                match decoded {
                    Ok((h, el)) => {
                        pool.entry(h).or_insert(el);
                    }
                    Err(e) => {
                        deferred.push((c, e));
                        raw.push((c, b));
                    }
                }
            }
            Ok::<_, UxfError>(roots)
        })?;
        let blocks = raw;
        let [root] = roots.as_slice() else {
            return Err(err!(
                InvalidPackage,
                "CAR must have exactly one root, found {}",
                roots.len()
            ));
        };
        // envelope
        let env_bytes = find(&blocks, root)
            .ok_or_else(|| err!(SerializationError, "envelope block {root} missing"))?;
        let env_h = checked_digest(root, env_bytes, "envelope")?;
        let Cbor::Map(env) = cbor::decode(env_bytes)? else {
            return Err(err!(SerializationError, "envelope is not a map"));
        };
        let get = |k: &str| env.iter().find(|(x, _)| x == k).map(|(_, v)| v);
        let Some(Cbor::Link(manifest_cid)) = get("manifest") else {
            return Err(err!(SerializationError, "envelope manifest is not a link"));
        };
        match get("version") {
            Some(Cbor::Text(v)) if v == UXF_VERSION => {}
            _ => {
                return Err(err!(
                    SerializationError,
                    "envelope version is not \"1.0.0\""
                ));
            }
        }
        let time = |k: &str| match get(k) {
            Some(Cbor::Uint(n)) => Ok(u64_f64(*n)),
            Some(Cbor::Nint(n)) => Ok(-1.0 - u64_f64(*n)),
            Some(Cbor::Float(f)) => Ok(*f),
            _ => Err(err!(SerializationError, "envelope {k} is not a number")),
        };
        let created_at = time("createdAt")?;
        let updated_at = time("updatedAt")?;
        let opt_text = |k: &str, max: usize| match get(k) {
            None => Ok(None),
            Some(Cbor::Text(s)) if utf16_len(s) <= max => Ok(Some(s.clone())),
            Some(Cbor::Text(_)) => Err(err!(LimitExceeded, "envelope {k} longer than {max}")),
            Some(_) => Err(err!(SerializationError, "envelope {k} is not a string")),
        };
        let creator = opt_text("creator", MAX_CREATOR_LENGTH)?;
        let description = opt_text("description", MAX_DESCRIPTION_LENGTH)?;

        // manifest
        let manifest_cid = cid::Cid::try_from(manifest_cid.as_slice())
            .map_err(|e| err!(SerializationError, "manifest link: {e}"))?;
        let man_from_pool;
        let man_bytes = match find(&blocks, &manifest_cid) {
            Some(b) => b,
            None => {
                // a manifest that also parses as an element (crafted): take it back out
                let h = ContentHash::from_cid(&manifest_cid)?;
                let el = pool.shift_remove(&h).ok_or_else(|| {
                    err!(SerializationError, "manifest block {manifest_cid} missing")
                })?;
                man_from_pool = el.canonical_bytes()?;
                &man_from_pool
            }
        };
        let man_h = checked_digest(&manifest_cid, man_bytes, "manifest")?;
        let Cbor::Map(man) = cbor::decode(man_bytes)? else {
            return Err(err!(SerializationError, "manifest is not a map"));
        };
        let Some(Cbor::Map(tokens)) = man.iter().find(|(k, _)| k == "tokens").map(|(_, v)| v)
        else {
            return Err(err!(SerializationError, "manifest has no tokens map"));
        };
        if tokens.len() > MANIFEST_MAX_SIZE {
            return Err(err!(
                LimitExceeded,
                "manifest has more than {MANIFEST_MAX_SIZE} entries"
            ));
        }
        let mut manifest = IndexMap::with_capacity(tokens.len());
        for (k, v) in tokens {
            if !is_token_id(k) {
                return Err(err!(SerializationError, "invalid manifest token id {k:?}"));
            }
            let Cbor::Link(c) = v else {
                return Err(err!(SerializationError, "manifest entry {k} is not a link"));
            };
            manifest.insert(k.to_string(), ContentHash::from_cid_bytes(c)?);
        }

        // elements
        if let Some((_, e)) = deferred.into_iter().find(|(c, _)| *c != manifest_cid) {
            return Err(e);
        }
        pool.shift_remove(&env_h);
        pool.shift_remove(&man_h);
        for (id, root) in &manifest {
            let Some(el) = pool.get(root) else { continue };
            if el.header.kind == KIND_ENRICHED_SYNTHETIC {
                return Err(err!(
                    VerificationFailed,
                    "manifest root {root} is a synthetic root"
                ));
            }
            if el.ty != ElementType::TokenRoot {
                return Err(err!(
                    VerificationFailed,
                    "manifest root {root} of {id} is not a token-root"
                ));
            }
            let bound = el
                .get("tokenId")
                .and_then(Value::hex_str)
                .is_some_and(|t| t == id.as_str());
            if !bound {
                return Err(err!(
                    VerificationFailed,
                    "manifest root {root} does not carry token id {id}"
                ));
            }
        }
        let chains = InstanceChains::rebuild_from_predecessors(&pool)?;
        Ok(Self {
            envelope: Envelope {
                version: UXF_VERSION.to_owned(),
                created_at,
                updated_at,
                creator,
                description,
            },
            manifest,
            pool,
            chains,
        })
    }
}

/// Walks the section framing before iroh-car sees the bytes: every varint well formed
/// and every section inside the input. iroh-car sizes its buffer from the varint alone
/// (up to 4 MiB), so without this a 10-byte input would make it allocate and zero
/// 4 MiB; with it, no allocation exceeds the input.
fn prescan(data: &[u8]) -> Result<usize> {
    let mut pos = 0usize;
    let mut sections = 0usize;
    while pos < data.len() {
        let mut len: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *data
                .get(pos)
                .ok_or_else(|| err!(SerializationError, "invalid CAR: truncated varint"))?;
            pos = pos.saturating_add(1);
            if shift > 56 {
                return Err(err!(SerializationError, "invalid CAR: varint too long"));
            }
            len |= u64::from(b & 0x7f) << shift;
            shift = shift.saturating_add(7);
            if b & 0x80 == 0 {
                break;
            }
        }
        let remaining = data.len().saturating_sub(pos);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > remaining {
            return Err(err!(
                SerializationError,
                "invalid CAR: section of {len} bytes past the end"
            ));
        }
        pos = pos.saturating_add(len);
        sections = sections.saturating_add(1);
        if sections > CAR_IMPORT_MAX_BLOCK_COUNT.saturating_add(1) {
            return Err(err!(
                InvalidPackage,
                "CAR has more than {CAR_IMPORT_MAX_BLOCK_COUNT} blocks"
            ));
        }
    }
    if sections == 0 {
        return Err(err!(SerializationError, "invalid CAR: empty input"));
    }
    Ok(sections.saturating_sub(1))
}

#[expect(clippy::cast_precision_loss, reason = "JavaScript numbers are f64")]
fn u64_f64(n: u64) -> f64 {
    n as f64
}

fn find<'a>(blocks: &'a [(cid::Cid, Vec<u8>)], c: &cid::Cid) -> Option<&'a [u8]> {
    blocks
        .iter()
        .find(|(x, _)| x == c)
        .map(|(_, b)| b.as_slice())
}

/// The CID must be sha2-256 and its digest the SHA-256 of the bytes.
fn checked_digest(c: &cid::Cid, bytes: &[u8], what: &str) -> Result<ContentHash> {
    let mh = c.hash();
    let h = ContentHash::digest(bytes);
    if mh.code() != 0x12 || mh.digest() != h.as_bytes() {
        return Err(err!(
            VerificationFailed,
            "{what} block does not hash to {c}"
        ));
    }
    Ok(h)
}

/// `^[0-9a-f]{64,68}$`.
pub(crate) fn is_token_id(s: &str) -> bool {
    (64..=68).contains(&s.len()) && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
#[expect(
    clippy::indexing_slicing,
    reason = "test code builds fixtures by position"
)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_with_typed_errors() {
        let too_big = vec![0u8; CAR_IMPORT_MAX_TOTAL_BYTES + 1];
        assert_eq!(
            UxfPackage::from_car(&too_big).unwrap_err().code(),
            super::super::ErrorCode::LimitExceeded
        );
        // a section claiming more bytes than the input holds
        assert_eq!(
            UxfPackage::from_car(&[0x80, 0x80, 0x01, 0xa2])
                .unwrap_err()
                .code(),
            super::super::ErrorCode::SerializationError
        );
        // 10 001 blocks
        let pkg = UxfPackage::new(1);
        let mut car = pkg.to_car().unwrap();
        let block = {
            let body = [0xf6u8];
            let mut b = vec![37u8];
            b.extend_from_slice(&ContentHash::digest(&body).cid_bytes());
            b.extend_from_slice(&body);
            b
        };
        for _ in 0..CAR_IMPORT_MAX_BLOCK_COUNT {
            car.extend_from_slice(&block);
        }
        assert_eq!(
            UxfPackage::from_car(&car).unwrap_err().code(),
            super::super::ErrorCode::InvalidPackage
        );
        // a 64 KiB + 1 block
        let mut car = pkg.to_car().unwrap();
        let body = vec![0u8; CAR_IMPORT_MAX_BLOCK_BYTES + 1];
        let mut sec = Vec::new();
        let n = 36 + body.len();
        sec.extend_from_slice(&[
            (n & 0x7f) as u8 | 0x80,
            ((n >> 7) & 0x7f) as u8 | 0x80,
            (n >> 14) as u8,
        ]);
        sec.extend_from_slice(&ContentHash::digest(&body).cid_bytes());
        sec.extend_from_slice(&body);
        car.extend_from_slice(&sec);
        assert_eq!(
            UxfPackage::from_car(&car).unwrap_err().code(),
            super::super::ErrorCode::InvalidPackage
        );
    }

    /// An empty package's CAR with `extra` element blocks appended (not reachable from
    /// the manifest: import keeps them anyway).
    fn car_with(extra: &[Element]) -> Vec<u8> {
        let mut blocks = UxfPackage::new(1).car_blocks().unwrap();
        for el in extra {
            blocks.push((el.hash().unwrap(), el.canonical_bytes().unwrap()));
        }
        futures::executor::block_on(async {
            let mut w = CarWriter::new(CarHeader::new_v1(vec![blocks[0].0.to_cid()]), Vec::new());
            for (h, b) in &blocks {
                w.write(h.to_cid(), b).await.unwrap();
            }
            w.finish().await.unwrap()
        })
    }

    /// `len` chained token-states and `heads` heads naming the newest (the audit's CAR).
    fn shared_history(len: usize, heads: usize) -> Vec<Element> {
        let mk = |i: usize, p: Option<ContentHash>| {
            let mut el = Element::new(
                ElementType::TokenState,
                vec![
                    ("predicate".into(), Value::Text(format!("{i:064x}"))),
                    ("data".into(), Value::Null),
                ],
                vec![],
            );
            el.header.predecessor = p;
            el
        };
        let mut out = Vec::new();
        let mut prev = None;
        for i in 0..len {
            let el = mk(i, prev);
            prev = Some(el.hash().unwrap());
            out.push(el);
        }
        for j in 0..heads {
            out.push(mk(j.saturating_add(1_000_000), prev));
        }
        out
    }

    #[test]
    fn chain_rebuild_on_import_is_bounded() {
        // 4 999 + 4 999 blocks (1.7 MB, within every CAR limit) used to rebuild ~25
        // million chain members; now the import stops at the member budget
        let car = car_with(&shared_history(4_999, 4_999));
        assert!(car.len() < CAR_IMPORT_MAX_TOTAL_BYTES);
        let code = UxfPackage::from_car(&car).err().map(|e| e.code());
        assert_eq!(code, Some(super::super::ErrorCode::LimitExceeded));
        // a small shared history imports with the reference's index: one entry per head
        let pkg = UxfPackage::from_car(&car_with(&shared_history(50, 50))).unwrap();
        assert_eq!(pkg.chains().len(), 50);
        assert!(pkg.chains().entries().iter().all(|e| e.chain.len() == 51));
        // and so does one long chain
        let pkg = UxfPackage::from_car(&car_with(&shared_history(9_000, 1))).unwrap();
        assert_eq!(pkg.chains().len(), 1);
        assert_eq!(pkg.chains().entries()[0].chain.len(), 9_001);
    }

    #[test]
    fn zero_roots_and_two_roots_are_invalid_package() {
        let pkg = UxfPackage::new(1);
        let blocks = pkg.car_blocks().unwrap();
        for roots in [vec![], vec![blocks[0].0.to_cid(), blocks[1].0.to_cid()]] {
            let car = futures::executor::block_on(async {
                let mut w = CarWriter::new(CarHeader::new_v1(roots), Vec::new());
                for (h, b) in &blocks {
                    w.write(h.to_cid(), b).await.unwrap();
                }
                w.finish().await.unwrap()
            });
            assert_eq!(
                UxfPackage::from_car(&car).unwrap_err().code(),
                super::super::ErrorCode::InvalidPackage
            );
        }
    }
}
