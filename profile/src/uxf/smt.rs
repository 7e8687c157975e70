//! The `smt-path` blob: the state-transition SDK's own CBOR of a sparse-Merkle-tree
//! path, which UXF stores opaquely (spec §5).
//!
//! # Format
//!
//! ```text
//! blob = [ bstr(hex-decoded root imprint, ≥ 3 bytes),
//!          [ [ bstr(path as minimal big-endian unsigned integer; 0 → empty),
//!              bstr(hex-decoded data) | null ], … ≥ 1 step ] ]
//! ```
//! JSON side: `{root: hex, steps: [{data: hex|null, path: decimal string}]}`; paths are
//! arbitrary-size unsigned integers (real ones exceed 256 bits). Like JavaScript's
//! `BigInt()`, `0x`/`0o`/`0b` prefixes and surrounding whitespace are accepted, and an
//! empty string is 0. Errors have class [`ErrorCode::SmtPath`](super::ErrorCode::SmtPath)
//! (in the reference they are the SDK's plain `Invalid JSON structure.` errors).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::cbor::{self, Cbor};
use super::element::decode_hex;
use super::error::{Result, UxfError, err};
use super::limits::MAX_PATH_CHARS;
use super::value::Value;

fn invalid() -> UxfError {
    err!(SmtPath, "Invalid JSON structure.")
}

/// SMT path JSON → blob.
pub(crate) fn json_to_blob(v: &serde_json::Value) -> Result<Vec<u8>> {
    let root = v.get("root").and_then(|r| r.as_str()).ok_or_else(invalid)?;
    let steps = v
        .get("steps")
        .and_then(|s| s.as_array())
        .ok_or_else(invalid)?;
    if steps.is_empty() {
        return Err(invalid());
    }
    let root = decode_hex(root).map_err(|_| err!(SmtPath, "invalid SMT path root hex"))?;
    if root.len() < 3 {
        return Err(err!(SmtPath, "SMT path root imprint shorter than 3 bytes"));
    }
    let mut out = Vec::with_capacity(root.len().saturating_add(steps.len().saturating_mul(48)));
    out.push(0x82);
    cbor::bytes(&mut out, &root);
    cbor::head(&mut out, 4, steps.len() as u64);
    for s in steps {
        let path = match s.get("path") {
            Some(serde_json::Value::String(p)) => parse_bigint(p)?,
            Some(serde_json::Value::Number(n)) => {
                let u = n.as_u64().ok_or_else(invalid)?;
                strip(u.to_be_bytes().to_vec())
            }
            _ => return Err(invalid()),
        };
        out.push(0x82);
        cbor::bytes(&mut out, &path);
        match s.get("data") {
            None | Some(serde_json::Value::Null) => cbor::null(&mut out),
            Some(serde_json::Value::String(d)) if d.is_empty() => cbor::null(&mut out),
            Some(serde_json::Value::String(d)) => cbor::bytes(
                &mut out,
                &decode_hex(d).map_err(|_| err!(SmtPath, "invalid SMT step data hex"))?,
            ),
            Some(_) => return Err(invalid()),
        }
    }
    Ok(out)
}

/// Blob → SMT path JSON (`{root, steps: [{data, path}]}`).
pub(crate) fn blob_to_json(blob: &[u8]) -> Result<Value> {
    let bad = || err!(SmtPath, "invalid SMT path CBOR");
    let Cbor::Array(top) = cbor::decode(blob).map_err(|_| bad())? else {
        return Err(bad());
    };
    let [Cbor::Bytes(root), Cbor::Array(steps)] = top.as_slice() else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        let Cbor::Array(pair) = s else {
            return Err(bad());
        };
        let [Cbor::Bytes(path), data] = pair.as_slice() else {
            return Err(bad());
        };
        let data = match data {
            Cbor::Bytes(d) => Value::Text(super::element::to_hex(d)),
            Cbor::Null => Value::Null,
            _ => return Err(bad()),
        };
        out.push(Value::Map(vec![
            ("data".to_owned(), data),
            ("path".to_owned(), Value::Text(to_decimal(path))),
        ]));
    }
    Ok(Value::Map(vec![
        ("root".to_owned(), Value::Text(super::element::to_hex(root))),
        ("steps".to_owned(), Value::Array(out)),
    ]))
}

fn strip(mut b: Vec<u8>) -> Vec<u8> {
    let z = b.iter().take_while(|x| **x == 0).count();
    b.drain(..z);
    b
}

/// Parses a non-negative integer the way JavaScript's `BigInt(string)` does.
fn parse_bigint(s: &str) -> Result<Vec<u8>> {
    let t = s.trim();
    if t.len() > MAX_PATH_CHARS {
        return Err(err!(
            SmtPath,
            "SMT path longer than {MAX_PATH_CHARS} characters"
        ));
    }
    let lower = t.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16u32, t.get(2..).unwrap_or("")),
        Some("0o") => (8, t.get(2..).unwrap_or("")),
        Some("0b") => (2, t.get(2..).unwrap_or("")),
        _ => (10, t.strip_prefix('+').unwrap_or(t)),
    };
    if radix != 10 && digits.is_empty() {
        return Err(invalid());
    }
    // little-endian u32 limbs
    let mut limbs: Vec<u32> = Vec::new();
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or_else(invalid)?;
        let mut carry = u64::from(d);
        for l in &mut limbs {
            let v = u64::from(*l)
                .saturating_mul(u64::from(radix))
                .saturating_add(carry);
            *l = (v & 0xffff_ffff) as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
    }
    let mut out = Vec::with_capacity(limbs.len().saturating_mul(4));
    for l in limbs.iter().rev() {
        out.extend_from_slice(&l.to_be_bytes());
    }
    Ok(strip(out))
}

/// Big-endian unsigned bytes → decimal string.
fn to_decimal(b: &[u8]) -> String {
    // big-endian u32 limbs
    let b = b
        .get(b.iter().take_while(|x| **x == 0).count()..)
        .unwrap_or(&[]);
    if b.is_empty() {
        return "0".to_owned();
    }
    let pad = b.len().wrapping_neg() & 3;
    let mut bytes = vec![0u8; pad];
    bytes.extend_from_slice(b);
    let mut limbs: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| {
            u32::from_be_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
                c.get(2).copied().unwrap_or(0),
                c.get(3).copied().unwrap_or(0),
            ])
        })
        .collect();
    let mut chunks: Vec<u32> = Vec::new();
    while limbs.iter().any(|l| *l != 0) {
        let mut rem: u64 = 0;
        for l in &mut limbs {
            let cur = (rem << 32) | u64::from(*l);
            *l = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        let z = limbs.iter().take_while(|l| **l == 0).count();
        limbs.drain(..z);
    }
    let mut s = String::new();
    for (i, c) in chunks.iter().rev().enumerate() {
        if i == 0 {
            s.push_str(&c.to_string());
        } else {
            s.push_str(&format!("{c:09}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn path_zero_is_empty_bytes() {
        assert!(parse_bigint("0").unwrap().is_empty());
        assert!(parse_bigint("").unwrap().is_empty());
        assert_eq!(parse_bigint("256").unwrap(), vec![1, 0]);
        assert_eq!(parse_bigint("0x1ff").unwrap(), vec![1, 0xff]);
        assert_eq!(to_decimal(&[]), "0");
        assert!(parse_bigint("-1").is_err());
        assert!(parse_bigint("12a").is_err());
    }

    #[test]
    fn empty_steps_rejected() {
        let v = serde_json::json!({"root": "0000aa", "steps": []});
        assert_eq!(
            json_to_blob(&v).unwrap_err().message,
            "Invalid JSON structure."
        );
    }

    proptest! {
        #[test]
        fn decimal_round_trip(digits in "[1-9][0-9]{0,120}") {
            prop_assert_eq!(to_decimal(&parse_bigint(&digits).unwrap()), digits);
        }
    }
}
