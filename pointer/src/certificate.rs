//! Unicity certificates (UC) and the root trust base: decode, verify, and — for the
//! embedded aggregator — build and sign.
//!
//! A UC binds an SMT root (`InputRecord.hash`) to a seal signed by a quorum of root
//! validators. Verification (state-transition SDK 3.0.1 rules):
//!
//! 1. `seal.networkId == trustBase.networkId`;
//! 2. shard root = SHA-256(IR-CBOR ‖ CBOR(techRecordHash | null) ‖ bstr shardConfHash),
//!    folded with each shard-tree sibling as SHA-256(bstr a ‖ bstr b), the side picked
//!    by the shard id's bits read from the end;
//! 3. unicity-tree leaf = SHA-256(bstr 01 ‖ bstr be32(partition) ‖ bstr SHA-256(bstr shardRoot)),
//!    folded with each step as SHA-256(bstr 00 ‖ bstr be32(stepKey) ‖ ordered pair);
//!    the result must equal `seal.hash`;
//! 4. every seal signature is secp256k1 (65 bytes r‖s‖v, low-S, checked by public-key
//!    recovery) over SHA-256(seal CBOR with the signature map set to null); at least
//!    `quorumThreshold` of them must come from distinct trust-base nodes.
//!
//! CBOR tags: UC 39001, IR 39002, shard-tree certificate 39003, unicity-tree
//! certificate 39004, seal 39005. The decoder is strict ([`crate::cbor`]); this
//! module decodes untrusted bytes and opens with the decoder lints.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cbor::{self, Value};
use crate::error::WireError;

/// CBOR tag of a UnicityCertificate.
pub const TAG_UC: u64 = 39001;
/// CBOR tag of an InputRecord.
pub const TAG_IR: u64 = 39002;
/// CBOR tag of a ShardTreeCertificate.
pub const TAG_SHARD_TREE: u64 = 39003;
/// CBOR tag of a UnicityTreeCertificate.
pub const TAG_UNICITY_TREE: u64 = 39004;
/// CBOR tag of a UnicitySeal.
pub const TAG_SEAL: u64 = 39005;
/// Most root validators a trust base may list.
pub const MAX_ROOT_NODES: usize = 256;

/// The round summary a shard certifies; `hash` is the SMT root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Shard round.
    pub round_number: u64,
    /// Epoch.
    pub epoch: u64,
    /// Previous root, if any.
    pub previous_hash: Option<Vec<u8>>,
    /// The SMT root (32 bytes in v2).
    pub hash: Vec<u8>,
    /// Summary value.
    pub summary_value: Vec<u8>,
    /// Round time, Unix seconds.
    pub timestamp: u64,
    /// Block hash.
    pub block_hash: Option<Vec<u8>>,
    /// Fees.
    pub sum_of_earned_fees: u64,
    /// Executed transactions hash.
    pub executed_transactions_hash: Option<Vec<u8>>,
}

/// The position of a shard inside its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardTreeCertificate {
    /// Shard id bits, encoded with an end marker (`0x80` = the whole partition).
    pub shard_id: Vec<u8>,
    /// Sibling hashes, leaf → root.
    pub siblings: Vec<Vec<u8>>,
}

/// The partition's path in the unicity tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicityTreeCertificate {
    /// Partition identifier.
    pub partition: u32,
    /// `(key, hash)` steps.
    pub steps: Vec<(u32, Vec<u8>)>,
}

/// The root chain's signed seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicitySeal {
    /// Network id (1 mainnet, 2 testnet, 3 local).
    pub network_id: u64,
    /// Root chain round.
    pub root_round: u64,
    /// Epoch of the root validator set.
    pub epoch: u64,
    /// Unix seconds.
    pub timestamp: u64,
    /// Previous seal hash.
    pub previous_hash: Option<Vec<u8>>,
    /// The unicity-tree root.
    pub hash: Vec<u8>,
    /// node id → 65-byte signature.
    pub signatures: Option<BTreeMap<String, Vec<u8>>>,
}

/// A unicity certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicityCertificate {
    /// What the shard certified.
    pub input_record: InputRecord,
    /// Technical record hash.
    pub technical_record_hash: Option<Vec<u8>>,
    /// Shard configuration hash.
    pub shard_configuration_hash: Vec<u8>,
    /// Shard tree certificate.
    pub shard_tree: ShardTreeCertificate,
    /// Unicity tree certificate.
    pub unicity_tree: UnicityTreeCertificate,
    /// Seal.
    pub seal: UnicitySeal,
}

fn opt_bytes(v: &Option<Vec<u8>>) -> Value {
    v.as_ref().map_or(Value::Null, |b| Value::Bytes(b.clone()))
}

fn tagged(tag: u64, items: Vec<Value>) -> Value {
    Value::Tag(tag, Box::new(Value::Array(items)))
}

/// Opens `tag [items…]` with exactly `n` items and version 1 first.
pub(crate) fn open(
    v: &Value,
    tag: u64,
    n: usize,
    what: &'static str,
) -> Result<Vec<Value>, WireError> {
    let Value::Tag(t, inner) = v else {
        return Err(WireError::Shape(what));
    };
    if *t != tag {
        return Err(WireError::Tag { what, found: *t });
    }
    let Value::Array(items) = inner.as_ref() else {
        return Err(WireError::Shape(what));
    };
    if items.len() != n {
        return Err(WireError::Shape(what));
    }
    Ok(items.clone())
}

pub(crate) fn uint(v: Option<&Value>, what: &'static str) -> Result<u64, WireError> {
    match v {
        Some(Value::Uint(n)) => Ok(*n),
        _ => Err(WireError::Shape(what)),
    }
}

pub(crate) fn bytes(v: Option<&Value>, what: &'static str) -> Result<Vec<u8>, WireError> {
    match v {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        _ => Err(WireError::Shape(what)),
    }
}

pub(crate) fn fixed<const N: usize>(
    v: Option<&Value>,
    what: &'static str,
) -> Result<[u8; N], WireError> {
    let b = bytes(v, what)?;
    <[u8; N]>::try_from(b.as_slice()).map_err(|_| WireError::Length { what, len: b.len() })
}

pub(crate) fn opt_bytes_of(
    v: Option<&Value>,
    what: &'static str,
) -> Result<Option<Vec<u8>>, WireError> {
    match v {
        Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b.clone())),
        _ => Err(WireError::Shape(what)),
    }
}

fn version1(items: &[Value], what: &'static str) -> Result<(), WireError> {
    match uint(items.first(), what)? {
        1 => Ok(()),
        found => Err(WireError::Version { what, found }),
    }
}

impl InputRecord {
    /// CBOR value.
    pub fn to_value(&self) -> Value {
        tagged(
            TAG_IR,
            vec![
                Value::Uint(1),
                Value::Uint(self.round_number),
                Value::Uint(self.epoch),
                opt_bytes(&self.previous_hash),
                Value::Bytes(self.hash.clone()),
                Value::Bytes(self.summary_value.clone()),
                Value::Uint(self.timestamp),
                opt_bytes(&self.block_hash),
                Value::Uint(self.sum_of_earned_fees),
                opt_bytes(&self.executed_transactions_hash),
            ],
        )
    }

    fn from_value(v: &Value) -> Result<Self, WireError> {
        let i = open(v, TAG_IR, 10, "input record")?;
        version1(&i, "input record")?;
        Ok(Self {
            round_number: uint(i.get(1), "input record round")?,
            epoch: uint(i.get(2), "input record epoch")?,
            previous_hash: opt_bytes_of(i.get(3), "input record previous hash")?,
            hash: bytes(i.get(4), "input record hash")?,
            summary_value: bytes(i.get(5), "input record summary value")?,
            timestamp: uint(i.get(6), "input record timestamp")?,
            block_hash: opt_bytes_of(i.get(7), "input record block hash")?,
            sum_of_earned_fees: uint(i.get(8), "input record fees")?,
            executed_transactions_hash: opt_bytes_of(i.get(9), "input record executed tx hash")?,
        })
    }
}

impl UnicitySeal {
    /// CBOR value (with or without the signatures).
    pub fn to_value(&self, with_signatures: bool) -> Value {
        let sigs = match (&self.signatures, with_signatures) {
            (Some(map), true) => Value::Map(
                canonical_map(map)
                    .into_iter()
                    .map(|(k, v)| (Value::Text(k), Value::Bytes(v)))
                    .collect(),
            ),
            _ => Value::Null,
        };
        tagged(
            TAG_SEAL,
            vec![
                Value::Uint(1),
                Value::Uint(self.network_id),
                Value::Uint(self.root_round),
                Value::Uint(self.epoch),
                Value::Uint(self.timestamp),
                opt_bytes(&self.previous_hash),
                Value::Bytes(self.hash.clone()),
                sigs,
            ],
        )
    }

    /// What the validators sign: SHA-256 of the seal without signatures.
    pub fn signing_hash(&self) -> [u8; 32] {
        Sha256::digest(self.to_value(false).encode()).into()
    }

    fn from_value(v: &Value) -> Result<Self, WireError> {
        let i = open(v, TAG_SEAL, 8, "seal")?;
        version1(&i, "seal")?;
        let signatures = match i.get(7) {
            Some(Value::Null) => None,
            Some(Value::Map(entries)) => {
                let mut m = BTreeMap::new();
                for (k, v) in entries {
                    let (Value::Text(k), Value::Bytes(v)) = (k, v) else {
                        return Err(WireError::Shape("seal signature entry"));
                    };
                    m.insert(k.clone(), v.clone());
                }
                Some(m)
            }
            _ => return Err(WireError::Shape("seal signatures")),
        };
        Ok(Self {
            network_id: uint(i.get(1), "seal network id")?,
            root_round: uint(i.get(2), "seal round")?,
            epoch: uint(i.get(3), "seal epoch")?,
            timestamp: uint(i.get(4), "seal timestamp")?,
            previous_hash: opt_bytes_of(i.get(5), "seal previous hash")?,
            hash: bytes(i.get(6), "seal hash")?,
            signatures,
        })
    }
}

/// Map entries in CBOR canonical order (length first, then bytewise — the order of
/// their encodings).
fn canonical_map(map: &BTreeMap<String, Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by_key(|a| Value::Text(a.0.clone()).encode());
    v
}

impl UnicityCertificate {
    /// CBOR value.
    pub fn to_value(&self) -> Value {
        tagged(
            TAG_UC,
            vec![
                Value::Uint(1),
                self.input_record.to_value(),
                opt_bytes(&self.technical_record_hash),
                Value::Bytes(self.shard_configuration_hash.clone()),
                tagged(
                    TAG_SHARD_TREE,
                    vec![
                        Value::Uint(1),
                        Value::Bytes(self.shard_tree.shard_id.clone()),
                        Value::Array(
                            self.shard_tree
                                .siblings
                                .iter()
                                .cloned()
                                .map(Value::Bytes)
                                .collect(),
                        ),
                    ],
                ),
                tagged(
                    TAG_UNICITY_TREE,
                    vec![
                        Value::Uint(1),
                        Value::Uint(u64::from(self.unicity_tree.partition)),
                        Value::Array(
                            self.unicity_tree
                                .steps
                                .iter()
                                .map(|(k, h)| {
                                    Value::Array(vec![
                                        Value::Uint(u64::from(*k)),
                                        Value::Bytes(h.clone()),
                                    ])
                                })
                                .collect(),
                        ),
                    ],
                ),
                self.seal.to_value(true),
            ],
        )
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Decodes from a CBOR value.
    pub fn from_value(v: &Value) -> Result<Self, WireError> {
        let i = open(v, TAG_UC, 7, "unicity certificate")?;
        version1(&i, "unicity certificate")?;
        let st = open(
            i.get(4).ok_or(WireError::Shape("shard tree"))?,
            TAG_SHARD_TREE,
            3,
            "shard tree",
        )?;
        version1(&st, "shard tree")?;
        let siblings = match st.get(2) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| bytes(Some(s), "shard tree sibling"))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(WireError::Shape("shard tree siblings")),
        };
        let ut = open(
            i.get(5).ok_or(WireError::Shape("unicity tree"))?,
            TAG_UNICITY_TREE,
            3,
            "unicity tree",
        )?;
        version1(&ut, "unicity tree")?;
        let partition = u32::try_from(uint(ut.get(1), "partition")?)
            .map_err(|_| WireError::Shape("partition"))?;
        let steps = match ut.get(2) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| match s {
                    Value::Array(kv) if kv.len() == 2 => {
                        let k = u32::try_from(uint(kv.first(), "step key")?)
                            .map_err(|_| WireError::Shape("step key"))?;
                        Ok((k, bytes(kv.get(1), "step hash")?))
                    }
                    _ => Err(WireError::Shape("unicity tree step")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(WireError::Shape("unicity tree steps")),
        };
        Ok(Self {
            input_record: InputRecord::from_value(
                i.get(1).ok_or(WireError::Shape("input record"))?,
            )?,
            technical_record_hash: opt_bytes_of(i.get(2), "technical record hash")?,
            shard_configuration_hash: bytes(i.get(3), "shard configuration hash")?,
            shard_tree: ShardTreeCertificate {
                shard_id: bytes(st.get(1), "shard id")?,
                siblings,
            },
            unicity_tree: UnicityTreeCertificate { partition, steps },
            seal: UnicitySeal::from_value(i.get(6).ok_or(WireError::Shape("seal"))?)?,
        })
    }

    /// Decodes from bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        Self::from_value(&cbor::decode(bytes)?)
    }

    /// The shard-tree root (step 2 of the module doc).
    pub fn shard_root(&self) -> Result<[u8; 32], CertificateError> {
        let mut h = Sha256::new();
        h.update(self.input_record.to_value().encode());
        h.update(opt_bytes(&self.technical_record_hash).encode());
        h.update(cbor::bstr(&self.shard_configuration_hash));
        let mut root: [u8; 32] = h.finalize().into();
        let shard = ShardId::decode(&self.shard_tree.shard_id)?;
        if self.shard_tree.siblings.len() > shard.len {
            return Err(CertificateError::ShardTree);
        }
        for (i, sib) in self.shard_tree.siblings.iter().enumerate() {
            // i < len, so len − 1 − i is in range.
            let idx = shard.len.saturating_sub(1).saturating_sub(i);
            let mut h = Sha256::new();
            if shard.bit(idx) {
                h.update(cbor::bstr(sib));
                h.update(cbor::bstr(&root));
            } else {
                h.update(cbor::bstr(&root));
                h.update(cbor::bstr(sib));
            }
            root = h.finalize().into();
        }
        Ok(root)
    }

    /// The unicity-tree root the seal must carry (step 3 of the module doc).
    pub fn unicity_tree_root(&self) -> Result<[u8; 32], CertificateError> {
        let shard_root = self.shard_root()?;
        let key = self.unicity_tree.partition.to_be_bytes();
        let inner: [u8; 32] = Sha256::digest(cbor::bstr(&shard_root)).into();
        let mut h = Sha256::new();
        h.update(cbor::bstr(&[0x01]));
        h.update(cbor::bstr(&key));
        h.update(cbor::bstr(&inner));
        let mut result: [u8; 32] = h.finalize().into();
        for (step_key, step_hash) in &self.unicity_tree.steps {
            let sk = step_key.to_be_bytes();
            let mut h = Sha256::new();
            h.update(cbor::bstr(&[0x00]));
            h.update(cbor::bstr(&sk));
            if key > sk {
                h.update(cbor::bstr(step_hash));
                h.update(cbor::bstr(&result));
            } else {
                h.update(cbor::bstr(&result));
                h.update(cbor::bstr(step_hash));
            }
            result = h.finalize().into();
        }
        Ok(result)
    }

    /// Verifies the certificate against `trust_base` (steps 1–4 of the module doc).
    pub fn verify(&self, trust_base: &TrustBase) -> Result<(), CertificateError> {
        if self.seal.network_id != trust_base.network_id {
            return Err(CertificateError::Network {
                expected: trust_base.network_id,
                found: self.seal.network_id,
            });
        }
        if self.unicity_tree_root()?.as_slice() != self.seal.hash.as_slice() {
            return Err(CertificateError::SealHash);
        }
        let digest = self.seal.signing_hash();
        let mut good = 0u64;
        for (node_id, sig) in self.seal.signatures.iter().flatten() {
            let Some(key) = trust_base.nodes.get(node_id) else {
                continue;
            };
            if verify_recoverable(&digest, sig, key) {
                good = good.saturating_add(1);
            }
        }
        if good < trust_base.quorum_threshold {
            return Err(CertificateError::Quorum {
                valid: good,
                needed: trust_base.quorum_threshold,
            });
        }
        Ok(())
    }

    /// True when the state id falls under this certificate's shard.
    pub fn shard_contains(&self, state_id: &[u8; 32]) -> Result<bool, CertificateError> {
        let shard = ShardId::decode(&self.shard_tree.shard_id)?;
        Ok((0..shard.len)
            .all(|i| shard.bit(i) == crate::smt::bit(state_id, u8::try_from(i).unwrap_or(255))))
    }
}

/// Why a unicity certificate is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The seal names another network than the trust base.
    #[error("seal is for network {found}, trust base for {expected}")]
    Network {
        /// The trust base's network.
        expected: u64,
        /// The seal's network.
        found: u64,
    },
    /// The unicity tree does not reach the seal hash.
    #[error("unicity tree root does not match the seal hash")]
    SealHash,
    /// Too few valid validator signatures.
    #[error("{valid} valid seal signatures, quorum is {needed}")]
    Quorum {
        /// Valid signatures from trust-base nodes.
        valid: u64,
        /// The quorum threshold.
        needed: u64,
    },
    /// The shard id or the shard-tree siblings are malformed.
    #[error("malformed shard tree certificate")]
    ShardTree,
}

struct ShardId {
    bits: Vec<u8>,
    len: usize,
}

impl ShardId {
    /// Bits followed by a single 1 and zero padding to the byte boundary.
    fn decode(data: &[u8]) -> Result<Self, CertificateError> {
        let (&last, body) = data.split_last().ok_or(CertificateError::ShardTree)?;
        if last == 0 || data.len() > 33 {
            return Err(CertificateError::ShardTree);
        }
        // The end marker is the lowest set bit; the bits above it are data.
        let tz = last.trailing_zeros(); // 0..=7 because last != 0
        let extra = 7usize.saturating_sub(tz as usize);
        let mask = u8::try_from((0xff_u16 << tz.saturating_add(1)) & 0xff).unwrap_or(0);
        let mut bits = body.to_vec();
        bits.push(last & mask);
        Ok(Self {
            bits,
            len: body.len().saturating_mul(8).saturating_add(extra),
        })
    }

    fn bit(&self, i: usize) -> bool {
        self.bits
            .get(i / 8)
            .is_some_and(|b| (b >> 7usize.wrapping_sub(i % 8)) & 1 == 1)
    }
}

/// Verifies a 65-byte r‖s‖v secp256k1 signature over a 32-byte digest by public-key
/// recovery; high-S signatures are refused (SDK 3.0.1 rule).
pub fn verify_recoverable(digest: &[u8; 32], sig65: &[u8], public_key: &[u8; 33]) -> bool {
    let Some((&v, rs)) = sig65.split_last() else {
        return false;
    };
    if rs.len() != 64 {
        return false;
    }
    let Ok(sig) = Signature::from_slice(rs) else {
        return false;
    };
    if sig.normalize_s() != sig {
        return false;
    }
    let Some(recid) = RecoveryId::from_byte(v) else {
        return false;
    };
    let Ok(key) = VerifyingKey::recover_from_prehash(digest, &sig, recid) else {
        return false;
    };
    key.to_sec1_point(true).as_ref() == public_key.as_slice()
}

/// Signs a 32-byte digest: RFC 6979, low-S, 65 bytes r‖s‖v.
pub fn sign_recoverable(key: &SigningKey, digest: &[u8; 32]) -> [u8; 65] {
    // k256 normalises s to the low half and adjusts the recovery id itself.
    let (sig, recid) = key.sign_prehash_recoverable(digest);
    let mut out = [0u8; 65];
    let (rs, v) = out.split_at_mut(64);
    rs.copy_from_slice(&sig.to_bytes());
    if let Some(b) = v.first_mut() {
        *b = recid.to_byte();
    }
    out
}

/// The compressed SEC1 public key of a signing key.
pub fn public_key(key: &SigningKey) -> [u8; 33] {
    let p = key.verifying_key().to_sec1_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(p.as_ref());
    out
}

/// The root validators a client trusts. Built from the SDK's RootTrustBase JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBase {
    /// Network id.
    pub network_id: u64,
    /// Validator-set epoch.
    pub epoch: u64,
    /// node id → compressed public key.
    pub nodes: BTreeMap<String, [u8; 33]>,
    /// Signatures needed.
    pub quorum_threshold: u64,
    /// The JSON it was read from (kept to export it unchanged).
    pub json: TrustBaseJson,
}

/// RootTrustBase JSON, as the SDK reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[expect(missing_docs, reason = "field names are the SDK's JSON names")]
pub struct TrustBaseJson {
    pub version: String,
    pub network_id: u64,
    pub epoch: String,
    pub epoch_start_round: String,
    pub root_nodes: Vec<RootNodeJson>,
    pub quorum_threshold: String,
    pub state_hash: String,
    pub change_record_hash: Option<String>,
    pub previous_entry_hash: Option<String>,
    pub signatures: BTreeMap<String, String>,
}

/// One root validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[expect(missing_docs, reason = "field names are the SDK's JSON names")]
pub struct RootNodeJson {
    pub node_id: String,
    pub sig_key: String,
    pub stake: String,
}

/// Why a trust base was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustBaseError {
    /// Not RootTrustBase JSON.
    #[error("trust base is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is out of range or inconsistent (empty, duplicate, bad key, quorum).
    #[error("invalid trust base: {0}")]
    Invalid(&'static str),
}

impl TrustBase {
    /// Parses and validates RootTrustBase JSON (SDK 3.0.1 rules: no duplicate ids or
    /// keys, at least one node, 0 < quorum ≤ nodes).
    pub fn from_json(json: &[u8]) -> Result<Self, TrustBaseError> {
        let j: TrustBaseJson = serde_json::from_slice(json)?;
        Self::from_parsed(j)
    }

    /// Validates parsed JSON.
    pub fn from_parsed(j: TrustBaseJson) -> Result<Self, TrustBaseError> {
        if j.root_nodes.is_empty() || j.root_nodes.len() > MAX_ROOT_NODES {
            return Err(TrustBaseError::Invalid("root node count"));
        }
        let mut nodes = BTreeMap::new();
        let mut keys = std::collections::BTreeSet::new();
        for n in &j.root_nodes {
            let mut pk = [0u8; 33];
            hex::decode_to_slice(&n.sig_key, &mut pk)
                .map_err(|_| TrustBaseError::Invalid("sigKey"))?;
            VerifyingKey::from_sec1_bytes(&pk).map_err(|_| TrustBaseError::Invalid("sigKey"))?;
            if !keys.insert(pk) || nodes.insert(n.node_id.clone(), pk).is_some() {
                return Err(TrustBaseError::Invalid("duplicate root node"));
            }
        }
        let quorum: u64 = j
            .quorum_threshold
            .parse()
            .map_err(|_| TrustBaseError::Invalid("quorumThreshold"))?;
        if quorum == 0 || quorum > nodes.len() as u64 {
            return Err(TrustBaseError::Invalid("quorumThreshold"));
        }
        let epoch = j
            .epoch
            .parse()
            .map_err(|_| TrustBaseError::Invalid("epoch"))?;
        Ok(Self {
            network_id: j.network_id,
            epoch,
            nodes,
            quorum_threshold: quorum,
            json: j,
        })
    }

    /// A one-validator trust base for a local network (network id 3), as the
    /// embedded aggregator generates.
    pub fn single(node_id: &str, key: &[u8; 33], network_id: u64) -> Self {
        let j = TrustBaseJson {
            version: "1".into(),
            network_id,
            epoch: "1".into(),
            epoch_start_round: "1".into(),
            root_nodes: vec![RootNodeJson {
                node_id: node_id.into(),
                sig_key: hex::encode(key),
                stake: "1".into(),
            }],
            quorum_threshold: "1".into(),
            state_hash: hex::encode([0u8; 32]),
            change_record_hash: None,
            previous_entry_hash: None,
            signatures: BTreeMap::new(),
        };
        Self::from_parsed(j).expect("a single valid key makes a valid trust base")
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.json).expect("plain data serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_id_decoding() {
        let s = ShardId::decode(&[0x80]).unwrap();
        assert_eq!(s.len, 0);
        let s = ShardId::decode(&[0b1010_0000]).unwrap();
        assert_eq!(s.len, 2);
        assert!(s.bit(0) && !s.bit(1));
        assert!(ShardId::decode(&[]).is_err());
        assert!(ShardId::decode(&[0x00]).is_err());
    }

    #[test]
    fn signatures_are_low_s_and_recoverable() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        for i in 0..20u8 {
            let d: [u8; 32] = Sha256::digest([i]).into();
            let s = sign_recoverable(&key, &d);
            assert!(verify_recoverable(&d, &s, &public_key(&key)));
            let mut bad = s;
            bad[3] ^= 1;
            assert!(!verify_recoverable(&d, &bad, &public_key(&key)));
        }
    }
}
