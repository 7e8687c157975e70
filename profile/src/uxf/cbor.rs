//! The canonical DAG-CBOR subset UXF needs: a writer and a strict reader.
//!
//! # Format
//!
//! Shortest-form heads, definite lengths only, map keys are text sorted by encoded
//! length first then bytewise, `null` = `f6`, floats (only ever from a split `reason`)
//! as float64, links as tag 42 over a byte string `00 ‖ CID`. The reader rejects
//! non-minimal heads, indefinite lengths, duplicate or non-text map keys, any tag but
//! 42 (whose bytes must start with `00`), `undefined`, NaN/±∞, and trailing bytes; like
//! the reference's decoder it does not check key order. Nesting is bounded by
//! [`MAX_CBOR_DEPTH`], which bounds the reader's recursion.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::element::{Key, intern_bytes};
use super::error::{Result, UxfError, err};
use super::hash::ContentHash;
use super::limits::MAX_CBOR_DEPTH;

/// A decoded CBOR item.
#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    /// Unsigned integer.
    Uint(u64),
    /// Negative integer `-1 - n`.
    Nint(u64),
    /// Byte string.
    Bytes(Vec<u8>),
    /// Text string.
    Text(String),
    /// Array.
    Array(Vec<Cbor>),
    /// Map with text keys, in wire order.
    Map(Vec<(Key, Cbor)>),
    /// Tag 42: the CID bytes after the `00` prefix.
    Link(Vec<u8>),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A finite float.
    Float(f64),
}

// ---------------------------------------------------------------- writer

/// Appends a head (major type + argument) in shortest form.
pub(crate) fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends a text string.
pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a byte string.
pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends `null`.
pub(crate) fn null(out: &mut Vec<u8>) {
    out.push(0xf6);
}

/// Appends a tag-42 link to a dag-cbor/sha2-256 CID with this digest (41 bytes).
pub(crate) fn link(out: &mut Vec<u8>, h: &ContentHash) {
    out.extend_from_slice(&[0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, 0x71, 0x12, 0x20]);
    out.extend_from_slice(h.as_bytes());
}

/// Appends a float64.
pub(crate) fn float(out: &mut Vec<u8>, f: f64) {
    out.push(0xfb);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
}

/// Sorts map keys into dag-cbor order (encoded length, then bytes); for text keys this
/// is byte length first, then lexicographic.
pub(crate) fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Encodes any [`Cbor`] canonically (map keys re-sorted).
pub fn encode(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v);
    out
}

/// Writes any [`Cbor`] canonically (map keys re-sorted).
pub(crate) fn write(out: &mut Vec<u8>, v: &Cbor) {
    match v {
        Cbor::Uint(n) => head(out, 0, *n),
        Cbor::Nint(n) => head(out, 1, *n),
        Cbor::Bytes(b) => bytes(out, b),
        Cbor::Text(s) => text(out, s),
        Cbor::Array(a) => {
            head(out, 4, a.len() as u64);
            for x in a {
                write(out, x);
            }
        }
        Cbor::Map(m) => {
            head(out, 5, m.len() as u64);
            let mut idx: Vec<&(Key, Cbor)> = m.iter().collect();
            idx.sort_by(|a, b| key_order(&a.0, &b.0));
            for (k, x) in idx {
                text(out, k);
                write(out, x);
            }
        }
        Cbor::Link(cid) => {
            out.extend_from_slice(&[0xd8, 0x2a]);
            let len = cid.len().saturating_add(1);
            head(out, 2, len as u64);
            out.push(0);
            out.extend_from_slice(cid);
        }
        Cbor::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Cbor::Null => null(out),
        Cbor::Float(f) => float(out, *f),
    }
}

// ---------------------------------------------------------------- reader

/// Decodes exactly one strict dag-cbor item filling all of `data`.
pub fn decode(data: &[u8]) -> Result<Cbor> {
    decode_classified(data).map_err(|f| match f {
        Failure::TooDeep(e) | Failure::Invalid(e) => e,
    })
}

/// Why [`decode_classified`] failed.
pub(crate) enum Failure {
    /// The item nests deeper than [`MAX_CBOR_DEPTH`]; what was read up to there was
    /// well formed.
    TooDeep(UxfError),
    /// Anything else: the bytes are not one strict dag-cbor item.
    Invalid(UxfError),
}

/// [`decode`], telling the depth limit apart from malformed input (the genesis
/// `reason` falls back to text for the latter only).
pub(crate) fn decode_classified(data: &[u8]) -> std::result::Result<Cbor, Failure> {
    let mut r = Reader::new(data);
    let v = r.item(0).map_err(|e| {
        if r.too_deep {
            Failure::TooDeep(e)
        } else {
            Failure::Invalid(e)
        }
    })?;
    if r.pos != data.len() {
        return Err(Failure::Invalid(err!(
            SerializationError,
            "trailing bytes after cbor item"
        )));
    }
    Ok(v)
}

/// Duplicate-key detection that stays linear: a scan for small maps, a hash set once a
/// map is large (a 64 KiB block can hold ~16 000 entries; a pairwise scan would be
/// quadratic in attacker-controlled input).
pub(crate) struct DupCheck {
    // The first keys live inline: nearly every map is small, and this check runs for
    // every map of every block, so it should not allocate.
    inline: [Option<Key>; DUP_INLINE],
    len: usize,
    large: Option<std::collections::HashSet<Key>>,
}

const DUP_INLINE: usize = 16;

#[cfg(test)]
thread_local! {
    /// Key comparisons and hash-set insertions made by duplicate checks on this thread
    /// (tests bound decoding work by counting, not by timing).
    pub(crate) static KEY_PROBES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn probe(n: usize) {
    KEY_PROBES.with(|c| c.set(c.get().saturating_add(n)));
}

#[cfg(not(test))]
fn probe(_: usize) {}

impl Default for DupCheck {
    fn default() -> Self {
        Self {
            inline: [const { None }; DUP_INLINE],
            len: 0,
            large: None,
        }
    }
}

impl DupCheck {
    /// Records `k`; false if it was already there.
    pub(crate) fn insert(&mut self, k: &Key) -> bool {
        if let Some(set) = &mut self.large {
            probe(1);
            return set.insert(k.clone());
        }
        let seen = self.inline.get(..self.len).unwrap_or_default();
        probe(seen.len());
        if seen.iter().flatten().any(|x| x == k) {
            return false;
        }
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(k.clone());
                self.len = self.len.saturating_add(1);
            }
            None => {
                let mut set: std::collections::HashSet<Key> =
                    self.inline.iter_mut().filter_map(Option::take).collect();
                set.insert(k.clone());
                self.large = Some(set);
            }
        }
        true
    }
}

/// A strict reader over one buffer; [`decode`] and the element decoder share it.
/// Cloning it saves a position to come back to.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// The last error was the depth limit.
    too_deep: bool,
}

fn bad(msg: &str) -> UxfError {
    err!(SerializationError, "invalid dag-cbor: {msg}")
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            too_deep: false,
        }
    }

    /// The next byte, not consumed.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(err!(SerializationError, "trailing bytes after cbor item"))
        }
    }

    /// A map head: its entry count.
    pub(crate) fn map_len(&mut self) -> Result<usize> {
        let ai = self.head_of(5, "expected a map")?;
        self.len(ai)
    }

    /// An array head: its item count.
    pub(crate) fn array_len(&mut self) -> Result<usize> {
        let ai = self.head_of(4, "expected an array")?;
        self.len(ai)
    }

    /// An unsigned integer (major type 0), minimal form enforced.
    pub(crate) fn uint(&mut self) -> Result<u64> {
        let ai = self.head_of(0, "expected an unsigned integer")?;
        self.arg(ai)
    }

    /// Reads an initial byte of major type `major`; its additional info, or `wrong`.
    fn head_of(&mut self, major: u8, wrong: &str) -> Result<u8> {
        let ib = self.byte()?;
        if ib >> 5 != major {
            return Err(bad(wrong));
        }
        Ok(ib & 0x1f)
    }

    /// A text map key, interned.
    pub(crate) fn key(&mut self) -> Result<Key> {
        let ai = self.head_of(3, "map key is not text")?;
        let kn = self.len(ai)?;
        let kb = self.take(kn)?;
        if let Some(k) = intern_bytes(kb) {
            return Ok(k);
        }
        let k = std::str::from_utf8(kb).map_err(|_| bad("invalid utf-8"))?;
        Ok(Key::Owned(k.to_owned()))
    }

    /// A tag-42 link; returns the CID bytes after the `00` prefix, borrowed.
    pub(crate) fn link(&mut self) -> Result<&'a [u8]> {
        if self.byte()? != 0xd8 || self.byte()? != 42 {
            return Err(bad("expected a tag-42 link"));
        }
        let ib = self.byte()?;
        if ib >> 5 != 2 {
            return Err(bad("tag 42 over a non-byte-string"));
        }
        let n = self.len(ib & 0x1f)?;
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| bad("length overflow"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| bad("unexpected end of input"))?;
        self.pos = end;
        match s.split_first() {
            Some((0, rest)) => Ok(rest),
            _ => Err(bad("tag 42 without 00 prefix")),
        }
    }

    /// Any item.
    pub(crate) fn any(&mut self) -> Result<Cbor> {
        self.item(1)
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| bad("length overflow"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| bad("unexpected end of input"))?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| bad("unexpected end of input"))?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    /// Reads the argument of a head with additional info `ai`, minimal form enforced.
    fn arg(&mut self, ai: u8) -> Result<u64> {
        match ai {
            0..=23 => Ok(u64::from(ai)),
            24 => {
                let v = u64::from(self.byte()?);
                if v < 24 {
                    return Err(bad("non-minimal integer"));
                }
                Ok(v)
            }
            25 => {
                let s = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([
                    *s.first().unwrap_or(&0),
                    *s.get(1).unwrap_or(&0),
                ]));
                if v <= 0xff {
                    return Err(bad("non-minimal integer"));
                }
                Ok(v)
            }
            26 => {
                let s: [u8; 4] = self.take(4)?.try_into().map_err(|_| bad("short integer"))?;
                let v = u64::from(u32::from_be_bytes(s));
                if v <= 0xffff {
                    return Err(bad("non-minimal integer"));
                }
                Ok(v)
            }
            27 => {
                let s: [u8; 8] = self.take(8)?.try_into().map_err(|_| bad("short integer"))?;
                let v = u64::from_be_bytes(s);
                if v <= 0xffff_ffff {
                    return Err(bad("non-minimal integer"));
                }
                Ok(v)
            }
            31 => Err(bad("indefinite length")),
            _ => Err(bad("reserved additional info")),
        }
    }

    fn len(&mut self, ai: u8) -> Result<usize> {
        let n = self.arg(ai)?;
        let n = usize::try_from(n).map_err(|_| bad("length too large"))?;
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Cbor> {
        if depth > MAX_CBOR_DEPTH {
            self.too_deep = true;
            return Err(bad("nesting too deep"));
        }
        let ib = self.byte()?;
        let major = ib >> 5;
        let ai = ib & 0x1f;
        match major {
            0 => Ok(Cbor::Uint(self.arg(ai)?)),
            1 => Ok(Cbor::Nint(self.arg(ai)?)),
            2 => {
                let n = self.len(ai)?;
                Ok(Cbor::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.len(ai)?;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| bad("invalid utf-8"))?;
                Ok(Cbor::Text(s.to_owned()))
            }
            4 => {
                let n = self.len(ai)?;
                // Each item takes at least one byte: never allocate beyond the input.
                let mut v = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    v.push(self.item(depth.saturating_add(1))?);
                }
                Ok(Cbor::Array(v))
            }
            5 => {
                let n = self.len(ai)?;
                let mut v: Vec<(Key, Cbor)> = Vec::with_capacity(n.min(self.remaining() / 2));
                let mut dup = DupCheck::default();
                for _ in 0..n {
                    // keys are read in place and interned: no allocation for the
                    // reference's vocabulary
                    let k = self.key()?;
                    if !dup.insert(&k) {
                        return Err(bad("duplicate map key"));
                    }
                    let x = self.item(depth.saturating_add(1))?;
                    v.push((k, x));
                }
                Ok(Cbor::Map(v))
            }
            6 => {
                let tag = self.arg(ai)?;
                if tag != 42 {
                    return Err(bad("unsupported tag"));
                }
                match self.item(depth.saturating_add(1))? {
                    Cbor::Bytes(b) => match b.split_first() {
                        Some((0, rest)) => Ok(Cbor::Link(rest.to_vec())),
                        _ => Err(bad("tag 42 without 00 prefix")),
                    },
                    _ => Err(bad("tag 42 over a non-byte-string")),
                }
            }
            _ => match ai {
                20 => Ok(Cbor::Bool(false)),
                21 => Ok(Cbor::Bool(true)),
                22 => Ok(Cbor::Null),
                25 => {
                    let s = self.take(2)?;
                    let h = u16::from_be_bytes([*s.first().unwrap_or(&0), *s.get(1).unwrap_or(&0)]);
                    finite(f16_to_f64(h))
                }
                26 => {
                    let s: [u8; 4] = self.take(4)?.try_into().map_err(|_| bad("short float"))?;
                    finite(f64::from(f32::from_be_bytes(s)))
                }
                27 => {
                    let s: [u8; 8] = self.take(8)?.try_into().map_err(|_| bad("short float"))?;
                    finite(f64::from_be_bytes(s))
                }
                _ => Err(bad("unsupported simple value")),
            },
        }
    }
}

fn finite(f: f64) -> Result<Cbor> {
    if f.is_finite() {
        Ok(Cbor::Float(f))
    } else {
        Err(bad("NaN or infinity"))
    }
}

#[expect(
    clippy::arithmetic_side_effects,
    reason = "bounded bit fields of a u16"
)]
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    let mag = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
    };
    sign * mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_canonical_items() {
        let v = Cbor::Map(vec![
            (
                "bb".into(),
                Cbor::Array(vec![Cbor::Uint(500), Cbor::Nint(16)]),
            ),
            ("a".into(), Cbor::Bytes(vec![1, 2, 3])),
            ("c".into(), Cbor::Null),
        ]);
        let mut out = Vec::new();
        write(&mut out, &v);
        assert_eq!(hex::encode(&out), "a36161430102036163f6626262821901f430");
        let back = decode(&out).unwrap();
        // keys come back in canonical order
        let Cbor::Map(m) = back else { panic!() };
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "c", "bb"]);
    }

    #[test]
    fn rejects_non_canonical_forms() {
        for bad in [
            &[0x18, 0x01][..],                                       // non-minimal uint
            &[0x5f, 0x41, 0x00, 0xff],                               // indefinite bytes
            &[0xa2, 0x61, 0x61, 0x00, 0x61, 0x61, 0x01],             // duplicate key
            &[0xa1, 0x01, 0x02],                                     // integer key
            &[0xc1, 0x00],                                           // tag 1
            &[0xd8, 0x2a, 0x41, 0x01],                               // tag 42 without 00
            &[0xf7],                                                 // undefined
            &[0xf9, 0x7c, 0x00],                                     // +inf
            &[0x00, 0x00],                                           // trailing byte
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // huge array
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn large_maps_decode_in_linear_time_and_duplicates_are_caught() {
        let n = 16_000u64;
        let mut out = Vec::new();
        head(&mut out, 5, n);
        for i in 0..n {
            text(&mut out, &format!("k{i}"));
            out.push(0xf6);
        }
        assert!(decode(&out).is_ok());
        // same map with the last key repeating the first
        let mut dup = Vec::new();
        head(&mut dup, 5, n);
        for i in 0..n {
            text(&mut dup, &format!("k{}", if i == n - 1 { 0 } else { i }));
            dup.push(0xf6);
        }
        assert!(decode(&dup).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let data = vec![0x81; 100_000];
        assert!(decode(&data).is_err());
    }
}
