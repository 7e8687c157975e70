//! CARv1 files with one root whose every block is verified.
//!
//! # Format
//!
//! CARv1 (<https://ipld.io/specs/transport/car/carv1/>): an unsigned-LEB128 length,
//! then the DAG-CBOR header `{"roots": [<root CID>], "version": 1}`, then for each
//! block an unsigned-LEB128 length of `CID bytes ‖ block bytes`, the binary CID and
//! the block bytes. Framing is done by `iroh-car`; this module adds what it lacks:
//!
//! * exactly one root, and (when a CID was asked for) the root must be that CID;
//! * every block re-hashed against its CID ([`super::block::verify`]): CIDv1,
//!   sha2-256, dag-cbor or raw, at most [`CarLimits::max_block_bytes`];
//! * the DAG is complete and has nothing else: walking dag-cbor links from the root
//!   (explicit stack, depth cap) must find every linked block in the CAR, and every
//!   block in the CAR must be reached; a block repeated with the same CID is kept once;
//! * caps on total bytes, block count and depth, checked before allocating more.
//!
//! [`Car::encode`] writes blocks in depth-first pre-order from the root (the order
//! Kubo's `dag export` uses), each once, so equal DAGs encode to equal bytes.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
#![expect(
    clippy::result_large_err,
    reason = "errors carry the CIDs they are about (96 B each); the error path is cold"
)]

use std::collections::{HashMap, HashSet};

use cid::Cid;
use iroh_car::{CarHeader, CarWriter};

use super::block::{MAX_BLOCK_BYTES, VerifiedBlock};
use super::error::CarError;

/// Largest CAR accepted (bytes): 100 MiB, the pointer spec's `MAX_CAR_BYTES`.
pub const MAX_CAR_BYTES: u64 = 100 * 1024 * 1024;
/// Most blocks in one CAR: 100 000 (a 100 MiB CAR of 1 KiB blocks).
pub const MAX_CAR_BLOCKS: usize = 100_000;
/// Deepest DAG walked (levels below the root).
pub const MAX_DAG_DEPTH: usize = 1024;

/// Caps applied when reading or walking a CAR. `Default` gives the module consts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLimits {
    max_bytes: u64,
    max_blocks: usize,
    max_block_bytes: usize,
    max_depth: usize,
}

impl Default for CarLimits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_CAR_BYTES,
            max_blocks: MAX_CAR_BLOCKS,
            max_block_bytes: MAX_BLOCK_BYTES,
            max_depth: MAX_DAG_DEPTH,
        }
    }
}

impl CarLimits {
    /// Largest CAR in bytes (default [`MAX_CAR_BYTES`]).
    #[must_use]
    pub fn with_max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }
    /// Most blocks (default [`MAX_CAR_BLOCKS`]).
    #[must_use]
    pub fn with_max_blocks(mut self, n: usize) -> Self {
        self.max_blocks = n;
        self
    }
    /// Largest block in bytes (default [`MAX_BLOCK_BYTES`]; never above it).
    #[must_use]
    pub fn with_max_block_bytes(mut self, n: usize) -> Self {
        self.max_block_bytes = n.min(MAX_BLOCK_BYTES);
        self
    }
    /// Deepest DAG (default [`MAX_DAG_DEPTH`]).
    #[must_use]
    pub fn with_max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
    /// Largest CAR in bytes.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
    /// Most blocks.
    #[must_use]
    pub fn max_blocks(&self) -> usize {
        self.max_blocks
    }
    /// Largest block in bytes.
    #[must_use]
    pub fn max_block_bytes(&self) -> usize {
        self.max_block_bytes
    }
    /// Deepest DAG.
    #[must_use]
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }
}

/// A complete, verified DAG under one root, in depth-first pre-order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    root: Cid,
    blocks: Vec<VerifiedBlock>,
}

impl Car {
    /// Decodes and verifies a CARv1 with exactly one root (see the module docs).
    ///
    /// # Errors
    /// The first [`CarError`] found.
    pub fn decode(bytes: &[u8], limits: &CarLimits) -> Result<Self, CarError> {
        Self::decode_inner(bytes, None, limits)
    }

    /// Like [`Car::decode`], and the root must be `want` (checked before any block
    /// is hashed).
    ///
    /// # Errors
    /// [`CarError::WrongRoot`] or any error of [`Car::decode`].
    pub fn decode_expecting(
        bytes: &[u8],
        want: &Cid,
        limits: &CarLimits,
    ) -> Result<Self, CarError> {
        Self::decode_inner(bytes, Some(want), limits)
    }

    fn decode_inner(
        bytes: &[u8],
        want: Option<&Cid>,
        limits: &CarLimits,
    ) -> Result<Self, CarError> {
        if bytes.len() as u64 > limits.max_bytes {
            return Err(CarError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let (root, mut rest) = read_header(bytes)?;
        if let Some(want) = want
            && root != *want
        {
            return Err(CarError::WrongRoot {
                want: *want,
                got: root,
            });
        }
        let mut frames = Vec::new();
        while let Some((cid, data, used)) = next_frame(rest)? {
            if frames.len() >= limits.max_blocks {
                return Err(CarError::TooManyBlocks {
                    limit: limits.max_blocks,
                });
            }
            frames.push((cid, data));
            rest = rest.get(used..).unwrap_or_default();
        }
        if !rest.is_empty() {
            return Err(CarError::Malformed("truncated block frame".into()));
        }
        let blocks = verify_all(frames, limits.max_block_bytes)?;
        Self::from_blocks(root, blocks, limits)
    }

    /// Builds a CAR from verified blocks: the DAG under `root` must be complete and
    /// every block must be reachable. Duplicates are dropped.
    ///
    /// # Errors
    /// [`CarError::MissingBlock`], [`CarError::UnreachableBlock`],
    /// [`CarError::TooManyBlocks`], [`CarError::TooDeep`], or a malformed dag-cbor
    /// block ([`CarError::Block`]).
    pub fn from_blocks(
        root: Cid,
        blocks: impl IntoIterator<Item = VerifiedBlock>,
        limits: &CarLimits,
    ) -> Result<Self, CarError> {
        let mut pool: HashMap<Cid, VerifiedBlock> = HashMap::new();
        for b in blocks {
            if pool.len() >= limits.max_blocks && !pool.contains_key(b.cid()) {
                return Err(CarError::TooManyBlocks {
                    limit: limits.max_blocks,
                });
            }
            pool.insert(*b.cid(), b);
        }
        let ordered = walk(&root, limits, |cid| Ok::<_, CarError>(pool.remove(cid)))??;
        if let Some(stray) = pool.keys().min() {
            return Err(CarError::UnreachableBlock(*stray));
        }
        Ok(Self {
            root,
            blocks: ordered,
        })
    }

    /// The root CID.
    #[must_use]
    pub fn root(&self) -> &Cid {
        &self.root
    }

    /// The blocks, root first, depth-first pre-order.
    #[must_use]
    pub fn blocks(&self) -> &[VerifiedBlock] {
        &self.blocks
    }

    /// Gives the blocks back.
    #[must_use]
    pub fn into_blocks(self) -> Vec<VerifiedBlock> {
        self.blocks
    }

    /// Sum of the block sizes (without framing).
    #[must_use]
    pub fn data_bytes(&self) -> u64 {
        self.blocks
            .iter()
            .fold(0u64, |acc, b| acc.saturating_add(b.data().len() as u64))
    }

    /// The CARv1 bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.root, &self.blocks)
    }

    /// Appends the CARv1 bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_into(out, &self.root, &self.blocks);
    }
}

/// Writes `blocks` as a CARv1 with the single root `root`, in the order given.
/// Used by [`Car::encode`] and by tests that need deliberately bad CARs.
#[must_use]
pub fn encode(root: &Cid, blocks: &[VerifiedBlock]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len_estimate(blocks));
    encode_into(&mut out, root, blocks);
    out
}

fn encoded_len_estimate(blocks: &[VerifiedBlock]) -> usize {
    blocks.iter().fold(64usize, |acc, b| {
        acc.saturating_add(b.data().len()).saturating_add(48)
    })
}

/// Appends the CARv1 of `blocks` under `root` to `out` (no intermediate copy).
pub fn encode_into(out: &mut Vec<u8>, root: &Cid, blocks: &[VerifiedBlock]) {
    out.reserve(encoded_len_estimate(blocks));
    let header = futures::executor::block_on(async {
        let mut w = CarWriter::new(CarHeader::new_v1(vec![*root]), Vec::with_capacity(64));
        w.write_header()
            .await
            .expect("writing a CAR header into a Vec cannot fail");
        w.finish()
            .await
            .expect("finishing a Vec writer cannot fail")
    });
    out.extend_from_slice(&header);
    for b in blocks {
        write_frame(out, b);
    }
}

/// Appends one CARv1 block frame to `out`: unsigned LEB128 of `len(CID) + len(data)`,
/// the binary CID, the data (the framing iroh-car writes; used to stream exports).
pub fn write_frame(out: &mut Vec<u8>, block: &VerifiedBlock) {
    let cid = block.cid().to_bytes();
    let mut len = cid.len().saturating_add(block.data().len()) as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&cid);
    out.extend_from_slice(block.data());
}

/// Largest CAR header read (bytes): 64 KiB; a one-root header is about 60.
pub const MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Longest binary CID read from a frame (bytes); the CIDs accepted here are 36.
const MAX_CID_BYTES: u64 = 128;

/// The CARv1 header as DAG-CBOR.
#[derive(serde::Deserialize)]
struct Header {
    #[serde(default)]
    roots: Vec<Cid>,
    version: u64,
}

/// An unsigned LEB128 at the start of `bytes`: `Some((value, length))`, or `None`
/// if `bytes` ends inside it.
///
/// # Errors
/// [`CarError::Malformed`] for a varint over 9 bytes or not minimally encoded.
fn varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, CarError> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(9) {
        // i < 9, so the shift is below 63.
        value |= u64::from(b & 0x7f) << (7u32.saturating_mul(i as u32));
        if b & 0x80 == 0 {
            if *b == 0 && i > 0 {
                return Err(CarError::Malformed(
                    "varint is not minimally encoded".into(),
                ));
            }
            return Ok(Some((value, i.saturating_add(1))));
        }
    }
    if bytes.len() >= 9 {
        return Err(CarError::Malformed("varint longer than 9 bytes".into()));
    }
    Ok(None)
}

/// A length-prefixed section at the start of `bytes` whose length may not exceed
/// `max`: `Some((section, bytes used))`, or `None` if `bytes` ends inside it.
fn section<'a>(
    bytes: &'a [u8],
    max: u64,
    what: &str,
) -> Result<Option<(&'a [u8], usize)>, CarError> {
    let Some((len, head)) = varint(bytes)? else {
        return Ok(None);
    };
    if len == 0 || len > max {
        return Err(CarError::Malformed(format!(
            "{what} of {len} bytes (allowed 1 to {max})"
        )));
    }
    let len = usize::try_from(len).map_err(|_| CarError::Malformed("length overflow".into()))?;
    let end = head
        .checked_add(len)
        .ok_or_else(|| CarError::Malformed("length overflow".into()))?;
    Ok(bytes.get(head..end).map(|s| (s, end)))
}

/// Decodes a complete header section (after its length prefix).
fn parse_header(body: &[u8]) -> Result<Cid, CarError> {
    let h: Header = serde_ipld_dagcbor::from_slice(body)
        .map_err(|e| CarError::Malformed(format!("header: {e}")))?;
    if h.version != 1 {
        return Err(CarError::UnsupportedVersion(h.version));
    }
    match h.roots.as_slice() {
        [root] => Ok(*root),
        roots => Err(CarError::RootCount(roots.len())),
    }
}

/// The header of a whole CAR in memory: the root and the bytes after the header.
fn read_header(bytes: &[u8]) -> Result<(Cid, &[u8]), CarError> {
    let (body, used) = section(bytes, MAX_HEADER_BYTES, "header")?
        .ok_or_else(|| CarError::Malformed("truncated header".into()))?;
    Ok((parse_header(body)?, bytes.get(used..).unwrap_or_default()))
}

/// One block frame, not yet verified: the CID, the block bytes, the frame's length.
pub(crate) type Frame<'a> = (Cid, &'a [u8], usize);

/// The next block frame at the start of `bytes`; `None` if `bytes` ends inside it.
///
/// # Errors
/// [`CarError::Malformed`] for a bad length or CID.
pub(crate) fn next_frame(bytes: &[u8]) -> Result<Option<Frame<'_>>, CarError> {
    // A frame holds a CID and a block; the block limit is checked, naming the CID,
    // when the block is verified.
    let max = (MAX_BLOCK_BYTES as u64).saturating_add(MAX_CID_BYTES);
    let Some((frame, used)) = section(bytes, max, "block frame")? else {
        return Ok(None);
    };
    let mut rest = frame;
    let cid = Cid::read_bytes(&mut rest)
        .map_err(|e| CarError::Malformed(format!("block frame CID: {e}")))?;
    Ok(Some((cid, rest, used)))
}

/// A CARv1 read while it arrives: [`CarStream::feed`] takes bytes in whatever
/// pieces the network delivers, verifies each block as soon as its frame is
/// complete (so hashing overlaps the transfer), and keeps the unfinished tail, so a
/// transfer cut mid-frame can be resumed from [`CarStream::received`] and verified
/// across the seam. [`CarStream::finish`] applies the checks that need the whole
/// CAR (completeness, no strays). The root must be `want` when one is given,
/// checked as soon as the header is in.
#[derive(Debug)]
pub(crate) struct CarStream {
    want: Option<Cid>,
    limits: CarLimits,
    root: Option<Cid>,
    tail: Vec<u8>,
    received: u64,
    blocks: Vec<VerifiedBlock>,
}

impl CarStream {
    /// A CAR whose root must be `want`.
    pub(crate) fn new(want: Cid, limits: CarLimits) -> Self {
        Self::with_root(Some(want), limits)
    }

    /// A CAR with any single root (uploads).
    #[cfg(feature = "server")]
    pub(crate) fn any_root(limits: CarLimits) -> Self {
        Self::with_root(None, limits)
    }

    fn with_root(want: Option<Cid>, limits: CarLimits) -> Self {
        Self {
            want,
            limits,
            root: None,
            tail: Vec::new(),
            received: 0,
            blocks: Vec::new(),
        }
    }

    /// Bytes of the CAR taken so far (the offset to resume from).
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next bytes of the CAR.
    ///
    /// # Errors
    /// [`CarError::TooLarge`] past the byte cap, or what verification finds.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), CarError> {
        self.received = self.received.saturating_add(chunk.len() as u64);
        if self.received > self.limits.max_bytes {
            return Err(CarError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        let mut chunk = chunk;
        // Finish the section cut by the previous chunk, copying only its missing bytes,
        // then parse the rest straight from `chunk`.
        while !self.tail.is_empty() && !chunk.is_empty() {
            let want = match varint(&self.tail)? {
                Some((len, head)) => {
                    let total = (head as u64).saturating_add(len);
                    let total = usize::try_from(total).unwrap_or(usize::MAX);
                    total.saturating_sub(self.tail.len()).max(1)
                }
                None => 1,
            };
            let take = want.min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            self.tail.extend_from_slice(head);
            chunk = rest;
            let tail = std::mem::take(&mut self.tail);
            let used = self.take_frames(&tail)?;
            if used < tail.len() {
                // Still incomplete (or a varint still being assembled).
                self.tail = tail;
                self.tail.drain(..used);
            }
        }
        if self.tail.is_empty() {
            let used = self.take_frames(chunk)?;
            self.tail
                .extend_from_slice(chunk.get(used..).unwrap_or_default());
        } else {
            self.tail.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Parses and verifies the complete sections at the start of `bytes`; returns
    /// how many bytes they used.
    fn take_frames(&mut self, bytes: &[u8]) -> Result<usize, CarError> {
        let mut pos = 0usize;
        if self.root.is_none() {
            let Some((body, used)) = section(bytes, MAX_HEADER_BYTES, "header")? else {
                return Ok(0);
            };
            let root = parse_header(body)?;
            if let Some(want) = self.want
                && root != want
            {
                return Err(CarError::WrongRoot { want, got: root });
            }
            self.root = Some(root);
            pos = used;
        }
        while let Some((cid, data, used)) = next_frame(bytes.get(pos..).unwrap_or_default())? {
            if self.blocks.len() >= self.limits.max_blocks {
                return Err(CarError::TooManyBlocks {
                    limit: self.limits.max_blocks,
                });
            }
            self.blocks.push(VerifiedBlock::from_slice(
                cid,
                data,
                self.limits.max_block_bytes,
            )?);
            pos = pos.saturating_add(used);
        }
        Ok(pos)
    }

    /// Ends the CAR: the header and every frame must be complete, and the DAG whole.
    ///
    /// # Errors
    /// [`CarError::Malformed`] for a truncated CAR, or what [`Car::from_blocks`] finds.
    pub(crate) fn finish(self) -> Result<Car, CarError> {
        let Some(root) = self.root else {
            return Err(CarError::Malformed("truncated header".into()));
        };
        if !self.tail.is_empty() {
            return Err(CarError::Malformed("truncated block frame".into()));
        }
        Car::from_blocks(root, self.blocks, &self.limits)
    }
}

/// Below this many bytes a CAR is verified on the calling thread alone.
const PARALLEL_VERIFY_BYTES: usize = 1024 * 1024;
/// Most threads used to verify one CAR.
const MAX_VERIFY_THREADS: usize = 4;

/// Verifies every frame (copying each block once, after its hash matched); large
/// CARs are split across up to [`MAX_VERIFY_THREADS`] scoped threads (SHA-256
/// dominates). Errors name the first bad block in CAR order.
fn verify_all(
    frames: Vec<(Cid, &[u8])>,
    max_block_bytes: usize,
) -> Result<Vec<VerifiedBlock>, CarError> {
    let total = frames
        .iter()
        .fold(0usize, |acc, (_, d)| acc.saturating_add(d.len()));
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_VERIFY_THREADS);
    let one = |(cid, data): &(Cid, &[u8])| {
        VerifiedBlock::from_slice(*cid, data, max_block_bytes).map_err(CarError::from)
    };
    if threads < 2 || total < PARALLEL_VERIFY_BYTES {
        return frames.iter().map(one).collect();
    }
    let per = frames.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<VerifiedBlock>, CarError>> = std::thread::scope(|s| {
        let handles: Vec<_> = frames
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(one).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CarError::Malformed("verifier thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(frames.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Walks the DAG under `root` depth-first (explicit stack, each CID once), asking
/// `get` for each block. Returns the blocks in pre-order, or the [`CarError`] that
/// stopped the walk (a block `get` does not have is [`CarError::MissingBlock`]).
/// The outer `Result` carries `get`'s own error.
///
/// # Errors
/// `get`'s error (outer), or a [`CarError`] (inner).
pub fn walk<E>(
    root: &Cid,
    limits: &CarLimits,
    get: impl FnMut(&Cid) -> Result<Option<VerifiedBlock>, E>,
) -> Result<Result<Vec<VerifiedBlock>, CarError>, E> {
    let mut out = Vec::new();
    let walked = walk_visit(root, limits, get, |b| {
        out.push(b);
        Ok(())
    })?;
    Ok(walked.map(|()| out))
}

/// Like [`walk`], but hands each block to `visit` in pre-order instead of keeping
/// it, so a walk over a large DAG holds one block at a time (the exporter).
///
/// # Errors
/// `get`'s or `visit`'s error (outer), or a [`CarError`] (inner).
pub fn walk_visit<E>(
    root: &Cid,
    limits: &CarLimits,
    mut get: impl FnMut(&Cid) -> Result<Option<VerifiedBlock>, E>,
    mut visit: impl FnMut(VerifiedBlock) -> Result<(), E>,
) -> Result<Result<(), CarError>, E> {
    let mut count = 0usize;
    let mut seen: HashSet<Cid> = HashSet::new();
    let mut stack: Vec<(Cid, usize)> = vec![(*root, 0)];
    while let Some((cid, depth)) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        if depth > limits.max_depth {
            return Ok(Err(CarError::TooDeep {
                limit: limits.max_depth,
            }));
        }
        if count >= limits.max_blocks {
            return Ok(Err(CarError::TooManyBlocks {
                limit: limits.max_blocks,
            }));
        }
        let Some(block) = get(&cid)? else {
            return Ok(Err(CarError::MissingBlock(cid)));
        };
        let links = match block.links() {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let child_depth = depth.saturating_add(1);
        // Reverse so that the first link is visited first.
        for link in links.into_iter().rev() {
            if !seen.contains(&link) {
                stack.push((link, child_depth));
            }
        }
        count = count.saturating_add(1);
        visit(block)?;
    }
    Ok(Ok(()))
}

/// Bytes [`write_frame`] appends for `block`.
#[must_use]
pub fn frame_len(block: &VerifiedBlock) -> u64 {
    let body = (block.cid().encoded_len() as u64).saturating_add(block.data().len() as u64);
    let mut prefix = 1u64;
    let mut rest = body >> 7;
    while rest > 0 {
        prefix = prefix.saturating_add(1);
        rest >>= 7;
    }
    prefix.saturating_add(body)
}

#[cfg(test)]
#[expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "tests index fixtures they built"
)]
mod tests {
    use proptest::prelude::*;

    use super::super::block::{DAG_CBOR, RAW, cid_of};
    use super::*;
    use ipld_core::ipld::Ipld;

    /// A root listing `n` raw leaves, plus the leaves.
    fn sample(n: usize) -> (Cid, Vec<VerifiedBlock>) {
        let leaves: Vec<VerifiedBlock> = (0..n)
            .map(|i| VerifiedBlock::from_data(RAW, format!("leaf {i}").into_bytes()).unwrap())
            .collect();
        let root_val = Ipld::Map(
            [(
                "leaves".to_owned(),
                Ipld::List(leaves.iter().map(|b| Ipld::Link(*b.cid())).collect()),
            )]
            .into(),
        );
        let root =
            VerifiedBlock::from_data(DAG_CBOR, serde_ipld_dagcbor::to_vec(&root_val).unwrap())
                .unwrap();
        let cid = *root.cid();
        let mut all = vec![root];
        all.extend(leaves);
        (cid, all)
    }

    #[test]
    fn hello_car_bytes_are_as_documented() {
        // docs/formats.md §7.1
        let b = VerifiedBlock::from_data(RAW, b"hello".to_vec()).unwrap();
        let car = Car::from_blocks(*b.cid(), [b], &CarLimits::default()).unwrap();
        assert_eq!(
            hex::encode(car.encode()),
            "3aa265726f6f747381d82a582500015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b98246776657273696f6e0129015512202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982468656c6c6f"
        );
    }

    #[test]
    fn write_frame_matches_the_writer() {
        let (root, blocks) = sample(300);
        let mut framed = encode(&root, &[]);
        for b in &blocks {
            write_frame(&mut framed, b);
        }
        assert_eq!(framed, encode(&root, &blocks));
        // a frame over 127 and over 16383 bytes (2- and 3-byte lengths)
        let big = VerifiedBlock::from_data(RAW, vec![1; 20_000]).unwrap();
        let mut one = encode(big.cid(), &[]);
        write_frame(&mut one, &big);
        assert_eq!(one, encode(big.cid(), std::slice::from_ref(&big)));
    }

    #[test]
    fn round_trip_keeps_every_block() {
        let (root, blocks) = sample(10);
        let car = Car::from_blocks(root, blocks.clone(), &CarLimits::default()).unwrap();
        let bytes = car.encode();
        let back = Car::decode_expecting(&bytes, &root, &CarLimits::default()).unwrap();
        assert_eq!(back, car);
        assert_eq!(back.blocks(), &blocks[..]);
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn wrong_root_missing_and_stray_blocks_are_refused() {
        let (root, blocks) = sample(3);
        let lim = CarLimits::default();
        let other = cid_of(RAW, b"other").unwrap();
        let bytes = encode(&root, &blocks);
        assert_eq!(
            Car::decode_expecting(&bytes, &other, &lim),
            Err(CarError::WrongRoot {
                want: other,
                got: root
            })
        );
        // missing leaf
        let missing = *blocks[2].cid();
        let short: Vec<_> = blocks
            .iter()
            .filter(|b| *b.cid() != missing)
            .cloned()
            .collect();
        assert_eq!(
            Car::decode(&encode(&root, &short), &lim),
            Err(CarError::MissingBlock(missing))
        );
        // stray block
        let stray = VerifiedBlock::from_data(RAW, b"stray".to_vec()).unwrap();
        let mut extra = blocks.clone();
        extra.push(stray.clone());
        assert_eq!(
            Car::decode(&encode(&root, &extra), &lim),
            Err(CarError::UnreachableBlock(*stray.cid()))
        );
    }

    #[test]
    fn a_tampered_block_is_refused() {
        let (root, blocks) = sample(3);
        let mut bytes = encode(&root, &blocks);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            Car::decode(&bytes, &CarLimits::default()),
            Err(CarError::Block(
                super::super::error::BlockError::HashMismatch { .. }
            ))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let (root, blocks) = sample(5);
        let bytes = encode(&root, &blocks);
        let lim = CarLimits::default();
        assert_eq!(
            Car::decode(&bytes, &lim.with_max_blocks(5)),
            Err(CarError::TooManyBlocks { limit: 5 })
        );
        let n = bytes.len() as u64;
        assert_eq!(
            Car::decode(&bytes, &lim.with_max_bytes(n - 1)),
            Err(CarError::TooLarge { limit: n - 1 })
        );
        assert!(Car::decode(&bytes, &lim.with_max_bytes(n)).is_ok());
        assert!(matches!(
            Car::decode(&bytes, &lim.with_max_block_bytes(10)),
            Err(CarError::Block(
                super::super::error::BlockError::TooLarge { .. }
            ))
        ));
    }

    #[test]
    fn depth_is_capped_without_recursion() {
        // a chain of 3000 dag-cbor blocks, each linking the next
        let mut blocks = vec![VerifiedBlock::from_data(RAW, b"bottom".to_vec()).unwrap()];
        for _ in 0..3000 {
            let prev = *blocks.last().unwrap().cid();
            let v = Ipld::List(vec![Ipld::Link(prev)]);
            blocks.push(
                VerifiedBlock::from_data(DAG_CBOR, serde_ipld_dagcbor::to_vec(&v).unwrap())
                    .unwrap(),
            );
        }
        let root = *blocks.last().unwrap().cid();
        let lim = CarLimits::default();
        assert_eq!(
            Car::from_blocks(root, blocks.clone(), &lim),
            Err(CarError::TooDeep {
                limit: MAX_DAG_DEPTH
            })
        );
        assert!(Car::from_blocks(root, blocks, &lim.with_max_depth(3001)).is_ok());
    }

    #[test]
    fn headers_with_zero_or_two_roots_are_refused() {
        let (root, blocks) = sample(1);
        let two = futures::executor::block_on(async {
            let mut w = CarWriter::new(CarHeader::new_v1(vec![root, root]), Vec::new());
            w.write(*blocks[0].cid(), blocks[0].data()).await.unwrap();
            w.finish().await.unwrap()
        });
        assert_eq!(
            Car::decode(&two, &CarLimits::default()),
            Err(CarError::RootCount(2))
        );
        assert!(matches!(
            Car::decode(b"", &CarLimits::default()),
            Err(CarError::Malformed(_))
        ));
    }

    /// Feeds `bytes` to a [`CarStream`] cut at `cuts`.
    fn streamed(bytes: &[u8], want: Cid, cuts: &[usize]) -> Result<Car, CarError> {
        let mut s = CarStream::new(want, CarLimits::default());
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut at = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            s.feed(&bytes[at..p])?;
            at = p;
        }
        assert_eq!(s.received(), bytes.len() as u64);
        s.finish()
    }

    #[test]
    fn streaming_at_every_cut_gives_the_same_car() {
        let (root, blocks) = sample(6);
        let car = Car::from_blocks(root, blocks, &CarLimits::default()).unwrap();
        let bytes = car.encode();
        for a in 0..=bytes.len() {
            assert_eq!(streamed(&bytes, root, &[a]).unwrap(), car, "cut at {a}");
        }
        let every: Vec<usize> = (0..bytes.len()).collect();
        assert_eq!(streamed(&bytes, root, &every).unwrap(), car);
        let other = cid_of(RAW, b"other").unwrap();
        assert!(matches!(
            streamed(&bytes, other, &[3]),
            Err(CarError::WrongRoot { .. })
        ));
        assert!(streamed(&bytes[..bytes.len() - 1], root, &[]).is_err());
    }

    proptest! {
        #[test]
        fn streamed_mutations_are_refused_or_equal(
            at in any::<usize>(),
            flip in 1u8..,
            cuts in proptest::collection::vec(any::<usize>(), 0..5),
        ) {
            let (root, blocks) = sample(4);
            let good = encode(&root, &blocks);
            let mut bad = good.clone();
            let i = at % bad.len();
            bad[i] ^= flip;
            if let Ok(car) = streamed(&bad, root, &cuts) {
                prop_assert_eq!(car.encode(), good);
            }
        }

        #[test]
        fn streamed_random_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..5),
        ) {
            let root = cid_of(RAW, b"x").unwrap();
            let _ = streamed(&data, root, &cuts);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Car::decode(&data, &CarLimits::default());
        }

        #[test]
        fn mutated_cars_are_refused_or_equal(at in any::<usize>(), flip in 1u8..) {
            let (root, blocks) = sample(4);
            let good = encode(&root, &blocks);
            let mut bad = good.clone();
            let i = at % bad.len();
            bad[i] ^= flip;
            // a flip may only be accepted if it decodes to the same verified DAG
            if let Ok(car) = Car::decode(&bad, &CarLimits::default()) {
                prop_assert_eq!(car.encode(), good);
            }
        }

        #[test]
        fn truncated_cars_are_refused(cut in 1usize..200) {
            let (root, blocks) = sample(4);
            let good = encode(&root, &blocks);
            let keep = good.len().saturating_sub(cut);
            prop_assert!(Car::decode(&good[..keep], &CarLimits::default()).is_err());
        }
    }
}
