//! The stored-value envelope: how every value sits in the Profile, byte-compatible
//! with the TypeScript reference's `oplog-entry.ts` (`shared/spec/profile.md` §3.1).
//!
//! # Format
//!
//! A DAG-CBOR map with exactly five keys, in canonical (length-first) order:
//!
//! | key | CBOR | meaning |
//! |---|---|---|
//! | `v` | uint | schema version; 1 is the only one written |
//! | `ts` | uint | wall-clock ms of the originating write, ≥ [`MIN_TS_MS`] |
//! | `type` | text | one of the 15 [`EntryType`]s |
//! | `payload` | bytes | the AES-GCM value blob ([`crate::cipher`]), ≤ [`MAX_PAYLOAD`] |
//! | `originated` | text | `user`, `system` or `replicated` |
//!
//! Decoding (input ≤ [`MAX_ENVELOPE`]) follows the reference's dual-format reader:
//! a map must be a valid v1 envelope (any other `v` fails closed); a bare CBOR byte
//! string is a pre-envelope legacy value and is wrapped as `v: 0`; bytes that are not
//! CBOR at all are raw legacy ciphertext and are returned as [`StoredValue::Raw`].
//! Anything else is an [`EnvelopeError`].

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;
use serde::Serialize;

/// Largest encoded envelope accepted, in bytes (256 KiB, as the reference).
pub const MAX_ENVELOPE: usize = 256 * 1024;
/// Largest payload accepted, in bytes (128 KiB, as the reference).
pub const MAX_PAYLOAD: usize = 128 * 1024;
/// Smallest valid `ts`: 2020-01-01T00:00:00Z in milliseconds.
pub const MIN_TS_MS: u64 = 1_577_836_800_000;
/// The only envelope version this code writes and the newest it reads.
pub const VERSION: u64 = 1;

/// Why stored bytes are not a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Input longer than [`MAX_ENVELOPE`].
    #[error("envelope is {len} bytes, limit is {MAX_ENVELOPE}")]
    TooLarge {
        /// Length of the input.
        len: usize,
    },
    /// Payload longer than [`MAX_PAYLOAD`].
    #[error("envelope payload is {len} bytes, limit is {MAX_PAYLOAD}")]
    PayloadTooLarge {
        /// Length of the payload.
        len: usize,
    },
    /// A version this code does not know; never guessed at.
    #[error("unknown envelope version {0}")]
    UnknownVersion(u64),
    /// A field is missing, has the wrong CBOR type, or an invalid value.
    #[error("envelope field `{field}` is invalid: {reason}")]
    Field {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The map has keys beyond the five of the format.
    #[error("envelope has unexpected key `{0}`")]
    UnexpectedKey(String),
    /// Valid CBOR, but neither a map nor a byte string.
    #[error("stored value is CBOR but not an envelope")]
    NotAnEnvelope,
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Parses the wire spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

string_enum!(
    /// What kind of record a value is (the reference's 15 entry types).
    EntryType {
        /// User: a token was sent.
        TokenSend = "token_send",
        /// User: a token was received.
        TokenReceive = "token_receive",
        /// User: a nametag was registered.
        NametagRegister = "nametag_register",
        /// User: a direct message was sent.
        DmSend = "dm_send",
        /// User: a direct message was received.
        DmReceive = "dm_receive",
        /// User: an invoice was minted.
        InvoiceMint = "invoice_mint",
        /// User: an invoice was paid.
        InvoicePay = "invoice_pay",
        /// User: an invoice was closed.
        InvoiceClose = "invoice_close",
        /// User: an invoice was cancelled.
        InvoiceCancel = "invoice_cancel",
        /// User: a swap was proposed.
        SwapPropose = "swap_propose",
        /// User: a swap was accepted.
        SwapAccept = "swap_accept",
        /// User: a swap deposit was made.
        SwapDeposit = "swap_deposit",
        /// System: a session receipt.
        SessionReceipt = "session_receipt",
        /// System: a generic cached record (what almost every writer uses).
        CacheIndex = "cache_index",
        /// System: the last-opened timestamp.
        LastOpenedTs = "last_opened_ts",
    }
);

string_enum!(
    /// Who authored a value (an audit field).
    Originated {
        /// Written locally for a user action.
        User = "user",
        /// Written locally by the system.
        System = "system",
        /// Arrived from another device.
        Replicated = "replicated",
    }
);

impl EntryType {
    /// Whether this is one of the system types (the rest are user types).
    pub fn is_system(self) -> bool {
        matches!(
            self,
            Self::SessionReceipt | Self::CacheIndex | Self::LastOpenedTs
        )
    }
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// 1, or 0 for a pre-envelope legacy value wrapped on read.
    pub v: u64,
    /// Wall-clock ms of the originating write (0 for legacy values).
    pub ts: u64,
    /// The record kind.
    pub entry_type: EntryType,
    /// The encrypted value blob.
    pub payload: Vec<u8>,
    /// Who authored it.
    pub originated: Originated,
}

/// What a stored value turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredValue {
    /// An envelope (v1, or a wrapped v0 legacy byte string).
    Envelope(Envelope),
    /// Not CBOR at all: raw legacy ciphertext, returned as is.
    Raw(Vec<u8>),
}

#[derive(Serialize)]
struct Wire<'a> {
    v: u64,
    ts: u64,
    #[serde(rename = "type")]
    entry_type: &'a str,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
    originated: &'a str,
}

impl Envelope {
    /// A v1 envelope around `payload`.
    pub fn new(ts: u64, entry_type: EntryType, payload: Vec<u8>, originated: Originated) -> Self {
        Self {
            v: VERSION,
            ts,
            entry_type,
            payload,
            originated,
        }
    }

    /// Canonical DAG-CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(&Wire {
            v: self.v,
            ts: self.ts,
            entry_type: self.entry_type.as_str(),
            payload: &self.payload,
            originated: self.originated.as_str(),
        })
        .expect("a struct of integers, strings and bytes always encodes")
    }
}

/// Decodes stored bytes with the reference's dual-format rules.
pub fn decode(bytes: &[u8]) -> Result<StoredValue, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(EnvelopeError::TooLarge { len: bytes.len() });
    }
    let Ok(ipld) = serde_ipld_dagcbor::from_slice::<Ipld>(bytes) else {
        return Ok(StoredValue::Raw(bytes.to_vec()));
    };
    match ipld {
        Ipld::Bytes(payload) => {
            check_payload(&payload)?;
            Ok(StoredValue::Envelope(Envelope {
                v: 0,
                ts: 0,
                entry_type: EntryType::CacheIndex,
                payload,
                originated: Originated::System,
            }))
        }
        Ipld::Map(map) => decode_map(map).map(StoredValue::Envelope),
        _ => Err(EnvelopeError::NotAnEnvelope),
    }
}

fn check_payload(payload: &[u8]) -> Result<(), EnvelopeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EnvelopeError::PayloadTooLarge { len: payload.len() });
    }
    Ok(())
}

fn field<'m>(
    map: &'m BTreeMap<String, Ipld>,
    name: &'static str,
) -> Result<&'m Ipld, EnvelopeError> {
    map.get(name).ok_or(EnvelopeError::Field {
        field: name,
        reason: "missing",
    })
}

fn uint(map: &BTreeMap<String, Ipld>, name: &'static str) -> Result<u64, EnvelopeError> {
    match field(map, name)? {
        Ipld::Integer(i) => u64::try_from(*i).map_err(|_| EnvelopeError::Field {
            field: name,
            reason: "negative or too large",
        }),
        _ => Err(EnvelopeError::Field {
            field: name,
            reason: "not an unsigned integer",
        }),
    }
}

fn text<'m>(map: &'m BTreeMap<String, Ipld>, name: &'static str) -> Result<&'m str, EnvelopeError> {
    match field(map, name)? {
        Ipld::String(s) => Ok(s),
        _ => Err(EnvelopeError::Field {
            field: name,
            reason: "not a text string",
        }),
    }
}

fn decode_map(map: BTreeMap<String, Ipld>) -> Result<Envelope, EnvelopeError> {
    let v = uint(&map, "v")?;
    if v != VERSION {
        return Err(EnvelopeError::UnknownVersion(v));
    }
    if let Some(extra) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "v" | "ts" | "type" | "payload" | "originated"))
    {
        return Err(EnvelopeError::UnexpectedKey(extra.clone()));
    }
    let ts = uint(&map, "ts")?;
    if ts < MIN_TS_MS {
        return Err(EnvelopeError::Field {
            field: "ts",
            reason: "before 2020-01-01",
        });
    }
    let entry_type = EntryType::parse(text(&map, "type")?).ok_or(EnvelopeError::Field {
        field: "type",
        reason: "not a known entry type",
    })?;
    let originated = Originated::parse(text(&map, "originated")?).ok_or(EnvelopeError::Field {
        field: "originated",
        reason: "not user, system or replicated",
    })?;
    let payload = match field(&map, "payload")? {
        Ipld::Bytes(b) => b.clone(),
        _ => {
            return Err(EnvelopeError::Field {
                field: "payload",
                reason: "not a byte string",
            });
        }
    };
    check_payload(&payload)?;
    Ok(Envelope {
        v,
        ts,
        entry_type,
        payload,
        originated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        Envelope::new(
            1_700_000_000_000,
            EntryType::CacheIndex,
            vec![1, 2, 3],
            Originated::System,
        )
    }

    #[test]
    fn round_trip_and_key_order() {
        let bytes = sample().encode();
        // length-first canonical order: v, ts, type, payload, originated
        assert_eq!(&bytes[..4], &[0xa5, 0x61, b'v', 0x01]);
        assert_eq!(decode(&bytes).unwrap(), StoredValue::Envelope(sample()));
    }

    #[test]
    fn unknown_version_fails_closed() {
        let mut e = sample();
        e.v = 2;
        assert_eq!(decode(&e.encode()), Err(EnvelopeError::UnknownVersion(2)));
    }

    #[test]
    fn bare_byte_string_is_a_legacy_v0_value() {
        let bytes = serde_ipld_dagcbor::to_vec(&serde_bytes::Bytes::new(b"old")).unwrap();
        let StoredValue::Envelope(e) = decode(&bytes).unwrap() else {
            panic!("not wrapped")
        };
        assert_eq!((e.v, e.ts, e.payload.as_slice()), (0, 0, &b"old"[..]));
    }

    #[test]
    fn non_cbor_is_raw_legacy_ciphertext() {
        let junk = vec![0xff, 0x00, 0x13];
        assert_eq!(decode(&junk).unwrap(), StoredValue::Raw(junk));
    }

    #[test]
    fn limits_are_enforced() {
        let big = vec![0u8; MAX_ENVELOPE + 1];
        assert_eq!(
            decode(&big),
            Err(EnvelopeError::TooLarge {
                len: MAX_ENVELOPE + 1
            })
        );
        let mut e = sample();
        e.payload = vec![0; MAX_PAYLOAD + 1];
        assert_eq!(
            decode(&e.encode()),
            Err(EnvelopeError::PayloadTooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
        let mut e = sample();
        e.ts = MIN_TS_MS - 1;
        assert!(matches!(
            decode(&e.encode()),
            Err(EnvelopeError::Field { field: "ts", .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_envelopes_never_panic(pos in any::<proptest::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = sample().encode();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let _ = decode(&bytes);
        }
    }
}
