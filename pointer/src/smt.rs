//! The v2 radix sparse Merkle tree (state-transition SDK ≥ 2.0 / 3.0.1 rules):
//! build it, take its root, cut inclusion certificates, and verify them.
//!
//! Keys are 32-byte StateIds read **MSB-first** (bit d = `key[d/8] >> (7 − d%8)`,
//! 1 = right). The tree is a compressed binary (Patricia) tree: an inner node exists
//! only where two keys first differ, at that depth.
//!
//! ```text
//! leaf  = SHA-256(0x00 ‖ key[32] ‖ value[32])
//! inner = SHA-256(0x01 ‖ depth[1] ‖ region(key, depth)[32] ‖ left[32] ‖ right[32])
//! root  = 32 zero bytes (empty) | hash of the topmost node
//! cert  = bitmap[32] ‖ sibling[32]… (root → leaf; bitmap bit d set for every
//!         inner node on the path, MSB-first within a byte)
//! ```
//!
//! The tree lives in an arena (`Vec` of nodes, indices for children) and every walk
//! is a loop: nothing here recurses. Hashes are cached and recomputed lazily for the
//! nodes an insert touched. The verifier side ([`InclusionCertificate`]) decodes
//! untrusted bytes and opens with the decoder lints.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sha2::{Digest, Sha256};

/// Bytes in the certificate bitmap.
pub const BITMAP_LEN: usize = 32;
/// Largest certificate: a bitmap and one sibling per possible depth.
pub const MAX_CERTIFICATE_LEN: usize = BITMAP_LEN + 256 * 32;

/// Why a certificate does not reach a root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Shorter than the bitmap, or longer than [`MAX_CERTIFICATE_LEN`].
    #[error("inclusion certificate of {0} bytes has an impossible length")]
    Length(usize),
    /// The sibling bytes are not a whole number of hashes.
    #[error("inclusion certificate siblings are misaligned")]
    Misaligned,
    /// Sibling count and bitmap population differ.
    #[error("inclusion certificate has {siblings} siblings but its bitmap asks for {bits}")]
    Count {
        /// Siblings present.
        siblings: usize,
        /// Bits set in the bitmap.
        bits: usize,
    },
}

/// Why a key could not be inserted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The key is already in the tree with this value.
    #[error("leaf already present")]
    Duplicate,
    /// The key is already in the tree with another value.
    #[error("leaf modification refused")]
    Modification,
}

/// Bit `depth` of `key`, MSB-first.
pub fn bit(key: &[u8; 32], depth: u8) -> bool {
    let byte = key.get(usize::from(depth >> 3)).copied().unwrap_or(0);
    (byte >> (7u8.wrapping_sub(depth & 7))) & 1 == 1
}

/// The first `depth` bits of `key`, the rest zeroed.
pub fn region(key: &[u8; 32], depth: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    let full = usize::from(depth >> 3);
    let rem = depth & 7;
    for (o, k) in out.iter_mut().zip(key.iter()).take(full) {
        *o = *k;
    }
    if let (true, Some(o), Some(k)) = (rem > 0, out.get_mut(full), key.get(full)) {
        *o = *k & (0xffu8 << 8u8.wrapping_sub(rem));
    }
    out
}

/// Leaf hash.
pub fn leaf_hash(key: &[u8; 32], value: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(key);
    h.update(value);
    h.finalize().into()
}

/// Inner-node hash.
pub fn node_hash(depth: u8, region: &[u8; 32], left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x01, depth]);
    h.update(region);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// An inclusion certificate: which depths have an inner node on the path, and the
/// sibling hash at each, root first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionCertificate {
    /// Bit d set ⇔ an inner node at depth d lies on the path.
    pub bitmap: [u8; 32],
    /// Sibling hashes, root → leaf.
    pub siblings: Vec<[u8; 32]>,
}

impl InclusionCertificate {
    /// `bitmap ‖ siblings`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(BITMAP_LEN.saturating_add(self.siblings.len().saturating_mul(32)));
        out.extend_from_slice(&self.bitmap);
        for s in &self.siblings {
            out.extend_from_slice(s);
        }
        out
    }

    /// Decodes and checks the sibling count against the bitmap.
    pub fn decode(bytes: &[u8]) -> Result<Self, PathError> {
        if bytes.len() < BITMAP_LEN || bytes.len() > MAX_CERTIFICATE_LEN {
            return Err(PathError::Length(bytes.len()));
        }
        let (bm, rest) = bytes.split_at(BITMAP_LEN);
        if rest.len() % 32 != 0 {
            return Err(PathError::Misaligned);
        }
        let mut bitmap = [0u8; 32];
        bitmap.copy_from_slice(bm);
        let bits: usize = bitmap.iter().map(|b| b.count_ones() as usize).sum();
        let siblings: Vec<[u8; 32]> = rest
            .chunks_exact(32)
            .map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                a
            })
            .collect();
        if siblings.len() != bits {
            return Err(PathError::Count {
                siblings: siblings.len(),
                bits,
            });
        }
        Ok(Self { bitmap, siblings })
    }

    /// The root this certificate proves for (`key`, `value`). Consumes every sibling.
    pub fn root(&self, key: &[u8; 32], value: &[u8; 32]) -> Result<[u8; 32], PathError> {
        let mut h = leaf_hash(key, value);
        let mut remaining = self.siblings.iter().rev();
        let mut used = 0usize;
        for depth in (0..=255u8).rev() {
            if !bit(&self.bitmap, depth) {
                continue;
            }
            let sibling = remaining.next().ok_or(PathError::Count {
                siblings: self.siblings.len(),
                bits: used.saturating_add(1),
            })?;
            used = used.saturating_add(1);
            let r = region(key, depth);
            h = if bit(key, depth) {
                node_hash(depth, &r, sibling, &h)
            } else {
                node_hash(depth, &r, &h, sibling)
            };
        }
        if remaining.next().is_some() {
            return Err(PathError::Count {
                siblings: self.siblings.len(),
                bits: used,
            });
        }
        Ok(h)
    }
}

#[derive(Debug, Clone)]
enum Node {
    Leaf {
        key: [u8; 32],
        value: [u8; 32],
    },
    Inner {
        depth: u8,
        /// Any key below this node (its first `depth` bits are the node's region).
        key: [u8; 32],
        left: u32,
        right: u32,
    },
}

/// An in-memory radix SMT. Cheap to rebuild from its leaves.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: Vec<Node>,
    hashes: Vec<Option<[u8; 32]>>,
    root: Option<u32>,
    leaves: usize,
}

#[expect(
    clippy::arithmetic_side_effects,
    reason = "i < 32 and leading_zeros < 8"
)]
fn common_prefix(a: &[u8; 32], b: &[u8; 32]) -> Option<u8> {
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let d = x ^ y;
        if d != 0 {
            // i < 32 and leading_zeros < 8, so this fits a u8.
            return u8::try_from(i * 8 + d.leading_zeros() as usize).ok();
        }
    }
    None
}

#[expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "arena indices are only ever created by this type, so they are in bounds; counts are bounded by memory"
)]
impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.leaves
    }

    /// True when the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    fn push(&mut self, n: Node) -> u32 {
        self.nodes.push(n);
        self.hashes.push(None);
        u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
    }

    fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8; 32]) -> Option<[u8; 32]> {
        let mut cur = self.root?;
        loop {
            match self.node(cur) {
                Node::Leaf { key: k, value } => return (k == key).then_some(*value),
                Node::Inner {
                    depth, left, right, ..
                } => cur = if bit(key, *depth) { *right } else { *left },
            }
        }
    }

    /// Inserts a leaf. Keys are immutable once inserted.
    pub fn insert(&mut self, key: [u8; 32], value: [u8; 32]) -> Result<(), InsertError> {
        let Some(root) = self.root else {
            let leaf = self.push(Node::Leaf { key, value });
            self.root = Some(leaf);
            self.leaves = 1;
            return Ok(());
        };
        // Walk down; remember the path to invalidate cached hashes.
        let mut path: Vec<u32> = Vec::new();
        let mut cur = root;
        let mut parent_slot: Option<(u32, bool)> = None;
        loop {
            let (split_at, existing_key) = match self.node(cur).clone() {
                Node::Leaf { key: k, value: v } => {
                    if k == key {
                        return Err(if v == value {
                            InsertError::Duplicate
                        } else {
                            InsertError::Modification
                        });
                    }
                    (common_prefix(&k, &key).expect("keys differ"), k)
                }
                Node::Inner {
                    depth,
                    key: k,
                    left,
                    right,
                } => match common_prefix(&k, &key) {
                    Some(cp) if cp < depth => (cp, k),
                    _ => {
                        path.push(cur);
                        parent_slot = Some((cur, bit(&key, depth)));
                        cur = if bit(&key, depth) { right } else { left };
                        continue;
                    }
                },
            };
            let leaf = self.push(Node::Leaf { key, value });
            let (l, r) = if bit(&key, split_at) {
                (cur, leaf)
            } else {
                (leaf, cur)
            };
            let inner = self.push(Node::Inner {
                depth: split_at,
                key: existing_key,
                left: l,
                right: r,
            });
            match parent_slot {
                None => self.root = Some(inner),
                Some((p, go_right)) => {
                    if let Node::Inner { left, right, .. } = &mut self.nodes[p as usize] {
                        if go_right {
                            *right = inner;
                        } else {
                            *left = inner;
                        }
                    }
                }
            }
            for p in path {
                self.hashes[p as usize] = None;
            }
            self.leaves += 1;
            return Ok(());
        }
    }

    /// Fills every missing cached hash (post-order, explicit stack).
    fn rehash(&mut self) {
        let Some(root) = self.root else { return };
        let mut stack: Vec<(u32, bool)> = vec![(root, false)];
        while let Some((i, children_done)) = stack.pop() {
            if self.hashes[i as usize].is_some() {
                continue;
            }
            match self.node(i).clone() {
                Node::Leaf { key, value } => {
                    self.hashes[i as usize] = Some(leaf_hash(&key, &value));
                }
                Node::Inner {
                    depth,
                    key,
                    left,
                    right,
                } => {
                    if children_done {
                        let l = self.hashes[left as usize].expect("left hashed first");
                        let r = self.hashes[right as usize].expect("right hashed first");
                        self.hashes[i as usize] =
                            Some(node_hash(depth, &region(&key, depth), &l, &r));
                    } else {
                        stack.push((i, true));
                        stack.push((left, false));
                        stack.push((right, false));
                    }
                }
            }
        }
    }

    /// The root hash (32 zero bytes for an empty tree).
    pub fn root(&mut self) -> [u8; 32] {
        self.rehash();
        match self.root {
            None => [0u8; 32],
            Some(r) => self.hashes[r as usize].expect("rehashed"),
        }
    }

    /// The inclusion certificate of `key`, or `None` if it is not a leaf.
    pub fn certificate(&mut self, key: &[u8; 32]) -> Option<InclusionCertificate> {
        self.rehash();
        let mut cur = self.root?;
        let mut bitmap = [0u8; 32];
        let mut siblings = Vec::new();
        loop {
            match self.node(cur).clone() {
                Node::Leaf { key: k, .. } => {
                    return (k == *key).then_some(InclusionCertificate { bitmap, siblings });
                }
                Node::Inner {
                    depth, left, right, ..
                } => {
                    let go_right = bit(key, depth);
                    let sibling = if go_right { left } else { right };
                    bitmap[usize::from(depth >> 3)] |= 0x80 >> (depth & 7);
                    siblings.push(self.hashes[sibling as usize].expect("rehashed"));
                    cur = if go_right { right } else { left };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> [u8; 32] {
        Sha256::digest([seed]).into()
    }

    #[test]
    fn every_leaf_certificate_reaches_the_root() {
        let mut t = Tree::new();
        assert_eq!(t.root(), [0u8; 32]);
        for i in 0..200u8 {
            t.insert(key(i), key(i.wrapping_add(100))).unwrap();
        }
        let root = t.root();
        for i in 0..200u8 {
            let c = t.certificate(&key(i)).unwrap();
            let c2 = InclusionCertificate::decode(&c.encode()).unwrap();
            assert_eq!(c2.root(&key(i), &key(i.wrapping_add(100))).unwrap(), root);
            assert_ne!(c2.root(&key(i), &[0xaa; 32]).unwrap(), root);
        }
        assert!(t.certificate(&key(201)).is_none());
    }

    #[test]
    fn insertion_order_does_not_matter_and_keys_are_immutable() {
        let mut a = Tree::new();
        let mut b = Tree::new();
        for i in 0..50u8 {
            a.insert(key(i), [i; 32]).unwrap();
            b.insert(key(49 - i), [49 - i; 32]).unwrap();
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.insert(key(3), [3; 32]), Err(InsertError::Duplicate));
        assert_eq!(a.insert(key(3), [4; 32]), Err(InsertError::Modification));
        assert_eq!(a.get(&key(3)), Some([3; 32]));
    }

    #[test]
    fn single_leaf_root_is_the_leaf_hash() {
        let mut t = Tree::new();
        t.insert(key(1), key(2)).unwrap();
        assert_eq!(t.root(), leaf_hash(&key(1), &key(2)));
        assert_eq!(t.certificate(&key(1)).unwrap().siblings.len(), 0);
    }

    proptest! {
        #[test]
        fn decode_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(c) = InclusionCertificate::decode(&bytes) {
                prop_assert_eq!(c.encode(), bytes.clone());
                let _ = c.root(&[0u8; 32], &[0u8; 32]);
            }
        }
    }
}
