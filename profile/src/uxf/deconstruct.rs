//! Token JSON (the state-transition SDK's `ITokenJson`) → elements (spec §3).
//!
//! Normalization, exactly as the reference: hex fields lower-cased (held as bytes, see
//! [`Value`]), `lowerHex` fields turn `null` into `""`, nullable ones keep `null`,
//! missing `version` is `"2.0"`, `coinData: null` is `[]`, the SMT path becomes the
//! SDK's CBOR blob, the `reason` its bytes, nametag tokens are deconstructed recursively
//! with a nesting budget of [`MAX_NAMETAG_DEPTH`] (the recursion is bounded by it), and
//! states are derived from the transactions (§3.4). Elements go into the pool in
//! construction order (§3.5); the first insertion of a hash wins.

use serde_json::Value as J;

use super::element::Pool;
use super::element::{Child, Element, ElementType, Key, decode_hex};
use super::error::{Result, err};
use super::hash::ContentHash;
use super::limits::{MAX_CBOR_DEPTH, MAX_NAMETAG_DEPTH, MAX_TOKEN_JSON_DEPTH};
use super::reason;
use super::smt;
use super::value::{Value, json_nests_deeper_than};

/// Parses token JSON (one token or an array of tokens) for [`crate::uxf::UxfPackage::ingest`]:
/// nesting up to [`MAX_TOKEN_JSON_DEPTH`] is read, so every token `assemble` produces
/// parses again (serde_json's default stops at 128 levels, and a token nests 5 levels
/// per nametag). The depth is checked on the raw text before parsing, without
/// recursion, so the recursive parser never goes deeper than the bound.
///
/// Errors: `SERIALIZATION_ERROR` for text that is not JSON, `LIMIT_EXCEEDED` beyond the
/// depth bound.
pub fn parse_token_json(text: &[u8]) -> Result<J> {
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                if depth > MAX_TOKEN_JSON_DEPTH {
                    return Err(err!(
                        LimitExceeded,
                        "token JSON nests deeper than {MAX_TOKEN_JSON_DEPTH} levels"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    // bounded above: at most MAX_TOKEN_JSON_DEPTH levels of recursion
    de.disable_recursion_limit();
    let v = <J as serde::Deserialize>::deserialize(&mut de)
        .map_err(|e| err!(SerializationError, "invalid JSON: {e}"))?;
    de.end()
        .map_err(|e| err!(SerializationError, "invalid JSON: {e}"))?;
    Ok(v)
}

/// Builds elements into a pool.
pub(crate) struct Builder<'a> {
    pool: &'a mut Pool,
    buf: Vec<u8>,
}

/// Validates a top-level token (§3.2), deconstructs it into `pool` and returns its
/// lowercase token id and root hash.
pub(crate) fn deconstruct(pool: &mut Pool, token: &J) -> Result<(String, ContentHash)> {
    let obj = token
        .as_object()
        .ok_or_else(|| err!(InvalidPackage, "Token must be a non-null object"))?;
    if obj.get("_placeholder") == Some(&J::Bool(true)) {
        return Err(err!(
            InvalidPackage,
            "Cannot ingest placeholder tokens (no genesis field)"
        ));
    }
    if !obj.get("genesis").is_some_and(J::is_object) {
        return Err(err!(InvalidPackage, "Token must have a genesis field"));
    }
    if !obj.get("state").is_some_and(J::is_object) {
        return Err(err!(InvalidPackage, "Token must have a state field"));
    }
    let data = token
        .get("genesis")
        .and_then(|g| g.get("data"))
        .filter(|d| d.is_object())
        .ok_or_else(|| err!(InvalidPackage, "Token genesis must have a data field"))?;
    let tid = data.get("tokenId");
    let tid_ok = tid
        .and_then(J::as_str)
        .is_some_and(|s| (64..=68).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_hexdigit()));
    if !tid_ok {
        return Err(err!(
            InvalidPackage,
            "Token genesis.data.tokenId must be 64- or 68-char hex, got {}",
            tid.map_or_else(|| "undefined".into(), J::to_string)
        ));
    }
    let token_id = tid
        .and_then(J::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut b = Builder {
        pool,
        buf: Vec::with_capacity(512),
    };
    let root = b.token(token, MAX_NAMETAG_DEPTH)?;
    Ok((token_id, root))
}

fn hex_value(v: Option<&J>, nullable: bool, what: &str) -> Result<Value> {
    match v {
        None | Some(J::Null) => Ok(if nullable {
            Value::Null
        } else {
            Value::Bytes(Vec::new())
        }),
        Some(J::String(s)) => decode_hex(s)
            .map(Value::Bytes)
            .map_err(|_| err!(InvalidHash, "{what} is not valid hex: {s:?}")),
        Some(other) => Err(err!(
            InvalidPackage,
            "{what} must be a hex string, got {other}"
        )),
    }
}

/// A token field copied into element content as it is, `levels` below the top of a
/// content value (0 for the value itself). Refused (`LIMIT_EXCEEDED`) when it nests
/// deeper than a bundle can hold: import decodes content values at CBOR depth 1, so
/// with [`MAX_CBOR_DEPTH`] a value may nest `MAX_CBOR_DEPTH − 1` levels.
fn verbatim(v: &J, levels: usize, what: &str) -> Result<Value> {
    let room = MAX_CBOR_DEPTH.saturating_sub(1).saturating_sub(levels);
    if json_nests_deeper_than(v, room) {
        return Err(err!(
            LimitExceeded,
            "{what} nests deeper than a bundle can hold ({MAX_CBOR_DEPTH} CBOR levels)"
        ));
    }
    Ok(Value::from_json(v))
}

fn push_verbatim(content: &mut Vec<(Key, Value)>, key: &'static str, v: Option<&J>) -> Result<()> {
    if let Some(v) = v {
        content.push((Key::Borrowed(key), verbatim(v, 0, key)?));
    }
    Ok(())
}

fn non_null(v: Option<&J>) -> Option<&J> {
    v.filter(|x| !x.is_null())
}

fn source_of(tx: &J) -> Option<&J> {
    non_null(tx.get("data").and_then(|d| d.get("sourceState")))
}

fn nametag_tokens(v: Option<&J>) -> Result<Vec<&J>> {
    match v {
        None | Some(J::Null) => Ok(Vec::new()),
        Some(J::Array(a)) => Ok(a.iter().filter(|n| n.get("genesis").is_some()).collect()),
        Some(_) => Err(err!(InvalidPackage, "nametags must be an array")),
    }
}

impl Builder<'_> {
    fn put(&mut self, el: Element) -> Result<ContentHash> {
        self.buf.clear();
        el.write_canonical(&mut self.buf)?;
        let h = ContentHash::digest(&self.buf);
        self.pool.entry(h).or_insert(el);
        Ok(h)
    }

    fn state(&mut self, s: &J) -> Result<ContentHash> {
        let content = vec![
            (
                "predicate".into(),
                hex_value(s.get("predicate"), false, "state.predicate")?,
            ),
            ("data".into(), hex_value(s.get("data"), true, "state.data")?),
        ];
        self.put(Element::new(ElementType::TokenState, content, vec![]))
    }

    fn authenticator(&mut self, a: &J, ty: ElementType) -> Result<ContentHash> {
        let mut content = Vec::with_capacity(4);
        push_verbatim(&mut content, "algorithm", a.get("algorithm"))?;
        content.push((
            "publicKey".into(),
            hex_value(a.get("publicKey"), false, "authenticator.publicKey")?,
        ));
        content.push((
            "signature".into(),
            hex_value(a.get("signature"), false, "authenticator.signature")?,
        ));
        content.push((
            "stateHash".into(),
            hex_value(a.get("stateHash"), false, "authenticator.stateHash")?,
        ));
        self.put(Element::new(ty, content, vec![]))
    }

    fn proof(&mut self, p: &J) -> Result<ContentHash> {
        let auth = match non_null(p.get("authenticator")) {
            Some(a) => Child::Link(self.authenticator(a, ElementType::Authenticator)?),
            None => Child::Null,
        };
        let blob = smt::json_to_blob(p.get("merkleTreePath").unwrap_or(&J::Null))?;
        let path = self.put(Element::new(
            ElementType::SmtPath,
            vec![("cbor".into(), Value::Bytes(blob))],
            vec![],
        ))?;
        let cert = self.put(Element::new(
            ElementType::UnicityCertificate,
            vec![(
                "raw".into(),
                hex_value(p.get("unicityCertificate"), false, "unicityCertificate")?,
            )],
            vec![],
        ))?;
        self.put(Element::new(
            ElementType::InclusionProof,
            vec![(
                "transactionHash".into(),
                hex_value(p.get("transactionHash"), true, "transactionHash")?,
            )],
            vec![
                ("authenticator".into(), auth),
                ("merkleTreePath".into(), Child::Link(path)),
                ("unicityCertificate".into(), Child::Link(cert)),
            ],
        ))
    }

    fn token(&mut self, token: &J, budget: u32) -> Result<ContentHash> {
        if budget == 0 {
            return Err(err!(
                InvalidPackage,
                "Maximum nametag nesting depth exceeded"
            ));
        }
        let genesis = token
            .get("genesis")
            .filter(|g| g.is_object())
            .ok_or_else(|| err!(InvalidPackage, "Token must have a genesis field"))?;
        let gdata = genesis
            .get("data")
            .filter(|d| d.is_object())
            .ok_or_else(|| err!(InvalidPackage, "Token genesis must have a data field"))?;
        let current = token
            .get("state")
            .filter(|s| s.is_object())
            .ok_or_else(|| err!(InvalidPackage, "Token must have a state field"))?;
        let txs: &[J] = match token.get("transactions") {
            Some(J::Array(a)) => a,
            _ => return Err(err!(InvalidPackage, "Token transactions must be an array")),
        };

        // genesis-data
        let mut gd = Vec::with_capacity(8);
        gd.push((
            "tokenId".into(),
            hex_value(gdata.get("tokenId"), false, "tokenId")?,
        ));
        gd.push((
            "tokenType".into(),
            hex_value(gdata.get("tokenType"), false, "tokenType")?,
        ));
        let coins = match gdata.get("coinData") {
            None | Some(J::Null) => Vec::new(),
            Some(J::Array(a)) => a
                .iter()
                .map(|e| match e.as_array().map(Vec::as_slice) {
                    // coinData → entry → item: two levels down
                    Some([id, amount, ..]) => Ok(Value::Array(vec![
                        verbatim(id, 2, "coinData coin id")?,
                        verbatim(amount, 2, "coinData amount")?,
                    ])),
                    _ => Err(err!(
                        InvalidPackage,
                        "coinData entries must be [coinId, amount]"
                    )),
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(err!(InvalidPackage, "coinData must be an array")),
        };
        gd.push(("coinData".into(), Value::Array(coins)));
        gd.push((
            "tokenData".into(),
            hex_value(gdata.get("tokenData"), false, "tokenData")?,
        ));
        gd.push(("salt".into(), hex_value(gdata.get("salt"), false, "salt")?));
        push_verbatim(&mut gd, "recipient", gdata.get("recipient"))?;
        gd.push((
            "recipientDataHash".into(),
            hex_value(gdata.get("recipientDataHash"), true, "recipientDataHash")?,
        ));
        gd.push(("reason".into(), reason::encode(gdata.get("reason"))?));
        let gdata_h = self.put(Element::new(ElementType::GenesisData, gd, vec![]))?;

        let gproof = match non_null(genesis.get("inclusionProof")) {
            Some(p) => Child::Link(self.proof(p)?),
            None => Child::Null,
        };
        let gdest_json = txs.first().and_then(source_of).unwrap_or(current);
        let gdest = self.state(gdest_json)?;
        let genesis_h = self.put(Element::new(
            ElementType::Genesis,
            vec![],
            vec![
                ("data".into(), Child::Link(gdata_h)),
                ("inclusionProof".into(), gproof),
                ("destinationState".into(), Child::Link(gdest)),
            ],
        ))?;

        let mut tx_hashes = Vec::with_capacity(txs.len());
        let mut prev_dest = gdest_json;
        for (i, tx) in txs.iter().enumerate() {
            let src_json = if i == 0 {
                gdest_json
            } else {
                source_of(tx).unwrap_or(prev_dest)
            };
            let dest_json = txs
                .get(i.saturating_add(1))
                .and_then(source_of)
                .unwrap_or(current);
            let src = self.state(src_json)?;
            let dest = self.state(dest_json)?;
            let data = match non_null(tx.get("data")) {
                Some(d) => {
                    let mut refs = Vec::new();
                    for nt in nametag_tokens(d.get("nametags"))? {
                        let h = self.token(nt, budget.saturating_sub(1))?;
                        refs.push(Value::Bytes(h.as_bytes().to_vec()));
                    }
                    let mut c = Vec::with_capacity(5);
                    push_verbatim(&mut c, "recipient", d.get("recipient"))?;
                    c.push((
                        "salt".into(),
                        hex_value(d.get("salt"), false, "transaction salt")?,
                    ));
                    c.push((
                        "recipientDataHash".into(),
                        hex_value(d.get("recipientDataHash"), true, "recipientDataHash")?,
                    ));
                    c.push((
                        "message".into(),
                        match d.get("message") {
                            Some(m) => verbatim(m, 0, "transaction message")?,
                            None => Value::Null,
                        },
                    ));
                    c.push(("nametagRefs".into(), Value::Array(refs)));
                    Child::Link(self.put(Element::new(ElementType::TransactionData, c, vec![]))?)
                }
                None => Child::Null,
            };
            let proof = match non_null(tx.get("inclusionProof")) {
                Some(p) => Child::Link(self.proof(p)?),
                None => Child::Null,
            };
            let mut children = vec![
                ("sourceState".into(), Child::Link(src)),
                ("data".into(), data),
                ("inclusionProof".into(), proof),
                ("destinationState".into(), Child::Link(dest)),
            ];
            if let Some(a) = non_null(tx.get("_wallet").and_then(|w| w.get("authenticator"))) {
                let h = self.authenticator(a, ElementType::PendingAuthenticator)?;
                children.push(("pendingAuthenticator".into(), Child::Link(h)));
            }
            tx_hashes.push(self.put(Element::new(ElementType::Transaction, vec![], children))?);
            prev_dest = dest_json;
        }

        let state_h = self.state(current)?;
        let mut nametags = Vec::new();
        for nt in nametag_tokens(token.get("nametags"))? {
            nametags.push(self.token(nt, budget.saturating_sub(1))?);
        }
        let version = match non_null(token.get("version")) {
            Some(v) => verbatim(v, 0, "version")?,
            None => Value::Text("2.0".to_owned()),
        };
        self.put(Element::new(
            ElementType::TokenRoot,
            vec![
                (
                    "tokenId".into(),
                    hex_value(gdata.get("tokenId"), false, "tokenId")?,
                ),
                ("version".into(), version),
            ],
            vec![
                ("genesis".into(), Child::Link(genesis_h)),
                ("transactions".into(), Child::Links(tx_hashes)),
                ("state".into(), Child::Link(state_h)),
                ("nametags".into(), Child::Links(nametags)),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uxf::{ErrorCode, UxfPackage};
    use serde_json::json;

    fn tok(id: u8, nametags: Vec<J>) -> J {
        json!({
            "version": "2.0",
            "state": {"predicate": format!("{id:02x}"), "data": null},
            "genesis": {"data": {"tokenId": format!("{id:02x}").repeat(32), "tokenType": "01", "coinData": null,
                                 "tokenData": null, "salt": "aa", "recipient": "r", "recipientDataHash": null, "reason": null},
                        "inclusionProof": null},
            "transactions": [],
            "nametags": nametags,
        })
    }

    fn nested(depth: usize) -> J {
        let mut t = tok(0, vec![]);
        for i in 1..depth {
            t = tok(u8::try_from(i % 250).unwrap(), vec![t]);
        }
        t
    }

    #[test]
    fn nametag_depth_budget_is_100_roots() {
        let mut pkg = UxfPackage::new(1);
        pkg.ingest(&nested(100), 1).unwrap();
        let id = pkg.manifest().keys().next().unwrap().clone();
        pkg.assemble(&id).unwrap();
        let e = UxfPackage::new(1).ingest(&nested(101), 1).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPackage);
        assert_eq!(e.message, "Maximum nametag nesting depth exceeded");
    }

    /// `levels` non-empty arrays around a string: nests exactly `levels` levels.
    fn nest(levels: usize) -> J {
        let mut v = json!("x");
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    }

    /// `tok(1)` with one transaction and a genesis proof carrying an authenticator.
    fn full_token() -> J {
        let mut t = tok(1, vec![]);
        t["genesis"]["inclusionProof"] = json!({
            "authenticator": {"algorithm": "secp256k1", "publicKey": "aa", "signature": "bb", "stateHash": "cc"},
            "merkleTreePath": {"root": "000000", "steps": [{"path": "1", "data": null}]},
            "transactionHash": "dd",
            "unicityCertificate": "ee",
        });
        t["transactions"] = json!([{
            "data": {"sourceState": {"predicate": "01", "data": null}, "recipient": "r", "salt": "aa",
                     "recipientDataHash": null, "message": null, "nametags": []},
            "inclusionProof": null,
        }]);
        t
    }

    #[test]
    fn fields_copied_verbatim_nest_at_most_what_import_reads() {
        // import decodes content values one level down, so they hold 63 levels; a coin
        // id or amount sits two levels below the coinData value
        let content = MAX_CBOR_DEPTH - 1;
        let cases: [(&str, &str, usize); 6] = [
            ("/version", "/version", content),
            (
                "/genesis/data/recipient",
                "/genesis/data/recipient",
                content,
            ),
            (
                "/genesis/data/coinData",
                "/genesis/data/coinData/0/0",
                content - 2,
            ),
            (
                "/genesis/inclusionProof/authenticator/algorithm",
                "/genesis/inclusionProof/authenticator/algorithm",
                content,
            ),
            (
                "/transactions/0/data/message",
                "/transactions/0/data/message",
                content,
            ),
            (
                "/transactions/0/data/recipient",
                "/transactions/0/data/recipient",
                content,
            ),
        ];
        for (set, get, room) in cases {
            let with = |v: J| {
                let mut t = full_token();
                let v = if set.ends_with("coinData") {
                    json!([[v, "5"]])
                } else {
                    v
                };
                *t.pointer_mut(set).unwrap() = v;
                t
            };
            // the deepest that fits packs, imports and comes back unchanged
            let mut pkg = UxfPackage::new(1);
            pkg.ingest(&with(nest(room)), 1).unwrap();
            let back = UxfPackage::from_car(&pkg.to_car().unwrap())
                .unwrap_or_else(|e| panic!("{set}: {e}"));
            let id = back.manifest().keys().next().unwrap().clone();
            let tok = back.assemble(&id).unwrap().to_json();
            assert_eq!(tok.pointer(get), Some(&nest(room)), "{set}");
            // one level more is refused when packing, not when importing
            let e = UxfPackage::new(1)
                .ingest(&with(nest(room + 1)), 1)
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::LimitExceeded, "{set}: {e}");
        }
        // a deep reason object is refused the same way
        let mut t = full_token();
        t["genesis"]["data"]["reason"] = nest(MAX_CBOR_DEPTH + 1);
        let e = UxfPackage::new(1).ingest(&t, 1).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
    }

    /// Nesting of arrays and objects in JSON text (the outermost counts as 1).
    fn text_depth(text: &[u8]) -> usize {
        let (mut d, mut max, mut s, mut esc) = (0usize, 0usize, false, false);
        for &b in text {
            match (s, esc, b) {
                (true, true, _) => esc = false,
                (true, false, b'\\') => esc = true,
                (true, false, b'"') | (false, _, b'"') => s = !s,
                (false, _, b'[' | b'{') => {
                    d += 1;
                    max = max.max(d);
                }
                (false, _, b']' | b'}') => d -= 1,
                _ => {}
            }
        }
        max
    }

    /// The deepest token `assemble` can give: `MAX_NAMETAG_DEPTH` roots, each carried in
    /// the transfer data of the one above, the innermost with an authenticator whose
    /// `algorithm` nests as deep as import allows.
    fn deepest_token() -> J {
        let mut algorithm = json!([]);
        for _ in 0..MAX_CBOR_DEPTH - 1 {
            algorithm = json!([algorithm]);
        }
        let mut t = full_token();
        t["transactions"][0]["inclusionProof"] = json!({
            "authenticator": {"algorithm": algorithm, "publicKey": "aa", "signature": "bb", "stateHash": "cc"},
            "merkleTreePath": {"root": "000000", "steps": [{"path": "1", "data": null}]},
            "transactionHash": "dd",
            "unicityCertificate": "ee",
        });
        for i in 1..MAX_NAMETAG_DEPTH {
            let mut outer = full_token();
            let id = format!("{:02x}", i % 250 + 2).repeat(32);
            outer["genesis"]["data"]["tokenId"] = json!(id);
            outer["transactions"][0]["data"]["nametags"] = json!([t]);
            t = outer;
        }
        t
    }

    #[test]
    fn every_token_assemble_produces_parses_again() {
        let mut pkg = UxfPackage::new(1);
        let root = pkg.ingest(&deepest_token(), 1).unwrap();
        let id = pkg.manifest().keys().next().unwrap().clone();
        let out = pkg.assemble(&id).unwrap();
        let text = serde_json::to_vec_pretty(&out).unwrap();
        // one level short of the bound: the bound also allows an array of tokens
        assert_eq!(text_depth(&text), MAX_TOKEN_JSON_DEPTH - 1);
        // serde_json's default parser refuses what unpack wrote …
        let e = serde_json::from_slice::<J>(&text).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        // … the token parser reads it, and it packs to the same root
        let back = parse_token_json(&text).unwrap();
        assert_eq!(UxfPackage::new(1).ingest(&back, 1).unwrap(), root);
        let mut arr = b"[".to_vec();
        arr.extend_from_slice(&text);
        arr.push(b']');
        assert_eq!(text_depth(&arr), MAX_TOKEN_JSON_DEPTH);
        assert!(matches!(parse_token_json(&arr).unwrap(), J::Array(a) if a.len() == 1));
        // one level more is refused by count, before parsing
        let mut deeper = b"[".to_vec();
        deeper.extend_from_slice(&arr);
        deeper.push(b']');
        let e = parse_token_json(&deeper).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
    }

    #[test]
    fn token_json_parser_refuses_depth_by_counting_and_bad_json_by_type() {
        // far deeper than any stack: refused without recursion
        let deep = vec![b'['; 1_000_000];
        assert_eq!(
            parse_token_json(&deep).unwrap_err().code(),
            ErrorCode::LimitExceeded
        );
        // brackets inside strings are text, escaped quotes do not end a string
        let mut s = String::from("{\"a\":\"\\\"");
        s.push_str(&"[".repeat(MAX_TOKEN_JSON_DEPTH + 1));
        s.push_str("\"}");
        assert_eq!(
            parse_token_json(s.as_bytes()).unwrap()["a"]
                .as_str()
                .unwrap()
                .len(),
            MAX_TOKEN_JSON_DEPTH + 2
        );
        for bad in [&b"{"[..], b"[1,]", b"{} {}", b"\"\\", b""] {
            assert_eq!(
                parse_token_json(bad).unwrap_err().code(),
                ErrorCode::SerializationError,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn null_and_empty_byte_fields_and_case_hash_alike() {
        let mut a = tok(1, vec![]);
        let h1 = UxfPackage::new(1).ingest(&a, 1).unwrap();
        a["genesis"]["data"]["tokenData"] = json!("");
        a["genesis"]["data"]["salt"] = json!("AA");
        a["genesis"]["data"]["tokenId"] = json!("01".repeat(32).to_uppercase());
        assert_eq!(UxfPackage::new(1).ingest(&a, 1).unwrap(), h1);
        a["genesis"]["data"]["salt"] = json!("abc");
        assert_eq!(
            UxfPackage::new(1).ingest(&a, 1).unwrap_err().code(),
            ErrorCode::InvalidHash
        );
        a["genesis"]["data"]["tokenId"] = json!("01".repeat(33));
        // 66 chars: accepted as a 33-byte id (reference regex quirk)
        a["genesis"]["data"]["salt"] = json!("aa");
        assert!(UxfPackage::new(1).ingest(&a, 1).is_ok());
        a["genesis"]["data"]["tokenId"] = json!("0".repeat(65));
        assert_eq!(
            UxfPackage::new(1).ingest(&a, 1).unwrap_err().code(),
            ErrorCode::InvalidHash
        );
    }
}
