//! Full verification of `get_inclusion_proof.v2` answers. Nothing an aggregator says
//! is used before it passes here.
//!
//! For a certified leaf, in the SDK 3.0.1 order: the certification data is for the
//! lock script and source state we asked about; it hashes to the StateId we asked
//! for; the deadline and reference time are consistent with the certified round;
//! the SMT path from SHA-256(0x00 ‖ stateId ‖ leafValue) reaches `UC.IR.hash`; the
//! StateId lies in the certified shard; the UC verifies against the trust base; and
//! the witness is a valid signature by the lock script's key.
//!
//! For "no leaf" the UC is still verified (so a forged answer is an error, not an
//! absence), but absence itself cannot be proven in the v2 protocol: exclusion
//! certificates do not exist yet. Callers treat [`ProofOutcome::Absent`] as the
//! aggregator's unauthenticated claim.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::certificate::{TrustBase, UnicityCertificate, verify_recoverable};
use crate::error::VerifyError;
use crate::wire::{self, Predicate, ProofResponse};

/// What a verified proof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofOutcome {
    /// A certified leaf, every check passed.
    Included {
        /// The leaf's transaction hash (a pointer ciphertext).
        transaction_hash: [u8; 32],
        /// Round time the leaf was admitted.
        reference_time: u64,
        /// Block number reported.
        block_number: u64,
        /// Round of the certificate.
        round: u64,
    },
    /// No certified leaf (unauthenticated: see the module doc).
    Absent,
}

impl ProofOutcome {
    /// The transaction hash of an included leaf.
    pub fn transaction_hash(&self) -> Option<[u8; 32]> {
        match self {
            Self::Included {
                transaction_hash, ..
            } => Some(*transaction_hash),
            Self::Absent => None,
        }
    }
}

fn verify_uc(uc: &UnicityCertificate, trust_base: &TrustBase) -> Result<(), VerifyError> {
    uc.verify(trust_base).map_err(|e| {
        if uc.seal.epoch > trust_base.epoch {
            VerifyError::TrustBaseStale {
                cert: uc.seal.epoch,
                trusted: trust_base.epoch,
            }
        } else {
            VerifyError::Untrusted(e)
        }
    })
}

/// Verifies a decoded proof for `state_id` = StateId(`lock_script`, `source_state_hash`).
pub fn verify(
    trust_base: &TrustBase,
    lock_script: &Predicate,
    source_state_hash: &[u8; 32],
    state_id: &[u8; 32],
    response: &ProofResponse,
) -> Result<ProofOutcome, VerifyError> {
    let uc = &response.unicity_certificate;
    let Some(leaf) = &response.leaf else {
        verify_uc(uc, trust_base)?;
        return Ok(ProofOutcome::Absent);
    };
    let cd = &leaf.certification_data;
    if &cd.lock_script != lock_script
        || cd.source_state_hash.as_slice() != source_state_hash.as_slice()
    {
        return Err(VerifyError::CertificationDataMismatch);
    }
    if wire::state_id(&cd.lock_script, source_state_hash) != *state_id {
        return Err(VerifyError::StateIdMismatch);
    }
    let txh = cd
        .transaction_hash32()
        .ok_or(VerifyError::CertificationDataMismatch)?;
    if cd
        .expires_at
        .is_some_and(|deadline| leaf.reference_time >= deadline)
    {
        return Err(VerifyError::RequestExpired);
    }
    if leaf.reference_time > uc.input_record.timestamp {
        return Err(VerifyError::ReferenceTimeAfterRound);
    }
    let value = wire::leaf_value(&txh, leaf.reference_time);
    let root = leaf
        .certificate
        .root(state_id, &value)
        .map_err(|_| VerifyError::PathInvalid)?;
    if uc.input_record.hash.as_slice() != root.as_slice() {
        return Err(VerifyError::PathInvalid);
    }
    if !uc
        .shard_contains(state_id)
        .map_err(VerifyError::Untrusted)?
    {
        return Err(VerifyError::ShardMismatch);
    }
    verify_uc(uc, trust_base)?;
    let key = lock_script
        .signature_key()
        .ok_or(VerifyError::NotAuthenticated)?;
    let digest = wire::signed_digest(source_state_hash, &txh);
    if !verify_recoverable(&digest, &cd.witness, &key) {
        return Err(VerifyError::NotAuthenticated);
    }
    Ok(ProofOutcome::Included {
        transaction_hash: txh,
        reference_time: leaf.reference_time,
        block_number: response.block_number,
        round: uc.input_record.round_number,
    })
}

/// Decodes then verifies a proof given as the raw CBOR bytes of the result.
pub fn verify_bytes(
    trust_base: &TrustBase,
    lock_script: &Predicate,
    source_state_hash: &[u8; 32],
    state_id: &[u8; 32],
    bytes: &[u8],
) -> Result<ProofOutcome, VerifyError> {
    let response = ProofResponse::decode(bytes)?;
    verify(
        trust_base,
        lock_script,
        source_state_hash,
        state_id,
        &response,
    )
}
