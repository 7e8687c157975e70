//! Elements: the nodes of the UXF graph, their canonical DAG-CBOR form and ContentHash.
//!
//! # Format
//!
//! ```text
//! hash = SHA-256( dag-cbor {
//!     "type":     uint type id (§2.2),
//!     "header":   [representation uint, semantics uint, kind tstr, predecessor link|null],
//!     "content":  { key: prepared value },        // keys in dag-cbor order
//!     "children": { role: link | [link…] | null }  // keys in dag-cbor order
//! } )
//! ```
//! On the wire the top-level keys come out as `type, header, content, children`
//! (length-first order). A link is `d8 2a 58 25 00 01 71 12 20 ‖ digest`. Content
//! preparation: the byte fields of each type ([`ElementType::byte_fields`]) are hex
//! decoded to byte strings and every empty one (`null`, `""`, no bytes) is `null`;
//! `transaction-data.nametagRefs` is an array of byte strings (not links); everything
//! else is encoded as it is. The same bytes are the element's CAR block.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::cbor::{self, Cbor};
use super::error::{ErrorCode, Result, UxfError, err};
use super::hash::ContentHash;
use super::limits::{MAX_HEADER_NUMBER, MAX_KIND_LENGTH};
use super::value::Value;

/// The element types (spec §2.2; `0x0b` is unallocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ElementType {
    /// `token-root` (0x01).
    TokenRoot,
    /// `genesis` (0x02).
    Genesis,
    /// `transaction` (0x03).
    Transaction,
    /// `genesis-data` (0x04).
    GenesisData,
    /// `transaction-data` (0x05).
    TransactionData,
    /// `token-state` (0x06).
    TokenState,
    /// `predicate` (0x07, never produced by ingestion).
    Predicate,
    /// `inclusion-proof` (0x08).
    InclusionProof,
    /// `authenticator` (0x09).
    Authenticator,
    /// `unicity-certificate` (0x0a).
    UnicityCertificate,
    /// `token-coin-data` (0x0c, never produced by ingestion).
    TokenCoinData,
    /// `smt-path` (0x0d).
    SmtPath,
    /// `pending-authenticator` (0x0e).
    PendingAuthenticator,
}

impl ElementType {
    /// All types, in id order.
    pub const ALL: [ElementType; 13] = [
        Self::TokenRoot,
        Self::Genesis,
        Self::Transaction,
        Self::GenesisData,
        Self::TransactionData,
        Self::TokenState,
        Self::Predicate,
        Self::InclusionProof,
        Self::Authenticator,
        Self::UnicityCertificate,
        Self::TokenCoinData,
        Self::SmtPath,
        Self::PendingAuthenticator,
    ];

    /// The wire type id.
    pub fn id(self) -> u8 {
        match self {
            Self::TokenRoot => 0x01,
            Self::Genesis => 0x02,
            Self::Transaction => 0x03,
            Self::GenesisData => 0x04,
            Self::TransactionData => 0x05,
            Self::TokenState => 0x06,
            Self::Predicate => 0x07,
            Self::InclusionProof => 0x08,
            Self::Authenticator => 0x09,
            Self::UnicityCertificate => 0x0a,
            Self::TokenCoinData => 0x0c,
            Self::SmtPath => 0x0d,
            Self::PendingAuthenticator => 0x0e,
        }
    }

    /// The type for a wire id.
    pub fn from_id(id: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| u64::from(t.id()) == id)
    }

    /// The reference's tag (`token-root`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::TokenRoot => "token-root",
            Self::Genesis => "genesis",
            Self::Transaction => "transaction",
            Self::GenesisData => "genesis-data",
            Self::TransactionData => "transaction-data",
            Self::TokenState => "token-state",
            Self::Predicate => "predicate",
            Self::InclusionProof => "inclusion-proof",
            Self::Authenticator => "authenticator",
            Self::UnicityCertificate => "unicity-certificate",
            Self::TokenCoinData => "token-coin-data",
            Self::SmtPath => "smt-path",
            Self::PendingAuthenticator => "pending-authenticator",
        }
    }

    /// The type for a tag.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Content keys that are hex in memory and byte strings (or null) when hashed.
    pub fn byte_fields(self) -> &'static [&'static str] {
        match self {
            Self::TokenRoot => &["tokenId"],
            Self::GenesisData => &[
                "tokenId",
                "tokenType",
                "salt",
                "tokenData",
                "recipientDataHash",
            ],
            Self::TransactionData => &["salt", "recipientDataHash"],
            Self::InclusionProof => &["transactionHash"],
            Self::Authenticator | Self::PendingAuthenticator => {
                &["publicKey", "signature", "stateHash"]
            }
            Self::UnicityCertificate | Self::Predicate => &["raw"],
            Self::TokenState => &["data", "predicate"],
            Self::SmtPath => &["cbor"],
            Self::Genesis | Self::Transaction | Self::TokenCoinData => &[],
        }
    }

    fn is_byte_field(self, key: &str) -> bool {
        self.byte_fields().contains(&key)
    }
}

/// A content key, child role or header kind: borrowed for the reference's fixed
/// vocabulary (no allocation per element), owned for anything else.
pub type Key = std::borrow::Cow<'static, str>;

/// The reference's vocabulary (content keys, child roles, instance kinds) as a
/// `'static` string, matched on the raw bytes: decoding skips UTF-8 validation and
/// allocation for every key it knows, which are nearly all of them.
fn vocabulary(b: &[u8]) -> Option<&'static str> {
    Some(match b {
        b"tokenId" => "tokenId",
        b"version" => "version",
        b"tokenType" => "tokenType",
        b"coinData" => "coinData",
        b"tokenData" => "tokenData",
        b"salt" => "salt",
        b"recipient" => "recipient",
        b"recipientDataHash" => "recipientDataHash",
        b"reason" => "reason",
        b"message" => "message",
        b"nametagRefs" => "nametagRefs",
        b"predicate" => "predicate",
        b"data" => "data",
        b"transactionHash" => "transactionHash",
        b"algorithm" => "algorithm",
        b"publicKey" => "publicKey",
        b"signature" => "signature",
        b"stateHash" => "stateHash",
        b"raw" => "raw",
        b"cbor" => "cbor",
        b"entries" => "entries",
        b"genesis" => "genesis",
        b"transactions" => "transactions",
        b"state" => "state",
        b"nametags" => "nametags",
        b"inclusionProof" => "inclusionProof",
        b"destinationState" => "destinationState",
        b"sourceState" => "sourceState",
        b"pendingAuthenticator" => "pendingAuthenticator",
        b"authenticator" => "authenticator",
        b"merkleTreePath" => "merkleTreePath",
        b"unicityCertificate" => "unicityCertificate",
        b"default" => "default",
        b"individual-proof" => "individual-proof",
        b"consolidated-proof" => "consolidated-proof",
        b"zk-proof" => "zk-proof",
        b"full-history" => "full-history",
        b"re-encoded" => "re-encoded",
        b"enriched-synthetic" => KIND_ENRICHED_SYNTHETIC,
        _ => return None,
    })
}

/// Interns a decoded key: the reference's vocabulary is borrowed, anything else owned.
pub fn key(s: String) -> Key {
    vocabulary(s.as_bytes()).map_or(Key::Owned(s), Key::Borrowed)
}

/// [`key`] for a borrowed string (allocates only outside the vocabulary).
pub(crate) fn intern(s: &str) -> Key {
    intern_bytes(s.as_bytes()).unwrap_or_else(|| Key::Owned(s.to_owned()))
}

/// The interned key for vocabulary bytes, `None` for anything else.
pub(crate) fn intern_bytes(b: &[u8]) -> Option<Key> {
    vocabulary(b).map(Key::Borrowed)
}

/// An element header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Representation version (0 ≤ v ≤ 2⁵³−1).
    pub representation: u64,
    /// Semantics version (0 ≤ v ≤ 2⁵³−1).
    pub semantics: u64,
    /// Kind (`default`, `consolidated-proof`, …).
    pub kind: Key,
    /// The previous instance of this element, if any.
    pub predecessor: Option<ContentHash>,
}

/// The kind the reference gives merge-made roots; such roots are never exported.
pub const KIND_ENRICHED_SYNTHETIC: &str = "enriched-synthetic";

impl Default for Header {
    fn default() -> Self {
        Self {
            representation: 1,
            semantics: 1,
            kind: Key::Borrowed("default"),
            predecessor: None,
        }
    }
}

impl Header {
    /// Checks the field rules of spec §10.6; errors have class `code`.
    pub fn validate(&self, code: ErrorCode) -> Result<()> {
        if self.representation > MAX_HEADER_NUMBER || self.semantics > MAX_HEADER_NUMBER {
            return Err(UxfError::new(code, "header number beyond 2^53-1"));
        }
        validate_kind(&self.kind, code)
    }
}

/// `kind`: non-empty, ≤ 64 units, `^[A-Za-z0-9][A-Za-z0-9._-]*$`.
pub(crate) fn validate_kind(kind: &str, code: ErrorCode) -> Result<()> {
    let mut chars = kind.bytes();
    let ok = kind.len() <= MAX_KIND_LENGTH
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UxfError::new(code, format!("invalid header kind {kind:?}")))
    }
}

/// A child slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Child {
    /// No child (`null`).
    Null,
    /// One child.
    Link(ContentHash),
    /// An ordered list of children (`[]` when empty).
    Links(Vec<ContentHash>),
}

impl Child {
    /// The hashes this slot refers to, in order.
    pub fn hashes(&self) -> &[ContentHash] {
        match self {
            Self::Null => &[],
            Self::Link(h) => std::slice::from_ref(h),
            Self::Links(v) => v,
        }
    }
}

/// Hash → element in insertion order: a package's pool.
pub type Pool = indexmap::IndexMap<ContentHash, Element, super::hash::BuildContentHasher>;

/// One element in its in-memory form.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// The header.
    pub header: Header,
    /// The type.
    pub ty: ElementType,
    /// Content values in insertion order.
    pub content: Vec<(Key, Value)>,
    /// Children in insertion order (construction order, or dag-cbor order when decoded).
    pub children: Vec<(Key, Child)>,
}

impl Element {
    /// An element with the default header.
    pub fn new(ty: ElementType, content: Vec<(Key, Value)>, children: Vec<(Key, Child)>) -> Self {
        Self {
            header: Header::default(),
            ty,
            content,
            children,
        }
    }

    /// A content value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A child slot.
    pub fn child(&self, role: &str) -> Option<&Child> {
        self.children
            .iter()
            .find(|(k, _)| k == role)
            .map(|(_, v)| v)
    }

    /// A single-link child.
    pub fn child_link(&self, role: &str) -> Option<ContentHash> {
        match self.child(role) {
            Some(Child::Link(h)) => Some(*h),
            _ => None,
        }
    }

    /// Every child hash in children order (arrays expanded, nulls skipped).
    pub fn child_hashes(&self) -> impl Iterator<Item = ContentHash> + '_ {
        self.children
            .iter()
            .flat_map(|(_, c)| c.hashes().iter().copied())
    }

    /// Appends the canonical DAG-CBOR bytes (the hashed bytes and the CAR block).
    pub fn write_canonical(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(0xa4);
        cbor::text(out, "type");
        cbor::head(out, 0, u64::from(self.ty.id()));
        cbor::text(out, "header");
        out.push(0x84);
        cbor::head(out, 0, self.header.representation);
        cbor::head(out, 0, self.header.semantics);
        cbor::text(out, &self.header.kind);
        match &self.header.predecessor {
            Some(h) => cbor::link(out, h),
            None => cbor::null(out),
        }
        cbor::text(out, "content");
        cbor::head(out, 5, self.content.len() as u64);
        let mut keys: Vec<&(Key, Value)> = self.content.iter().collect();
        keys.sort_by(|a, b| cbor::key_order(&a.0, &b.0));
        for pair in keys.windows(2) {
            if let [a, b] = pair
                && a.0 == b.0
            {
                return Err(err!(InvalidHash, "duplicate content key {}", a.0));
            }
        }
        for (k, v) in keys {
            cbor::text(out, k);
            self.write_content_value(out, k, v)?;
        }
        cbor::text(out, "children");
        cbor::head(out, 5, self.children.len() as u64);
        let mut roles: Vec<&(Key, Child)> = self.children.iter().collect();
        roles.sort_by(|a, b| cbor::key_order(&a.0, &b.0));
        for (k, c) in roles {
            cbor::text(out, k);
            match c {
                Child::Null => cbor::null(out),
                Child::Link(h) => cbor::link(out, h),
                Child::Links(v) => {
                    cbor::head(out, 4, v.len() as u64);
                    for h in v {
                        cbor::link(out, h);
                    }
                }
            }
        }
        Ok(())
    }

    fn write_content_value(&self, out: &mut Vec<u8>, key: &str, v: &Value) -> Result<()> {
        if self.ty == ElementType::TransactionData
            && key == "nametagRefs"
            && let Value::Array(items) = v
        {
            {
                cbor::head(out, 4, items.len() as u64);
                for it in items {
                    match it {
                        Value::Text(s) if !s.is_empty() => write_hex(out, s)?,
                        Value::Bytes(b) => cbor::bytes(out, b),
                        _ => return Err(err!(InvalidHash, "invalid nametagRefs entry")),
                    }
                }
                return Ok(());
            }
        }
        let byte_field = self.ty.is_byte_field(key);
        match v {
            Value::Null => cbor::null(out),
            Value::Text(s) if byte_field => {
                if s.is_empty() {
                    cbor::null(out);
                } else {
                    write_hex(out, s).map_err(|_| {
                        err!(InvalidHash, "{}.{key} is not valid hex", self.ty.name())
                    })?;
                }
            }
            Value::Bytes(b) if byte_field && b.is_empty() => cbor::null(out),
            other => other.write_cbor(out),
        }
        Ok(())
    }

    /// The canonical bytes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out)?;
        Ok(out)
    }

    /// The ContentHash.
    pub fn hash(&self) -> Result<ContentHash> {
        Ok(ContentHash::digest(&self.canonical_bytes()?))
    }

    /// Decodes a block (canonical bytes) back into an element; byte strings of byte
    /// fields and of `reason` stay bytes, other top-level byte strings become hex text
    /// as in the reference. Does not check the hash (the caller compares it with the CID).
    pub fn from_block(data: &[u8]) -> Result<Self> {
        // Read straight from the bytes (no intermediate CBOR tree): the strictness rules
        // are the reader's, and links become hashes without an allocation.
        let mut r = cbor::Reader::new(data);
        let n = r
            .map_len()
            .map_err(|_| err!(SerializationError, "element block is not a map"))?;
        let (mut ty, mut header, mut content, mut children) = (None, None, None, None);
        // Unknown top-level keys are skipped, so a 64 KiB block may carry ~16 000 of
        // them: the duplicate check must stay linear (a hash set past a few keys).
        let mut seen = cbor::DupCheck::default();
        for _ in 0..n {
            let k = r.key()?;
            if !seen.insert(&k) {
                return Err(err!(
                    SerializationError,
                    "invalid dag-cbor: duplicate map key"
                ));
            }
            match k.as_ref() {
                "type" => {
                    ty = Some(match r.any()? {
                        Cbor::Uint(id) => ElementType::from_id(id).ok_or_else(|| {
                            err!(SerializationError, "unknown element type id {id}")
                        })?,
                        _ => {
                            return Err(err!(SerializationError, "element type is not an integer"));
                        }
                    });
                }
                "header" => {
                    // the usual header read in place; anything unusual (extra items,
                    // wrong types) goes through the general path and its errors
                    let saved = r.clone();
                    header = Some(match read_plain_header(&mut r) {
                        Some(h) => h,
                        None => {
                            r = saved;
                            decode_header(&r.any()?)?
                        }
                    });
                }
                "content" => {
                    let m = r
                        .map_len()
                        .map_err(|_| err!(SerializationError, "element content is not a map"))?;
                    let mut c: Vec<(Key, Value)> = Vec::with_capacity(m.min(16));
                    let mut dup = cbor::DupCheck::default();
                    for _ in 0..m {
                        let ck = r.key()?;
                        if !dup.insert(&ck) {
                            return Err(err!(
                                SerializationError,
                                "invalid dag-cbor: duplicate map key"
                            ));
                        }
                        c.push((ck, Value::from_cbor_owned(r.any()?)));
                    }
                    content = Some(c);
                }
                "children" => {
                    let m = r
                        .map_len()
                        .map_err(|_| err!(SerializationError, "element children is not a map"))?;
                    let mut c: Vec<(Key, Child)> = Vec::with_capacity(m.min(8));
                    let mut dup = cbor::DupCheck::default();
                    for _ in 0..m {
                        let role = r.key()?;
                        if !dup.insert(&role) {
                            return Err(err!(
                                SerializationError,
                                "invalid dag-cbor: duplicate map key"
                            ));
                        }
                        let child = match r.peek() {
                            Some(0xf6) => {
                                r.any()?;
                                Child::Null
                            }
                            Some(0xd8) => Child::Link(ContentHash::from_cid_bytes(r.link()?)?),
                            Some(b) if b >> 5 == 4 => {
                                let k = r.array_len()?;
                                let mut v = Vec::with_capacity(k.min(64));
                                for _ in 0..k {
                                    if r.peek() != Some(0xd8) {
                                        return Err(err!(
                                            SerializationError,
                                            "child array item is not a link"
                                        ));
                                    }
                                    v.push(ContentHash::from_cid_bytes(r.link()?)?);
                                }
                                Child::Links(v)
                            }
                            Some(b) if b >> 5 == 2 => {
                                return Err(err!(
                                    SerializationError,
                                    "child {role} is a raw byte string: legacy pre-#435 encoding is not supported"
                                ));
                            }
                            _ => {
                                return Err(err!(SerializationError, "child {role} is not a link"));
                            }
                        };
                        c.push((role, child));
                    }
                    children = Some(c);
                }
                _ => {
                    r.any()?;
                }
            }
        }
        r.finish()?;
        let missing = |name: &str| err!(SerializationError, "element block lacks {name}");
        let ty = ty.ok_or_else(|| missing("type"))?;
        let header = header.ok_or_else(|| missing("header"))?;
        let mut content = content.ok_or_else(|| missing("content"))?;
        let children = children.ok_or_else(|| missing("children"))?;
        // as the reference: top-level byte strings other than byte fields and `reason`
        // come back as hex text (and then fail the hash check)
        for (k, v) in &mut content {
            if let Value::Bytes(b) = v
                && !(ty.is_byte_field(k) || k == "reason")
            {
                *v = Value::Text(to_hex(b));
            }
        }
        Ok(Self {
            header,
            ty,
            content,
            children,
        })
    }
}

/// The common header — `[uint, uint, kind text, null | link]`, valid — read without
/// building a CBOR tree; `None` for anything else, which [`decode_header`] then judges.
fn read_plain_header(r: &mut cbor::Reader<'_>) -> Option<Header> {
    if r.array_len().ok()? != 4 {
        return None;
    }
    let representation = r.uint().ok().filter(|n| *n <= MAX_HEADER_NUMBER)?;
    let semantics = r.uint().ok().filter(|n| *n <= MAX_HEADER_NUMBER)?;
    let kind = r.key().ok()?;
    validate_kind(&kind, ErrorCode::SerializationError).ok()?;
    let predecessor = match r.peek()? {
        0xf6 => {
            r.any().ok()?;
            None
        }
        0xd8 => Some(ContentHash::from_cid_bytes(r.link().ok()?).ok()?),
        _ => return None,
    };
    Some(Header {
        representation,
        semantics,
        kind,
        predecessor,
    })
}

fn decode_header(c: &Cbor) -> Result<Header> {
    let Cbor::Array(items) = c else {
        return Err(err!(SerializationError, "element header is not an array"));
    };
    let [rep, sem, kind, pred, ..] = items.as_slice() else {
        return Err(err!(
            SerializationError,
            "element header has fewer than 4 items"
        ));
    };
    let num = |c: &Cbor| match c {
        Cbor::Uint(n) if *n <= MAX_HEADER_NUMBER => Ok(*n),
        _ => Err(err!(
            SerializationError,
            "header number is not a safe integer"
        )),
    };
    let Cbor::Text(kind) = kind else {
        return Err(err!(SerializationError, "header kind is not text"));
    };
    validate_kind(kind, ErrorCode::SerializationError)?;
    let predecessor = match pred {
        Cbor::Null => None,
        Cbor::Link(cid) => Some(ContentHash::from_cid_bytes(cid)?),
        Cbor::Bytes(_) => {
            return Err(err!(
                SerializationError,
                "predecessor is a raw byte string: legacy pre-#435 encoding is not supported"
            ));
        }
        _ => return Err(err!(SerializationError, "predecessor is not a link")),
    };
    Ok(Header {
        representation: num(rep)?,
        semantics: num(sem)?,
        kind: intern(kind),
        predecessor,
    })
}

/// Writes a hex string (either case) as a CBOR byte string.
fn write_hex(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(err!(InvalidHash, "odd-length hex"));
    }
    cbor::head(out, 2, (b.len() / 2) as u64);
    for pair in b.chunks_exact(2) {
        let (Some(hi), Some(lo)) = (
            pair.first().and_then(|c| nibble(*c)),
            pair.get(1).and_then(|c| nibble(*c)),
        ) else {
            return Err(err!(InvalidHash, "non-hex character"));
        };
        out.push((hi << 4) | lo);
    }
    Ok(())
}

/// Hex digit values; 0xff marks a non-hex character.
static HEX_VALUE: [u8; 256] = hex_table();

#[expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "compile-time table: i < 256 and digit offsets < 16"
)]
const fn hex_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0usize;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0xff,
        };
        i += 1;
    }
    t
}

/// One hex digit's value.
pub(crate) fn nibble(c: u8) -> Option<u8> {
    HEX_VALUE
        .get(usize::from(c))
        .copied()
        .filter(|v| *v != 0xff)
}

/// Decodes hex of either case (`INVALID_HASH` on odd length or a non-hex character).
pub(crate) fn decode_hex(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(err!(InvalidHash, "odd-length hex string"));
    }
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut bad = 0u8;
    for pair in b.chunks_exact(2) {
        if let [h, l] = pair {
            let (hi, lo) = (
                HEX_VALUE.get(usize::from(*h)).copied().unwrap_or(0xff),
                HEX_VALUE.get(usize::from(*l)).copied().unwrap_or(0xff),
            );
            bad |= (hi | lo) & 0xf0;
            out.push((hi << 4) | (lo & 0x0f));
        }
    }
    if bad != 0 {
        return Err(err!(InvalidHash, "invalid hex string"));
    }
    Ok(out)
}

/// Lowercase hex (table-driven; `hex::encode` goes through a char iterator).
pub(crate) fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len().saturating_mul(2));
    for x in b {
        s.push(char::from(
            *DIGITS.get(usize::from(x >> 4)).unwrap_or(&b'0'),
        ));
        s.push(char::from(
            *DIGITS.get(usize::from(x & 0x0f)).unwrap_or(&b'0'),
        ));
    }
    s
}

#[cfg(test)]
#[expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test fixtures are built by position and size"
)]
mod tests {
    use super::*;

    #[test]
    fn upstream_known_vector() {
        // upstream tests/unit/uxf/hash.test.ts "known test vector"
        let el = Element::new(
            ElementType::TokenState,
            vec![
                ("predicate".into(), Value::Text("ab".repeat(32))),
                ("data".into(), Value::Text("cd".repeat(32))),
            ],
            vec![],
        );
        assert_eq!(
            el.hash().unwrap().to_hex(),
            "e4e0b32c46a99bf781e7c6e3cde42993b5fa72bf1b00184d8c8018d1b8cca730"
        );
        let back = Element::from_block(&el.canonical_bytes().unwrap()).unwrap();
        assert_eq!(back.hash().unwrap(), el.hash().unwrap());
    }

    #[test]
    fn bad_hex_is_invalid_hash() {
        let el = Element::new(
            ElementType::TokenState,
            vec![("predicate".into(), Value::Text("abc".into()))],
            vec![],
        );
        assert_eq!(el.hash().unwrap_err().code(), ErrorCode::InvalidHash);
    }

    /// The `i`-th three-character unknown key (none of the vocabulary).
    fn unknown_key(i: usize) -> String {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        [i / (62 * 62), (i / 62) % 62, i % 62]
            .iter()
            .map(|d| char::from(A[*d]))
            .collect()
    }

    /// An element block whose top-level map holds the four fields plus `extra` unknown
    /// keys, the unknown key `dup_of` repeated at the end when given.
    fn block_with_unknown_keys(extra: usize, dup_of: Option<usize>) -> Vec<u8> {
        let el = Element::new(ElementType::TokenState, vec![], vec![]);
        let canonical = el.canonical_bytes().unwrap();
        let n = 4 + extra + usize::from(dup_of.is_some());
        let mut b = Vec::new();
        cbor::head(&mut b, 5, n as u64);
        // the four known entries, as written (skip the map head a4)
        b.extend_from_slice(&canonical[1..]);
        for i in (0..extra).chain(dup_of) {
            cbor::text(&mut b, &unknown_key(i));
            b.push(0xf6);
        }
        b
    }

    #[test]
    fn top_level_duplicate_check_is_linear_and_still_rejects_duplicates() {
        // 12 000 unknown keys (5 bytes an entry) fit in a 64 KiB block
        let n = 12_000;
        let ok = block_with_unknown_keys(n, None);
        assert!(ok.len() < 64 * 1024);
        cbor::KEY_PROBES.with(|c| c.set(0));
        let el = Element::from_block(&ok).unwrap();
        let probes = cbor::KEY_PROBES.with(std::cell::Cell::get);
        assert_eq!(el.hash().unwrap(), el.hash().unwrap());
        // a pairwise scan would make ~n²/2 = 128 000 000 comparisons
        assert!(
            probes <= 20 * (n + 4),
            "{probes} key comparisons for {n} keys"
        );
        // duplicates are still refused: of a known key, of an early and a late unknown key
        for dup in [0, n / 2, n - 1] {
            let e = Element::from_block(&block_with_unknown_keys(n, Some(dup))).unwrap_err();
            assert_eq!(e.code(), ErrorCode::SerializationError);
            assert!(e.message.contains("duplicate map key"), "{e}");
        }
        let mut twice_type = block_with_unknown_keys(0, None);
        twice_type[0] = 0xa5;
        cbor::text(&mut twice_type, "type");
        twice_type.push(0x06);
        let e = Element::from_block(&twice_type).unwrap_err();
        assert!(e.message.contains("duplicate map key"), "{e}");
        // and few keys behave as before
        let small = Element::from_block(&block_with_unknown_keys(3, None)).unwrap();
        assert_eq!(small.ty, ElementType::TokenState);
        assert!(Element::from_block(&block_with_unknown_keys(3, Some(1))).is_err());
    }

    #[test]
    fn kinds() {
        for ok in ["default", "consolidated-proof", "a.b_c-1"] {
            validate_kind(ok, ErrorCode::SerializationError).unwrap();
        }
        for bad in ["", "-x", "a b", &"k".repeat(65)] {
            assert!(validate_kind(bad, ErrorCode::SerializationError).is_err());
        }
    }
}
