//! diff and applyDelta (spec §10.3): the element, manifest and chain differences
//! between two packages, and applying them. There is no wire format for deltas.

use super::hash::HashSet;

use indexmap::IndexMap;

use super::chain::ChainEntry;
use super::element::Pool;
use super::error::{Result, err};
use super::hash::ContentHash;
use super::package::UxfPackage;

/// What turns one package into another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Elements of the target missing from the source (target pool order).
    pub added_elements: Pool,
    /// Elements of the source missing from the target.
    pub removed_elements: Vec<ContentHash>,
    /// Target manifest entries missing or different in the source.
    pub added_tokens: IndexMap<String, ContentHash>,
    /// Source token ids missing from the target.
    pub removed_tokens: Vec<String>,
    /// Target chains absent or different in the source.
    pub added_chain_entries: Vec<ChainEntry>,
}

impl UxfPackage {
    /// The delta from `self` (source) to `target`.
    pub fn diff(&self, target: &UxfPackage) -> Delta {
        let added_elements = target
            .pool
            .iter()
            .filter(|(h, _)| !self.pool.contains_key(*h))
            .map(|(h, e)| (*h, e.clone()))
            .collect();
        let removed_elements = self
            .pool
            .keys()
            .filter(|h| !target.pool.contains_key(*h))
            .copied()
            .collect();
        let added_tokens = target
            .manifest
            .iter()
            .filter(|(k, v)| self.manifest.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let removed_tokens = self
            .manifest
            .keys()
            .filter(|k| !target.manifest.contains_key(*k))
            .cloned()
            .collect();
        let added_chain_entries = target
            .chains
            .entries()
            .iter()
            .filter(|e| self.chains.entries().iter().find(|s| s.head == e.head) != Some(*e))
            .cloned()
            .collect();
        Delta {
            added_elements,
            removed_elements,
            added_tokens,
            removed_tokens,
            added_chain_entries,
        }
    }

    /// Applies a delta (the envelope is left unchanged).
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<()> {
        let mut buf = Vec::with_capacity(1024);
        for (h, el) in &delta.added_elements {
            buf.clear();
            el.write_canonical(&mut buf)?;
            if ContentHash::digest(&buf) != *h {
                return Err(err!(
                    VerificationFailed,
                    "delta element {h} does not match its hash"
                ));
            }
        }
        for (h, el) in &delta.added_elements {
            self.pool.entry(*h).or_insert_with(|| el.clone());
        }
        let removed: HashSet = delta.removed_elements.iter().copied().collect();
        self.pool.retain(|h, _| !removed.contains(h));
        self.chains.prune(&removed, true);
        for id in &delta.removed_tokens {
            self.manifest.shift_remove(id);
        }
        for (id, root) in &delta.added_tokens {
            self.manifest.insert(id.clone(), *root);
        }
        if !delta.added_chain_entries.is_empty() {
            let mut entries: Vec<ChainEntry> = self
                .chains
                .entries()
                .iter()
                .filter(|e| {
                    !delta.added_chain_entries.iter().any(|n| {
                        n.chain
                            .iter()
                            .any(|(h, _)| e.chain.iter().any(|(m, _)| m == h))
                    })
                })
                .cloned()
                .collect();
            entries.extend(delta.added_chain_entries.iter().cloned());
            self.chains.set(entries);
        }
        Ok(())
    }
}
