//! Instance chains (spec §10.4–10.5): newer instances of an element linked to older
//! ones by `header.predecessor`, and the strategy that picks one when assembling.

use super::hash::{HashMap, HashSet};

use super::element::Pool;
use super::element::{Element, validate_kind};
use super::error::{ErrorCode, Result, err};
use super::hash::ContentHash;

/// One chain: head (newest) first, tail (oldest, predecessor null) last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The newest instance.
    pub head: ContentHash,
    /// `(hash, kind)` from head to tail.
    pub chain: Vec<(ContentHash, String)>,
}

/// Which instance of a chained element to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// The head (newest).
    #[default]
    Latest,
    /// The tail (oldest).
    Original,
    /// The first instance (head → tail) of this kind, else the head.
    ByKind(String),
    /// The first instance with this representation, else the head.
    ByRepresentation(u64),
}

/// The chain index: every member hash of a chain of length > 1 → its chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceChains {
    entries: Vec<ChainEntry>,
    index: HashMap<usize>,
}

impl InstanceChains {
    /// The chains.
    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// Number of chains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No chains.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The chain `h` belongs to.
    pub fn get(&self, h: &ContentHash) -> Option<&ChainEntry> {
        self.index.get(h).and_then(|i| self.entries.get(*i))
    }

    /// Replaces all chains (chains of length ≤ 1 are dropped) and re-indexes.
    pub fn set(&mut self, entries: Vec<ChainEntry>) {
        self.entries = entries.into_iter().filter(|e| e.chain.len() > 1).collect();
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            for (h, _) in &e.chain {
                self.index.insert(*h, i);
            }
        }
    }

    /// The hash the strategy selects for `h` (itself when not chained).
    pub fn resolve(&self, h: &ContentHash, strategy: &Strategy, pool: &Pool) -> ContentHash {
        let Some(e) = self.get(h) else { return *h };
        let pick = match strategy {
            Strategy::Latest => None,
            Strategy::Original => e.chain.last().map(|(h, _)| *h),
            Strategy::ByKind(k) => e.chain.iter().find(|(_, kind)| kind == k).map(|(h, _)| *h),
            Strategy::ByRepresentation(r) => e
                .chain
                .iter()
                .find(|(h, _)| pool.get(h).is_some_and(|el| el.header.representation == *r))
                .map(|(h, _)| *h),
        };
        pick.unwrap_or(e.head)
    }

    /// Adds `new` as the newest instance of the chain `original` belongs to (§10.4).
    pub fn add_instance(
        &mut self,
        pool: &mut Pool,
        original: ContentHash,
        new: Element,
    ) -> Result<ContentHash> {
        let orig = pool
            .get(&original)
            .ok_or_else(|| err!(MissingElement, "Element {original} not in pool"))?;
        let head_hash = self.get(&original).map_or(original, |e| e.head);
        let head = pool
            .get(&head_hash)
            .ok_or_else(|| err!(MissingElement, "Element {head_hash} not in pool"))?;
        if new.ty != orig.ty {
            return Err(err!(
                InvalidInstanceChain,
                "instance type differs from the original"
            ));
        }
        new.header.validate(ErrorCode::InvalidInstanceChain)?;
        validate_kind(&new.header.kind, ErrorCode::InvalidInstanceChain)?;
        if new.header.predecessor != Some(head_hash) {
            return Err(err!(
                InvalidInstanceChain,
                "predecessor must be the chain head {head_hash}"
            ));
        }
        if new.header.semantics < head.header.semantics
            || new.header.representation < head.header.representation
        {
            return Err(err!(
                InvalidInstanceChain,
                "instance versions must not decrease"
            ));
        }
        let h = new.hash()?;
        let kind = new.header.kind.to_string();
        let head_kind = head.header.kind.to_string();
        pool.entry(h).or_insert(new);
        match self.index.get(&original).copied() {
            Some(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.chain.insert(0, (h, kind));
                    e.head = h;
                }
            }
            None => self.entries.push(ChainEntry {
                head: h,
                chain: vec![(h, kind), (head_hash, head_kind)],
            }),
        }
        self.reindex();
        Ok(h)
    }

    /// Removes deleted members; drops chains whose head was removed or that are left
    /// with ≤ 1 member.
    pub fn prune(&mut self, removed: &HashSet, drop_if_head_removed: bool) {
        let mut out = Vec::with_capacity(self.entries.len());
        for mut e in std::mem::take(&mut self.entries) {
            if drop_if_head_removed && removed.contains(&e.head) {
                continue;
            }
            e.chain.retain(|(h, _)| !removed.contains(h));
            if e.chain.len() > 1 {
                if let Some((h, _)) = e.chain.first() {
                    e.head = *h;
                }
                out.push(e);
            }
        }
        self.entries = out;
        self.reindex();
    }

    /// Merges `other`'s chains into these (§10.4 mergeInstanceChains).
    pub fn merge(&mut self, other: &InstanceChains) {
        for src in &other.entries {
            let src_set: HashSet = src.chain.iter().map(|(h, _)| *h).collect();
            let overlapping: Vec<usize> = {
                let mut v: Vec<usize> = src
                    .chain
                    .iter()
                    .filter_map(|(h, _)| self.index.get(h).copied())
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            if overlapping.is_empty() {
                let i = self.entries.len();
                for (h, _) in &src.chain {
                    self.index.insert(*h, i);
                }
                self.entries.push(src.clone());
                continue;
            } else if let [i] = overlapping.as_slice() {
                let Some(tgt) = self.entries.get(*i) else {
                    continue;
                };
                let tgt_set: HashSet = tgt.chain.iter().map(|(h, _)| *h).collect();
                if src_set.is_subset(&tgt_set) {
                    // keep target
                } else if tgt_set.is_subset(&src_set) {
                    if let Some(t) = self.entries.get_mut(*i) {
                        *t = src.clone();
                    }
                } else {
                    // divergent: keep both heads
                    let extra: Vec<(ContentHash, String)> = src
                        .chain
                        .iter()
                        .filter(|(h, _)| !self.index.contains_key(h))
                        .cloned()
                        .collect();
                    if !extra.is_empty() {
                        let mut chain = extra;
                        if let Some(last) = src.chain.iter().find(|(h, _)| tgt_set.contains(h)) {
                            chain.push(last.clone());
                        }
                        self.entries.push(ChainEntry {
                            head: src.head,
                            chain,
                        });
                    }
                }
            } else {
                self.entries.push(src.clone());
            }
            self.reindex();
        }
    }

    /// Rebuilds chains from predecessor links, as CAR import does (§10.5): heads are
    /// elements with a predecessor that are nobody's predecessor.
    pub fn rebuild_from_predecessors(pool: &Pool) -> Result<Self> {
        let preds: HashSet = pool.values().filter_map(|e| e.header.predecessor).collect();
        let mut entries = Vec::new();
        for (h, el) in pool {
            if el.header.predecessor.is_none() || preds.contains(h) {
                continue;
            }
            let mut chain = vec![(*h, el.header.kind.to_string())];
            let mut seen: HashSet = [*h].into_iter().collect::<HashSet>();
            let mut cur = el.header.predecessor;
            while let Some(p) = cur {
                let Some(pe) = pool.get(&p) else { break };
                if !seen.insert(p) {
                    return Err(err!(InvalidInstanceChain, "predecessor cycle at {p}"));
                }
                chain.push((p, pe.header.kind.to_string()));
                cur = pe.header.predecessor;
            }
            if chain.len() > 1 {
                entries.push(ChainEntry { head: *h, chain });
            }
        }
        let mut c = Self::default();
        c.set(entries);
        Ok(c)
    }
}
