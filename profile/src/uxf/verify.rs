//! `verify()` and `gc()` (spec §10.7, §10.8), with the reference's reachability rules:
//! walks follow children and instance-chain members only, never `nametagRefs` (§9), so
//! a nametag referenced only from transfer data counts as an orphan and is collected.
//! Cycle detection is path-based: a node seen again on the current path is a cycle, a
//! shared sub-DAG (diamond) is not. Walks use an explicit stack capped at
//! [`VERIFY_MAX_DEPTH`].

use super::hash::{HashMap, HashSet};

use super::element::{Child, Element, ElementType};
use super::error::ErrorCode;
use super::hash::ContentHash;
use super::limits::{VERIFY_MAX_DEPTH, VERIFY_MAX_ELEMENT_BYTES, VERIFY_MAX_POOL_SIZE};
use super::package::UxfPackage;
use super::value::Value;

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The reference's code (an [`ErrorCode`] spelling, or `MANIFEST_TYPE_MISMATCH` /
    /// `MANIFEST_TOKENID_MISMATCH`).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Counters of a verify run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyStats {
    /// Manifest entries checked.
    pub tokens_checked: usize,
    /// Elements re-hashed (or size-checked).
    pub elements_checked: usize,
    /// Pool elements not reachable from any manifest root.
    pub orphaned_elements: usize,
    /// Instance chains checked.
    pub instance_chains_checked: usize,
}

/// The result of [`UxfPackage::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// No errors.
    pub valid: bool,
    /// Errors.
    pub errors: Vec<Issue>,
    /// Warnings (orphans, divergent chains).
    pub warnings: Vec<Issue>,
    /// Counters.
    pub stats: VerifyStats,
}

#[cfg(test)]
thread_local! {
    /// Chain members queued by the walks of this thread (tests bound work by counting).
    static CHAIN_PUSHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn count_chain_pushes(n: usize) {
    CHAIN_PUSHES.with(|c| c.set(c.get().saturating_add(n)));
}

#[cfg(not(test))]
fn count_chain_pushes(_: usize) {}

fn issue(code: ErrorCode, message: String) -> Issue {
    Issue {
        code: code.as_str(),
        message,
    }
}

/// The type a child role must have, where the reference checks it.
fn expected(parent: ElementType, role: &str) -> Option<ElementType> {
    use ElementType as T;
    Some(match (parent, role) {
        (T::TokenRoot, "genesis") => T::Genesis,
        (T::TokenRoot, "state") => T::TokenState,
        (T::TokenRoot, "transactions") => T::Transaction,
        (T::TokenRoot, "nametags") => T::TokenRoot,
        (T::Genesis, "data") => T::GenesisData,
        (T::Genesis, "inclusionProof") => T::InclusionProof,
        (T::Genesis, "destinationState") => T::TokenState,
        (T::Transaction, "sourceState" | "destinationState") => T::TokenState,
        (T::Transaction, "data") => T::TransactionData,
        (T::Transaction, "inclusionProof") => T::InclusionProof,
        (T::InclusionProof, "authenticator") => T::Authenticator,
        (T::InclusionProof, "merkleTreePath") => T::SmtPath,
        (T::InclusionProof, "unicityCertificate") => T::UnicityCertificate,
        _ => return None,
    })
}

fn head_len(n: usize) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn text_len(n: usize) -> usize {
    head_len(n).saturating_add(n)
}

/// dag-cbor size of `{content, children}` in the reference's in-memory form (byte
/// fields as hex text, children as 64-char hex text).
fn memory_form_size(el: &Element) -> usize {
    fn value(v: &Value, hex: bool) -> usize {
        match v {
            Value::Bytes(b) if hex => text_len(b.len().saturating_mul(2)),
            Value::Bytes(b) => text_len(b.len()),
            Value::Text(s) => text_len(s.len()),
            Value::Array(a) => a
                .iter()
                .map(|x| value(x, hex))
                .fold(head_len(a.len()), usize::saturating_add),
            Value::Map(m) => m
                .iter()
                .map(|(k, x)| text_len(k.len()).saturating_add(value(x, false)))
                .fold(head_len(m.len()), usize::saturating_add),
            Value::UInt(n) | Value::NegInt(n) => {
                head_len(usize::try_from(*n).unwrap_or(usize::MAX))
            }
            Value::Float(_) => 9,
            Value::Null | Value::Bool(_) => 1,
        }
    }
    let content = el
        .content
        .iter()
        .map(|(k, v)| text_len(k.len()).saturating_add(value(v, k != "reason")))
        .fold(head_len(el.content.len()), usize::saturating_add);
    let children = el
        .children
        .iter()
        .map(|(k, c)| {
            text_len(k.len()).saturating_add(match c {
                Child::Null => 1,
                Child::Link(_) => text_len(64),
                Child::Links(v) => {
                    head_len(v.len()).saturating_add(v.len().saturating_mul(text_len(64)))
                }
            })
        })
        .fold(head_len(el.children.len()), usize::saturating_add);
    1usize
        .saturating_add(text_len(7))
        .saturating_add(content)
        .saturating_add(text_len(8))
        .saturating_add(children)
}

impl UxfPackage {
    /// Checks the package (spec §10.7): every hash, every manifest root and the DAG
    /// below it, every instance chain; counts orphans. Signatures and proofs are not
    /// checked (as in the reference).
    pub fn verify(&self) -> VerifyReport {
        let mut r = VerifyReport::default();
        if self.pool.len() > VERIFY_MAX_POOL_SIZE {
            r.errors.push(issue(
                ErrorCode::InvalidPackage,
                format!(
                    "pool of {} elements exceeds {VERIFY_MAX_POOL_SIZE}",
                    self.pool.len()
                ),
            ));
            return r;
        }
        let mut buf = Vec::with_capacity(1024);
        for (h, el) in &self.pool {
            r.stats.elements_checked = r.stats.elements_checked.saturating_add(1);
            if memory_form_size(el) > VERIFY_MAX_ELEMENT_BYTES {
                r.errors.push(issue(
                    ErrorCode::InvalidPackage,
                    format!("element {h} exceeds {VERIFY_MAX_ELEMENT_BYTES} bytes"),
                ));
                continue;
            }
            buf.clear();
            match el.write_canonical(&mut buf) {
                Ok(()) if ContentHash::digest(&buf) == *h => {}
                _ => r.errors.push(issue(
                    ErrorCode::VerificationFailed,
                    format!("element {h} does not match its hash"),
                )),
            }
        }

        let mut reachable: HashSet =
            HashSet::with_capacity_and_hasher(self.pool.len(), Default::default());
        let mut expanded = vec![false; self.chains.len()];
        for (id, root) in &self.manifest {
            r.stats.tokens_checked = r.stats.tokens_checked.saturating_add(1);
            let Some(el) = self.pool.get(root) else {
                r.errors.push(issue(
                    ErrorCode::MissingElement,
                    format!("manifest root {root} of {id} not in pool"),
                ));
                continue;
            };
            if el.ty != ElementType::TokenRoot {
                r.errors.push(Issue {
                    code: "MANIFEST_TYPE_MISMATCH",
                    message: format!("manifest root {root} of {id} is {}", el.ty.name()),
                });
            } else if el
                .get("tokenId")
                .and_then(Value::hex_str)
                .is_none_or(|t| t.to_ascii_lowercase() != *id)
            {
                r.errors.push(Issue {
                    code: "MANIFEST_TOKENID_MISMATCH",
                    message: format!("manifest root {root} does not carry token id {id}"),
                });
            }
            self.walk(*root, &mut reachable, &mut expanded, &mut r.errors);
        }

        for c in self.chains.entries() {
            r.stats.instance_chains_checked = r.stats.instance_chains_checked.saturating_add(1);
            self.check_chain(c, &mut r.errors);
        }
        // divergent chains sharing a tail
        let mut tails: HashMap<usize> = HashMap::default();
        for c in self.chains.entries() {
            if let Some((t, _)) = c.chain.last() {
                *tails.entry(*t).or_default() =
                    tails.get(t).copied().unwrap_or(0).saturating_add(1);
            }
        }
        for (t, n) in tails {
            if n > 1 {
                r.warnings.push(issue(
                    ErrorCode::InvalidInstanceChain,
                    format!("Divergent instance chain at tail {t}"),
                ));
            }
        }
        let orphans = self.pool.keys().filter(|h| !reachable.contains(h)).count();
        r.stats.orphaned_elements = orphans;
        if orphans > 0 {
            r.warnings.push(issue(
                ErrorCode::VerificationFailed,
                format!("{orphans} orphaned element(s) found in pool (not reachable from any manifest root)"),
            ));
        }
        r.valid = r.errors.is_empty();
        r
    }

    /// DFS from `root` over children and chain members with a path stack. Each chain's
    /// members are queued once (`expanded`, by chain position), not once per member
    /// entered, which would be quadratic in the chain's length.
    fn walk(
        &self,
        root: ContentHash,
        done: &mut HashSet,
        expanded: &mut [bool],
        errors: &mut Vec<Issue>,
    ) {
        // frame: node, its child edges, next edge index
        struct Frame {
            hash: ContentHash,
            edges: Vec<(ContentHash, Option<ElementType>)>,
            next: usize,
        }
        let mut on_path: HashSet = HashSet::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut pending: Vec<ContentHash> = vec![root];
        let enter = |h: ContentHash,
                     pending: &mut Vec<ContentHash>,
                     stack: &mut Vec<Frame>,
                     on_path: &mut HashSet,
                     done: &mut HashSet,
                     expanded: &mut [bool],
                     errors: &mut Vec<Issue>| {
            let Some(el) = self.pool.get(&h) else {
                errors.push(issue(
                    ErrorCode::MissingElement,
                    format!("Element {h} not in pool"),
                ));
                return;
            };
            let mut edges: Vec<(ContentHash, Option<ElementType>)> = Vec::new();
            for (role, c) in &el.children {
                let want = expected(el.ty, role);
                for ch in c.hashes() {
                    edges.push((*ch, want));
                }
            }
            if let Some(i) = self.chains.position(&h)
                && let Some(first) = expanded.get_mut(i).filter(|x| !**x)
                && let Some(e) = self.chains.entries().get(i)
            {
                // other instances are walked as roots of their own (a chain is not a
                // path edge, so old → new → old is not a cycle)
                *first = true;
                count_chain_pushes(e.chain.len());
                pending.extend(e.chain.iter().map(|(m, _)| *m).filter(|m| *m != h));
            }
            done.insert(h);
            on_path.insert(h);
            stack.push(Frame {
                hash: h,
                edges,
                next: 0,
            });
        };
        while let Some(root) = pending.pop() {
            if done.contains(&root) {
                continue;
            }
            on_path.clear();
            enter(
                root,
                &mut pending,
                &mut stack,
                &mut on_path,
                done,
                expanded,
                errors,
            );
            while let Some(top) = stack.last_mut() {
                let Some((child, want)) = top.edges.get(top.next).copied() else {
                    on_path.remove(&top.hash);
                    stack.pop();
                    continue;
                };
                top.next = top.next.saturating_add(1);
                let parent = top.hash;
                if on_path.contains(&child) {
                    errors.push(issue(
                        ErrorCode::CycleDetected,
                        format!("cycle at {child} (from {parent})"),
                    ));
                    continue;
                }
                if let (Some(w), Some(el)) = (want, self.pool.get(&child))
                    && el.ty != w
                {
                    errors.push(issue(
                        ErrorCode::TypeMismatch,
                        format!(
                            "child {child} of {parent} is {}, expected {}",
                            el.ty.name(),
                            w.name()
                        ),
                    ));
                }
                if done.contains(&child) {
                    continue;
                }
                if stack.len() >= VERIFY_MAX_DEPTH {
                    errors.push(issue(
                        ErrorCode::CycleDetected,
                        format!("depth exceeds {VERIFY_MAX_DEPTH} at {child}"),
                    ));
                    continue;
                }
                enter(
                    child,
                    &mut pending,
                    &mut stack,
                    &mut on_path,
                    done,
                    expanded,
                    errors,
                );
            }
        }
    }

    fn check_chain(&self, c: &super::chain::ChainEntry, errors: &mut Vec<Issue>) {
        let bad = |m: String| issue(ErrorCode::InvalidInstanceChain, m);
        if c.chain.is_empty() {
            errors.push(bad(format!("empty instance chain {}", c.head)));
            return;
        }
        let mut seen = HashSet::default();
        let mut ty = None;
        for (i, (h, _)) in c.chain.iter().enumerate() {
            if !seen.insert(*h) {
                errors.push(bad(format!("instance chain {} repeats {h}", c.head)));
                return;
            }
            let Some(el) = self.pool.get(h) else {
                errors.push(issue(
                    ErrorCode::MissingElement,
                    format!("chain member {h} not in pool"),
                ));
                return;
            };
            if *ty.get_or_insert(el.ty) != el.ty {
                errors.push(bad(format!("instance chain {} mixes types", c.head)));
            }
            let next = c.chain.get(i.saturating_add(1)).map(|(n, _)| *n);
            if el.header.predecessor != next {
                errors.push(bad(format!(
                    "chain member {h} does not link to the next member"
                )));
            }
        }
        if c.chain.first().map(|(h, _)| *h) != Some(c.head) {
            errors.push(bad(format!(
                "instance chain head {} is not its first member",
                c.head
            )));
        }
    }

    /// The elements reachable from the manifest over children and chain members.
    pub(crate) fn reachable(&self) -> HashSet {
        let mut marked: HashSet =
            HashSet::with_capacity_and_hasher(self.pool.len(), Default::default());
        let mut stack: Vec<ContentHash> = self.manifest.values().copied().collect();
        let mut expanded = vec![false; self.chains.len()];
        while let Some(h) = stack.pop() {
            if !marked.insert(h) {
                continue;
            }
            // each chain's members are queued once, not once per member marked
            if let Some(i) = self.chains.position(&h)
                && let Some(first) = expanded.get_mut(i).filter(|x| !**x)
                && let Some(e) = self.chains.entries().get(i)
            {
                *first = true;
                count_chain_pushes(e.chain.len());
                stack.extend(e.chain.iter().map(|(m, _)| *m));
            }
            if let Some(el) = self.pool.get(&h) {
                stack.extend(el.child_hashes());
            }
        }
        marked
    }

    /// Deletes every element not reachable from the manifest (spec §10.8) and returns
    /// how many were removed. Like the reference, nametags referenced only from
    /// `nametagRefs` are not reachable and are deleted.
    pub fn gc(&mut self) -> usize {
        let marked = self.reachable();
        let removed: HashSet = self
            .pool
            .keys()
            .filter(|h| !marked.contains(h))
            .copied()
            .collect();
        self.pool.retain(|h, _| marked.contains(h));
        self.chains.prune(&removed, false);
        removed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uxf::element::{Child, Element};

    fn state(p: &str) -> Element {
        Element::new(
            ElementType::TokenState,
            vec![
                ("predicate".into(), Value::Text(p.into())),
                ("data".into(), Value::Null),
            ],
            vec![],
        )
    }

    /// A token-root whose genesis slot points at `g`; the pool is keyed by hand.
    fn root(id: &str, g: ContentHash, s: ContentHash) -> Element {
        Element::new(
            ElementType::TokenRoot,
            vec![
                ("tokenId".into(), Value::Text(id.into())),
                ("version".into(), Value::Text("2.0".into())),
            ],
            vec![
                ("genesis".into(), Child::Link(g)),
                ("transactions".into(), Child::Links(vec![])),
                ("state".into(), Child::Link(s)),
                ("nametags".into(), Child::Links(vec![])),
            ],
        )
    }

    /// A token whose state is the tail of an instance chain of `len` token-states.
    fn package_with_reachable_chain(len: usize) -> UxfPackage {
        let id = "aa".repeat(32);
        let mut pkg = UxfPackage::new(1);
        let mut prev = None;
        let mut tail = None;
        for i in 0..len {
            let mut st = state(&format!("{i:064x}"));
            st.header.predecessor = prev;
            let h = st.hash().unwrap();
            pkg.pool.insert(h, st);
            tail.get_or_insert(h);
            prev = Some(h);
        }
        let tail = tail.unwrap();
        let r = root(&id, tail, tail);
        let rh = r.hash().unwrap();
        pkg.pool.insert(rh, r);
        pkg.manifest.insert(id, rh);
        pkg.chains =
            super::super::chain::InstanceChains::rebuild_from_predecessors(&pkg.pool).unwrap();
        pkg
    }

    #[test]
    fn walks_queue_each_chain_once() {
        let len = 2_000;
        let pkg = package_with_reachable_chain(len);
        assert_eq!(pkg.chains.len(), 1);
        CHAIN_PUSHES.with(|c| c.set(0));
        let v = pkg.verify();
        let pushes = CHAIN_PUSHES.with(std::cell::Cell::get);
        // every member is reached (no orphans), and queued once, not once per member
        assert_eq!(v.stats.orphaned_elements, 0, "{:?}", v.warnings);
        assert!(
            pushes <= len,
            "verify queued {pushes} chain members for {len}"
        );
        CHAIN_PUSHES.with(|c| c.set(0));
        assert_eq!(pkg.reachable().len(), len + 1);
        let pushes = CHAIN_PUSHES.with(std::cell::Cell::get);
        assert!(pushes <= len, "gc queued {pushes} chain members for {len}");
        let mut g = pkg.clone();
        assert_eq!(g.gc(), 0);
    }

    #[test]
    fn shared_sub_dags_are_not_cycles_but_back_edges_are() {
        let id = "aa".repeat(32);
        let st = state("ab");
        let sh = st.hash().unwrap();
        // diamond: genesis slot and state slot both point at the same state
        let r = root(&id, sh, sh);
        let rh = r.hash().unwrap();
        let mut pkg = UxfPackage::new(1);
        pkg.pool.insert(sh, st);
        pkg.pool.insert(rh, r);
        pkg.manifest.insert(id.clone(), rh);
        let v = pkg.verify();
        assert!(
            v.errors.iter().all(|e| e.code != "CYCLE_DETECTED"),
            "{:?}",
            v.errors
        );
        // a type mismatch is reported for the genesis slot, not a cycle
        assert!(v.errors.iter().any(|e| e.code == "TYPE_MISMATCH"));

        // a tampered pool: an element stored under a key its child points back to
        let fake = ContentHash::from_bytes([7; 32]);
        let r2 = root(&id, fake, sh);
        let r2h = r2.hash().unwrap();
        let cyc = root(&id, r2h, sh);
        let mut pkg = UxfPackage::new(1);
        pkg.pool.insert(sh, state("ab"));
        pkg.pool.insert(r2h, r2);
        pkg.pool.insert(fake, cyc);
        pkg.manifest.insert(id, r2h);
        let v = pkg.verify();
        assert!(!v.valid);
        assert!(
            v.errors.iter().any(|e| e.code == "CYCLE_DETECTED"),
            "{:?}",
            v.errors
        );
        assert!(v.errors.iter().any(|e| e.code == "VERIFICATION_FAILED"));
    }

    #[test]
    fn oversized_element_and_manifest_mismatches_are_reported() {
        let big = Element::new(
            ElementType::UnicityCertificate,
            vec![(
                "raw".into(),
                Value::Bytes(vec![0xe5; VERIFY_MAX_ELEMENT_BYTES / 2 + 1]),
            )],
            vec![],
        );
        let bh = big.hash().unwrap();
        let mut pkg = UxfPackage::new(1);
        pkg.pool.insert(bh, big);
        pkg.manifest.insert("bb".repeat(32), bh);
        let v = pkg.verify();
        let codes: Vec<&str> = v.errors.iter().map(|e| e.code).collect();
        assert!(codes.contains(&"INVALID_PACKAGE"), "{codes:?}");
        assert!(codes.contains(&"MANIFEST_TYPE_MISMATCH"), "{codes:?}");
        let st = state("ab");
        let sh = st.hash().unwrap();
        let r = root(&"cc".repeat(32), sh, sh);
        let rh = r.hash().unwrap();
        let mut pkg = UxfPackage::new(1);
        pkg.pool.insert(sh, st);
        pkg.pool.insert(rh, r);
        pkg.manifest.insert("dd".repeat(32), rh);
        pkg.manifest
            .insert("ee".repeat(32), ContentHash::from_bytes([1; 32]));
        let codes: Vec<&str> = pkg.verify().errors.iter().map(|e| e.code).collect();
        assert!(codes.contains(&"MANIFEST_TOKENID_MISMATCH"), "{codes:?}");
        assert!(codes.contains(&"MISSING_ELEMENT"), "{codes:?}");
    }
}
