//! Elements → token JSON (spec §7), at the current or a historical state.
//!
//! Every element fetched is re-hashed against the hash it was fetched by (after the
//! instance-chain strategy picked it), its type is checked against its role, and a
//! verified hash may be revisited (DAG diamonds). Nametag recursion shares the
//! deconstruct budget ([`MAX_NAMETAG_DEPTH`]), which bounds it. The output is a
//! [`Value::Map`] tree in the reference's key order.

use super::hash::HashSet;

use super::chain::{InstanceChains, Strategy};
use super::element::Pool;
use super::element::{Child, Element, ElementType};
use super::error::{Result, err};
use super::hash::ContentHash;
use super::limits::MAX_NAMETAG_DEPTH;
use super::reason;
use super::smt;
use super::value::Value;

pub(crate) struct Assembler<'a> {
    pub(crate) pool: &'a Pool,
    pub(crate) chains: &'a InstanceChains,
    pub(crate) strategy: &'a Strategy,
    verified: HashSet,
    buf: Vec<u8>,
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
            verified: HashSet::default(),
            buf: Vec::with_capacity(512),
        }
    }

    fn fetch(&mut self, h: ContentHash, ty: ElementType) -> Result<&'a Element> {
        let sel = self.chains.resolve(&h, self.strategy, self.pool);
        let el = self
            .pool
            .get(&sel)
            .ok_or_else(|| err!(MissingElement, "Element {sel} not in pool"))?;
        if !self.verified.contains(&sel) {
            self.buf.clear();
            el.write_canonical(&mut self.buf)?;
            if ContentHash::digest(&self.buf) != sel {
                return Err(err!(
                    VerificationFailed,
                    "Element {sel} does not match its hash"
                ));
            }
            self.verified.insert(sel);
        }
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
        let path_el = self.fetch(Self::link(el, "merkleTreePath")?, ElementType::SmtPath)?;
        let blob = match path_el.get("cbor") {
            Some(Value::Bytes(b)) => b.clone(),
            Some(Value::Text(s)) => super::element::decode_hex(s)?,
            _ => return Err(err!(SerializationError, "smt-path without cbor")),
        };
        let path = smt::blob_to_json(&blob)?;
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
            data.push(entry("reason", reason::decode(v)));
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
