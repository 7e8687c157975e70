//! The genesis `reason` field (spec §6): stored as bytes, restored as JSON.
//!
//! # Format
//!
//! `null` → `null`; a string → its UTF-8 bytes; anything else (the split-mint reason
//! object) → the dag-cbor encoding of the JSON value as it is (hex strings stay text,
//! map keys in dag-cbor order). Restoring tries a strict dag-cbor decode of the whole
//! byte string first and falls back to UTF-8, so a string whose bytes happen to be valid
//! CBOR changes type (`"0"` → `-17`), exactly as in the reference.
//!
//! The decoder reads at most [`MAX_CBOR_DEPTH`] levels, so a reason nested deeper is
//! refused when stored (`LIMIT_EXCEEDED`) rather than written as bytes that would come
//! back as text. Bytes that are well-formed CBOR up to that depth and nest deeper are
//! likewise `LIMIT_EXCEEDED` when restored, not text: no string reason has such bytes
//! (valid UTF-8 never starts with an array or map head), so the text fallback is kept
//! for what is not CBOR at all, as in the reference.

use super::cbor::{self, Failure};
use super::error::{Result, err};
use super::limits::MAX_CBOR_DEPTH;
use super::value::{Value, json_nests_deeper_than};

/// The stored form of a token JSON `reason`.
pub(crate) fn encode(reason: Option<&serde_json::Value>) -> Result<Value> {
    Ok(match reason {
        None | Some(serde_json::Value::Null) => Value::Null,
        Some(serde_json::Value::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        Some(other) => {
            // decoded on its own, from depth 0
            if json_nests_deeper_than(other, MAX_CBOR_DEPTH) {
                return Err(err!(
                    LimitExceeded,
                    "genesis reason nests deeper than {MAX_CBOR_DEPTH} levels"
                ));
            }
            let mut out = Vec::new();
            Value::from_json(other).write_cbor(&mut out);
            Value::Bytes(out)
        }
    })
}

/// The token JSON `reason` for stored bytes.
pub(crate) fn decode(stored: &Value) -> Result<Value> {
    match stored {
        Value::Bytes(b) => match cbor::decode_classified(b) {
            Ok(c) => Ok(Value::from_cbor(&c)),
            Err(Failure::TooDeep(_)) => Err(err!(
                LimitExceeded,
                "genesis reason is CBOR nested deeper than {MAX_CBOR_DEPTH} levels"
            )),
            Err(Failure::Invalid(_)) => Ok(Value::Text(String::from_utf8_lossy(b).into_owned())),
        },
        Value::Text(s) => match super::element::decode_hex(s) {
            // A reason that arrived as hex text (JSON import keeps bytes as hex).
            Ok(b) => decode(&Value::Bytes(b)),
            Err(_) => Ok(Value::Text(s.clone())),
        },
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uxf::ErrorCode;
    use serde_json::json;

    fn nested(levels: usize) -> serde_json::Value {
        let mut v = json!({"type": "TOKEN_SPLIT"});
        for _ in 1..levels {
            v = json!({ "inner": v });
        }
        v
    }

    #[test]
    fn decode_quirk_matches_reference() {
        let rt = |s: &str| decode(&encode(Some(&json!(s))).unwrap()).unwrap().to_json();
        assert_eq!(rt("0"), json!(-17));
        assert_eq!(rt("\u{1}"), json!(1));
        assert_eq!(rt("a"), json!("a"));
        assert_eq!(rt("hello reason"), json!("hello reason"));
        // not CBOR at all: text, invalid UTF-8 replaced (TextDecoder's default)
        let raw = Value::Bytes(vec![b'o', b'k', 0xff]);
        assert_eq!(decode(&raw).unwrap().to_json(), json!("ok\u{fffd}"));
    }

    #[test]
    fn reasons_deeper_than_the_decoder_reads_are_refused_not_turned_into_text() {
        // a reason object of `n` maps nests n levels: the deepest the decoder reads
        // round-trips, one more is refused when stored
        let ok = nested(MAX_CBOR_DEPTH);
        let back = decode(&encode(Some(&ok)).unwrap()).unwrap().to_json();
        assert_eq!(back, ok);
        let deep = nested(MAX_CBOR_DEPTH + 1);
        assert_eq!(
            encode(Some(&deep)).unwrap_err().code(),
            ErrorCode::LimitExceeded
        );
        // arrays and empty containers count as the decoder counts them
        let mut arr = json!([]);
        for _ in 0..=MAX_CBOR_DEPTH {
            arr = json!([arr]);
        }
        // 65 non-empty arrays around an empty one: the empty one sits at depth 65
        assert_eq!(
            encode(Some(&arr)).unwrap_err().code(),
            ErrorCode::LimitExceeded
        );
        let arr = arr[0].clone();
        assert_eq!(decode(&encode(Some(&arr)).unwrap()).unwrap().to_json(), arr);

        // stored bytes nested 70 deep (a crafted bundle): an error, not garbage text
        let mut bytes = vec![0x81u8; 70];
        bytes.push(0x00);
        let e = decode(&Value::Bytes(bytes.clone())).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
        // also when the bytes arrived as hex text (package JSON)
        let e = decode(&Value::Text(hex::encode(&bytes))).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitExceeded);
    }
}
