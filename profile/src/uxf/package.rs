//! [`UxfPackage`]: the element pool with dedup, the manifest, the envelope and the
//! instance chains (spec §8.1), and ingest/assemble on top of them.

use indexmap::IndexMap;

use super::assemble;
use super::chain::{InstanceChains, Strategy};
use super::deconstruct;
use super::element::Pool;
use super::element::{Element, ElementType};
use super::error::{Result, err};
use super::hash::ContentHash;
use super::limits::MAX_STATE_INDEX;
use super::value::Value;

/// The package envelope (the CAR root block, spec §8.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Always `"1.0.0"`.
    pub version: String,
    /// Creation time, unix seconds (a JavaScript number: CAR import accepts any finite one).
    pub created_at: f64,
    /// Last update, unix seconds.
    pub updated_at: f64,
    /// Optional creator (≤ 256 UTF-16 units).
    pub creator: Option<String>,
    /// Optional description (≤ 1024 UTF-16 units).
    pub description: Option<String>,
}

/// The envelope and wire version.
pub const UXF_VERSION: &str = "1.0.0";

/// A UXF package.
#[derive(Debug, Clone, PartialEq)]
pub struct UxfPackage {
    pub(crate) envelope: Envelope,
    pub(crate) manifest: IndexMap<String, ContentHash>,
    pub(crate) pool: Pool,
    pub(crate) chains: InstanceChains,
}

#[expect(
    clippy::cast_precision_loss,
    reason = "unix seconds are far below 2^53"
)]
fn secs(s: u64) -> f64 {
    s as f64
}

impl UxfPackage {
    /// An empty package with both timestamps = `created_at` (unix seconds).
    pub fn new(created_at: u64) -> Self {
        Self {
            envelope: Envelope {
                version: UXF_VERSION.to_owned(),
                created_at: secs(created_at),
                updated_at: secs(created_at),
                creator: None,
                description: None,
            },
            manifest: IndexMap::new(),
            pool: Pool::default(),
            chains: InstanceChains::default(),
        }
    }

    /// Sets the envelope creator.
    #[must_use]
    pub fn with_creator(mut self, creator: impl Into<String>) -> Self {
        self.envelope.creator = Some(creator.into());
        self
    }

    /// Sets the envelope description.
    #[must_use]
    pub fn with_description(mut self, d: impl Into<String>) -> Self {
        self.envelope.description = Some(d.into());
        self
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Sets `updatedAt` (unix seconds).
    pub fn set_updated_at(&mut self, secs_: u64) {
        self.envelope.updated_at = secs(secs_);
    }

    /// Token id → root hash, in manifest order.
    pub fn manifest(&self) -> &IndexMap<String, ContentHash> {
        &self.manifest
    }

    /// Hash → element, in pool insertion order.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The instance chains.
    pub fn chains(&self) -> &InstanceChains {
        &self.chains
    }

    /// Ingests one token JSON (spec §3): its elements join the pool (dedup by hash)
    /// and `manifest[tokenId]` is set to its root (plain overwrite). `updatedAt` is set.
    pub fn ingest(&mut self, token: &serde_json::Value, updated_at: u64) -> Result<ContentHash> {
        let (id, root) = deconstruct::deconstruct(&mut self.pool, token)?;
        self.manifest.insert(id, root);
        self.envelope.updated_at = secs(updated_at);
        Ok(root)
    }

    /// Ingests several tokens in order.
    pub fn ingest_all(
        &mut self,
        tokens: &[serde_json::Value],
        updated_at: u64,
    ) -> Result<Vec<ContentHash>> {
        tokens.iter().map(|t| self.ingest(t, updated_at)).collect()
    }

    fn root_of(&self, token_id: &str) -> Result<ContentHash> {
        self.manifest
            .get(&token_id.to_ascii_lowercase())
            .copied()
            .ok_or_else(|| err!(TokenNotFound, "Token {token_id} not found in manifest"))
    }

    /// The token JSON of `token_id` at its current state.
    pub fn assemble(&self, token_id: &str) -> Result<Value> {
        self.assemble_with(token_id, &Strategy::Latest)
    }

    /// Same, picking chained instances by `strategy`.
    pub fn assemble_with(&self, token_id: &str, strategy: &Strategy) -> Result<Value> {
        let root = self.root_of(token_id)?;
        assemble::assemble(&self.pool, &self.chains, strategy, root, None)
    }

    /// The token JSON at state `index`: genesis plus the first `index` transactions.
    pub fn assemble_at_state(&self, token_id: &str, index: u64) -> Result<Value> {
        if index > MAX_STATE_INDEX {
            return Err(err!(InvalidInput, "state index {index} out of range"));
        }
        let root = self.root_of(token_id)?;
        let el = self
            .pool
            .get(&root)
            .ok_or_else(|| err!(MissingElement, "Element {root} not in pool"))?;
        let n = el.child("transactions").map_or(0, |c| c.hashes().len());
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if i > n {
            return Err(err!(
                StateIndexOutOfRange,
                "state index {index} beyond {n} transactions of {token_id}"
            ));
        }
        assemble::assemble(&self.pool, &self.chains, &Strategy::Latest, root, Some(i))
    }

    /// Every token, in manifest order.
    pub fn assemble_all(&self) -> Result<Vec<(String, Value)>> {
        self.manifest
            .keys()
            .map(|id| Ok((id.clone(), self.assemble(id)?)))
            .collect()
    }

    /// Removes a token from the manifest (its elements stay until [`Self::gc`]).
    pub fn remove_token(&mut self, token_id: &str, updated_at: u64) -> Result<()> {
        self.manifest
            .shift_remove(&token_id.to_ascii_lowercase())
            .ok_or_else(|| err!(TokenNotFound, "Token {token_id} not found in manifest"))?;
        self.envelope.updated_at = secs(updated_at);
        Ok(())
    }

    /// Adds a new instance of `original` (spec §10.4).
    pub fn add_instance(&mut self, original: ContentHash, new: Element) -> Result<ContentHash> {
        self.chains.add_instance(&mut self.pool, original, new)
    }

    /// Element counts by type, in type-id order.
    pub fn type_counts(&self) -> Vec<(ElementType, usize)> {
        let mut counts = [0usize; 13];
        for el in self.pool.values() {
            if let Some(i) = ElementType::ALL.iter().position(|t| *t == el.ty)
                && let Some(c) = counts.get_mut(i)
            {
                *c = c.saturating_add(1);
            }
        }
        ElementType::ALL
            .into_iter()
            .zip(counts)
            .filter(|(_, c)| *c > 0)
            .collect()
    }

    /// The indexes the reference serializes in JSON (spec §8.1), from the manifest.
    pub(crate) fn indexes(&self) -> Indexes {
        let mut ix = Indexes::default();
        for (id, root) in &self.manifest {
            let Some(r) = self.pool.get(root) else {
                continue;
            };
            let gd = r
                .child_link("genesis")
                .and_then(|g| self.pool.get(&g))
                .and_then(|g| g.child_link("data"))
                .and_then(|d| self.pool.get(&d));
            if let Some(gd) = gd {
                if let Some(tt) = gd.get("tokenType").and_then(Value::hex_str) {
                    ix.by_token_type
                        .entry(tt.into_owned())
                        .or_default()
                        .push(id.clone());
                }
                if let Some(Value::Array(coins)) = gd.get("coinData")
                    && let Some(Value::Array(first)) = coins.first()
                    && let Some(Value::Text(c)) = first.first()
                {
                    ix.by_coin_id.entry(c.clone()).or_default().push(id.clone());
                }
            }
            let data = r
                .child_link("state")
                .and_then(|s| self.pool.get(&s))
                .and_then(|s| s.get("data"))
                .and_then(Value::hex_str);
            if let Some(d) = data.filter(|d| !d.is_empty()) {
                ix.by_state_hash.insert(d.into_owned(), id.clone());
            }
        }
        ix
    }
}

/// The package indexes (JSON only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    pub(crate) by_token_type: IndexMap<String, Vec<String>>,
    pub(crate) by_coin_id: IndexMap<String, Vec<String>>,
    pub(crate) by_state_hash: IndexMap<String, String>,
}

/// How much sharing saved (see [`UxfPackage::dedup_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Sum over manifest tokens of the distinct elements each token needs (children
    /// and `nametagRefs`), i.e. what separate per-token storage would hold.
    pub naive_elements: usize,
    /// Elements in the pool.
    pub unique_elements: usize,
}

impl UxfPackage {
    /// Elements per token summed vs unique elements stored.
    pub fn dedup_stats(&self) -> DedupStats {
        let mut naive = 0usize;
        for root in self.manifest.values() {
            let mut seen = super::hash::HashSet::default();
            let mut stack = vec![*root];
            while let Some(h) = stack.pop() {
                if !seen.insert(h) {
                    continue;
                }
                if let Some(el) = self.pool.get(&h) {
                    stack.extend(el.child_hashes());
                    if let Some(Value::Array(refs)) = el.get("nametagRefs") {
                        stack.extend(refs.iter().filter_map(|r| {
                            match r {
                                Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
                                    .ok()
                                    .map(ContentHash::from_bytes),
                                Value::Text(t) => ContentHash::from_hex(t).ok(),
                                _ => None,
                            }
                        }));
                    }
                }
            }
            naive =
                naive.saturating_add(seen.iter().filter(|h| self.pool.contains_key(*h)).count());
        }
        DedupStats {
            naive_elements: naive,
            unique_elements: self.pool.len(),
        }
    }
}
