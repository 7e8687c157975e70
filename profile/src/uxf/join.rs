//! merge with per-token JOIN (spec §10.1–10.2): `resolve_token_root` picks the longest
//! valid chain of transactions among candidate roots of one token id, detects divergent
//! histories, and (with verified proofs) enriches the winner with proofs a sibling has.
//! Losers stay in the pool as orphans until `gc` (sibling preservation).

use std::collections::HashSet;

use super::element::Pool;
use super::element::{Child, Element, ElementType, KIND_ENRICHED_SYNTHETIC};
use super::error::{Result, UxfError, err};
use super::hash::ContentHash;
use super::package::UxfPackage;

/// The outcome of [`resolve_token_root`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// Only one usable candidate.
    Single {
        /// The winner.
        root: ContentHash,
        /// Unusable or duplicate candidates.
        losers: Vec<ContentHash>,
    },
    /// All candidates are prefixes of the winner.
    LongestValid {
        /// The winner.
        root: ContentHash,
        /// The rest, in sorted order.
        losers: Vec<ContentHash>,
    },
    /// The winner was completed with proofs from siblings into a synthetic root.
    Enriched {
        /// Hash of the synthetic root.
        root: ContentHash,
        /// The original winner, then the other losers.
        losers: Vec<ContentHash>,
        /// The synthetic root element (never exported).
        synthetic: Box<Element>,
    },
    /// Histories conflict; the winner is the most committed, then longest, then smallest.
    Divergent {
        /// The chosen root.
        root: ContentHash,
        /// The rest.
        losers: Vec<ContentHash>,
    },
}

impl JoinOutcome {
    /// The chosen root.
    pub fn root(&self) -> ContentHash {
        match self {
            Self::Single { root, .. }
            | Self::LongestValid { root, .. }
            | Self::Enriched { root, .. }
            | Self::Divergent { root, .. } => *root,
        }
    }

    /// The losing candidates.
    pub fn losers(&self) -> &[ContentHash] {
        match self {
            Self::Single { losers, .. }
            | Self::LongestValid { losers, .. }
            | Self::Enriched { losers, .. }
            | Self::Divergent { losers, .. } => losers,
        }
    }

    /// The reference's `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single { .. } => "single",
            Self::LongestValid { .. } => "longest-valid",
            Self::Enriched { .. } => "enriched",
            Self::Divergent { .. } => "divergent",
        }
    }
}

/// A pool view over two maps (target ∪ staged).
pub(crate) struct PoolView<'a> {
    pub(crate) a: &'a Pool,
    pub(crate) b: Option<&'a Pool>,
}

impl PoolView<'_> {
    fn get(&self, h: &ContentHash) -> Option<&Element> {
        self.a.get(h).or_else(|| self.b.and_then(|b| b.get(h)))
    }
}

fn txs_of(el: &Element) -> Option<&[ContentHash]> {
    match el.child("transactions") {
        Some(Child::Links(v)) if el.ty == ElementType::TokenRoot => Some(v),
        _ => None,
    }
}

fn proof_of(pool: &PoolView<'_>, tx: &ContentHash) -> Option<ContentHash> {
    let el = pool.get(tx).filter(|e| e.ty == ElementType::Transaction)?;
    let p = el.child_link("inclusionProof")?;
    pool.get(&p)
        .filter(|e| e.ty == ElementType::InclusionProof)
        .map(|_| p)
}

/// Both transactions, identical in every child but `inclusionProof` (same roles), with
/// different proofs.
fn same_core_different_proof(pool: &PoolView<'_>, a: &ContentHash, b: &ContentHash) -> bool {
    let (Some(x), Some(y)) = (pool.get(a), pool.get(b)) else {
        return false;
    };
    if x.ty != ElementType::Transaction || y.ty != ElementType::Transaction {
        return false;
    }
    let keys = |e: &Element| {
        e.children
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<HashSet<_>>()
    };
    if keys(x) != keys(y) {
        return false;
    }
    x.children
        .iter()
        .all(|(k, c)| k == "inclusionProof" || y.child(k) == Some(c))
        && x.child("inclusionProof") != y.child("inclusionProof")
}

/// Picks the root a token id should point at among `candidates` (spec §10.2);
/// deterministic and independent of candidate order.
pub fn resolve_token_root(
    candidates: &[ContentHash],
    pool: &Pool,
    verified_proofs: &HashSet<ContentHash>,
) -> Result<JoinOutcome> {
    resolve_in(candidates, &PoolView { a: pool, b: None }, verified_proofs)
}

pub(crate) fn resolve_in(
    candidates: &[ContentHash],
    pool: &PoolView<'_>,
    verified: &HashSet<ContentHash>,
) -> Result<JoinOutcome> {
    let mut cands: Vec<ContentHash> = Vec::new();
    for c in candidates {
        if !cands.contains(c) {
            cands.push(*c);
        }
    }
    let Some(first) = cands.first().copied() else {
        return Err(err!(InvalidInput, "no candidates"));
    };
    if cands.len() == 1 {
        return Ok(JoinOutcome::Single {
            root: first,
            losers: vec![],
        });
    }
    let usable: Vec<(ContentHash, &[ContentHash])> = cands
        .iter()
        .filter_map(|c| pool.get(c).and_then(txs_of).map(|t| (*c, t)))
        .collect();
    if usable.is_empty() {
        let mut s = cands.clone();
        s.sort();
        let root = s.remove(0);
        return Ok(JoinOutcome::Divergent { root, losers: s });
    }
    if let [(root, _)] = usable.as_slice() {
        let losers = cands.iter().filter(|c| *c != root).copied().collect();
        return Ok(JoinOutcome::Single {
            root: *root,
            losers,
        });
    }
    let committed =
        |txs: &[ContentHash]| txs.iter().filter(|t| proof_of(pool, t).is_some()).count();
    let compatible_at = |a: &ContentHash, b: &ContentHash| {
        a == b
            || (!verified.is_empty()
                && same_core_different_proof(pool, a, b)
                && (proof_of(pool, a).is_some_and(|p| verified.contains(&p))
                    || proof_of(pool, b).is_some_and(|p| verified.contains(&p))))
    };
    let mut divergent = false;
    for (i, (_, x)) in usable.iter().enumerate() {
        for (_, y) in usable.iter().skip(i.saturating_add(1)) {
            if x.iter().zip(y.iter()).any(|(a, b)| !compatible_at(a, b)) {
                divergent = true;
            }
        }
    }
    let mut sorted: Vec<(ContentHash, &[ContentHash], usize)> =
        usable.iter().map(|(h, t)| (*h, *t, committed(t))).collect();
    if divergent {
        sorted.sort_by(|a, b| {
            b.2.cmp(&a.2)
                .then(b.1.len().cmp(&a.1.len()))
                .then(a.0.cmp(&b.0))
        });
    } else {
        sorted.sort_by(|a, b| {
            b.1.len()
                .cmp(&a.1.len())
                .then(b.2.cmp(&a.2))
                .then(a.0.cmp(&b.0))
        });
    }
    let Some((win, win_txs, _)) = sorted.first().copied() else {
        return Err(err!(InvalidInput, "no candidates"));
    };
    let mut losers: Vec<ContentHash> = sorted.iter().skip(1).map(|s| s.0).collect();
    for c in &cands {
        if !losers.contains(c) && *c != win {
            losers.push(*c);
        }
    }
    if divergent {
        return Ok(JoinOutcome::Divergent { root: win, losers });
    }
    if !verified.is_empty() {
        let mut txs = win_txs.to_vec();
        let mut changed = false;
        for (i, tx) in win_txs.iter().enumerate() {
            let has_proof = pool
                .get(tx)
                .and_then(|e| e.child_link("inclusionProof"))
                .is_some();
            if has_proof {
                continue;
            }
            for (_, other, _) in sorted.iter().skip(1) {
                let Some(o) = other.get(i) else { continue };
                let (Some(oe), Some(we)) = (pool.get(o), pool.get(tx)) else {
                    continue;
                };
                let Some(p) = oe.child_link("inclusionProof") else {
                    continue;
                };
                let valid_proof = pool.get(&p).is_some_and(|pe| {
                    pe.ty == ElementType::InclusionProof
                        && pe.child_link("authenticator").is_some()
                        && pe.child_link("merkleTreePath").is_some()
                });
                if same_core_different_proof(pool, tx, o)
                    && oe.header == we.header
                    && valid_proof
                    && verified.contains(&p)
                {
                    if let Some(slot) = txs.get_mut(i) {
                        *slot = *o;
                        changed = true;
                    }
                    break;
                }
            }
        }
        if changed {
            let w = pool
                .get(&win)
                .ok_or_else(|| err!(MissingElement, "Element {win} not in pool"))?;
            let mut synthetic = w.clone();
            synthetic.header.kind = KIND_ENRICHED_SYNTHETIC.into();
            synthetic.header.predecessor = None;
            for (k, c) in &mut synthetic.children {
                if k == "transactions" {
                    *c = Child::Links(txs.clone());
                }
            }
            let root = synthetic.hash()?;
            let mut l = vec![win];
            l.extend(losers);
            return Ok(JoinOutcome::Enriched {
                root,
                losers: l,
                synthetic: Box::new(synthetic),
            });
        }
    }
    Ok(JoinOutcome::LongestValid { root: win, losers })
}

/// Options of [`UxfPackage::merge`].
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Inclusion-proof hashes the caller has verified (enables proof enrichment).
    pub verified_proofs: HashSet<ContentHash>,
    /// Fail with `MERGE_PARTIAL_FAILURE` instead of skipping tokens.
    pub strict: bool,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeReport {
    /// Token ids skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Token ids whose root was resolved by JOIN, with the outcome.
    pub joined: Vec<(String, JoinOutcome)>,
}

impl UxfPackage {
    /// Merges `other` into this package (spec §10.1). `updated_at` stamps the envelope
    /// (the reference uses wall time; pass it explicitly for deterministic bundles).
    pub fn merge(
        &mut self,
        other: &UxfPackage,
        opts: &MergeOptions,
        updated_at: u64,
    ) -> Result<MergeReport> {
        let mut buf = Vec::with_capacity(1024);
        let mut staged: Pool = Pool::default();
        for (h, el) in &other.pool {
            buf.clear();
            el.write_canonical(&mut buf)?;
            if ContentHash::digest(&buf) != *h {
                return Err(err!(
                    VerificationFailed,
                    "incoming element {h} does not match its hash"
                ));
            }
            if !self.pool.contains_key(h) {
                staged.entry(*h).or_insert_with(|| el.clone());
            }
        }
        let mut report = MergeReport::default();
        let mut writes: Vec<(String, ContentHash)> = Vec::new();
        let mut synthetic: Vec<(ContentHash, Element)> = Vec::new();
        {
            let view = PoolView {
                a: &self.pool,
                b: Some(&staged),
            };
            for (id, incoming) in &other.manifest {
                match self.manifest.get(id) {
                    None => writes.push((id.clone(), *incoming)),
                    Some(cur) if cur == incoming => {}
                    Some(cur) => match resolve_in(&[*cur, *incoming], &view, &opts.verified_proofs)
                    {
                        Ok(outcome) => {
                            if let JoinOutcome::Enriched {
                                root, synthetic: s, ..
                            } = &outcome
                            {
                                synthetic.push((*root, (**s).clone()));
                            }
                            writes.push((id.clone(), outcome.root()));
                            report.joined.push((id.clone(), outcome));
                        }
                        Err(e) => report.skipped.push((id.clone(), e.to_string())),
                    },
                }
            }
        }
        if opts.strict && !report.skipped.is_empty() {
            let mut e = UxfError::new(
                super::error::ErrorCode::MergePartialFailure,
                format!("{} token(s) could not be merged", report.skipped.len()),
            );
            e.skipped = report.skipped.iter().map(|(id, _)| id.clone()).collect();
            return Err(e);
        }
        for (h, el) in staged {
            self.pool.entry(h).or_insert(el);
        }
        for (h, el) in synthetic {
            self.pool.entry(h).or_insert(el);
        }
        for (id, root) in writes {
            self.manifest.insert(id, root);
        }
        self.chains.merge(&other.chains);
        self.set_updated_at(updated_at);
        Ok(report)
    }
}
