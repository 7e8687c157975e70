//! OpLog entries: the signed, encrypted, content-addressed unit of replication.
//!
//! This module owns the entry bytes: encoding, the strict decoder, body sealing and
//! opening, signing and verification. It never touches SQLite or the network.
//!
//! # Format
//!
//! An entry is a DAG-CBOR map with exactly these eleven keys, in canonical
//! (length-first, then bytewise) order `v, ctx, dev, key, log, seq, sig, body, prev,
//! wall, clock`:
//!
//! | key | CBOR | meaning |
//! |---|---|---|
//! | `v` | uint | format version, [`ENTRY_VERSION`] (1); any other value fails closed |
//! | `log` | bytes(32) | log id: HKDF of the wallet's OpLog root ([`crate::keys::OplogKeys::log_id`]) |
//! | `dev` | bytes(8) | the writing device's id |
//! | `seq` | uint, 1 ≤ seq ≤ [`MAX_SEQ`] | per-device sequence number, gapless: 1, 2, 3 … |
//! | `prev` | CID \| null | the same device's entry `seq − 1`; null iff `seq = 1` |
//! | `ctx` | array of `[bytes(8) device, uint seq (1 ..= MAX_SEQ), CID head]` | causal context: the heads of *other* devices the writer had applied, sorted by device, at most [`MAX_CTX`] |
//! | `clock` | uint ≥ 1 | Lamport clock: greater than every clock the writer had seen |
//! | `wall` | uint | writer's wall clock, ms since the Unix epoch (informational only) |
//! | `key` | bytes(33) | the compressed secp256k1 public key of the signer |
//! | `body` | bytes ≥ 28 | `nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)` under the body key, AAD = header bytes |
//! | `sig` | bytes(65) | `r (32) ‖ s (32, low-S) ‖ recovery id (1)` |
//!
//! Every CID is CIDv1, codec dag-cbor (0x71), multihash sha2-256 with a 32-byte digest.
//!
//! * **Header bytes** (the AAD of the body): the canonical DAG-CBOR of the map without
//!   `body` and `sig` (nine keys).
//! * **Signature**: ECDSA/secp256k1 over the prehash
//!   `SHA-256(`[`SIG_DOMAIN`]` ‖ CBOR(map without sig))`, low-S. [`Entry::seal`] uses
//!   RFC 6979 nonces; a store's commits complete presignatures with hedged random
//!   nonces (`oplog::presign`). Verifiers cannot and need not tell which.
//! * **Entry id**: the CID of the full encoded entry.
//! * **Body plaintext**: a DAG-CBOR array of operations `[key text, value bytes | null]`
//!   (null = delete), at least one, at most [`MAX_OPS`]; keys ≤ [`MAX_KEY_BYTES`],
//!   values ≤ [`MAX_VALUE_BYTES`]. Later operations on the same key in one entry win.
//!
//! The decoder accepts at most [`MAX_ENTRY_BYTES`] bytes, uses the strict DAG-CBOR
//! reader (no unknown or duplicate keys, no unordered maps, minimal integers) and
//! re-encodes what it read: input that is not byte-for-byte canonical is rejected.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use cid::Cid;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use multihash::Multihash;
use serde::Deserialize;
use serde_bytes::{ByteBuf, Bytes};
use sha2::{Digest, Sha256};

use crate::cipher;
use crate::keys::{KeyError, OplogKeys};
use crate::oplog::error::{DecodeError, Rejected};
use crate::oplog::presign::Presignature;
use crate::secret::Secret32;

/// The only entry format version this code writes and reads.
pub const ENTRY_VERSION: u64 = 1;
/// Largest encoded entry accepted or written: 1 MiB (the gossipsub transmit size the
/// sync layer configures, so every entry fits in one message).
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Most operations in one entry (one batch).
pub const MAX_OPS: usize = 10_000;
/// Largest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes (the Sphere envelope's own maximum).
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Largest body plaintext (the CBOR op array): 960 KiB, leaving room for the header
/// (≤ 16 KiB with a full causal context) inside [`MAX_ENTRY_BYTES`].
pub const MAX_BODY_PLAINTEXT: usize = 960 * 1024;
/// Most heads in a causal context (devices of one wallet).
pub const MAX_CTX: usize = 256;
/// Highest sequence number (2⁴⁰ − 1, over a trillion entries per device). The store
/// keys an entry row by one 64-bit integer holding the device and the sequence number
/// ([`crate::oplog::schema`]); a bound on `seq` is what lets it.
pub const MAX_SEQ: u64 = (1 << 40) - 1;
/// Length of a device id.
pub const DEVICE_ID_LEN: usize = 8;
/// Domain separator hashed before the unsigned entry bytes.
pub const SIG_DOMAIN: &[u8] = b"sphere-oplog-entry-v1\0";
/// Multicodec of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

const NONCE_LEN: usize = cipher::IV_LEN;
const MIN_BODY: usize = cipher::IV_LEN + cipher::TAG_LEN;

/// A device id: 8 random bytes fixed when the data dir is created.
pub type DeviceId = [u8; DEVICE_ID_LEN];

/// One head in a causal context, or a version-vector position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Head {
    /// The device.
    pub device: DeviceId,
    /// Its highest contiguous sequence number.
    pub seq: u64,
    /// The id of its entry `seq`.
    pub id: Cid,
}

/// One operation of a batch: `value = None` deletes (writes a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The key.
    pub key: String,
    /// The new value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl Op {
    /// Upper bound of this op's encoded size in the body.
    pub fn encoded_bound(&self) -> usize {
        self.key
            .len()
            .saturating_add(self.value.as_ref().map_or(0, Vec::len))
            .saturating_add(16)
    }

    /// Checks key and value against [`MAX_KEY_BYTES`] and [`MAX_VALUE_BYTES`].
    pub fn check(&self) -> Result<(), DecodeError> {
        if self.key.len() > MAX_KEY_BYTES {
            return Err(DecodeError::TooLarge {
                what: "key",
                len: self.key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        if let Some(v) = &self.value
            && v.len() > MAX_VALUE_BYTES
        {
            return Err(DecodeError::TooLarge {
                what: "value",
                len: v.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        Ok(())
    }
}

/// A decoded entry (body still encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The log id.
    pub log_id: [u8; 32],
    /// The writing device.
    pub device: DeviceId,
    /// Per-device sequence number (≥ 1).
    pub seq: u64,
    /// The same device's previous entry (`None` iff `seq == 1`).
    pub prev: Option<Cid>,
    /// Heads of other devices, sorted by device.
    pub ctx: Vec<Head>,
    /// Lamport clock.
    pub clock: u64,
    /// Wall clock, ms since the epoch.
    pub wall_ms: u64,
    /// The signer's compressed public key.
    pub signer: [u8; 33],
    /// `nonce ‖ ciphertext ‖ tag`.
    pub body: Vec<u8>,
    /// `r ‖ s ‖ v`.
    pub sig: [u8; 65],
}

/// The fields of an entry a writer chooses before sealing.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The writing device.
    pub device: DeviceId,
    /// Its next sequence number.
    pub seq: u64,
    /// Its previous entry.
    pub prev: Option<Cid>,
    /// Heads of the other devices it has applied.
    pub ctx: Vec<Head>,
    /// Lamport clock.
    pub clock: u64,
    /// Wall clock, ms.
    pub wall_ms: u64,
}

/// The key material entries are sealed, signed and verified with, parsed once.
#[derive(Clone)]
pub struct LogKeys {
    log_id: [u8; 32],
    signing: SigningKey,
    public: [u8; 33],
    body: Secret32,
}

impl std::fmt::Debug for LogKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKeys")
            .field("log_id", &hex::encode(self.log_id))
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl LogKeys {
    /// Parses the wallet's OpLog keys.
    pub fn new(keys: &OplogKeys) -> Result<Self, KeyError> {
        let signing = SigningKey::from_slice(keys.signing_key.expose()).map_err(|_| {
            KeyError::InvalidScalar {
                what: "OpLog signing key",
            }
        })?;
        let public = compress(signing.verifying_key());
        Ok(Self {
            log_id: keys.log_id,
            signing,
            public,
            body: keys.body_key.clone(),
        })
    }

    /// The log id entries must carry.
    pub fn log_id(&self) -> &[u8; 32] {
        &self.log_id
    }

    /// The public key entries must be signed by.
    pub fn public_key(&self) -> &[u8; 33] {
        &self.public
    }

    /// The signing key, for [`crate::oplog::presign`].
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public key as a curve point, for [`crate::oplog::sigbatch`].
    pub(crate) fn public_point(&self) -> k256::ProjectivePoint {
        k256::ProjectivePoint::from(*self.signing.verifying_key().as_affine())
    }

    /// The body key (also seals inline state values and snapshots).
    pub(crate) fn body_key(&self) -> &Secret32 {
        &self.body
    }
}

fn compress(vk: &VerifyingKey) -> [u8; 33] {
    let point = vk.to_sec1_point(true);
    let mut out = [0u8; 33];
    let bytes = point.as_bytes();
    if bytes.len() == out.len() {
        out.copy_from_slice(bytes);
    }
    out
}

/// The CID (v1, dag-cbor, sha2-256) of `bytes`.
pub fn cid_of(bytes: &[u8]) -> Cid {
    cid_from_digest(&Sha256::digest(bytes).into())
}

/// The CID (v1, dag-cbor, sha2-256) with `digest`.
pub fn cid_from_digest(digest: &[u8; 32]) -> Cid {
    Cid::new_v1(
        DAG_CBOR,
        Multihash::<64>::wrap(SHA2_256, digest).expect("a 32-byte digest fits a 64-byte multihash"),
    )
}

/// The 32-byte sha2-256 digest of a CID this module accepted or made.
pub fn digest_of(cid: &Cid) -> [u8; 32] {
    let mut out = [0u8; 32];
    let d = cid.hash().digest();
    if d.len() == out.len() {
        out.copy_from_slice(d);
    }
    out
}

/// A sequence number in `1 ..= MAX_SEQ`; `field` names it in the error.
pub(crate) fn check_seq(seq: u64, field: &'static str) -> Result<(), DecodeError> {
    match seq {
        0 => Err(DecodeError::Field {
            field,
            reason: "sequence numbers start at 1",
        }),
        s if s > MAX_SEQ => Err(DecodeError::Field {
            field,
            reason: "sequence numbers end at 2^40 - 1",
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_cid(cid: &Cid, field: &'static str) -> Result<(), DecodeError> {
    if cid.version() != cid::Version::V1
        || cid.codec() != DAG_CBOR
        || cid.hash().code() != SHA2_256
        || cid.hash().digest().len() != 32
    {
        return Err(DecodeError::Field {
            field,
            reason: "CID must be v1, dag-cbor, sha2-256",
        });
    }
    Ok(())
}

/// The entry map as serde sees it: the reference for [`Entry::wire`]'s writer in tests.
#[cfg(test)]
#[derive(serde::Serialize)]
struct WireRef<'a> {
    v: u64,
    log: &'a Bytes,
    dev: &'a Bytes,
    seq: u64,
    prev: Option<Cid>,
    ctx: Vec<(&'a Bytes, u64, Cid)>,
    clock: u64,
    wall: u64,
    key: &'a Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<&'a Bytes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u64,
    log: ByteBuf,
    dev: ByteBuf,
    seq: u64,
    prev: Option<Cid>,
    ctx: Vec<(ByteBuf, u64, Cid)>,
    clock: u64,
    wall: u64,
    key: ByteBuf,
    body: ByteBuf,
    sig: ByteBuf,
}

/// CBOR major types the entry writer uses ([`Entry::wire`], [`link`]).
const UINT: u8 = 0;
const BYTES: u8 = 2;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;

/// A DAG-CBOR link: tag 42 over the byte string `0x00 ‖ CID bytes`.
fn link(out: &mut Vec<u8>, cid: &Cid) {
    const DAG_CBOR_LINK: u64 = 42;
    crate::uxf::cbor::head(out, TAG, DAG_CBOR_LINK);
    let raw = cid.to_bytes();
    crate::uxf::cbor::head(out, BYTES, raw.len().saturating_add(1) as u64);
    out.push(0);
    out.extend_from_slice(&raw);
}

#[derive(Clone, Copy)]
enum Part {
    Header,
    Unsigned,
    Full,
}

fn fixed<const N: usize>(b: &[u8], field: &'static str) -> Result<[u8; N], DecodeError> {
    b.try_into().map_err(|_| DecodeError::Field {
        field,
        reason: "wrong length",
    })
}

impl Entry {
    /// The entry map in canonical DAG-CBOR, without `body` and `sig` (header), without
    /// `sig` (unsigned) or whole. Written field by field in the canonical key order
    /// (length first, then bytewise: `v, ctx, dev, key, log, seq, sig, body, prev,
    /// wall, clock`) rather than through serde, whose map writer buffers and sorts
    /// every field: a commit encodes its entry three times (≈ 5 µs of a 16-writer
    /// group commit's ≈ 150 µs through serde, `docs/benchmarks.md`) and every decode
    /// re-encodes once. `tests::writer_matches_serde` pins it to serde's bytes.
    fn wire(&self, part: Part) -> Vec<u8> {
        use crate::uxf::cbor::{bytes, head, null, text};
        let (fields, body, sig) = match part {
            Part::Header => (9, false, false),
            Part::Unsigned => (10, true, false),
            Part::Full => (11, true, true),
        };
        let room = self
            .body
            .len()
            .saturating_add(self.ctx.len().saturating_mul(64))
            .saturating_add(256);
        let mut out = Vec::with_capacity(room);
        head(&mut out, MAP, fields);
        text(&mut out, "v");
        head(&mut out, UINT, ENTRY_VERSION);
        text(&mut out, "ctx");
        head(&mut out, ARRAY, self.ctx.len() as u64);
        for h in &self.ctx {
            head(&mut out, ARRAY, 3);
            bytes(&mut out, &h.device);
            head(&mut out, UINT, h.seq);
            link(&mut out, &h.id);
        }
        text(&mut out, "dev");
        bytes(&mut out, &self.device);
        text(&mut out, "key");
        bytes(&mut out, &self.signer);
        text(&mut out, "log");
        bytes(&mut out, &self.log_id);
        text(&mut out, "seq");
        head(&mut out, UINT, self.seq);
        if sig {
            text(&mut out, "sig");
            bytes(&mut out, &self.sig);
        }
        if body {
            text(&mut out, "body");
            bytes(&mut out, &self.body);
        }
        text(&mut out, "prev");
        match &self.prev {
            Some(p) => link(&mut out, p),
            None => null(&mut out),
        }
        text(&mut out, "wall");
        head(&mut out, UINT, self.wall_ms);
        text(&mut out, "clock");
        head(&mut out, UINT, self.clock);
        out
    }

    /// The canonical encoded entry.
    pub fn encode(&self) -> Vec<u8> {
        self.wire(Part::Full)
    }

    /// The header bytes: the AAD of the body.
    pub fn header_bytes(&self) -> Vec<u8> {
        self.wire(Part::Header)
    }

    /// The prehash the signature covers.
    pub fn signing_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(SIG_DOMAIN);
        h.update(self.wire(Part::Unsigned));
        h.finalize().into()
    }

    /// The entry id (CID of [`Entry::encode`]).
    pub fn id(&self) -> Cid {
        cid_of(&self.encode())
    }

    /// Encrypts `ops` and signs a new entry for `draft`.
    pub fn seal(keys: &LogKeys, draft: Draft, ops: &[Op]) -> Result<Self, DecodeError> {
        Self::seal_encoded(keys, draft, ops).map(|(e, _)| e)
    }

    /// [`Entry::seal`], also returning the encoded entry.
    pub fn seal_encoded(
        keys: &LogKeys,
        draft: Draft,
        ops: &[Op],
    ) -> Result<(Self, Vec<u8>), DecodeError> {
        Self::seal_presigned(keys, draft, ops, None)
    }

    /// [`Entry::seal_encoded`], completing `presig` (made for `keys`) instead of
    /// signing from scratch when one is given ([`super::presign`]).
    pub(crate) fn seal_presigned(
        keys: &LogKeys,
        draft: Draft,
        ops: &[Op],
        presig: Option<Presignature>,
    ) -> Result<(Self, Vec<u8>), DecodeError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        Self::seal_inner(keys, draft, ops, nonce, presig)
    }

    /// [`Entry::seal`] with a caller-chosen body nonce. Reusing a nonce under one
    /// body key breaks AES-GCM: only known-answer tests use this.
    #[doc(hidden)]
    pub fn seal_with_nonce(
        keys: &LogKeys,
        draft: Draft,
        ops: &[Op],
        nonce: [u8; NONCE_LEN],
    ) -> Result<(Self, Vec<u8>), DecodeError> {
        Self::seal_inner(keys, draft, ops, nonce, None)
    }

    fn seal_inner(
        keys: &LogKeys,
        draft: Draft,
        ops: &[Op],
        nonce: [u8; NONCE_LEN],
        presig: Option<Presignature>,
    ) -> Result<(Self, Vec<u8>), DecodeError> {
        check_seq(draft.seq, "seq")?;
        check_ops(ops)?;
        let plain = encode_ops(ops);
        if plain.len() > MAX_BODY_PLAINTEXT {
            return Err(DecodeError::TooLarge {
                what: "body",
                len: plain.len(),
                max: MAX_BODY_PLAINTEXT,
            });
        }
        let mut e = Entry {
            log_id: keys.log_id,
            device: draft.device,
            seq: draft.seq,
            prev: draft.prev,
            ctx: draft.ctx,
            clock: draft.clock,
            wall_ms: draft.wall_ms,
            signer: keys.public,
            body: Vec::new(),
            sig: [0; 65],
        };
        e.body = cipher::encrypt_with_iv(&keys.body, &nonce, &plain, &e.header_bytes());
        let digest = e.signing_digest();
        let (sig, recid) =
            match presig.and_then(|p| p.sign(keys.signing.as_nonzero_scalar(), &digest)) {
                Some(done) => done,
                None => {
                    let (sig, recid): (Signature, RecoveryId) =
                        keys.signing.sign_prehash_recoverable(&digest);
                    // k256 already normalizes to low-S; keep the recovery id consistent if
                    // it did not.
                    match sig.normalize_s() {
                        n if n == sig => (sig, recid),
                        n => (n, RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced())),
                    }
                }
            };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        e.sig = out;
        let bytes = e.encode();
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(DecodeError::TooLarge {
                what: "entry",
                len: bytes.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        Ok((e, bytes))
    }

    /// Decrypts the body of an entry this store verified when it was applied: the
    /// GCM tag still authenticates it, but the canonical re-encoding check is skipped
    /// (the read path of `get`).
    pub(crate) fn open_stored(&self, keys: &LogKeys) -> Result<Vec<Op>, DecodeError> {
        let plain = cipher::decrypt_with_aad(&keys.body, &self.body, &self.header_bytes())
            .map_err(|_| DecodeError::Body("authentication failed"))?;
        let wire: Vec<(String, Option<ByteBuf>)> = serde_ipld_dagcbor::from_slice(&plain)
            .map_err(|e| DecodeError::Cbor(format!("body: {e}")))?;
        Ok(wire
            .into_iter()
            .map(|(key, value)| Op {
                key,
                value: value.map(ByteBuf::into_vec),
            })
            .collect())
    }

    /// Decrypts and decodes the body's operations.
    pub fn open(&self, keys: &LogKeys) -> Result<Vec<Op>, DecodeError> {
        let plain = cipher::decrypt_with_aad(&keys.body, &self.body, &self.header_bytes())
            .map_err(|_| DecodeError::Body("authentication failed"))?;
        decode_ops(&plain)
    }
}

fn check_ops(ops: &[Op]) -> Result<(), DecodeError> {
    if ops.is_empty() {
        return Err(DecodeError::Field {
            field: "body",
            reason: "an entry holds at least one operation",
        });
    }
    if ops.len() > MAX_OPS {
        return Err(DecodeError::TooLarge {
            what: "operations",
            len: ops.len(),
            max: MAX_OPS,
        });
    }
    ops.iter().try_for_each(Op::check)
}

/// Encodes a body plaintext.
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let wire: Vec<(&str, Option<&Bytes>)> = ops
        .iter()
        .map(|o| (o.key.as_str(), o.value.as_deref().map(Bytes::new)))
        .collect();
    serde_ipld_dagcbor::to_vec(&wire).expect("encoding plain structs into a Vec cannot fail")
}

/// Decodes a body plaintext (strict, canonical, within the op limits).
pub fn decode_ops(plain: &[u8]) -> Result<Vec<Op>, DecodeError> {
    if plain.len() > MAX_BODY_PLAINTEXT {
        return Err(DecodeError::TooLarge {
            what: "body",
            len: plain.len(),
            max: MAX_BODY_PLAINTEXT,
        });
    }
    let wire: Vec<(String, Option<ByteBuf>)> = serde_ipld_dagcbor::from_slice(plain)
        .map_err(|e| DecodeError::Cbor(format!("body: {e}")))?;
    let ops: Vec<Op> = wire
        .into_iter()
        .map(|(key, value)| Op {
            key,
            value: value.map(ByteBuf::into_vec),
        })
        .collect();
    check_ops(&ops)?;
    if encode_ops(&ops) != plain {
        return Err(DecodeError::NonCanonical);
    }
    Ok(ops)
}

/// Encodes a causal context (the `ctx` field) on its own, as the store keeps it.
pub fn encode_ctx(ctx: &[Head]) -> Vec<u8> {
    let wire: Vec<(&Bytes, u64, Cid)> = ctx
        .iter()
        .map(|h| (Bytes::new(&h.device), h.seq, h.id))
        .collect();
    serde_ipld_dagcbor::to_vec(&wire).expect("encoding plain structs into a Vec cannot fail")
}

/// Decodes a causal context the store kept (see [`encode_ctx`]): its canonical
/// bytes only, every head's CID checked as in an entry.
pub fn decode_ctx(bytes: &[u8]) -> Result<Vec<Head>, DecodeError> {
    let wire: Vec<(ByteBuf, u64, Cid)> =
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DecodeError::Cbor(e.to_string()))?;
    let heads = wire
        .into_iter()
        .map(|(d, seq, id)| {
            check_cid(&id, "ctx head")?;
            Ok(Head {
                device: fixed(&d, "ctx device")?,
                seq,
                id,
            })
        })
        .collect::<Result<Vec<Head>, DecodeError>>()?;
    // Trailing bytes or another encoding of the same heads would make the entry
    // re-encoded from its row differ from the signed one.
    if encode_ctx(&heads) != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(heads)
}

/// Decodes an entry: strict DAG-CBOR, every field checked, canonical bytes only.
/// Does not verify the signature or the log id (see [`verify`]).
pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(DecodeError::TooLarge {
            what: "entry",
            len: bytes.len(),
            max: MAX_ENTRY_BYTES,
        });
    }
    let w: Wire =
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DecodeError::Cbor(e.to_string()))?;
    if w.v != ENTRY_VERSION {
        return Err(DecodeError::Version(w.v));
    }
    let device: DeviceId = fixed(&w.dev, "dev")?;
    check_seq(w.seq, "seq")?;
    match (&w.prev, w.seq) {
        (None, 1) => {}
        (Some(p), s) if s > 1 => check_cid(p, "prev")?,
        (None, _) => {
            return Err(DecodeError::Field {
                field: "prev",
                reason: "null only for seq 1",
            });
        }
        (Some(_), _) => {
            return Err(DecodeError::Field {
                field: "prev",
                reason: "seq 1 has no previous entry",
            });
        }
    }
    if w.ctx.len() > MAX_CTX {
        return Err(DecodeError::TooLarge {
            what: "causal context",
            len: w.ctx.len(),
            max: MAX_CTX,
        });
    }
    let mut ctx: Vec<Head> = Vec::with_capacity(w.ctx.len());
    for (dev, seq, id) in &w.ctx {
        let d: DeviceId = fixed(dev, "ctx device")?;
        if d == device {
            return Err(DecodeError::Field {
                field: "ctx",
                reason: "the causal context names the writer itself",
            });
        }
        check_seq(*seq, "ctx")?;
        check_cid(id, "ctx head")?;
        if let Some(last) = ctx.last()
            && last.device >= d
        {
            return Err(DecodeError::Field {
                field: "ctx",
                reason: "heads must be sorted by device, without repeats",
            });
        }
        ctx.push(Head {
            device: d,
            seq: *seq,
            id: *id,
        });
    }
    if w.clock == 0 {
        return Err(DecodeError::Field {
            field: "clock",
            reason: "the Lamport clock starts at 1",
        });
    }
    if w.body.len() < MIN_BODY {
        return Err(DecodeError::Field {
            field: "body",
            reason: "shorter than nonce and tag",
        });
    }
    let e = Entry {
        log_id: fixed(&w.log, "log")?,
        device,
        seq: w.seq,
        prev: w.prev,
        ctx,
        clock: w.clock,
        wall_ms: w.wall,
        signer: fixed(&w.key, "key")?,
        body: w.body.into_vec(),
        sig: fixed(&w.sig, "sig")?,
    };
    if e.encode() != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(e)
}

/// Checks that `entry` belongs to this wallet's log: the log id, the signer, and the
/// signature (valid, low-S, recovering to the signer). Pure: no store involved.
pub fn verify(entry: &Entry, keys: &LogKeys) -> Result<(), Rejected> {
    if entry.log_id != keys.log_id {
        return Err(Rejected::ForeignLog {
            device: hex::encode(entry.device),
            seq: entry.seq,
        });
    }
    let bad = || Rejected::BadSignature {
        device: hex::encode(entry.device),
        seq: entry.seq,
    };
    let (rs, v) = entry.sig.split_at(64);
    let sig = Signature::from_slice(rs).map_err(|_| bad())?;
    if sig.normalize_s() != sig {
        return Err(bad());
    }
    let recid = v
        .first()
        .and_then(|b| RecoveryId::from_byte(*b))
        .ok_or_else(bad)?;
    let recovered = VerifyingKey::recover_from_prehash(&entry.signing_digest(), &sig, recid)
        .map_err(|_| bad())?;
    if compress(&recovered) != entry.signer {
        return Err(bad());
    }
    if entry.signer != keys.public {
        return Err(Rejected::WrongKey {
            device: hex::encode(entry.device),
            seq: entry.seq,
            signer: hex::encode(entry.signer),
        });
    }
    Ok(())
}

/// Decodes and verifies entry bytes: what a sync layer calls before forwarding.
pub fn decode_verified(bytes: &[u8], keys: &LogKeys) -> Result<Entry, Rejected> {
    let e = decode_remote(bytes)?;
    verify(&e, keys)?;
    Ok(e)
}

/// Decodes entry bytes from a peer, refusing oversize input first; the signature is
/// not checked (see [`verify`] and [`crate::oplog::sigbatch::verify_many`]).
pub fn decode_remote(bytes: &[u8]) -> Result<Entry, Rejected> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(Rejected::TooLarge {
            len: bytes.len(),
            max: MAX_ENTRY_BYTES,
        });
    }
    decode(bytes).map_err(Rejected::Malformed)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    use super::*;
    use crate::keys::WalletKeys;
    use proptest::prelude::*;

    pub(crate) fn keys(n: u8) -> LogKeys {
        let wk = WalletKeys::from_address_key(&Secret32::new([n; 32])).unwrap();
        LogKeys::new(&wk.oplog).unwrap()
    }

    pub(crate) fn draft(seq: u64) -> Draft {
        Draft {
            device: [1; 8],
            seq,
            prev: (seq > 1).then(|| cid_of(b"prev")),
            ctx: vec![Head {
                device: [2; 8],
                seq: 3,
                id: cid_of(b"x"),
            }],
            clock: 7,
            wall_ms: 1_700_000_000_000,
        }
    }

    pub(crate) fn ops() -> Vec<Op> {
        vec![
            Op {
                key: "a".into(),
                value: Some(b"one".to_vec()),
            },
            Op {
                key: "b".into(),
                value: None,
            },
        ]
    }

    #[test]
    fn seal_decode_verify_open_round_trip() {
        let k = keys(1);
        let e = Entry::seal(&k, draft(2), &ops()).unwrap();
        let bytes = e.encode();
        let d = decode(&bytes).unwrap();
        assert_eq!(d, e);
        verify(&d, &k).unwrap();
        assert_eq!(d.open(&k).unwrap(), ops());
        assert_eq!(d.id(), cid_of(&bytes));
        assert!(bytes.len() < 400, "{}", bytes.len());
    }

    #[test]
    fn canonical_key_order_is_length_first() {
        let e = Entry::seal(&keys(1), draft(1), &ops()).unwrap();
        let bytes = e.encode();
        // map(11), then "v" first and "clock" last.
        assert_eq!(bytes[0], 0xab);
        assert_eq!(&bytes[1..3], &[0x61, b'v']);
        let tail = bytes.windows(6).position(|w| w == b"\x65clock").unwrap();
        assert!(tail > bytes.len() - 16);
    }

    #[test]
    fn signatures_are_low_s_and_65_bytes() {
        let k = keys(3);
        for seq in 1..20 {
            let e = Entry::seal(&k, draft(seq), &ops()).unwrap();
            let sig = Signature::from_slice(&e.sig[..64]).unwrap();
            assert_eq!(sig.normalize_s(), sig);
            assert!(e.sig[64] <= 3);
        }
    }

    #[test]
    fn rejections_are_typed() {
        let k = keys(1);
        let other = keys(2);
        let e = Entry::seal(&k, draft(1), &ops()).unwrap();
        // Another wallet's key signing for our log id.
        let mut forged = Entry::seal(&other, draft(1), &ops()).unwrap();
        forged.log_id = k.log_id;
        let digest = forged.signing_digest();
        let (sig, recid) = other.signing.sign_prehash_recoverable(&digest);
        forged.sig[..64].copy_from_slice(&sig.to_bytes());
        forged.sig[64] = recid.to_byte();
        assert!(matches!(
            verify(&forged, &k),
            Err(Rejected::WrongKey { .. })
        ));
        // Foreign log.
        let foreign = Entry::seal(&other, draft(1), &ops()).unwrap();
        assert!(matches!(
            verify(&foreign, &k),
            Err(Rejected::ForeignLog { .. })
        ));
        // Tampered field.
        let mut t = e.clone();
        t.clock += 1;
        assert!(matches!(verify(&t, &k), Err(Rejected::BadSignature { .. })));
        // High-S.
        let mut h = e.clone();
        let sig = Signature::from_slice(&h.sig[..64]).unwrap();
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        h.sig[..64].copy_from_slice(&high.to_bytes());
        h.sig[64] ^= 1;
        assert!(matches!(verify(&h, &k), Err(Rejected::BadSignature { .. })));
        // Wrong body key: opening fails with a typed error.
        assert!(matches!(e.open(&other), Err(DecodeError::Body(_))));
    }

    #[test]
    fn decoder_rejects_bad_fields() {
        let k = keys(1);
        let mut e = Entry::seal(&k, draft(1), &ops()).unwrap();
        e.seq = 0;
        assert!(matches!(
            decode(&e.encode()),
            Err(DecodeError::Field { field: "seq", .. })
        ));
        // The last sequence number seals and decodes; the next does neither.
        let e = Entry::seal(&k, draft(MAX_SEQ), &ops()).unwrap();
        assert_eq!(decode(&e.encode()).unwrap(), e);
        assert!(matches!(
            Entry::seal(&k, draft(MAX_SEQ + 1), &ops()),
            Err(DecodeError::Field { field: "seq", .. })
        ));
        let mut e = Entry::seal(&k, draft(2), &ops()).unwrap();
        e.seq = MAX_SEQ + 1;
        assert!(matches!(
            decode(&e.encode()),
            Err(DecodeError::Field { field: "seq", .. })
        ));
        let mut e = Entry::seal(&k, draft(2), &ops()).unwrap();
        e.ctx[0].seq = MAX_SEQ + 1;
        assert!(matches!(
            decode(&e.encode()),
            Err(DecodeError::Field { field: "ctx", .. })
        ));
        let mut e = Entry::seal(&k, draft(2), &ops()).unwrap();
        e.prev = None;
        assert!(matches!(
            decode(&e.encode()),
            Err(DecodeError::Field { field: "prev", .. })
        ));
        let mut e = Entry::seal(&k, draft(2), &ops()).unwrap();
        e.ctx.push(e.ctx[0]);
        assert!(matches!(
            decode(&e.encode()),
            Err(DecodeError::Field { field: "ctx", .. })
        ));
        let mut e = Entry::seal(&k, draft(2), &ops()).unwrap();
        e.ctx[0].device = e.device;
        assert!(matches!(
            decode(&e.encode()),
            Err(DecodeError::Field { field: "ctx", .. })
        ));
        let big = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert!(matches!(
            decode(&big),
            Err(DecodeError::TooLarge { what: "entry", .. })
        ));
    }

    #[test]
    fn limits_plus_one_are_rejected_when_sealing() {
        let k = keys(1);
        let key = "k".repeat(MAX_KEY_BYTES + 1);
        let r = Entry::seal(&k, draft(1), &[Op { key, value: None }]);
        assert!(matches!(r, Err(DecodeError::TooLarge { what: "key", .. })));
        let r = Entry::seal(
            &k,
            draft(1),
            &[Op {
                key: "k".into(),
                value: Some(vec![0; MAX_VALUE_BYTES + 1]),
            }],
        );
        assert!(matches!(
            r,
            Err(DecodeError::TooLarge { what: "value", .. })
        ));
        let many: Vec<Op> = (0..=MAX_OPS)
            .map(|i| Op {
                key: i.to_string(),
                value: None,
            })
            .collect();
        let r = Entry::seal(&k, draft(1), &many);
        assert!(matches!(
            r,
            Err(DecodeError::TooLarge {
                what: "operations",
                ..
            })
        ));
        let r = Entry::seal(&k, draft(1), &[]);
        assert!(matches!(r, Err(DecodeError::Field { field: "body", .. })));
    }

    /// The worked example of `docs/formats.md` §5.1: fixed keys, fields and nonce
    /// give fixed bytes (RFC 6979 signatures are deterministic).
    #[test]
    fn worked_example_matches_the_docs() {
        let k = keys(1);
        let e = Entry::seal_with_nonce(
            &k,
            Draft {
                device: [1, 2, 3, 4, 5, 6, 7, 8],
                seq: 1,
                prev: None,
                ctx: vec![],
                clock: 1,
                wall_ms: 1_700_000_000_000,
            },
            &[
                Op {
                    key: "settings.theme".into(),
                    value: Some(b"dark".to_vec()),
                },
                Op {
                    key: "old".into(),
                    value: None,
                },
            ],
            [0x11; 12],
        )
        .unwrap()
        .0;
        let got = format!(
            "log {}\nheader {}\nplain {}\nentry {}\nid {}",
            hex::encode(k.log_id),
            hex::encode(e.header_bytes()),
            hex::encode(encode_ops(&e.open(&k).unwrap())),
            hex::encode(e.encode()),
            e.id()
        );
        assert_eq!(got, WORKED_EXAMPLE);
    }

    /// Pinned by this test and quoted in `docs/formats.md` §5.1: any change to the
    /// encoder must change both.
    const WORKED_EXAMPLE: &str = "log 8cb1b175b950a998c62a4c714ba1c54122ac1d3e881439ee235ac93ea8c67b30\n\
         header a9617601636374788063646576480102030405060708636b6579582103fda90cf1034a3f19c67693ab41c68ed1a37ee93310efe4dd9c45a45a3e4e37dd636c6f6758208cb1b175b950a998c62a4c714ba1c54122ac1d3e881439ee235ac93ea8c67b3063736571016470726576f66477616c6c1b0000018bcfe5680065636c6f636b01\n\
         plain 82826e73657474696e67732e7468656d65446461726b82636f6c64f6\n\
         entry ab617601636374788063646576480102030405060708636b6579582103fda90cf1034a3f19c67693ab41c68ed1a37ee93310efe4dd9c45a45a3e4e37dd636c6f6758208cb1b175b950a998c62a4c714ba1c54122ac1d3e881439ee235ac93ea8c67b3063736571016373696758414ab3dc0bb64fafad78ec38c34b2efbfa4fbe6092a1c45bf9dc975f86eee423f128708841b9ca957b198008a83081664d67c70e0d24a58d199ceb48ef8c629bac0164626f647958381111111111111111111111114bedc94de7d19d6998fcad07c2472598dc7cc88798c1eaacf003cbd1b2da9d56783fc57ee1fee9daf66b0faf6470726576f66477616c6c1b0000018bcfe5680065636c6f636b01\n\
         id bafyreia5l4mtrfsjujpwp2ff3h35yr6nem3s2yugcge5mnekxb2ba75spm";

    fn serde_wire(e: &Entry, part: Part) -> Vec<u8> {
        let w = WireRef {
            v: ENTRY_VERSION,
            log: Bytes::new(&e.log_id),
            dev: Bytes::new(&e.device),
            seq: e.seq,
            prev: e.prev,
            ctx: e
                .ctx
                .iter()
                .map(|h| (Bytes::new(&h.device), h.seq, h.id))
                .collect(),
            clock: e.clock,
            wall: e.wall_ms,
            key: Bytes::new(&e.signer),
            body: matches!(part, Part::Unsigned | Part::Full).then(|| Bytes::new(&e.body)),
            sig: matches!(part, Part::Full).then(|| Bytes::new(&e.sig)),
        };
        serde_ipld_dagcbor::to_vec(&w).unwrap()
    }

    /// Any CID, not only the dag-cbor/sha2-256 ones entries carry: the writer must
    /// agree with serde whatever it is handed.
    fn any_cid() -> impl Strategy<Value = Cid> {
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(raw, data)| {
            if raw {
                Cid::new_v1(
                    0x55,
                    Multihash::wrap(SHA2_256, &data[..data.len().min(32)]).unwrap(),
                )
            } else {
                cid_of(&data)
            }
        })
    }

    fn any_entry() -> impl Strategy<Value = Entry> {
        (
            (
                any::<[u8; 32]>(),
                any::<[u8; 8]>(),
                any::<u64>(),
                proptest::option::of(any_cid()),
            ),
            proptest::collection::vec((any::<[u8; 8]>(), any::<u64>(), any_cid()), 0..6),
            (any::<u64>(), any::<u64>(), any::<[u8; 33]>()),
            (
                proptest::collection::vec(any::<u8>(), 0..2000),
                any::<[u8; 65]>(),
            ),
        )
            .prop_map(
                |((log_id, device, seq, prev), ctx, (clock, wall_ms, signer), (body, sig))| Entry {
                    log_id,
                    device,
                    seq,
                    prev,
                    ctx: ctx
                        .into_iter()
                        .map(|(device, seq, id)| Head { device, seq, id })
                        .collect(),
                    clock,
                    wall_ms,
                    signer,
                    body,
                    sig,
                },
            )
    }

    proptest! {
        /// The hand-written entry writer gives serde_ipld_dagcbor's bytes, for every
        /// part and any field values (integers across every CBOR head width, bodies
        /// across the byte-string length forms).
        #[test]
        fn writer_matches_serde(e in any_entry()) {
            for part in [Part::Header, Part::Unsigned, Part::Full] {
                prop_assert_eq!(e.wire(part), serde_wire(&e, part));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
            let _ = decode_ops(&bytes);
            let _ = decode_verified(&bytes, &keys(1));
            let _ = decode_ctx(&bytes);
        }

        /// `decode_ctx` reads the `ctx` column back from the database: mutations of
        /// a real one give a typed error or heads that encode back to those bytes.
        #[test]
        fn mutated_ctx_never_panics(pos in any::<proptest::sample::Index>(), byte in any::<u8>()) {
            let heads = vec![
                Head { device: [1; 8], seq: 3, id: cid_of(b"a") },
                Head { device: [2; 8], seq: 9, id: cid_of(b"b") },
            ];
            let mut bytes = encode_ctx(&heads);
            prop_assert_eq!(decode_ctx(&bytes).unwrap(), heads);
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            if let Ok(back) = decode_ctx(&bytes) {
                prop_assert_eq!(encode_ctx(&back), bytes);
            }
        }

        #[test]
        fn mutated_entries_never_panic_and_never_verify(
            idx in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let k = keys(1);
            let bytes = Entry::seal(&k, draft(2), &ops()).unwrap().encode();
            let mut m = bytes.clone();
            let i = idx.index(m.len());
            m[i] = byte;
            if m != bytes {
                prop_assert!(decode_verified(&m, &k).is_err());
            }
            let c = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..c]).is_err());
        }

        #[test]
        fn ops_round_trip(entries in proptest::collection::vec(
            ("[a-z./]{0,12}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))), 1..20)) {
            let ops: Vec<Op> = entries.into_iter().map(|(key, value)| Op { key, value }).collect();
            let e = Entry::seal(&keys(1), draft(1), &ops).unwrap();
            let d = decode(&e.encode()).unwrap();
            prop_assert_eq!(d.open(&keys(1)).unwrap(), ops);
        }
    }
}
