//! OpLog snapshots: the materialized state plus the version vector it covers.
//!
//! # Format
//!
//! A sealed snapshot is `nonce (12) ‖ AES-256-GCM(body key, plaintext, AAD) ‖ tag (16)`
//! with AAD = [`SNAPSHOT_AAD`] ‖ log id (32 bytes). The plaintext is a DAG-CBOR map
//! with exactly these keys, in canonical order `v, log, rows, heads`:
//!
//! | key | CBOR | meaning |
//! |---|---|---|
//! | `v` | uint | [`SNAPSHOT_VERSION`] (1); other values fail closed |
//! | `log` | bytes(32) | the log id |
//! | `heads` | array of `[bytes(8) device, uint seq (1 ..= 2⁴⁰ − 1), CID head, uint clock]` | the version vector covered, sorted by device, no repeats |
//! | `rows` | array of `[text key, uint clock ≥ 1, bytes(8) device, uint op, bytes value \| null]` | every state record (null = tombstone), sorted by key, no repeats |
//!
//! The decoder accepts at most [`MAX_SNAPSHOT_BYTES`], decodes strictly and rejects
//! non-canonical input by re-encoding.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};

use super::entry::{self, DeviceId, Head, LogKeys};
use super::error::DecodeError;
use crate::cipher;

/// The only snapshot version written and read.
pub const SNAPSHOT_VERSION: u64 = 1;
/// Largest sealed snapshot accepted: 256 MiB (decoded in memory).
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;
/// AAD prefix of sealed snapshots.
pub const SNAPSHOT_AAD: &[u8] = b"sphere-oplog-snapshot-v1";

/// One state record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// The key.
    pub key: String,
    /// Lamport clock of the winning write.
    pub clock: u64,
    /// Its device.
    pub device: DeviceId,
    /// Its operation index in the entry.
    pub op: u32,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// The materialized state and the heads (with their Lamport clocks) it covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// `(head, clock of that entry)`, sorted by device.
    pub heads: Vec<(Head, u64)>,
    /// Every record, sorted by key.
    pub rows: Vec<SnapshotRow>,
}

type WireHead = (ByteBuf, u64, Cid, u64);
type WireRow = (String, u64, ByteBuf, u32, Option<ByteBuf>);

#[derive(Serialize)]
struct WireRef<'a> {
    v: u64,
    log: &'a Bytes,
    heads: Vec<(&'a Bytes, u64, Cid, u64)>,
    rows: Vec<(&'a str, u64, &'a Bytes, u32, Option<&'a Bytes>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u64,
    log: ByteBuf,
    heads: Vec<WireHead>,
    rows: Vec<WireRow>,
}

fn aad(log: &[u8; 32]) -> Vec<u8> {
    let mut a = SNAPSHOT_AAD.to_vec();
    a.extend_from_slice(log);
    a
}

fn dev(b: &[u8]) -> Result<DeviceId, DecodeError> {
    b.try_into().map_err(|_| DecodeError::Field {
        field: "device",
        reason: "wrong length",
    })
}

impl Snapshot {
    fn plaintext(&self, log: &[u8; 32]) -> Vec<u8> {
        let w = WireRef {
            v: SNAPSHOT_VERSION,
            log: Bytes::new(log),
            heads: self
                .heads
                .iter()
                .map(|(h, c)| (Bytes::new(&h.device), h.seq, h.id, *c))
                .collect(),
            rows: self
                .rows
                .iter()
                .map(|r| {
                    (
                        r.key.as_str(),
                        r.clock,
                        Bytes::new(&r.device),
                        r.op,
                        r.value.as_deref().map(Bytes::new),
                    )
                })
                .collect(),
        };
        serde_ipld_dagcbor::to_vec(&w).expect("encoding plain structs into a Vec cannot fail")
    }

    /// Encrypts the snapshot under the wallet's body key.
    pub fn seal(&self, keys: &LogKeys) -> Vec<u8> {
        let mut iv = [0u8; cipher::IV_LEN];
        rand::fill(&mut iv);
        cipher::encrypt_with_iv(
            keys.body_key(),
            &iv,
            &self.plaintext(keys.log_id()),
            &aad(keys.log_id()),
        )
    }

    /// Decrypts and decodes a sealed snapshot of this wallet's log.
    pub fn open(sealed: &[u8], keys: &LogKeys) -> Result<Self, DecodeError> {
        if sealed.len() > MAX_SNAPSHOT_BYTES {
            return Err(DecodeError::TooLarge {
                what: "snapshot",
                len: sealed.len(),
                max: MAX_SNAPSHOT_BYTES,
            });
        }
        let plain = cipher::decrypt_with_aad(keys.body_key(), sealed, &aad(keys.log_id()))
            .map_err(|_| DecodeError::Body("snapshot does not decrypt under this wallet's key"))?;
        let w: Wire =
            serde_ipld_dagcbor::from_slice(&plain).map_err(|e| DecodeError::Cbor(e.to_string()))?;
        if w.v != SNAPSHOT_VERSION {
            return Err(DecodeError::Version(w.v));
        }
        if w.log.as_slice() != keys.log_id() {
            return Err(DecodeError::Field {
                field: "log",
                reason: "snapshot of another log",
            });
        }
        let mut heads: Vec<(Head, u64)> = Vec::with_capacity(w.heads.len());
        for (d, seq, id, clock) in w.heads {
            let device = dev(&d)?;
            entry::check_seq(seq, "heads")?;
            entry::check_cid(&id, "heads")?;
            if heads.last().is_some_and(|(h, _)| h.device >= device) {
                return Err(DecodeError::Field {
                    field: "heads",
                    reason: "not sorted by device",
                });
            }
            heads.push((Head { device, seq, id }, clock));
        }
        let mut rows: Vec<SnapshotRow> = Vec::with_capacity(w.rows.len());
        for (key, clock, d, op, value) in w.rows {
            if key.len() > entry::MAX_KEY_BYTES {
                return Err(DecodeError::TooLarge {
                    what: "key",
                    len: key.len(),
                    max: entry::MAX_KEY_BYTES,
                });
            }
            if clock == 0 {
                return Err(DecodeError::Field {
                    field: "rows",
                    reason: "the Lamport clock starts at 1",
                });
            }
            if rows.last().is_some_and(|r| r.key >= key) {
                return Err(DecodeError::Field {
                    field: "rows",
                    reason: "not sorted by key",
                });
            }
            rows.push(SnapshotRow {
                key,
                clock,
                device: dev(&d)?,
                op,
                value: value.map(ByteBuf::into_vec),
            });
        }
        let snap = Snapshot { heads, rows };
        if snap.plaintext(keys.log_id()) != plain {
            return Err(DecodeError::NonCanonical);
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WalletKeys;
    use crate::secret::Secret32;
    use multihash::Multihash;
    use proptest::prelude::*;

    fn keys(n: u8) -> LogKeys {
        LogKeys::new(
            &WalletKeys::from_address_key(&Secret32::new([n; 32]))
                .unwrap()
                .oplog,
        )
        .unwrap()
    }

    fn sample() -> Snapshot {
        Snapshot {
            heads: vec![(
                Head {
                    device: [1; 8],
                    seq: 4,
                    id: entry::cid_of(b"h"),
                },
                9,
            )],
            rows: vec![
                SnapshotRow {
                    key: "a".into(),
                    clock: 3,
                    device: [1; 8],
                    op: 0,
                    value: Some(b"x".to_vec()),
                },
                SnapshotRow {
                    key: "b".into(),
                    clock: 4,
                    device: [1; 8],
                    op: 1,
                    value: None,
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_foreign_keys_fail() {
        let k = keys(1);
        let sealed = sample().seal(&k);
        assert_eq!(Snapshot::open(&sealed, &k).unwrap(), sample());
        assert!(matches!(
            Snapshot::open(&sealed, &keys(2)),
            Err(DecodeError::Body(_))
        ));
    }

    #[test]
    fn a_head_cid_that_is_not_a_32_byte_sha2_256_digest_is_refused() {
        let k = keys(1);
        let short = Multihash::<64>::wrap(entry::SHA2_256, &[7; 20]).unwrap();
        let cidv0 = Cid::new_v0(Multihash::<64>::wrap(entry::SHA2_256, &[7; 32]).unwrap()).unwrap();
        for id in [Cid::new_v1(entry::DAG_CBOR, short), cidv0] {
            let mut s = sample();
            s.heads.first_mut().unwrap().0.id = id;
            assert!(
                matches!(
                    Snapshot::open(&s.seal(&k), &k),
                    Err(DecodeError::Field { field: "heads", .. })
                ),
                "{id}"
            );
        }
    }

    #[test]
    fn a_head_past_the_last_sequence_number_is_refused() {
        let k = keys(1);
        let mut s = sample();
        s.heads.first_mut().unwrap().0.seq = entry::MAX_SEQ + 1;
        assert!(matches!(
            Snapshot::open(&s.seal(&k), &k),
            Err(DecodeError::Field { field: "heads", .. })
        ));
    }

    proptest! {
        /// Past authentication: mutated plaintexts sealed under the wallet's own key
        /// reach the field checks and give a typed error (or a snapshot that encodes
        /// back to exactly those bytes), never a panic.
        #[test]
        fn mutated_plaintexts_under_the_right_key_never_panic(pos in any::<proptest::sample::Index>(), byte in any::<u8>(), cut in any::<proptest::sample::Index>()) {
            let k = keys(1);
            let mut plain = sample().plaintext(k.log_id());
            let i = pos.index(plain.len());
            if let Some(b) = plain.get_mut(i) {
                *b = byte;
            }
            plain.truncate(cut.index(plain.len().saturating_add(1)).max(i));
            let sealed = cipher::encrypt_with_iv(k.body_key(), &[9; cipher::IV_LEN], &plain, &aad(k.log_id()));
            if let Ok(s) = Snapshot::open(&sealed, &k) {
                prop_assert_eq!(s.plaintext(k.log_id()), plain);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(Snapshot::open(&bytes, &keys(1)).is_err());
        }
    }
}
