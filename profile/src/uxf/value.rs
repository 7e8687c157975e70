//! [`Value`]: an element content value in its in-memory form, and JSON output.
//!
//! Content values are what the reference keeps in memory: strings (byte fields as hex),
//! `null`, numbers, arrays, maps, and raw bytes. Byte fields may also be held as
//! [`Value::Bytes`] (decoded hex): that is the same value as its lowercase hex string
//! in every observable way (JSON prints it as hex, hashing encodes it as a byte string),
//! and it halves the memory of byte-heavy elements. Maps keep insertion order, which is
//! the order the reference emits in JSON.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::cbor::{self, Cbor};

/// One content value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer `-1 - n`.
    NegInt(u64),
    /// A non-integral finite number.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes (hex in JSON).
    Bytes(Vec<u8>),
    /// Array.
    Array(Vec<Value>),
    /// Map in insertion order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// From parsed JSON (integral numbers become integers, as in JavaScript).
    pub fn from_json(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Self::UInt(u)
                } else if let Some(i) = n.as_i64() {
                    Self::NegInt(i.unsigned_abs().saturating_sub(1))
                } else {
                    Self::from_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            serde_json::Value::String(s) => Self::Text(s.clone()),
            serde_json::Value::Array(a) => Self::Array(a.iter().map(Self::from_json).collect()),
            serde_json::Value::Object(o) => Self::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Self::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A JavaScript number: integral values within ±2⁶⁴ become integers.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "range checked just before"
    )]
    pub fn from_f64(f: f64) -> Self {
        if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) {
            Self::UInt(f as u64)
        } else if f.fract() == 0.0 && (-18_446_744_073_709_551_616.0..0.0).contains(&f) {
            Self::NegInt((-f - 1.0) as u64)
        } else {
            Self::Float(f)
        }
    }

    /// To JSON (bytes as lowercase hex).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// From decoded CBOR (links become `{"/": cid}` as the JS CID's toJSON does).
    pub fn from_cbor(c: &Cbor) -> Self {
        match c {
            Cbor::Uint(n) => Self::UInt(*n),
            Cbor::Nint(n) => Self::NegInt(*n),
            Cbor::Bytes(b) => Self::Bytes(b.clone()),
            Cbor::Text(s) => Self::Text(s.clone()),
            Cbor::Array(a) => Self::Array(a.iter().map(Self::from_cbor).collect()),
            Cbor::Map(m) => Self::Map(
                m.iter()
                    .map(|(k, v)| (k.to_string(), Self::from_cbor(v)))
                    .collect(),
            ),
            Cbor::Link(cid) => {
                let s = cid::Cid::try_from(&cid[..])
                    .map_or_else(|_| hex::encode(cid), |c| c.to_string());
                Self::Map(vec![("/".to_owned(), Self::Text(s))])
            }
            Cbor::Bool(b) => Self::Bool(*b),
            Cbor::Null => Self::Null,
            Cbor::Float(f) => Self::from_f64(*f),
        }
    }

    /// Same as [`Self::from_cbor`], moving bytes and strings instead of copying them.
    pub fn from_cbor_owned(c: Cbor) -> Self {
        match c {
            Cbor::Bytes(b) => Self::Bytes(b),
            Cbor::Text(s) => Self::Text(s),
            Cbor::Array(a) => Self::Array(a.into_iter().map(Self::from_cbor_owned).collect()),
            Cbor::Map(m) => Self::Map(
                m.into_iter()
                    .map(|(k, v)| (k.into_owned(), Self::from_cbor_owned(v)))
                    .collect(),
            ),
            other => Self::from_cbor(&other),
        }
    }

    /// Writes canonical dag-cbor (no byte-field preparation: that is the element's job).
    pub(crate) fn write_cbor(&self, out: &mut Vec<u8>) {
        match self {
            Self::Null => cbor::null(out),
            Self::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
            Self::UInt(n) => cbor::head(out, 0, *n),
            Self::NegInt(n) => cbor::head(out, 1, *n),
            Self::Float(f) => cbor::float(out, *f),
            Self::Text(s) => cbor::text(out, s),
            Self::Bytes(b) => cbor::bytes(out, b),
            Self::Array(a) => {
                cbor::head(out, 4, a.len() as u64);
                for v in a {
                    v.write_cbor(out);
                }
            }
            Self::Map(m) => {
                cbor::head(out, 5, m.len() as u64);
                let mut idx: Vec<&(String, Value)> = m.iter().collect();
                idx.sort_by(|a, b| cbor::key_order(&a.0, &b.0));
                for (k, v) in idx {
                    cbor::text(out, k);
                    v.write_cbor(out);
                }
            }
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    /// A map's value for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The hex form of a byte-field value: text as is, bytes as lowercase hex.
    pub fn hex_str(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Self::Text(s) => Some(std::borrow::Cow::Borrowed(s)),
            Self::Bytes(b) => Some(std::borrow::Cow::Owned(super::element::to_hex(b))),
            _ => None,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::UInt(n) => s.serialize_u64(*n),
            Self::NegInt(n) => match i64::try_from(*n) {
                Ok(i) => s.serialize_i64(-1 - i),
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "beyond i64 JSON has only floats"
                )]
                Err(_) => s.serialize_f64(-1.0 - *n as f64),
            },
            Self::Float(f) => s.serialize_f64(*f),
            Self::Text(t) => s.serialize_str(t),
            Self::Bytes(b) => s.serialize_str(&super::element::to_hex(b)),
            Self::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Self::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Whether `v` nests deeper than `limit` levels as the CBOR decoder counts them: a
/// non-empty array or object is one level above its items, a scalar or an empty
/// container adds none. Iterative, so a value of any depth is safe to ask about.
pub(crate) fn json_nests_deeper_than(v: &serde_json::Value, limit: usize) -> bool {
    let mut stack = vec![(v, 0usize)];
    while let Some((x, d)) = stack.pop() {
        let below = d.saturating_add(1);
        match x {
            serde_json::Value::Array(a) if !a.is_empty() => {
                if below > limit {
                    return true;
                }
                stack.extend(a.iter().map(|i| (i, below)));
            }
            serde_json::Value::Object(o) if !o.is_empty() => {
                if below > limit {
                    return true;
                }
                stack.extend(o.values().map(|i| (i, below)));
            }
            _ => {}
        }
    }
    false
}

/// Order-preserving JSON parsing (JavaScript's `JSON.parse` keeps key order, and the
/// package JSON's element and manifest order drive CAR block order).
impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
                Ok(Value::UInt(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
                Ok(if n >= 0 {
                    Value::UInt(n.unsigned_abs())
                } else {
                    Value::NegInt(n.unsigned_abs().saturating_sub(1))
                })
            }
            fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
                Ok(Value::from_f64(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::Text(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(Value::Text(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Value::Array(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut v: Vec<(String, Value)> = Vec::new();
                // key → position, so that a large object stays linear
                let mut index: std::collections::HashMap<String, usize> =
                    std::collections::HashMap::new();
                while let Some((k, x)) = a.next_entry::<String, Value>()? {
                    // JSON.parse: a repeated key keeps its first position, last value
                    match index.get(&k).and_then(|i| v.get_mut(*i)) {
                        Some(slot) => slot.1 = x,
                        None => {
                            index.insert(k.clone(), v.len());
                            v.push((k, x));
                        }
                    }
                }
                Ok(Value::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_keep_order_and_last_duplicate() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                ("b".into(), Value::UInt(3)),
                ("a".into(), Value::UInt(2))
            ])
        );
    }

    #[test]
    fn json_numbers_follow_javascript() {
        let v: serde_json::Value = serde_json::from_str("[1, -17, 1.0, 2.5]").unwrap();
        assert_eq!(
            Value::from_json(&v),
            Value::Array(vec![
                Value::UInt(1),
                Value::NegInt(16),
                Value::UInt(1),
                Value::Float(2.5)
            ])
        );
        assert_eq!(Value::NegInt(16).to_json(), serde_json::json!(-17));
        assert_eq!(Value::Bytes(vec![0xab]).to_json(), serde_json::json!("ab"));
    }
}
