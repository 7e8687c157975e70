//! Instance chains (spec §10.4–10.5): newer instances of an element linked to older
//! ones by `header.predecessor`, and the strategy that picks one when assembling.

use std::sync::Arc;

use super::hash::{HashMap, HashSet};

use super::element::Pool;
use super::element::{Element, validate_kind};
use super::error::{ErrorCode, Result, err};
use super::hash::ContentHash;
use super::limits::{MAX_CHAIN_MEMBERS, MAX_HEADER_NUMBER};

/// One chain: head (newest) first, tail (oldest, predecessor null) last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The newest instance.
    pub head: ContentHash,
    /// `(hash, kind)` from head to tail.
    pub chain: Vec<(ContentHash, String)>,
}

/// Which instance of a chained element to use (spec §10.4 `selectInstance`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// The head (newest).
    #[default]
    Latest,
    /// The tail (oldest).
    Original,
    /// The first instance (head → tail) of this kind, else `fallback`, else the head.
    ByKind {
        /// The kind to look for.
        kind: String,
        /// Applied to the same chain when no instance has the kind.
        fallback: Option<Box<Strategy>>,
    },
    /// The first instance with this representation, else the head (no fallback, as in
    /// the reference).
    ByRepresentation(u64),
    /// The first instance (head → tail) the predicate accepts, else `fallback`, else the
    /// head.
    Custom {
        /// The test applied to each instance.
        predicate: InstancePredicate,
        /// Applied to the same chain when no instance matches.
        fallback: Option<Box<Strategy>>,
    },
}

impl Strategy {
    /// [`Strategy::ByKind`] without a fallback.
    pub fn by_kind(kind: impl Into<String>) -> Self {
        Self::ByKind {
            kind: kind.into(),
            fallback: None,
        }
    }

    /// [`Strategy::Custom`] without a fallback.
    pub fn custom(predicate: impl Fn(&Element) -> bool + Send + Sync + 'static) -> Self {
        Self::Custom {
            predicate: InstancePredicate::new(predicate),
            fallback: None,
        }
    }

    /// The same strategy with `fallback` used when it selects nothing; only
    /// [`Strategy::ByKind`] and [`Strategy::Custom`] have a fallback, the others are
    /// returned unchanged.
    pub fn or_else(self, fallback: Strategy) -> Self {
        match self {
            Self::ByKind { kind, .. } => Self::ByKind {
                kind,
                fallback: Some(Box::new(fallback)),
            },
            Self::Custom { predicate, .. } => Self::Custom {
                predicate,
                fallback: Some(Box::new(fallback)),
            },
            other => other,
        }
    }

    /// The member of `e` this strategy picks. Fallbacks nest, so the loop follows them
    /// instead of recursing.
    fn select(&self, e: &ChainEntry, pool: &Pool) -> ContentHash {
        let mut strategy = self;
        loop {
            let (pick, fallback) = match strategy {
                Self::Latest => (Some(e.head), None),
                Self::Original => (e.chain.last().map(|(h, _)| *h), None),
                Self::ByKind { kind, fallback } => (
                    e.chain.iter().find(|(_, k)| k == kind).map(|(h, _)| *h),
                    fallback.as_deref(),
                ),
                Self::ByRepresentation(r) => (
                    e.chain
                        .iter()
                        .find(|(h, _)| pool.get(h).is_some_and(|el| el.header.representation == *r))
                        .map(|(h, _)| *h),
                    None,
                ),
                Self::Custom {
                    predicate,
                    fallback,
                } => (
                    e.chain
                        .iter()
                        .find(|(h, _)| pool.get(h).is_some_and(|el| (predicate.0)(el)))
                        .map(|(h, _)| *h),
                    fallback.as_deref(),
                ),
            };
            match (pick, fallback) {
                (Some(h), _) => return h,
                (None, Some(f)) => strategy = f,
                (None, None) => return e.head,
            }
        }
    }
}

/// The caller's test for [`Strategy::Custom`]. Two predicates are equal only when they
/// are the same closure (the same `Arc`).
#[derive(Clone)]
pub struct InstancePredicate(Arc<dyn Fn(&Element) -> bool + Send + Sync>);

impl InstancePredicate {
    /// Wraps a closure.
    pub fn new(f: impl Fn(&Element) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for InstancePredicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstancePredicate(..)")
    }
}

impl PartialEq for InstancePredicate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InstancePredicate {}

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

    /// The position in [`Self::entries`] of the chain `h` belongs to: walkers use it to
    /// expand each chain once, not once per member.
    pub(crate) fn position(&self, h: &ContentHash) -> Option<usize> {
        self.index.get(h).copied()
    }

    /// Replaces all chains and re-indexes. A member repeated within one chain is kept
    /// once (its first place), and chains left with ≤ 1 member are dropped.
    pub fn set(&mut self, entries: Vec<ChainEntry>) {
        self.entries = entries
            .into_iter()
            .map(|mut e| {
                let mut seen = HashSet::default();
                e.chain.retain(|(h, _)| seen.insert(*h));
                e
            })
            .filter(|e| e.chain.len() > 1)
            .collect();
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
        self.get(h).map_or(*h, |e| strategy.select(e, pool))
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
    ///
    /// The work is linear in `other`'s members: the index is updated per chain instead
    /// of rebuilt, and the subset tests read the index. A member's index points at the
    /// last chain holding it, so a member of `src` is in the one chain `src` overlaps
    /// exactly when the index names that chain — the same index a full rebuild after
    /// every chain would give (`merge_matches_the_reindexing_reference` checks it).
    pub fn merge(&mut self, other: &InstanceChains) {
        for src in &other.entries {
            let mut overlapping: Vec<usize> = src
                .chain
                .iter()
                .filter_map(|(h, _)| self.index.get(h).copied())
                .collect();
            overlapping.sort_unstable();
            overlapping.dedup();
            match overlapping.as_slice() {
                [] => self.push_indexed(src.clone()),
                [i] => self.merge_overlapping(*i, src),
                _ => self.push_indexed(src.clone()),
            }
        }
    }

    /// Merges `src`, whose indexed members all lie in chain `i`.
    fn merge_overlapping(&mut self, i: usize, src: &ChainEntry) {
        let Some(tgt) = self.entries.get(i) else {
            return;
        };
        let in_tgt = |h: &ContentHash| self.index.get(h) == Some(&i);
        if src.chain.iter().all(|(h, _)| in_tgt(h)) {
            return; // src ⊆ tgt: keep the target
        }
        // Members are distinct within a chain (`set` keeps them so), so tgt ⊆ src
        // needs tgt to be no longer than src: the test costs at most |src|.
        let src_set: HashSet = src.chain.iter().map(|(h, _)| *h).collect();
        if tgt.chain.len() <= src.chain.len() && tgt.chain.iter().all(|(h, _)| src_set.contains(h))
        {
            for (h, _) in &src.chain {
                self.index.insert(*h, i);
            }
            if let Some(t) = self.entries.get_mut(i) {
                *t = src.clone();
            }
            return;
        }
        // divergent: keep both heads, the new one down to the first shared member
        let mut chain: Vec<(ContentHash, String)> = src
            .chain
            .iter()
            .filter(|(h, _)| !self.index.contains_key(h))
            .cloned()
            .collect();
        if chain.is_empty() {
            return;
        }
        if let Some(shared) = src.chain.iter().find(|(h, _)| in_tgt(h)) {
            chain.push(shared.clone());
        }
        self.push_indexed(ChainEntry {
            head: src.head,
            chain,
        });
    }

    /// Appends a chain and points its members at it.
    fn push_indexed(&mut self, e: ChainEntry) {
        let i = self.entries.len();
        for (h, _) in &e.chain {
            self.index.insert(*h, i);
        }
        self.entries.push(e);
    }

    /// Rebuilds chains by walking forward from their tails — the reference's second
    /// algorithm (`rebuildInstanceChainIndex`, spec §10.5), which its CAR import does
    /// not use; [`Self::rebuild_from_predecessors`] is the import's.
    ///
    /// A tail is an element without predecessor that some element names as its
    /// predecessor. From it the walk follows successors while each one has the same type
    /// and no lower semantics or representation version than the element before it
    /// (a refused successor ends the walk, it is no error). Where an element has several
    /// successors, each starts its own branch: every branch becomes a chain that repeats
    /// the shared prefix, and a shared member is indexed to the branch walked last, as in
    /// the reference. Two further reference behaviours are kept and named in tests: a tail
    /// whose only successor is refused stays a chain of one member, and elements whose
    /// predecessor chain never reaches a tail (a cycle) are not indexed at all.
    pub fn rebuild_from_tails(pool: &Pool) -> Self {
        let mut successors: HashMap<Vec<ContentHash>> = HashMap::default();
        for (h, el) in pool {
            if let Some(p) = el.header.predecessor {
                successors.entry(p).or_default().push(*h);
            }
        }
        let mut entries = Vec::new();
        for (tail, tail_el) in pool {
            if tail_el.header.predecessor.is_some() || !successors.contains_key(tail) {
                continue;
            }
            let mut visited = HashSet::default();
            // Branches still to walk: (first member, the member it extends, the chain up
            // to that member). An explicit stack, popped in the reference's depth-first
            // order; a branch's checks run when it is popped, so `visited` holds what the
            // branches before it walked.
            type Branch = (ContentHash, Option<ContentHash>, Vec<(ContentHash, String)>);
            let mut stack: Vec<Branch> = vec![(*tail, None, Vec::new())];
            while let Some((start, parent, mut chain)) = stack.pop() {
                let Some(start_el) = pool.get(&start) else {
                    continue;
                };
                if let Some(p) = parent {
                    let extends_parent = pool.get(&p).is_some_and(|pe| extends(pe, start_el));
                    if visited.contains(&start) || !extends_parent {
                        continue;
                    }
                }
                visited.insert(start);
                chain.push((start, start_el.header.kind.to_string()));
                let mut cur = start;
                let mut branched = false;
                while let Some(succs) = successors.get(&cur) {
                    match succs.as_slice() {
                        [next] => {
                            let Some(next_el) = pool.get(next) else { break };
                            let extends_cur = pool.get(&cur).is_some_and(|ce| extends(ce, next_el));
                            if visited.contains(next) || !extends_cur {
                                break;
                            }
                            visited.insert(*next);
                            chain.push((*next, next_el.header.kind.to_string()));
                            cur = *next;
                        }
                        many => {
                            for next in many.iter().rev() {
                                stack.push((*next, Some(cur), chain.clone()));
                            }
                            branched = true;
                            break;
                        }
                    }
                }
                if !branched {
                    chain.reverse();
                    if let Some((head, _)) = chain.first() {
                        entries.push(ChainEntry { head: *head, chain });
                    }
                }
            }
        }
        let mut c = Self {
            entries,
            index: HashMap::default(),
        };
        c.reindex();
        c
    }

    /// Rebuilds chains from predecessor links, as CAR import does (§10.5): heads are
    /// elements with a predecessor that are nobody's predecessor.
    ///
    /// As in the reference, every head gets its own entry holding its whole walk to the
    /// tail, so heads sharing a history repeat it: the index is quadratic in the worst
    /// case (n heads naming the newest of n chained elements hold n² members). The
    /// members of all entries together are therefore capped at [`MAX_CHAIN_MEMBERS`]
    /// (`LIMIT_EXCEEDED` beyond, counted while walking, so the work is bounded too).
    pub fn rebuild_from_predecessors(pool: &Pool) -> Result<Self> {
        let preds: HashSet = pool.values().filter_map(|e| e.header.predecessor).collect();
        let mut entries = Vec::new();
        let mut members = 0usize;
        let over_budget = || {
            err!(
                LimitExceeded,
                "instance chains hold more than {MAX_CHAIN_MEMBERS} members"
            )
        };
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
                // this member and the head: an entry holds at least two
                if members.saturating_add(chain.len()).saturating_add(1) > MAX_CHAIN_MEMBERS {
                    return Err(over_budget());
                }
                chain.push((p, pe.header.kind.to_string()));
                cur = pe.header.predecessor;
            }
            if chain.len() > 1 {
                members = members.saturating_add(chain.len());
                entries.push(ChainEntry { head: *h, chain });
            }
        }
        let mut c = Self::default();
        c.set(entries);
        Ok(c)
    }
}

/// `next` may follow `prev` in a chain: same type, versions valid and not decreasing.
fn extends(prev: &Element, next: &Element) -> bool {
    let valid = |v: u64| v <= MAX_HEADER_NUMBER;
    next.ty == prev.ty
        && [prev, next]
            .iter()
            .all(|e| valid(e.header.semantics) && valid(e.header.representation))
        && next.header.semantics >= prev.header.semantics
        && next.header.representation >= prev.header.representation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uxf::element::ElementType;
    use crate::uxf::value::Value;

    fn el(n: u64, ty: ElementType, kind: &str, repr: u64, pred: Option<ContentHash>) -> Element {
        let mut e = Element::new(ty, vec![("n".into(), Value::UInt(n))], vec![]);
        e.header.kind = kind.to_owned().into();
        e.header.representation = repr;
        e.header.predecessor = pred;
        e
    }

    fn put(pool: &mut Pool, e: Element) -> ContentHash {
        let h = e.hash().unwrap();
        pool.insert(h, e);
        h
    }

    fn members(c: &InstanceChains) -> Vec<Vec<ContentHash>> {
        c.entries()
            .iter()
            .map(|e| e.chain.iter().map(|(h, _)| *h).collect())
            .collect()
    }

    const A: ElementType = ElementType::Authenticator;

    /// tail (default, r1) ← mid (consolidated-proof, r1) ← head (zk-proof, r2)
    fn line() -> (Pool, [ContentHash; 3]) {
        let mut pool = Pool::default();
        let t = put(&mut pool, el(1, A, "default", 1, None));
        let m = put(&mut pool, el(2, A, "consolidated-proof", 1, Some(t)));
        let h = put(&mut pool, el(3, A, "zk-proof", 2, Some(m)));
        (pool, [t, m, h])
    }

    #[test]
    fn strategies_select_with_fallbacks() {
        let (pool, [t, m, h]) = line();
        let chains = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        let pick = |s: &Strategy| chains.resolve(&t, s, &pool);
        assert_eq!(pick(&Strategy::Latest), h);
        assert_eq!(pick(&Strategy::Original), t);
        assert_eq!(pick(&Strategy::by_kind("consolidated-proof")), m);
        assert_eq!(
            pick(&Strategy::by_kind("re-encoded")),
            h,
            "no match, no fallback: head"
        );
        let kind_or_original = Strategy::by_kind("re-encoded").or_else(Strategy::Original);
        assert_eq!(pick(&kind_or_original), t);
        assert_eq!(
            pick(&Strategy::ByRepresentation(1)),
            m,
            "first match head → tail"
        );
        assert_eq!(pick(&Strategy::ByRepresentation(9)), h);
        let is_default = Strategy::custom(|e| e.header.kind == "default");
        assert_eq!(pick(&is_default), t);
        let never = || Strategy::custom(|_| false);
        assert_eq!(pick(&never()), h);
        assert_eq!(
            pick(&never().or_else(Strategy::by_kind("consolidated-proof"))),
            m
        );
        // fallbacks nest
        assert_eq!(pick(&never().or_else(kind_or_original)), t);
        // an element in no chain resolves to itself
        let lone = el(9, A, "default", 1, None).hash().unwrap();
        assert_eq!(chains.resolve(&lone, &never(), &pool), lone);
    }

    #[test]
    fn both_rebuilds_agree_on_a_line() {
        let (pool, [t, m, h]) = line();
        let by_preds = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        let by_tails = InstanceChains::rebuild_from_tails(&pool);
        assert_eq!(members(&by_tails), vec![vec![h, m, t]]);
        assert_eq!(by_preds, by_tails);
    }

    #[test]
    fn rebuild_from_tails_branches_repeat_the_prefix() {
        let mut pool = Pool::default();
        let t = put(&mut pool, el(1, A, "default", 1, None));
        let m = put(&mut pool, el(2, A, "default", 1, Some(t)));
        let b1 = put(&mut pool, el(3, A, "zk-proof", 1, Some(m)));
        let b2 = put(&mut pool, el(4, A, "re-encoded", 1, Some(m)));
        let c = InstanceChains::rebuild_from_tails(&pool);
        assert_eq!(members(&c), vec![vec![b1, m, t], vec![b2, m, t]]);
        // quirk: shared members belong to the branch walked last
        assert_eq!(c.get(&t).unwrap().head, b2);
        assert_eq!(c.get(&b1).unwrap().head, b1);
        // the import algorithm walks back from each head: the same two chains
        let p = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        assert_eq!(members(&p), members(&c));
    }

    #[test]
    fn rebuild_from_tails_stops_where_import_does_not() {
        let mut pool = Pool::default();
        let t = put(&mut pool, el(1, A, "default", 2, None));
        // a representation downgrade, then a type change further up
        let down = put(&mut pool, el(2, A, "re-encoded", 1, Some(t)));
        let other = put(
            &mut pool,
            el(3, ElementType::TokenState, "default", 2, Some(down)),
        );
        let c = InstanceChains::rebuild_from_tails(&pool);
        // quirk: the tail whose only successor is refused stays a chain of one
        assert_eq!(members(&c), vec![vec![t]]);
        assert_eq!(c.resolve(&t, &Strategy::Latest, &pool), t);
        // the import algorithm checks neither type nor versions
        let p = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        assert_eq!(members(&p), vec![vec![other, down, t]]);
    }

    /// `len` chained elements plus `heads` heads that all name the newest of them.
    fn shared_history(len: usize, heads: usize) -> (Pool, Vec<ContentHash>) {
        let mut pool = Pool::default();
        let mut prev = None;
        for i in 0..len {
            prev = Some(put(&mut pool, el(i as u64, A, "default", 1, prev)));
        }
        let hs = (0..heads)
            .map(|j| put(&mut pool, el(1_000_000 + j as u64, A, "zk-proof", 1, prev)))
            .collect();
        (pool, hs)
    }

    #[test]
    fn import_rebuild_keeps_one_entry_per_head_within_a_member_budget() {
        // the reference's index: one entry per head, each holding the shared history
        let (pool, heads) = shared_history(3, 2);
        let c = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.entries().iter().all(|e| e.chain.len() == 4));
        assert_eq!(c.get(&heads[0]).unwrap().head, heads[0]);
        // a shared member belongs to the entry indexed last
        let tail = c.entries()[0].chain.last().unwrap().0;
        assert_eq!(c.get(&tail).unwrap().head, heads[1]);

        // n heads over n chained elements: n·(n+1) members; 315 · 316 < 100 000 < 316 · 317
        let (pool, _) = shared_history(315, 315);
        let c = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        let members: usize = c.entries().iter().map(|e| e.chain.len()).sum();
        assert_eq!(members, 315 * 316);
        assert!(members <= MAX_CHAIN_MEMBERS);
        // (only the code is compared: a failing unwrap_err would print the whole index)
        let code = |pool: &Pool| {
            InstanceChains::rebuild_from_predecessors(pool)
                .err()
                .map(|e| e.code())
        };
        let (pool, _) = shared_history(316, 316);
        assert_eq!(code(&pool), Some(ErrorCode::LimitExceeded));
        // the audit's shape (4 999 + 4 999, ~25 million members) fails the same way,
        // early: the walk stops at the budget
        let (pool, _) = shared_history(4_999, 4_999);
        assert_eq!(code(&pool), Some(ErrorCode::LimitExceeded));
        // one long chain is no problem: its members count once
        let (pool, _) = shared_history(20_000, 1);
        let c = InstanceChains::rebuild_from_predecessors(&pool).unwrap();
        assert_eq!(c.entries()[0].chain.len(), 20_001);
    }

    #[test]
    fn rebuild_from_tails_ignores_cycles() {
        let mut pool = Pool::default();
        // Hashing cannot produce two elements naming each other, so the pool is filled
        // under chosen keys (as a corrupt in-memory pool could be).
        let (a, b) = (ContentHash::digest(b"a"), ContentHash::digest(b"b"));
        pool.insert(a, el(1, A, "default", 1, Some(b)));
        pool.insert(b, el(2, A, "default", 1, Some(a)));
        assert!(InstanceChains::rebuild_from_tails(&pool).is_empty());
        assert_eq!(
            InstanceChains::rebuild_from_predecessors(&pool)
                .unwrap()
                .len(),
            0
        );
    }

    /// The merge as first written: the reference's algorithm with a full re-index after
    /// every chain (quadratic), kept to check the incremental one against.
    fn merge_by_reindexing(this: &mut InstanceChains, other: &InstanceChains) {
        for src in &other.entries {
            let src_set: HashSet = src.chain.iter().map(|(h, _)| *h).collect();
            let mut overlapping: Vec<usize> = src
                .chain
                .iter()
                .filter_map(|(h, _)| this.index.get(h).copied())
                .collect();
            overlapping.sort_unstable();
            overlapping.dedup();
            if overlapping.is_empty() {
                this.entries.push(src.clone());
            } else if let [i] = overlapping.as_slice() {
                let tgt = this.entries[*i].clone();
                let tgt_set: HashSet = tgt.chain.iter().map(|(h, _)| *h).collect();
                if src_set.is_subset(&tgt_set) {
                } else if tgt_set.is_subset(&src_set) {
                    this.entries[*i] = src.clone();
                } else {
                    let mut chain: Vec<_> = src
                        .chain
                        .iter()
                        .filter(|(h, _)| !this.index.contains_key(h))
                        .cloned()
                        .collect();
                    if !chain.is_empty() {
                        if let Some(last) = src.chain.iter().find(|(h, _)| tgt_set.contains(h)) {
                            chain.push(last.clone());
                        }
                        this.entries.push(ChainEntry {
                            head: src.head,
                            chain,
                        });
                    }
                }
            } else {
                this.entries.push(src.clone());
            }
            this.reindex();
        }
    }

    /// Chains over a universe of 10 hashes, so that they overlap in every way.
    fn small_chains() -> impl proptest::strategy::Strategy<Value = InstanceChains> {
        use proptest::prelude::*;
        prop::collection::vec(prop::collection::vec(0u8..10, 0..6), 0..5).prop_map(|chains| {
            let entries = chains
                .into_iter()
                .filter_map(|c| {
                    let chain: Vec<_> = c
                        .iter()
                        .map(|n| (ContentHash::digest(&[*n]), "default".to_owned()))
                        .collect();
                    Some(ChainEntry {
                        head: chain.first()?.0,
                        chain,
                    })
                })
                .collect();
            let mut c = InstanceChains::default();
            c.set(entries);
            c
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        #[test]
        fn merge_matches_the_reindexing_reference(
            a in small_chains(), b in small_chains(), c in small_chains()
        ) {
            let (mut fast, mut slow) = (a.clone(), a);
            for other in [&b, &c] {
                fast.merge(other);
                merge_by_reindexing(&mut slow, other);
                proptest::prop_assert_eq!(&fast, &slow);
            }
        }
    }

    #[test]
    fn set_keeps_a_repeated_member_once() {
        let [x, y] = [ContentHash::digest(b"x"), ContentHash::digest(b"y")];
        let member = |h| (h, "default".to_owned());
        let mut c = InstanceChains::default();
        c.set(vec![
            ChainEntry {
                head: x,
                chain: vec![member(x), member(y), member(x), member(y)],
            },
            // a chain of one member once repeats are gone: dropped
            ChainEntry {
                head: y,
                chain: vec![member(y), member(y)],
            },
        ]);
        assert_eq!(members(&c), vec![vec![x, y]]);
    }

    #[test]
    fn twenty_thousand_forks_of_one_long_chain_merge_in_one_pass() {
        // 20 000 two-member chains, each sharing the tail of one 20 000-member chain: the
        // first merge re-indexed 20 000 times over ≥ 20 000 members (4·10⁸ inserts);
        // this one touches each member a bounded number of times.
        let n: usize = 20_000;
        let h = |i: usize| ContentHash::digest(&i.to_le_bytes());
        let member = |i| (h(i), "default".to_owned());
        let mut long = InstanceChains::default();
        long.set(vec![ChainEntry {
            head: h(0),
            chain: (0..n).map(member).collect(),
        }]);
        let mut forks = InstanceChains::default();
        forks.set(
            (0..n)
                .map(|i| ChainEntry {
                    head: h(n + i),
                    chain: vec![member(n + i), member(n - 1)],
                })
                .collect(),
        );
        long.merge(&forks);
        assert_eq!(long.len(), n + 1);
        assert_eq!(long.get(&h(n + 7)).unwrap().head, h(n + 7));
        // the shared tail belongs to the chain merged last
        assert_eq!(long.get(&h(n - 1)).unwrap().head, h(2 * n - 1));
    }
}
