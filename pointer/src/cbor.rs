//! A minimal, strict CBOR codec for the handful of fixed shapes the aggregator speaks
//! (RFC 8949 "core deterministic" encoding only).
//!
//! The encoder writes shortest-form heads and definite lengths. The decoder accepts
//! exactly that and nothing else: no indefinite lengths, no non-minimal heads, no
//! floats, no negative integers, map keys in bytewise order of their encoding, no
//! trailing bytes. Because the decoder is strict, re-encoding a decoded [`Value`]
//! gives back the input bytes, which the certificate code relies on when it hashes
//! a seal or an input record.
//!
//! Nesting is bounded by [`MAX_DEPTH`] and every length is checked against the bytes
//! that remain before anything is allocated. This module imports nothing else from
//! the crate.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

/// Deepest nesting the decoder accepts (the deepest shape we read has 6 levels).
pub const MAX_DEPTH: usize = 16;
/// Most elements one array or map may declare.
pub const MAX_ITEMS: u64 = 4096;

/// Why bytes are not a strict CBOR item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside an item.
    #[error("cbor: unexpected end of input at byte {0}")]
    Truncated(usize),
    /// A head used more bytes than its value needs.
    #[error("cbor: non-minimal encoding at byte {0}")]
    NonMinimal(usize),
    /// A major type or simple value this codec does not accept.
    #[error("cbor: unsupported item {0:#04x} at byte {1}")]
    Unsupported(u8, usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("cbor: nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A container that declares more than [`MAX_ITEMS`] elements.
    #[error("cbor: container of {0} items exceeds the limit")]
    TooMany(u64),
    /// A text string that is not UTF-8.
    #[error("cbor: text is not utf-8")]
    Utf8,
    /// Map keys out of canonical order or repeated.
    #[error("cbor: map keys not in canonical order")]
    KeyOrder,
    /// Bytes after the top-level item.
    #[error("cbor: {0} trailing bytes")]
    Trailing(usize),
}

/// A decoded CBOR item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Major type 0.
    Uint(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5, in canonical key order.
    Map(Vec<(Value, Value)>),
    /// Major type 6.
    Tag(u64, Box<Value>),
    /// `false` / `true`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Value {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Uint(n) => head(out, 0, *n),
            Value::Bytes(b) => bytes(out, b),
            Value::Text(t) => text(out, t),
            Value::Array(items) => {
                head(out, 4, items.len() as u64);
                for i in items {
                    i.encode_into(out);
                }
            }
            Value::Map(entries) => {
                head(out, 5, entries.len() as u64);
                for (k, v) in entries {
                    k.encode_into(out);
                    v.encode_into(out);
                }
            }
            Value::Tag(t, inner) => {
                head(out, 6, *t);
                inner.encode_into(out);
            }
            Value::Bool(false) => out.push(0xf4),
            Value::Bool(true) => out.push(0xf5),
            Value::Null => out.push(0xf6),
        }
    }
}

/// Writes a head of major type `major` with argument `n`, shortest form.
pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let mt = major << 5;
    if n < 24 {
        out.push(mt | n as u8);
    } else if n <= 0xff {
        out.push(mt | 24);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(mt | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(mt | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(mt | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Writes an unsigned integer.
pub fn uint(out: &mut Vec<u8>, n: u64) {
    head(out, 0, n);
}

/// Writes a byte string.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes a text string.
pub fn text(out: &mut Vec<u8>, t: &str) {
    head(out, 3, t.len() as u64);
    out.extend_from_slice(t.as_bytes());
}

/// Writes an array head of `n` elements.
pub fn array(out: &mut Vec<u8>, n: u64) {
    head(out, 4, n);
}

/// Writes a tag head.
pub fn tag(out: &mut Vec<u8>, t: u64) {
    head(out, 6, t);
}

/// Writes `null`.
pub fn null(out: &mut Vec<u8>) {
    out.push(0xf6);
}

/// The encoding of a byte string, as a fresh buffer.
pub fn bstr(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len().saturating_add(9));
    bytes(&mut out, b);
    out
}

/// Decodes exactly one strict CBOR item that spans all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder { buf: input, pos: 0 };
    let v = d.item(0)?;
    let rest = input.len().saturating_sub(d.pos);
    if rest != 0 {
        return Err(CborError::Trailing(rest));
    }
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CborError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    /// Reads the argument of a head whose low 5 bits are `info`.
    fn arg(&mut self, info: u8, at: usize, initial: u8) -> Result<u64, CborError> {
        let (n, min) = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => (u64::from(self.byte()?), 24),
            25 => {
                let s = self.take(2)?;
                (
                    u64::from(u16::from_be_bytes([
                        s.first().copied().unwrap_or(0),
                        s.get(1).copied().unwrap_or(0),
                    ])),
                    0x100,
                )
            }
            26 => {
                let s = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(s);
                (u64::from(u32::from_be_bytes(a)), 0x1_0000)
            }
            27 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                (u64::from_be_bytes(a), 0x1_0000_0000)
            }
            _ => return Err(CborError::Unsupported(initial, at)),
        };
        if n < min {
            return Err(CborError::NonMinimal(at));
        }
        Ok(n)
    }

    fn len(&mut self, n: u64) -> Result<usize, CborError> {
        let remaining = self.buf.len().saturating_sub(self.pos) as u64;
        if n > remaining {
            return Err(CborError::Truncated(self.pos));
        }
        usize::try_from(n).map_err(|_| CborError::Truncated(self.pos))
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        match major {
            0 => Ok(Value::Uint(self.arg(info, at, initial)?)),
            2 => {
                let n = self.arg(info, at, initial)?;
                let n = self.len(n)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.arg(info, at, initial)?;
                let n = self.len(n)?;
                let s = self.take(n)?;
                Ok(Value::Text(
                    std::str::from_utf8(s)
                        .map_err(|_| CborError::Utf8)?
                        .to_owned(),
                ))
            }
            4 => {
                let n = self.arg(info, at, initial)?;
                if n > MAX_ITEMS {
                    return Err(CborError::TooMany(n));
                }
                // Every element takes at least one byte.
                let n = self.len(n)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth.saturating_add(1))?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                let n = self.arg(info, at, initial)?;
                if n > MAX_ITEMS {
                    return Err(CborError::TooMany(n));
                }
                let n = self.len(n)?;
                let mut entries: Vec<(Value, Value)> = Vec::with_capacity(n);
                let mut prev: Option<Vec<u8>> = None;
                for _ in 0..n {
                    let start = self.pos;
                    let k = self.item(depth.saturating_add(1))?;
                    let key_bytes = self.buf.get(start..self.pos).unwrap_or_default().to_vec();
                    if let Some(p) = &prev {
                        // Core deterministic: bytewise lexicographic order of encoded keys.
                        if key_bytes <= *p {
                            return Err(CborError::KeyOrder);
                        }
                    }
                    prev = Some(key_bytes);
                    let v = self.item(depth.saturating_add(1))?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            6 => {
                let t = self.arg(info, at, initial)?;
                let inner = self.item(depth.saturating_add(1))?;
                Ok(Value::Tag(t, Box::new(inner)))
            }
            7 => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                _ => Err(CborError::Unsupported(initial, at)),
            },
            _ => Err(CborError::Unsupported(initial, at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_canonical_items() {
        let v = Value::Tag(
            39030,
            Box::new(Value::Array(vec![
                Value::Uint(1),
                Value::Bytes(vec![7; 40]),
                Value::Null,
                Value::Uint(1_767_225_600),
                Value::Map(vec![(Value::Text("a".into()), Value::Bool(true))]),
            ])),
        );
        let bytes = v.encode();
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn rejects_non_minimal_and_trailing() {
        assert_eq!(decode(&[0x18, 0x05]), Err(CborError::NonMinimal(0)));
        assert_eq!(decode(&[0x01, 0x01]), Err(CborError::Trailing(1)));
        assert!(matches!(decode(&[0x5f]), Err(CborError::Unsupported(..))));
        assert!(matches!(
            decode(&[0x9a, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::TooMany(_))
        ));
    }

    #[test]
    fn rejects_unordered_map_keys() {
        // {"b": 1, "a": 2}
        assert_eq!(
            decode(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]),
            Err(CborError::KeyOrder)
        );
    }

    #[test]
    fn rejects_deep_nesting() {
        let bytes = vec![0x81; MAX_DEPTH + 2];
        assert!(decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(v) = decode(&bytes) {
                // Strictness: whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(v.encode(), bytes);
            }
        }
    }
}
