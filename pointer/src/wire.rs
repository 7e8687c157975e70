//! Aggregator wire objects (v2 API, state-transition SDK 3.0.1 rules): predicates,
//! StateId, CertificationData / CertificationRequest CBOR, the inclusion-proof
//! response, and the JSON-RPC bodies that carry them.
//!
//! ```text
//! lockScript           = tag 39032 [1, bstr 01, bstr pubkey33]
//! StateId              = SHA-256(CBOR [lockScript, bstr sourceStateHash32])
//! signed digest        = SHA-256(CBOR [bstr sourceStateHash32, bstr transactionHash32])
//! CertificationData    = tag 39031 [2, lockScript, bstr ssh32, bstr txh32, expiresAt|null, bstr witness65]
//! CertificationRequest = tag 39030 [1, bstr stateId32, CertificationData, uint aggregateRequestCount]
//! leaf value           = SHA-256(CBOR [bstr txh32, uint referenceTime])
//! proof result         = CBOR [uint block, tag 39033 [1, CertificationData|null,
//!                          referenceTime|null, bstr certificate|null, UnicityCertificate]]
//! ```
//!
//! Decoders here read untrusted bytes: strict CBOR, exact tags and versions,
//! fixed lengths, and the decoder lints.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cbor::{self, Value};
use crate::certificate::{UnicityCertificate, bytes, fixed, open, uint};
use crate::error::WireError;
use crate::smt::InclusionCertificate;

/// CBOR tag of a CertificationRequest.
pub const TAG_CERTIFICATION_REQUEST: u64 = 39030;
/// CBOR tag of CertificationData.
pub const TAG_CERTIFICATION_DATA: u64 = 39031;
/// CBOR tag of an encoded predicate.
pub const TAG_PREDICATE: u64 = 39032;
/// CBOR tag of an InclusionProof.
pub const TAG_INCLUSION_PROOF: u64 = 39033;
/// CertificationData version of SDK 3.0.1 (with `expiresAt`).
pub const CERTIFICATION_DATA_VERSION: u64 = 2;
/// Largest hex-decoded request or proof we accept (a proof with 255 siblings and a
/// UC with 256 signatures stays far below this).
pub const MAX_WIRE_BYTES: usize = 256 * 1024;

/// JSON-RPC method: submit a certification request.
pub const METHOD_SUBMIT: &str = "certification_request";
/// JSON-RPC method: fetch an inclusion proof.
pub const METHOD_PROOF: &str = "get_inclusion_proof.v2";
/// JSON-RPC method: the latest block number.
pub const METHOD_BLOCK_HEIGHT: &str = "get_block_height";

/// A predicate: `tag 39032 [engine, bstr code, bstr params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    /// Engine id (1 = built-in).
    pub engine: u64,
    /// Predicate code (`01` = signature predicate).
    pub code: Vec<u8>,
    /// Parameters (the 33-byte public key for a signature predicate).
    pub params: Vec<u8>,
}

impl Predicate {
    /// The signature predicate ("pay to public key").
    pub fn signature(public_key: &[u8; 33]) -> Self {
        Self {
            engine: 1,
            code: vec![0x01],
            params: public_key.to_vec(),
        }
    }

    /// The signature predicate's key, if this is one.
    pub fn signature_key(&self) -> Option<[u8; 33]> {
        if self.engine == 1 && self.code == [0x01] {
            <[u8; 33]>::try_from(self.params.as_slice()).ok()
        } else {
            None
        }
    }

    fn to_value(&self) -> Value {
        Value::Tag(
            TAG_PREDICATE,
            Box::new(Value::Array(vec![
                Value::Uint(self.engine),
                Value::Bytes(self.code.clone()),
                Value::Bytes(self.params.clone()),
            ])),
        )
    }

    /// Canonical CBOR (the "lockScript").
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    fn from_value(v: &Value) -> Result<Self, WireError> {
        let i = open(v, TAG_PREDICATE, 3, "predicate")?;
        Ok(Self {
            engine: uint(i.first(), "predicate engine")?,
            code: bytes(i.get(1), "predicate code")?,
            params: bytes(i.get(2), "predicate params")?,
        })
    }
}

/// StateId = SHA-256(CBOR [lockScript, bstr sourceStateHash]).
pub fn state_id(lock_script: &Predicate, source_state_hash: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(state_id_preimage(lock_script, source_state_hash)).into()
}

/// The CBOR array hashed into a StateId.
pub fn state_id_preimage(lock_script: &Predicate, source_state_hash: &[u8; 32]) -> Vec<u8> {
    Value::Array(vec![
        lock_script.to_value(),
        Value::Bytes(source_state_hash.to_vec()),
    ])
    .encode()
}

/// The CBOR array whose SHA-256 the witness signs.
pub fn signature_preimage(source_state_hash: &[u8; 32], transaction_hash: &[u8; 32]) -> Vec<u8> {
    Value::Array(vec![
        Value::Bytes(source_state_hash.to_vec()),
        Value::Bytes(transaction_hash.to_vec()),
    ])
    .encode()
}

/// The digest the witness signs.
pub fn signed_digest(source_state_hash: &[u8; 32], transaction_hash: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(signature_preimage(source_state_hash, transaction_hash)).into()
}

/// SMT leaf value of SDK 3.0.1: SHA-256(CBOR [bstr txh, uint referenceTime]).
pub fn leaf_value(transaction_hash: &[u8; 32], reference_time: u64) -> [u8; 32] {
    let v = Value::Array(vec![
        Value::Bytes(transaction_hash.to_vec()),
        Value::Uint(reference_time),
    ]);
    Sha256::digest(v.encode()).into()
}

/// What a request certifies (SDK 3.0.1 shape, version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificationData {
    /// The owner predicate.
    pub lock_script: Predicate,
    /// Source state hash (32 bytes).
    pub source_state_hash: Vec<u8>,
    /// Transaction hash (32 bytes; the pointer puts its ciphertext here).
    pub transaction_hash: Vec<u8>,
    /// Exclusive deadline, Unix seconds; `None` = the service assigns one.
    pub expires_at: Option<u64>,
    /// Unlock script: the 65-byte signature.
    pub witness: Vec<u8>,
}

impl CertificationData {
    pub(crate) fn to_value(&self) -> Value {
        Value::Tag(
            TAG_CERTIFICATION_DATA,
            Box::new(Value::Array(vec![
                Value::Uint(CERTIFICATION_DATA_VERSION),
                self.lock_script.to_value(),
                Value::Bytes(self.source_state_hash.clone()),
                Value::Bytes(self.transaction_hash.clone()),
                self.expires_at.map_or(Value::Null, Value::Uint),
                Value::Bytes(self.witness.clone()),
            ])),
        )
    }

    /// Canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    pub(crate) fn from_value(v: &Value) -> Result<Self, WireError> {
        let i = open(v, TAG_CERTIFICATION_DATA, 6, "certification data")?;
        let version = uint(i.first(), "certification data version")?;
        if version != CERTIFICATION_DATA_VERSION {
            return Err(WireError::Version {
                what: "certification data",
                found: version,
            });
        }
        let expires_at = match i.get(4) {
            Some(Value::Null) => None,
            Some(Value::Uint(n)) => Some(*n),
            _ => return Err(WireError::Shape("certification data expiresAt")),
        };
        Ok(Self {
            lock_script: Predicate::from_value(i.get(1).ok_or(WireError::Shape("lock script"))?)?,
            source_state_hash: bytes(i.get(2), "source state hash")?,
            transaction_hash: bytes(i.get(3), "transaction hash")?,
            expires_at,
            witness: bytes(i.get(5), "witness")?,
        })
    }

    /// The 32-byte transaction hash, if it has that length.
    pub fn transaction_hash32(&self) -> Option<[u8; 32]> {
        <[u8; 32]>::try_from(self.transaction_hash.as_slice()).ok()
    }

    /// The 32-byte source state hash, if it has that length.
    pub fn source_state_hash32(&self) -> Option<[u8; 32]> {
        <[u8; 32]>::try_from(self.source_state_hash.as_slice()).ok()
    }
}

/// A certification request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificationRequest {
    /// The key it claims.
    pub state_id: [u8; 32],
    /// What it certifies.
    pub data: CertificationData,
    /// Clients send 0.
    pub aggregate_request_count: u64,
}

impl CertificationRequest {
    /// Canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        Value::Tag(
            TAG_CERTIFICATION_REQUEST,
            Box::new(Value::Array(vec![
                Value::Uint(1),
                Value::Bytes(self.state_id.to_vec()),
                self.data.to_value(),
                Value::Uint(self.aggregate_request_count),
            ])),
        )
        .encode()
    }

    /// Decodes strictly.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() > MAX_WIRE_BYTES {
            return Err(WireError::TooLarge(b.len()));
        }
        let v = cbor::decode(b)?;
        let i = open(&v, TAG_CERTIFICATION_REQUEST, 4, "certification request")?;
        let version = uint(i.first(), "certification request version")?;
        if version != 1 {
            return Err(WireError::Version {
                what: "certification request",
                found: version,
            });
        }
        Ok(Self {
            state_id: fixed::<32>(i.get(1), "state id")?,
            data: CertificationData::from_value(
                i.get(2).ok_or(WireError::Shape("certification data"))?,
            )?,
            aggregate_request_count: uint(i.get(3), "aggregate request count")?,
        })
    }

    /// The JSON-RPC body that submits it.
    pub fn jsonrpc_body(&self, id: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "jsonrpc": "2.0",
            "method": METHOD_SUBMIT,
            "params": hex::encode(self.encode()),
            "id": id,
        })
    }
}

/// The leaf part of an inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedLeaf {
    /// What was certified.
    pub certification_data: CertificationData,
    /// Round time at which the leaf was admitted.
    pub reference_time: u64,
    /// The SMT path.
    pub certificate: InclusionCertificate,
}

/// A decoded (not yet verified) `get_inclusion_proof.v2` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofResponse {
    /// Block number the server reports.
    pub block_number: u64,
    /// `None` when the server says the key has no certified leaf.
    pub leaf: Option<CertifiedLeaf>,
    /// The unicity certificate.
    pub unicity_certificate: UnicityCertificate,
}

impl ProofResponse {
    /// Canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let (cd, rt, cert) = match &self.leaf {
            Some(l) => (
                l.certification_data.to_value(),
                Value::Uint(l.reference_time),
                Value::Bytes(l.certificate.encode()),
            ),
            None => (Value::Null, Value::Null, Value::Null),
        };
        Value::Array(vec![
            Value::Uint(self.block_number),
            Value::Tag(
                TAG_INCLUSION_PROOF,
                Box::new(Value::Array(vec![
                    Value::Uint(1),
                    cd,
                    rt,
                    cert,
                    self.unicity_certificate.to_value(),
                ])),
            ),
        ])
        .encode()
    }

    /// Decodes strictly. The three leaf fields must be all present or all null.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() > MAX_WIRE_BYTES {
            return Err(WireError::TooLarge(b.len()));
        }
        let v = cbor::decode(b)?;
        let Value::Array(outer) = &v else {
            return Err(WireError::Shape("proof response"));
        };
        if outer.len() != 2 {
            return Err(WireError::Shape("proof response"));
        }
        let block_number = uint(outer.first(), "block number")?;
        let i = open(
            outer.get(1).ok_or(WireError::Shape("inclusion proof"))?,
            TAG_INCLUSION_PROOF,
            5,
            "inclusion proof",
        )?;
        let version = uint(i.first(), "inclusion proof version")?;
        if version != 1 {
            return Err(WireError::Version {
                what: "inclusion proof",
                found: version,
            });
        }
        let unicity_certificate = UnicityCertificate::from_value(
            i.get(4).ok_or(WireError::Shape("unicity certificate"))?,
        )?;
        let leaf = match (i.get(1), i.get(2), i.get(3)) {
            (Some(Value::Null), Some(Value::Null), Some(Value::Null)) => None,
            (Some(cd), Some(Value::Uint(rt)), Some(Value::Bytes(c))) => Some(CertifiedLeaf {
                certification_data: CertificationData::from_value(cd)?,
                reference_time: *rt,
                certificate: InclusionCertificate::decode(c)?,
            }),
            _ => return Err(WireError::Shape("inclusion proof leaf fields")),
        };
        Ok(Self {
            block_number,
            leaf,
            unicity_certificate,
        })
    }
}

/// A `certification_request` result status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificationStatus {
    /// Queued (not yet "won": only the inclusion proof says whose leaf is there).
    Success,
    /// A finalized record exists under this StateId.
    StateIdExists,
    /// Recomputed StateId differs.
    StateIdMismatch,
    /// Signature does not verify.
    SignatureVerificationFailed,
    /// Witness malformed.
    InvalidSignatureFormat,
    /// Public key malformed.
    InvalidPublicKeyFormat,
    /// Source state hash malformed.
    InvalidSourceStateHashFormat,
    /// Transaction hash malformed.
    InvalidTransactionHashFormat,
    /// Predicate not supported.
    UnsupportedAlgorithm,
    /// Wrong shard.
    InvalidShard,
    /// Past its deadline.
    RequestExpired,
    /// Not ready.
    ServiceNotReady,
    /// A string this client does not know.
    Other(String),
}

impl CertificationStatus {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "SUCCESS",
            Self::StateIdExists => "STATE_ID_EXISTS",
            Self::StateIdMismatch => "STATE_ID_MISMATCH",
            Self::SignatureVerificationFailed => "SIGNATURE_VERIFICATION_FAILED",
            Self::InvalidSignatureFormat => "INVALID_SIGNATURE_FORMAT",
            Self::InvalidPublicKeyFormat => "INVALID_PUBLIC_KEY_FORMAT",
            Self::InvalidSourceStateHashFormat => "INVALID_SOURCE_STATE_HASH_FORMAT",
            Self::InvalidTransactionHashFormat => "INVALID_TRANSACTION_HASH_FORMAT",
            Self::UnsupportedAlgorithm => "UNSUPPORTED_ALGORITHM",
            Self::InvalidShard => "INVALID_SHARD",
            Self::RequestExpired => "REQUEST_EXPIRED",
            Self::ServiceNotReady => "SERVICE_NOT_READY",
            Self::Other(s) => s,
        }
    }

    /// Parses the wire string.
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => Self::Success,
            "STATE_ID_EXISTS" => Self::StateIdExists,
            "STATE_ID_MISMATCH" => Self::StateIdMismatch,
            "SIGNATURE_VERIFICATION_FAILED" => Self::SignatureVerificationFailed,
            "INVALID_SIGNATURE_FORMAT" => Self::InvalidSignatureFormat,
            "INVALID_PUBLIC_KEY_FORMAT" => Self::InvalidPublicKeyFormat,
            "INVALID_SOURCE_STATE_HASH_FORMAT" => Self::InvalidSourceStateHashFormat,
            "INVALID_TRANSACTION_HASH_FORMAT" => Self::InvalidTransactionHashFormat,
            "UNSUPPORTED_ALGORITHM" => Self::UnsupportedAlgorithm,
            "INVALID_SHARD" => Self::InvalidShard,
            "REQUEST_EXPIRED" => Self::RequestExpired,
            "SERVICE_NOT_READY" => Self::ServiceNotReady,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A JSON-RPC 2.0 request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Method name.
    pub method: String,
    /// Parameters.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Request id, echoed back.
    #[serde(default)]
    pub id: serde_json::Value,
}

/// A JSON-RPC 2.0 error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcErrorObject {
    /// Error code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Extra data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// A JSON-RPC 2.0 response body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcResponse {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcErrorObject>,
    /// Echo of the request id.
    pub id: serde_json::Value,
}

/// JSON-RPC error codes the aggregator uses.
pub mod codes {
    /// Parse error.
    pub const PARSE: i64 = -32700;
    /// Invalid request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid params.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL: i64 = -32603;
    /// Validation error.
    pub const VALIDATION: i64 = -32000;
    /// Concurrency limit: back off and retry.
    pub const CONCURRENCY_LIMIT: i64 = -32006;
}

/// Hex of at most [`MAX_WIRE_BYTES`] bytes, decoded.
pub fn decode_hex_param(s: &str) -> Result<Vec<u8>, WireError> {
    if s.len() > MAX_WIRE_BYTES.saturating_mul(2) {
        return Err(WireError::TooLarge(s.len() / 2));
    }
    hex::decode(s).map_err(|_| WireError::Hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn request_decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = CertificationRequest::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn proof_decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(r) = ProofResponse::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }
}
