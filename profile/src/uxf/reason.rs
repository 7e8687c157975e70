//! The genesis `reason` field (spec §6): stored as bytes, restored as JSON.
//!
//! # Format
//!
//! `null` → `null`; a string → its UTF-8 bytes; anything else (the split-mint reason
//! object) → the dag-cbor encoding of the JSON value as it is (hex strings stay text,
//! map keys in dag-cbor order). Restoring tries a strict dag-cbor decode of the whole
//! byte string first and falls back to UTF-8, so a string whose bytes happen to be valid
//! CBOR changes type (`"0"` → `-17`), exactly as in the reference.

use super::cbor;
use super::value::Value;

/// The stored form of a token JSON `reason`.
pub(crate) fn encode(reason: Option<&serde_json::Value>) -> Value {
    match reason {
        None | Some(serde_json::Value::Null) => Value::Null,
        Some(serde_json::Value::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        Some(other) => {
            let mut out = Vec::new();
            Value::from_json(other).write_cbor(&mut out);
            Value::Bytes(out)
        }
    }
}

/// The token JSON `reason` for stored bytes.
pub(crate) fn decode(stored: &Value) -> Value {
    match stored {
        Value::Bytes(b) => match cbor::decode(b) {
            Ok(c) => Value::from_cbor(&c),
            Err(_) => Value::Text(String::from_utf8_lossy(b).into_owned()),
        },
        Value::Text(s) => match super::element::decode_hex(s) {
            // A reason that arrived as hex text (JSON import keeps bytes as hex).
            Ok(b) => decode(&Value::Bytes(b)),
            Err(_) => Value::Text(s.clone()),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_quirk_matches_reference() {
        let rt = |s: &str| decode(&encode(Some(&serde_json::json!(s)))).to_json();
        assert_eq!(rt("0"), serde_json::json!(-17));
        assert_eq!(rt("\u{1}"), serde_json::json!(1));
        assert_eq!(rt("a"), serde_json::json!("a"));
        assert_eq!(rt("hello reason"), serde_json::json!("hello reason"));
    }
}
