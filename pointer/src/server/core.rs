//! The aggregator's state machine, independent of HTTP: validate and queue
//! certification requests, close rounds into certified blocks, answer proofs.
//!
//! Owned by one mutex in the HTTP layer; every method is synchronous and short
//! (a round close is one SQLite transaction plus one signature).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k256::ecdsa::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::certificate::{
    InputRecord, ShardTreeCertificate, TrustBase, UnicityCertificate, UnicitySeal,
    UnicityTreeCertificate, public_key, sign_recoverable, verify_recoverable,
};
use crate::server::store::{BlockRow, Record, Store};
use crate::smt::{InsertError, Tree};
use crate::wire::{
    self, CertificationData, CertificationRequest, CertificationStatus, CertifiedLeaf,
    ProofResponse,
};

/// Settings of the embedded aggregator.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    network_id: u64,
    partition: u32,
    node_id: String,
    round_interval: Duration,
    max_pending: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            network_id: 3,
            partition: 1,
            node_id: "node-1".into(),
            round_interval: Duration::from_millis(200),
            max_pending: 100_000,
        }
    }
}

impl AggregatorConfig {
    /// How often a round with pending requests closes (default 200 ms).
    pub fn with_round_interval(mut self, d: Duration) -> Self {
        self.round_interval = d;
        self
    }

    /// Network id in seals and the trust base (default 3, "local").
    pub fn with_network_id(mut self, id: u64) -> Self {
        self.network_id = id;
        self
    }

    /// Most queued requests before `SERVICE_NOT_READY` (default 100,000).
    pub fn with_max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// The round interval.
    pub fn round_interval(&self) -> Duration {
        self.round_interval
    }
}

/// Ways the server can lie, for tests of the client's verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A sibling hash in every inclusion certificate is altered.
    WrongPath,
    /// Proofs come with a properly signed UC over another root.
    WrongRoot,
    /// The seal signature is altered.
    BadSeal,
    /// Asked for a key present in the map, the server answers with the proof of the
    /// other key instead (e.g. side B's leaf for side A).
    Swap(Vec<([u8; 32], [u8; 32])>),
    /// Every certified leaf is hidden ("not included").
    HideLeaves,
}

/// The aggregator state.
#[derive(Debug)]
pub struct Core {
    store: Store,
    tree: Tree,
    pending: Vec<CertificationRequest>,
    block: u64,
    root: [u8; 32],
    uc: UnicityCertificate,
    key: SigningKey,
    trust_base: TrustBase,
    config: AggregatorConfig,
    fault: Option<Fault>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the aggregator state could not be opened or advanced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// SQLite failed.
    #[error("aggregator database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored data is inconsistent (a record that does not decode, or a tree whose
    /// root differs from the last block's).
    #[error("aggregator state is corrupt: {0}")]
    Corrupt(String),
}

impl Core {
    /// Opens the state: rebuilds the tree from the stored records and checks it
    /// against the last block; certifies a genesis block for an empty store.
    pub fn open(
        store: Store,
        key: SigningKey,
        config: AggregatorConfig,
    ) -> Result<Self, CoreError> {
        let trust_base = TrustBase::single(&config.node_id, &public_key(&key), config.network_id);
        let mut tree = Tree::new();
        let mut bad = None;
        store.for_each_record(|sid, cd, rt, _block| {
            let Ok(v) = crate::cbor::decode(&cd) else {
                bad = Some("undecodable record");
                return;
            };
            let Ok(data) = CertificationData::from_value(&v) else {
                bad = Some("undecodable record");
                return;
            };
            let Some(txh) = data.transaction_hash32() else {
                bad = Some("bad transaction hash");
                return;
            };
            if tree.insert(sid, wire::leaf_value(&txh, rt)).is_err() {
                bad = Some("duplicate record");
            }
        })?;
        if let Some(b) = bad {
            return Err(CoreError::Corrupt(b.into()));
        }
        let latest = store.latest_block()?;
        let mut core = Self {
            store,
            root: tree.root(),
            tree,
            pending: Vec::new(),
            block: 0,
            uc: placeholder_uc(),
            key,
            trust_base,
            config,
            fault: None,
        };
        match latest {
            Some(b) => {
                if b.root.as_slice() != core.root.as_slice() {
                    return Err(CoreError::Corrupt(
                        "tree root differs from the last block".into(),
                    ));
                }
                core.block = b.number;
                core.uc = UnicityCertificate::decode(&b.uc)
                    .map_err(|e| CoreError::Corrupt(format!("stored certificate: {e}")))?;
            }
            None => core.close_round_forced()?,
        }
        Ok(core)
    }

    /// The trust base clients must configure.
    pub fn trust_base(&self) -> &TrustBase {
        &self.trust_base
    }

    /// The latest block number.
    pub fn block_number(&self) -> u64 {
        self.block
    }

    /// Leaves in the tree.
    pub fn leaf_count(&self) -> usize {
        self.tree.len()
    }

    /// Requests waiting for the next round.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Makes the server lie (or stop lying with `None`).
    pub fn set_fault(&mut self, fault: Option<Fault>) {
        self.fault = fault;
    }

    /// Validates and queues a request (checks in aggregator-go's order).
    pub fn submit(&mut self, req: CertificationRequest) -> CertificationStatus {
        let d = &req.data;
        let Some(pk) = d.lock_script.signature_key() else {
            return CertificationStatus::UnsupportedAlgorithm;
        };
        if VerifyingKey::from_sec1_bytes(&pk).is_err() {
            return CertificationStatus::InvalidPublicKeyFormat;
        }
        let Some(ssh) = d.source_state_hash32() else {
            return CertificationStatus::InvalidSourceStateHashFormat;
        };
        if wire::state_id(&d.lock_script, &ssh) != req.state_id {
            return CertificationStatus::StateIdMismatch;
        }
        if d.witness.len() != 65 {
            return CertificationStatus::InvalidSignatureFormat;
        }
        let Some(txh) = d.transaction_hash32() else {
            return CertificationStatus::InvalidTransactionHashFormat;
        };
        if d.expires_at.is_some_and(|e| now_secs() >= e) {
            return CertificationStatus::RequestExpired;
        }
        if !verify_recoverable(&wire::signed_digest(&ssh, &txh), &d.witness, &pk) {
            return CertificationStatus::SignatureVerificationFailed;
        }
        if self.tree.get(&req.state_id).is_some() {
            return CertificationStatus::StateIdExists;
        }
        if self.pending.len() >= self.config.max_pending {
            return CertificationStatus::ServiceNotReady;
        }
        self.pending.push(req);
        CertificationStatus::Success
    }

    /// Queues requests without validation (benchmark seeding only).
    pub fn admit_unchecked(&mut self, reqs: impl IntoIterator<Item = CertificationRequest>) {
        self.pending.extend(reqs);
    }

    /// Closes the round if anything is pending. Returns the new block number.
    pub fn close_round(&mut self) -> Result<Option<u64>, CoreError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        self.close_round_forced()?;
        Ok(Some(self.block))
    }

    fn close_round_forced(&mut self) -> Result<(), CoreError> {
        let now = now_secs().max(self.uc.input_record.timestamp);
        let number = self.block.saturating_add(1);
        let mut records = Vec::new();
        for req in std::mem::take(&mut self.pending) {
            let Some(txh) = req.data.transaction_hash32() else {
                continue;
            };
            match self.tree.insert(req.state_id, wire::leaf_value(&txh, now)) {
                Ok(()) => records.push(Record {
                    state_id: req.state_id,
                    data: req.data,
                    reference_time: now,
                    block: number,
                }),
                // First writer wins; repeats and modifications are dropped.
                Err(InsertError::Duplicate | InsertError::Modification) => {}
            }
        }
        let previous = self.root;
        let root = self.tree.root();
        let uc = self.certify(number, root, (number > 1).then_some(previous), now);
        let row = BlockRow {
            number,
            root: root.to_vec(),
            uc: uc.encode(),
        };
        self.store.commit_block(&row, &records, now)?;
        self.block = number;
        self.root = root;
        self.uc = uc;
        Ok(())
    }

    /// Builds and signs a UC for `root` (the golden example's layout: one shard
    /// covering the partition, no shard or unicity tree siblings).
    fn certify(
        &self,
        round: u64,
        root: [u8; 32],
        previous: Option<[u8; 32]>,
        ts: u64,
    ) -> UnicityCertificate {
        let mut uc = UnicityCertificate {
            input_record: InputRecord {
                round_number: round,
                epoch: 1,
                previous_hash: previous.map(|p| p.to_vec()),
                hash: root.to_vec(),
                summary_value: vec![0u8; 32],
                timestamp: ts,
                block_hash: None,
                sum_of_earned_fees: 0,
                executed_transactions_hash: None,
            },
            technical_record_hash: None,
            shard_configuration_hash: vec![0u8; 32],
            shard_tree: ShardTreeCertificate {
                shard_id: vec![0x80],
                siblings: Vec::new(),
            },
            unicity_tree: UnicityTreeCertificate {
                partition: self.config.partition,
                steps: Vec::new(),
            },
            seal: UnicitySeal {
                network_id: self.config.network_id,
                root_round: round,
                epoch: 1,
                timestamp: ts,
                previous_hash: None,
                hash: Vec::new(),
                signatures: None,
            },
        };
        uc.seal.hash = uc
            .unicity_tree_root()
            .expect("the shard id 0x80 is well formed")
            .to_vec();
        let sig = sign_recoverable(&self.key, &uc.seal.signing_hash());
        uc.seal.signatures = Some(
            [(self.config.node_id.clone(), sig.to_vec())]
                .into_iter()
                .collect(),
        );
        uc
    }

    /// The proof for `state_id` (with the configured fault applied).
    pub fn proof(&mut self, state_id: &[u8; 32]) -> Result<ProofResponse, CoreError> {
        let mut asked = *state_id;
        if let Some(Fault::Swap(pairs)) = &self.fault
            && let Some((_, other)) = pairs.iter().find(|(k, _)| k == state_id)
        {
            asked = *other;
        }
        let record = if self.fault == Some(Fault::HideLeaves) {
            None
        } else {
            self.store.record(&asked)?
        };
        let mut uc = self.uc.clone();
        let leaf = match record {
            None => None,
            Some((cd, rt, _block)) => {
                let data = crate::cbor::decode(&cd)
                    .ok()
                    .and_then(|v| CertificationData::from_value(&v).ok())
                    .ok_or_else(|| CoreError::Corrupt("undecodable record".into()))?;
                let mut certificate = self
                    .tree
                    .certificate(&asked)
                    .ok_or_else(|| CoreError::Corrupt("record missing from the tree".into()))?;
                match &self.fault {
                    Some(Fault::WrongPath) => match certificate.siblings.first_mut() {
                        Some(s) => s[0] ^= 0x01,
                        None => {
                            certificate.bitmap[31] |= 0x01;
                            certificate.siblings.push([0x5a; 32]);
                        }
                    },
                    Some(Fault::WrongRoot) => {
                        let fake: [u8; 32] = Sha256::digest(self.root).into();
                        uc = self.certify(self.block, fake, None, uc.input_record.timestamp);
                    }
                    _ => {}
                }
                Some(CertifiedLeaf {
                    certification_data: data,
                    reference_time: rt,
                    certificate,
                })
            }
        };
        if self.fault == Some(Fault::BadSeal)
            && let Some(b) = uc
                .seal
                .signatures
                .as_mut()
                .and_then(|m| m.values_mut().next())
                .and_then(|sig| sig.get_mut(5))
        {
            *b ^= 0x01;
        }
        Ok(ProofResponse {
            block_number: self.block,
            leaf,
            unicity_certificate: uc,
        })
    }
}

fn placeholder_uc() -> UnicityCertificate {
    UnicityCertificate {
        input_record: InputRecord {
            round_number: 0,
            epoch: 1,
            previous_hash: None,
            hash: vec![0u8; 32],
            summary_value: vec![0u8; 32],
            timestamp: 0,
            block_hash: None,
            sum_of_earned_fees: 0,
            executed_transactions_hash: None,
        },
        technical_record_hash: None,
        shard_configuration_hash: vec![0u8; 32],
        shard_tree: ShardTreeCertificate {
            shard_id: vec![0x80],
            siblings: Vec::new(),
        },
        unicity_tree: UnicityTreeCertificate {
            partition: 1,
            steps: Vec::new(),
        },
        seal: UnicitySeal {
            network_id: 3,
            root_round: 0,
            epoch: 1,
            timestamp: 0,
            previous_hash: None,
            hash: vec![0u8; 32],
            signatures: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::{self, ProofOutcome};
    use crate::wire::Predicate;

    fn request(key: &SigningKey, ssh: [u8; 32], txh: [u8; 32]) -> CertificationRequest {
        let pk = public_key(key);
        let lock = Predicate::signature(&pk);
        CertificationRequest {
            state_id: wire::state_id(&lock, &ssh),
            data: CertificationData {
                lock_script: lock,
                source_state_hash: ssh.to_vec(),
                transaction_hash: txh.to_vec(),
                expires_at: None,
                witness: sign_recoverable(key, &wire::signed_digest(&ssh, &txh)).to_vec(),
            },
            aggregate_request_count: 0,
        }
    }

    #[test]
    fn submit_round_prove_and_duplicates() {
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let mut core = Core::open(
            Store::in_memory().unwrap(),
            SigningKey::from_slice(&[3u8; 32]).unwrap(),
            AggregatorConfig::default(),
        )
        .unwrap();
        let r1 = request(&key, [1; 32], [2; 32]);
        let r1b = request(&key, [1; 32], [3; 32]);
        assert_eq!(core.submit(r1.clone()), CertificationStatus::Success);
        // Pending: a second, different request for the key is accepted too…
        assert_eq!(core.submit(r1b), CertificationStatus::Success);
        core.close_round().unwrap().unwrap();
        // …but the first one won, and now the key is final.
        assert_eq!(core.submit(r1.clone()), CertificationStatus::StateIdExists);
        let tb = core.trust_base().clone();
        let p = core.proof(&r1.state_id).unwrap();
        let out = proof::verify(&tb, &r1.data.lock_script, &[1; 32], &r1.state_id, &p).unwrap();
        assert_eq!(out.transaction_hash(), Some([2; 32]));
        // A forged signature is refused.
        let mut bad = request(&key, [4; 32], [5; 32]);
        bad.data.witness[3] ^= 1;
        assert_eq!(
            core.submit(bad),
            CertificationStatus::SignatureVerificationFailed
        );
        let mut mismatch = request(&key, [4; 32], [5; 32]);
        mismatch.state_id[0] ^= 1;
        assert_eq!(core.submit(mismatch), CertificationStatus::StateIdMismatch);
        let absent = request(&key, [6; 32], [6; 32]);
        let p = core.proof(&absent.state_id).unwrap();
        assert_eq!(
            proof::verify(
                &tb,
                &absent.data.lock_script,
                &[6; 32],
                &absent.state_id,
                &p
            )
            .unwrap(),
            ProofOutcome::Absent
        );
    }
}
