//! Elements → token JSON (spec §7), at the current or a historical state.
//!
//! Every element fetched is re-hashed against the hash it was fetched by (after the
//! instance-chain strategy picked it), its type is checked against its role, and a
//! verified hash may be revisited (DAG diamonds). Nametag recursion shares the
//! deconstruct budget ([`MAX_NAMETAG_DEPTH`]), which bounds its depth. The output is a
//! [`Value::Map`] tree in the reference's key order.
//!
//! Nametags are inlined whole wherever they are linked, so a small DAG can stand for
//! an exponentially large token (a chain of roots each listing the root below twice).
//! Each assembly therefore has an output budget: every element emitted counts, as one
//! element and as its canonical size, and past [`MAX_ASSEMBLE_ELEMENTS`] or
//! [`MAX_ASSEMBLE_BYTES`] the assembly stops with `LIMIT_EXCEEDED`. Within the budget,
//! what is costly to redo is done once: an element is re-hashed once, a chain's
//! selected instance looked up once, an SMT path blob converted to JSON once.

use super::hash::HashMap;

use super::chain::{InstanceChains, Strategy};
use super::element::Pool;
use super::element::{Child, Element, ElementType};
use super::error::{Result, err};
use super::hash::ContentHash;
use super::limits::{MAX_ASSEMBLE_BYTES, MAX_ASSEMBLE_ELEMENTS, MAX_NAMETAG_DEPTH};
use super::reason;
use super::smt;
use super::value::Value;

pub(crate) struct Assembler<'a> {
    pub(crate) pool: &'a Pool,
    pub(crate) chains: &'a InstanceChains,
    pub(crate) strategy: &'a Strategy,
    /// Canonical size of each element verified so far (each is re-hashed once).
    verified: HashMap<usize>,
    buf: Vec<u8>,
    /// Elements emitted so far, and their canonical bytes.
    emitted: usize,
    emitted_bytes: usize,
    /// The instance each chain (by position) resolves to under the strategy.
    selected: std::collections::HashMap<usize, ContentHash>,
    /// SMT path JSON by smt-path element (the decimal conversion is the costly part).
    paths: HashMap<Value>,
}

fn entry(k: &str, v: Value) -> (String, Value) {
    (k.to_owned(), v)
}

/// A content value as JSON output: bytes as hex text, missing as absent.
fn out(el: &Element, key: &str) -> Option<Value> {
    el.get(key).map(|v| match v {
        Value::Bytes(b) => Value::Text(super::element::to_hex(b)),
        other => other.clone(),
    })
}

fn push(m: &mut Vec<(String, Value)>, el: &Element, key: &str) {
    if let Some(v) = out(el, key) {
        m.push(entry(key, v));
    }
}

impl<'a> Assembler<'a> {
    pub(crate) fn new(pool: &'a Pool, chains: &'a InstanceChains, strategy: &'a Strategy) -> Self {
        Self {
            pool,
            chains,
            strategy,
            verified: HashMap::default(),
            buf: Vec::with_capacity(512),
            emitted: 0,
            emitted_bytes: 0,
            selected: std::collections::HashMap::new(),
            paths: HashMap::default(),
        }
    }

    /// Counts one more element of `size` canonical bytes against the output budget.
    fn charge(&mut self, size: usize) -> Result<()> {
        self.emitted = self.emitted.saturating_add(1);
        self.emitted_bytes = self.emitted_bytes.saturating_add(size);
        if self.emitted > MAX_ASSEMBLE_ELEMENTS || self.emitted_bytes > MAX_ASSEMBLE_BYTES {
            return Err(err!(
                LimitExceeded,
                "assembled token would hold more than {MAX_ASSEMBLE_ELEMENTS} elements or \
                 {MAX_ASSEMBLE_BYTES} element bytes (nametags are inlined wherever they \
                 are linked)"
            ));
        }
        Ok(())
    }

    /// The instance the strategy picks for `h`, computed once per chain.
    fn resolve(&mut self, h: ContentHash) -> ContentHash {
        let Some(i) = self.chains.position(&h) else {
            return h;
        };
        if let Some(sel) = self.selected.get(&i) {
            return *sel;
        }
        let sel = self.chains.resolve(&h, self.strategy, self.pool);
        self.selected.insert(i, sel);
        sel
    }

    fn fetch(&mut self, h: ContentHash, ty: ElementType) -> Result<&'a Element> {
        let sel = self.resolve(h);
        let el = self
            .pool
            .get(&sel)
            .ok_or_else(|| err!(MissingElement, "Element {sel} not in pool"))?;
        let size = match self.verified.get(&sel) {
            Some(n) => *n,
            None => {
                self.buf.clear();
                el.write_canonical(&mut self.buf)?;
                if ContentHash::digest(&self.buf) != sel {
                    return Err(err!(
                        VerificationFailed,
                        "Element {sel} does not match its hash"
                    ));
                }
                self.verified.insert(sel, self.buf.len());
                self.buf.len()
            }
        };
        self.charge(size)?;
        if el.ty != ty {
            return Err(err!(
                TypeMismatch,
                "Element {sel} is {}, expected {}",
                el.ty.name(),
                ty.name()
            ));
        }
        Ok(el)
    }

    fn link(el: &Element, role: &str) -> Result<ContentHash> {
        el.child_link(role)
            .ok_or_else(|| err!(MissingElement, "{} has no {role} child", el.ty.name()))
    }

    fn opt_link(el: &Element, role: &str) -> Result<Option<ContentHash>> {
        match el.child(role) {
            None | Some(Child::Null) => Ok(None),
            Some(Child::Link(h)) => Ok(Some(*h)),
            Some(Child::Links(_)) => Err(err!(
                TypeMismatch,
                "{} child {role} is an array",
                el.ty.name()
            )),
        }
    }

    fn links(el: &Element, role: &str) -> Vec<ContentHash> {
        el.child(role)
            .map(|c| c.hashes().to_vec())
            .unwrap_or_default()
    }

    fn state(&mut self, h: ContentHash) -> Result<Value> {
        let el = self.fetch(h, ElementType::TokenState)?;
        let mut m = Vec::with_capacity(2);
        push(&mut m, el, "predicate");
        push(&mut m, el, "data");
        Ok(Value::Map(m))
    }

    fn auth(&mut self, h: ContentHash, ty: ElementType) -> Result<Value> {
        let el = self.fetch(h, ty)?;
        let mut m = Vec::with_capacity(4);
        for k in ["algorithm", "publicKey", "signature", "stateHash"] {
            push(&mut m, el, k);
        }
        Ok(Value::Map(m))
    }

    fn proof(&mut self, h: Option<ContentHash>) -> Result<Value> {
        let Some(h) = h else { return Ok(Value::Null) };
        let el = self.fetch(h, ElementType::InclusionProof)?;
        let auth = match Self::opt_link(el, "authenticator")? {
            Some(a) => self.auth(a, ElementType::Authenticator)?,
            None => Value::Null,
        };
        let path_h = Self::link(el, "merkleTreePath")?;
        let path_el = self.fetch(path_h, ElementType::SmtPath)?;
        let path = match self.paths.get(&path_h) {
            Some(p) => p.clone(),
            None => {
                let p = match path_el.get("cbor") {
                    Some(Value::Bytes(b)) => smt::blob_to_json(b)?,
                    Some(Value::Text(s)) => smt::blob_to_json(&super::element::decode_hex(s)?)?,
                    _ => return Err(err!(SerializationError, "smt-path without cbor")),
                };
                self.paths.insert(path_h, p.clone());
                p
            }
        };
        let cert = self.fetch(
            Self::link(el, "unicityCertificate")?,
            ElementType::UnicityCertificate,
        )?;
        let mut m = vec![entry("authenticator", auth), entry("merkleTreePath", path)];
        push(&mut m, el, "transactionHash");
        if let Some(raw) = out(cert, "raw") {
            m.push(entry("unicityCertificate", raw));
        }
        Ok(Value::Map(m))
    }

    fn transaction(&mut self, h: ContentHash, budget: u32) -> Result<Value> {
        let tx = self.fetch(h, ElementType::Transaction)?;
        let source = self.state(Self::link(tx, "sourceState")?)?;
        let data = match Self::opt_link(tx, "data")? {
            None => Value::Map(vec![
                entry("sourceState", source),
                entry("recipient", Value::Text(String::new())),
                entry("salt", Value::Text(String::new())),
                entry("recipientDataHash", Value::Null),
                entry("message", Value::Null),
                entry("nametags", Value::Array(vec![])),
            ]),
            Some(dh) => {
                let d = self.fetch(dh, ElementType::TransactionData)?;
                let mut m = vec![entry("sourceState", source)];
                for k in ["recipient", "salt", "recipientDataHash", "message"] {
                    push(&mut m, d, k);
                }
                let mut nametags = Vec::new();
                if let Some(Value::Array(refs)) = d.get("nametagRefs") {
                    for r in refs {
                        let h = match r {
                            Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
                                .map(ContentHash::from_bytes)
                                .map_err(|_| err!(InvalidHash, "nametagRef is not 32 bytes"))?,
                            Value::Text(s) => ContentHash::from_hex(&s.to_ascii_lowercase())?,
                            _ => return Err(err!(InvalidHash, "invalid nametagRef")),
                        };
                        nametags.push(self.token_at(h, None, budget.saturating_sub(1))?);
                    }
                }
                m.push(entry("nametags", Value::Array(nametags)));
                Value::Map(m)
            }
        };
        let proof = self.proof(Self::opt_link(tx, "inclusionProof")?)?;
        let mut m = vec![entry("data", data), entry("inclusionProof", proof)];
        if let Some(p) = Self::opt_link(tx, "pendingAuthenticator")? {
            let a = self.auth(p, ElementType::PendingAuthenticator)?;
            m.push(entry(
                "_wallet",
                Value::Map(vec![entry("authenticator", a)]),
            ));
        }
        Ok(Value::Map(m))
    }

    /// Assembles the token rooted at `root`, with only the first `state` transactions
    /// when given.
    pub(crate) fn token_at(
        &mut self,
        root: ContentHash,
        state: Option<usize>,
        budget: u32,
    ) -> Result<Value> {
        if budget == 0 {
            return Err(err!(
                InvalidPackage,
                "Maximum nametag nesting depth exceeded"
            ));
        }
        let r = self.fetch(root, ElementType::TokenRoot)?;
        let g = self.fetch(Self::link(r, "genesis")?, ElementType::Genesis)?;
        let gd = self.fetch(Self::link(g, "data")?, ElementType::GenesisData)?;
        let mut data = Vec::with_capacity(8);
        for k in [
            "tokenId",
            "tokenType",
            "coinData",
            "tokenData",
            "salt",
            "recipient",
            "recipientDataHash",
        ] {
            push(&mut data, gd, k);
        }
        if let Some(v) = gd.get("reason") {
            data.push(entry("reason", reason::decode(v)?));
        }
        let gproof = self.proof(Self::opt_link(g, "inclusionProof")?)?;
        let genesis = Value::Map(vec![
            entry("data", Value::Map(data)),
            entry("inclusionProof", gproof),
        ]);

        let tx_hashes = Self::links(r, "transactions");
        let take = match state {
            Some(i) => i,
            None => tx_hashes.len(),
        };
        let mut txs = Vec::with_capacity(take);
        for h in tx_hashes.iter().take(take) {
            txs.push(self.transaction(*h, budget)?);
        }
        let state_hash = match state {
            None => Self::link(r, "state")?,
            Some(0) => Self::link(g, "destinationState")?,
            Some(i) => {
                let last = tx_hashes
                    .get(i.saturating_sub(1))
                    .ok_or_else(|| err!(StateIndexOutOfRange, "state index {i} out of range"))?;
                let tx = self.fetch(*last, ElementType::Transaction)?;
                Self::link(tx, "destinationState")?
            }
        };
        let state_v = self.state(state_hash)?;
        let mut nametags = Vec::new();
        for h in Self::links(r, "nametags") {
            nametags.push(self.token_at(h, None, budget.saturating_sub(1))?);
        }
        let version = match r.get("version") {
            Some(Value::Text(s)) if !s.is_empty() => Value::Text(s.clone()),
            Some(
                v @ (Value::UInt(1..)
                | Value::NegInt(_)
                | Value::Bool(true)
                | Value::Array(_)
                | Value::Map(_)),
            ) => v.clone(),
            Some(Value::Float(f)) if *f != 0.0 => Value::Float(*f),
            _ => Value::Text("2.0".to_owned()),
        };
        Ok(Value::Map(vec![
            entry("version", version),
            entry("genesis", genesis),
            entry("transactions", Value::Array(txs)),
            entry("state", state_v),
            entry("nametags", Value::Array(nametags)),
        ]))
    }
}

/// Assembles `root` at the current state (or `state` transactions).
pub(crate) fn assemble(
    pool: &Pool,
    chains: &InstanceChains,
    strategy: &Strategy,
    root: ContentHash,
    state: Option<usize>,
) -> Result<Value> {
    Assembler::new(pool, chains, strategy).token_at(root, state, MAX_NAMETAG_DEPTH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uxf::{ErrorCode, UxfPackage};

    /// Token roots stacked `depth` high above a bare root, each listing the root below
    /// `fan` times as a nametag (all of one token id, genesis and state shared).
    fn stacked_nametags(depth: usize, fan: usize) -> (UxfPackage, String) {
        stacked_nametags_with_state(depth, fan, 0)
    }

    /// The same, the shared state carrying `data_len` bytes of data.
    fn stacked_nametags_with_state(
        depth: usize,
        fan: usize,
        data_len: usize,
    ) -> (UxfPackage, String) {
        let id = "cd".repeat(32);
        let mut pkg = UxfPackage::new(1);
        let mut put = |el: Element| {
            let h = el.hash().unwrap();
            pkg.pool.insert(h, el);
            h
        };
        let state = put(Element::new(
            ElementType::TokenState,
            vec![
                ("predicate".into(), Value::Text("ee".repeat(32))),
                ("data".into(), Value::Bytes(vec![0x5a; data_len])),
            ],
            vec![],
        ));
        let gdata = put(Element::new(
            ElementType::GenesisData,
            vec![("tokenId".into(), Value::Text(id.clone()))],
            vec![],
        ));
        let genesis = put(Element::new(
            ElementType::Genesis,
            vec![],
            vec![
                ("data".into(), Child::Link(gdata)),
                ("destinationState".into(), Child::Link(state)),
            ],
        ));
        let mut below: Option<ContentHash> = None;
        for _ in 0..=depth {
            let nametags = below.map_or_else(Vec::new, |b| vec![b; fan]);
            below = Some(put(Element::new(
                ElementType::TokenRoot,
                vec![
                    ("tokenId".into(), Value::Text(id.clone())),
                    ("version".into(), Value::Text("2.0".into())),
                ],
                vec![
                    ("genesis".into(), Child::Link(genesis)),
                    ("transactions".into(), Child::Links(vec![])),
                    ("state".into(), Child::Link(state)),
                    ("nametags".into(), Child::Links(nametags)),
                ],
            )));
        }
        pkg.manifest.insert(id.clone(), below.unwrap());
        (pkg, id)
    }

    /// Token objects in an assembled token, itself included.
    fn tokens_in(v: &Value) -> usize {
        let mut n = 0;
        let mut stack = vec![v];
        while let Some(t) = stack.pop() {
            n += 1;
            if let Some(Value::Array(nt)) = t.get("nametags") {
                stack.extend(nt);
            }
        }
        n
    }

    #[test]
    fn nametag_fan_out_is_bounded_by_the_output_budget() {
        // each root costs 4 elements (root, genesis, genesis-data, state), and a stack
        // of d roots above the bottom one with fan 2 holds 2^(d+1) − 1 roots
        let cost = cost_in_elements;
        assert!(cost(13) <= MAX_ASSEMBLE_ELEMENTS && cost(14) > MAX_ASSEMBLE_ELEMENTS);

        let (pkg, id) = stacked_nametags(13, 2);
        let tok = pkg.assemble(&id).unwrap();
        assert_eq!(tokens_in(&tok), 2usize.pow(14) - 1);

        // (codes only: a failing unwrap_err would print the whole token)
        let (pkg, id) = stacked_nametags(14, 2);
        assert_eq!(code(pkg.assemble(&id)), Some(ErrorCode::LimitExceeded));

        // the audit's bundle: 61 roots, 21 KB as a CAR, passes verify; its token
        // would hold 2^61 roots. Unpacking it is now a typed error.
        let (pkg, id) = stacked_nametags(60, 2);
        let car = pkg.to_car().unwrap();
        assert!(car.len() < 32 * 1024);
        let back = UxfPackage::from_car(&car).unwrap();
        assert!(back.verify().valid);
        for r in [
            back.assemble(&id),
            back.assemble_at_state(&id, 0),
            back.assemble_with(&id, &Strategy::Original),
        ] {
            assert_eq!(code(r), Some(ErrorCode::LimitExceeded));
        }
        assert_eq!(code(back.assemble_all()), Some(ErrorCode::LimitExceeded));
    }

    #[test]
    fn large_elements_count_by_size() {
        // 60 KB of state data per root: 127 roots (7.6 MB) fit, 1 023 roots (61 MB)
        // do not, long before the element count would stop them
        let data = 60_000;
        let (pkg, id) = stacked_nametags_with_state(6, 2, data);
        let tok = pkg.assemble(&id).unwrap();
        assert_eq!(tokens_in(&tok), 127);
        assert_eq!(
            tok.get("state")
                .and_then(|s| s.get("data"))
                .and_then(Value::as_str)
                .map(str::len),
            Some(2 * data)
        );
        let (pkg, id) = stacked_nametags_with_state(9, 2, data);
        assert!(cost_in_elements(9) < MAX_ASSEMBLE_ELEMENTS);
        assert!(1023 * data > MAX_ASSEMBLE_BYTES);
        assert_eq!(code(pkg.assemble(&id)), Some(ErrorCode::LimitExceeded));
    }

    fn code<T>(r: crate::uxf::Result<T>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    fn cost_in_elements(d: u32) -> usize {
        4 * (2usize.pow(d + 1) - 1)
    }

    #[test]
    fn deep_single_nametag_chains_stay_within_the_depth_budget() {
        // fan 1 is linear: the depth limit, not the output budget, applies
        let (pkg, id) = stacked_nametags(MAX_NAMETAG_DEPTH as usize - 1, 1);
        let tok = pkg.assemble(&id).unwrap();
        assert_eq!(tokens_in(&tok), MAX_NAMETAG_DEPTH as usize);
        let (pkg, id) = stacked_nametags(MAX_NAMETAG_DEPTH as usize, 1);
        assert_eq!(code(pkg.assemble(&id)), Some(ErrorCode::InvalidPackage));
    }
}
