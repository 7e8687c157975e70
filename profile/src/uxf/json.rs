//! The package JSON serialization (spec §8.2): for debugging and storage adapters; not
//! canonical (key order follows insertion order, so compare semantically).
//!
//! # Format
//!
//! ```text
//! {"uxf":"1.0.0",
//!  "metadata":{version, createdAt, updatedAt, elementCount, tokenCount, creator?, description?},
//!  "manifest":{tokenId: rootHash, …},                       // manifest order
//!  "instanceChainIndex":{head: {head, chain:[{hash, kind}, …]}, …},
//!  "indexes":{byTokenType:{…}, byCoinId:{…}, byStateHash:{…}},
//!  "elements":{hash: {header:{representation, semantics, kind, predecessor},
//!                     type: int, content:{…}, children:{…}}, …}}  // pool order
//! ```
//! Import: `uxf` must be `"1.0.0"`; timestamps non-negative integers; creator ≤ 256,
//! description ≤ 1024 UTF-16 units; ≤ 100 000 manifest entries and elements; headers
//! checked (§10.6); genesis-data `reason` hex → bytes; every content string (or string
//! item of a top-level array) of ≥ 64 hex characters is lower-cased; every element
//! re-hashed against its key; the manifest roots' type, kind and token id checked.
//! The indexes are recomputed from the manifest rather than taken as given.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use indexmap::IndexMap;

use super::car::is_token_id;
use super::chain::{ChainEntry, InstanceChains};
use super::element::Pool;
use super::element::{Child, Element, ElementType, Header, KIND_ENRICHED_SYNTHETIC, key};
use super::error::{ErrorCode, Result, err};
use super::hash::ContentHash;
use super::limits::{
    ELEMENTS_MAX_SIZE, MANIFEST_MAX_SIZE, MAX_CREATOR_LENGTH, MAX_DESCRIPTION_LENGTH,
};
use super::package::{Envelope, UXF_VERSION, UxfPackage};
use super::value::Value;

fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn kv(k: &str, v: Value) -> (String, Value) {
    (k.to_owned(), v)
}

fn hash_v(h: &ContentHash) -> Value {
    Value::Text(h.to_hex())
}

fn list(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| t(s)).collect())
}

/// The JSON wire form of one element.
pub(crate) fn element_json(el: &Element) -> Value {
    let header = Value::Map(vec![
        kv("representation", Value::UInt(el.header.representation)),
        kv("semantics", Value::UInt(el.header.semantics)),
        kv("kind", t(&el.header.kind)),
        kv(
            "predecessor",
            el.header.predecessor.as_ref().map_or(Value::Null, hash_v),
        ),
    ]);
    let children = el
        .children
        .iter()
        .map(|(k, c)| {
            let v = match c {
                Child::Null => Value::Null,
                Child::Link(h) => hash_v(h),
                Child::Links(v) => Value::Array(v.iter().map(hash_v).collect()),
            };
            (k.to_string(), v)
        })
        .collect();
    Value::Map(vec![
        kv("header", header),
        kv("type", Value::UInt(u64::from(el.ty.id()))),
        kv(
            "content",
            Value::Map(
                el.content
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
        ),
        kv("children", Value::Map(children)),
    ])
}

impl UxfPackage {
    /// The package as compact JSON text (spec §8.2).
    pub fn to_json(&self) -> Result<String> {
        let e = &self.envelope;
        let mut meta = vec![
            kv("version", t(&e.version)),
            kv("createdAt", Value::from_f64(e.created_at)),
            kv("updatedAt", Value::from_f64(e.updated_at)),
            kv("elementCount", Value::UInt(self.pool.len() as u64)),
            kv("tokenCount", Value::UInt(self.manifest.len() as u64)),
        ];
        if let Some(c) = &e.creator {
            meta.push(kv("creator", t(c)));
        }
        if let Some(d) = &e.description {
            meta.push(kv("description", t(d)));
        }
        let manifest = self
            .manifest
            .iter()
            .map(|(k, h)| (k.clone(), hash_v(h)))
            .collect();
        let chains = self
            .chains
            .entries()
            .iter()
            .map(|c| {
                let chain = c
                    .chain
                    .iter()
                    .map(|(h, k)| Value::Map(vec![kv("hash", hash_v(h)), kv("kind", t(k))]))
                    .collect();
                (
                    c.head.to_hex(),
                    Value::Map(vec![
                        kv("head", hash_v(&c.head)),
                        kv("chain", Value::Array(chain)),
                    ]),
                )
            })
            .collect();
        let ix = self.indexes();
        let indexes = Value::Map(vec![
            kv(
                "byTokenType",
                Value::Map(
                    ix.by_token_type
                        .iter()
                        .map(|(k, v)| (k.clone(), list(v)))
                        .collect(),
                ),
            ),
            kv(
                "byCoinId",
                Value::Map(
                    ix.by_coin_id
                        .iter()
                        .map(|(k, v)| (k.clone(), list(v)))
                        .collect(),
                ),
            ),
            kv(
                "byStateHash",
                Value::Map(
                    ix.by_state_hash
                        .iter()
                        .map(|(k, v)| (k.clone(), t(v)))
                        .collect(),
                ),
            ),
        ]);
        let elements = self
            .pool
            .iter()
            .map(|(h, el)| (h.to_hex(), element_json(el)))
            .collect();
        let doc = Value::Map(vec![
            kv("uxf", t(UXF_VERSION)),
            kv("metadata", Value::Map(meta)),
            kv("manifest", Value::Map(manifest)),
            kv("instanceChainIndex", Value::Map(chains)),
            kv("indexes", indexes),
            kv("elements", Value::Map(elements)),
        ]);
        serde_json::to_string(&doc).map_err(|e| err!(SerializationError, "{e}"))
    }

    /// Parses the package JSON with every check of spec §8.2.
    pub fn from_json(text: &str) -> Result<Self> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| err!(SerializationError, "invalid JSON: {e}"))?;
        if doc.get("uxf").and_then(Value::as_str) != Some(UXF_VERSION) {
            return Err(err!(SerializationError, "uxf version must be \"1.0.0\""));
        }
        let meta = doc
            .get("metadata")
            .filter(|m| matches!(m, Value::Map(_)))
            .ok_or_else(|| err!(SerializationError, "metadata missing"))?;
        let version = meta
            .get("version")
            .and_then(Value::as_str)
            .ok_or_else(|| err!(SerializationError, "metadata.version must be a string"))?;
        let time = |k: &str| match meta.get(k) {
            Some(Value::UInt(n)) => Ok(*n),
            _ => Err(err!(
                SerializationError,
                "metadata.{k} must be a non-negative integer"
            )),
        };
        let (created_at, updated_at) = (time("createdAt")?, time("updatedAt")?);
        let opt = |k: &str, max: usize| match meta.get(k) {
            None => Ok(None),
            Some(Value::Text(s)) if s.encode_utf16().count() <= max => Ok(Some(s.clone())),
            Some(Value::Text(_)) => Err(err!(LimitExceeded, "metadata.{k} longer than {max}")),
            Some(_) => Err(err!(SerializationError, "metadata.{k} must be a string")),
        };
        let creator = opt("creator", MAX_CREATOR_LENGTH)?;
        let description = opt("description", MAX_DESCRIPTION_LENGTH)?;

        let Some(Value::Map(man)) = doc.get("manifest") else {
            return Err(err!(SerializationError, "manifest must be an object"));
        };
        if man.len() > MANIFEST_MAX_SIZE {
            return Err(err!(
                LimitExceeded,
                "manifest has more than {MANIFEST_MAX_SIZE} entries"
            ));
        }
        let mut manifest = IndexMap::with_capacity(man.len());
        for (k, v) in man {
            if !is_token_id(k) {
                return Err(err!(SerializationError, "invalid manifest token id {k:?}"));
            }
            let h = v
                .as_str()
                .ok_or_else(|| err!(SerializationError, "manifest value must be a hash"))
                .and_then(ContentHash::from_hex)?;
            manifest.insert(k.clone(), h);
        }

        let Some(Value::Map(els)) = doc.get("elements") else {
            return Err(err!(SerializationError, "elements must be an object"));
        };
        if els.len() > ELEMENTS_MAX_SIZE {
            return Err(err!(
                LimitExceeded,
                "more than {ELEMENTS_MAX_SIZE} elements"
            ));
        }
        let mut pool = Pool::with_capacity_and_hasher(els.len(), Default::default());
        for (k, v) in els {
            let h = ContentHash::from_hex(k)?;
            let el = parse_element(v)?;
            if el.hash()? != h {
                return Err(err!(
                    SerializationError,
                    "element {k} does not match its hash"
                ));
            }
            pool.insert(h, el);
        }

        let mut entries: Vec<ChainEntry> = Vec::new();
        let mut heads = super::hash::HashSet::default();
        if let Some(Value::Map(ci)) = doc.get("instanceChainIndex") {
            for (_, e) in ci {
                let head = e
                    .get("head")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err!(SerializationError, "chain entry without head"))
                    .and_then(ContentHash::from_hex)?;
                let Some(Value::Array(chain)) = e.get("chain") else {
                    return Err(err!(SerializationError, "chain entry without chain"));
                };
                let chain = chain
                    .iter()
                    .map(|m| {
                        let h = m
                            .get("hash")
                            .and_then(Value::as_str)
                            .ok_or_else(|| err!(SerializationError, "chain member without hash"))
                            .and_then(ContentHash::from_hex)?;
                        let kind = m
                            .get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or("default")
                            .to_owned();
                        Ok((h, kind))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if heads.insert(head) {
                    entries.push(ChainEntry { head, chain });
                }
            }
        }
        let mut chains = InstanceChains::default();
        chains.set(entries);

        for (id, root) in &manifest {
            let Some(el) = pool.get(root) else { continue };
            if el.header.kind == KIND_ENRICHED_SYNTHETIC
                || el.ty != ElementType::TokenRoot
                || el
                    .get("tokenId")
                    .and_then(Value::hex_str)
                    .is_none_or(|t| t.to_ascii_lowercase() != *id)
            {
                return Err(err!(
                    VerificationFailed,
                    "manifest root {root} is not the token-root of {id}"
                ));
            }
        }
        Ok(Self {
            envelope: Envelope {
                version: version.to_owned(),
                #[expect(clippy::cast_precision_loss, reason = "JavaScript numbers are f64")]
                created_at: created_at as f64,
                #[expect(clippy::cast_precision_loss, reason = "JavaScript numbers are f64")]
                updated_at: updated_at as f64,
                creator,
                description,
            },
            manifest,
            pool,
            chains,
        })
    }
}

fn long_hex(s: &str) -> bool {
    s.len() >= 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

fn lower(v: Value) -> Value {
    match v {
        Value::Text(s) if long_hex(&s) => Value::Text(s.to_ascii_lowercase()),
        other => other,
    }
}

fn parse_element(v: &Value) -> Result<Element> {
    let h = v
        .get("header")
        .ok_or_else(|| err!(SerializationError, "element without header"))?;
    let num = |k: &str| match h.get(k) {
        Some(Value::UInt(n)) => Ok(*n),
        _ => Err(err!(
            SerializationError,
            "header.{k} must be a non-negative integer"
        )),
    };
    let header = Header {
        representation: num("representation")?,
        semantics: num("semantics")?,
        kind: h
            .get("kind")
            .and_then(Value::as_str)
            .map(|k| key(k.to_owned()))
            .ok_or_else(|| err!(SerializationError, "header.kind must be a string"))?,
        predecessor: match h.get("predecessor") {
            None | Some(Value::Null) => None,
            Some(Value::Text(p)) => Some(ContentHash::from_hex(p)?),
            Some(_) => {
                return Err(err!(
                    SerializationError,
                    "header.predecessor must be a hash"
                ));
            }
        },
    };
    header.validate(ErrorCode::SerializationError)?;
    let ty = match v.get("type") {
        Some(Value::UInt(id)) => ElementType::from_id(*id)
            .ok_or_else(|| err!(SerializationError, "unknown element type {id}"))?,
        _ => return Err(err!(SerializationError, "element type must be an integer")),
    };
    let Some(Value::Map(content_in)) = v.get("content") else {
        return Err(err!(
            SerializationError,
            "element content must be an object"
        ));
    };
    let content = content_in
        .iter()
        .map(|(k, x)| {
            let val = match x {
                Value::Text(s) if ty == ElementType::GenesisData && k == "reason" => Value::Bytes(
                    hex::decode(s).map_err(|_| err!(SerializationError, "reason is not hex"))?,
                ),
                Value::Array(items) => Value::Array(items.iter().cloned().map(lower).collect()),
                other => lower(other.clone()),
            };
            Ok((key(k.clone()), val))
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(Value::Map(children_in)) = v.get("children") else {
        return Err(err!(
            SerializationError,
            "element children must be an object"
        ));
    };
    let children = children_in
        .iter()
        .map(|(k, x)| {
            let c = match x {
                Value::Null => Child::Null,
                Value::Text(s) => Child::Link(ContentHash::from_hex(s)?),
                Value::Array(a) => Child::Links(
                    a.iter()
                        .map(|i| {
                            i.as_str()
                                .ok_or_else(|| err!(SerializationError, "child must be a hash"))
                                .and_then(ContentHash::from_hex)
                        })
                        .collect::<Result<_>>()?,
                ),
                _ => return Err(err!(SerializationError, "child {k} must be a hash")),
            };
            Ok((key(k.clone()), c))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Element {
        header,
        ty,
        content,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uxf::limits::MAX_CREATOR_LENGTH;

    #[test]
    fn limits_are_enforced_with_typed_errors() {
        let ok = UxfPackage::new(1).with_creator("c".repeat(MAX_CREATOR_LENGTH));
        UxfPackage::from_json(&ok.to_json().unwrap()).unwrap();
        UxfPackage::from_car(&ok.to_car().unwrap()).unwrap();
        let long = UxfPackage::new(1).with_creator("c".repeat(MAX_CREATOR_LENGTH + 1));
        assert_eq!(
            UxfPackage::from_json(&long.to_json().unwrap())
                .unwrap_err()
                .code(),
            ErrorCode::LimitExceeded
        );
        assert_eq!(
            UxfPackage::from_car(&long.to_car().unwrap())
                .unwrap_err()
                .code(),
            ErrorCode::LimitExceeded
        );
        let long = UxfPackage::new(1).with_description("d".repeat(MAX_DESCRIPTION_LENGTH + 1));
        assert_eq!(
            UxfPackage::from_json(&long.to_json().unwrap())
                .unwrap_err()
                .code(),
            ErrorCode::LimitExceeded
        );
        // MANIFEST_MAX_SIZE + 1 entries
        let mut m = String::from("{");
        for i in 0..=MANIFEST_MAX_SIZE {
            if i > 0 {
                m.push(',');
            }
            m.push_str(&format!("\"{i:064x}\":\"{:064x}\"", 0));
        }
        m.push('}');
        let doc = format!(
            "{{\"uxf\":\"1.0.0\",\"metadata\":{{\"version\":\"1.0.0\",\"createdAt\":1,\"updatedAt\":1}},\"manifest\":{m},\"elements\":{{}}}}"
        );
        assert_eq!(
            UxfPackage::from_json(&doc).unwrap_err().code(),
            ErrorCode::LimitExceeded
        );
        // wrong version and negative timestamps are refused
        let bad = ok
            .to_json()
            .unwrap()
            .replace("\"uxf\":\"1.0.0\"", "\"uxf\":\"2.0.0\"");
        assert_eq!(
            UxfPackage::from_json(&bad).unwrap_err().code(),
            ErrorCode::SerializationError
        );
        let bad = ok
            .to_json()
            .unwrap()
            .replace("\"createdAt\":1", "\"createdAt\":-1");
        assert_eq!(
            UxfPackage::from_json(&bad).unwrap_err().code(),
            ErrorCode::SerializationError
        );
    }
}
