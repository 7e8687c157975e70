//! The sync wire: what devices of one wallet send each other.
//!
//! Entries travel in compact form ([`EntryCompactor`]): the value bytes of their
//! exact OpLog encoding (`oplog::entry` owns that format) without the key names and
//! without the `key` and `log` values every entry of a wallet shares; the receiver
//! restores them with its own wallet's values and the OpLog verifies the result.
//! Nothing here is trusted.
//!
//! # Format
//!
//! All messages are canonical DAG-CBOR (maps, and a two-item array for gossip); `v` is [`WIRE_VERSION`] (2) and any other
//! value fails closed.
//!
//! * **Gossip** (published on the wallet's topic): the array `[v = 2, [bytes…]]` with
//!   1 ≤ entries ≤ [`MAX_GOSSIP_ENTRIES`], the whole message ≤ [`MAX_GOSSIP_BYTES`].
//! * **Catch-up** (request-response, protocol [`CATCHUP_PROTOCOL`]). On the stream,
//!   each message is `u32 big-endian length ‖ DAG-CBOR`; the length is checked against
//!   the maximum before anything is read or allocated.
//!   * request `{v: 2, log: bytes(32), have: [[bytes(8) device, uint seq]…], max: uint}`
//!     — the requester's version vector (highest contiguous sequence per device, sorted
//!     by device, ≤ [`MAX_VECTOR_DEVICES`]) and the most entries it wants in this page
//!     (1 ≤ max ≤ [`MAX_PAGE_ENTRIES`]); ≤ [`MAX_REQUEST_BYTES`].
//!   * response `{v: 2, more: bool, pruned: bool, entries: [bytes…]}` — entries the
//!     requester lacks, in per-device sequence order, at most `max` and
//!     ≤ [`MAX_RESPONSE_BYTES`] in all; `more` says another page is waiting, `pruned`
//!     that the responder pruned entries the requester lacks (ask for a snapshot).
//! * **Snapshot** (protocol [`SNAPSHOT_PROTOCOL`], same framing): request
//!   `{v: 2, log: bytes(32)}` ≤ [`MAX_SNAPSHOT_REQUEST_BYTES`]; response
//!   `{v: 2, snapshot: bytes | null}` (a sealed OpLog snapshot) ≤
//!   [`MAX_SNAPSHOT_TRANSFER_BYTES`].
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Version of every sync message.
pub const WIRE_VERSION: u64 = 2;
/// The catch-up request-response protocol id.
pub const CATCHUP_PROTOCOL: StreamProtocol = StreamProtocol::new("/sphere-profile/catchup/2");
/// The snapshot request-response protocol id.
pub const SNAPSHOT_PROTOCOL: StreamProtocol = StreamProtocol::new("/sphere-profile/snapshot/1");
/// Largest snapshot transfer (the sealed snapshot plus framing). A wallet whose state
/// is larger cannot bootstrap a pruned-behind device over the network.
pub const MAX_SNAPSHOT_TRANSFER_BYTES: usize = 64 * 1024 * 1024;
/// Largest snapshot request.
pub const MAX_SNAPSHOT_REQUEST_BYTES: usize = 1024;
/// Bytes the compact wire form of an entry leaves out: its `key` and `log` pairs
/// (77 bytes) and the names of its other nine keys (39 bytes); the array header
/// takes the map header's one byte.
pub const COMPACT_SAVING: usize = 116;
/// Largest gossip message: one maximal entry (1 MiB) plus framing. Also the
/// gossipsub `max_transmit_size`.
pub const MAX_GOSSIP_BYTES: usize = 1024 * 1024 + 4096;
/// Most entries batched into one gossip message.
pub const MAX_GOSSIP_ENTRIES: usize = 256;
/// Largest catch-up request: a version vector of [`MAX_VECTOR_DEVICES`] devices fits.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest catch-up response page.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most entries in one catch-up page.
pub const MAX_PAGE_ENTRIES: usize = 2048;
/// Most devices in a version vector.
pub const MAX_VECTOR_DEVICES: usize = 1024;

/// Why a sync message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Longer than the message kind allows.
    #[error("{what} is {len} bytes, limit is {max}")]
    TooLarge {
        /// Which message.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not canonical DAG-CBOR of the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A version this code does not speak.
    #[error("unknown sync message version {0}")]
    UnknownVersion(u64),
    /// A count outside its bounds.
    #[error("{what} has {count} items, allowed {min}..={max}")]
    Count {
        /// Which list.
        what: &'static str,
        /// How many it had.
        count: usize,
        /// Lower bound.
        min: usize,
        /// Upper bound.
        max: usize,
    },
    /// The version vector is not sorted by device or repeats one.
    #[error("version vector is not strictly sorted by device")]
    UnsortedVector,
}

/// A batch of entries published on the wallet topic. On the wire it is the
/// two-item array `[v, entries]` (it travels once per message: no key names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossip {
    /// [`WIRE_VERSION`].
    pub v: u64,
    /// Entries in compact form ([`EntryCompactor`]).
    pub entries: Vec<ByteBuf>,
}

/// "Send me what I lack."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchupRequest {
    /// [`WIRE_VERSION`].
    pub v: u64,
    /// The log both sides must share.
    pub log: ByteBuf,
    /// The requester's version vector: `(device, highest contiguous seq)`, sorted.
    pub have: Vec<(ByteBuf, u64)>,
    /// The most entries wanted in this page.
    pub max: u64,
}

/// One page of missing entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchupResponse {
    /// [`WIRE_VERSION`].
    pub v: u64,
    /// Whether another page is waiting.
    pub more: bool,
    /// The responder no longer keeps entries the requester lacks (it pruned them):
    /// the requester should ask for a snapshot on [`SNAPSHOT_PROTOCOL`].
    pub pruned: bool,
    /// Entries in compact form ([`EntryCompactor`]), in per-device sequence order.
    pub entries: Vec<ByteBuf>,
}

/// "Send me your state": asked after a [`CatchupResponse`] with `pruned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// [`WIRE_VERSION`].
    pub v: u64,
    /// The log both sides must share.
    pub log: ByteBuf,
}

/// The responder's state as a sealed OpLog snapshot (`docs/formats.md` §5.3), or
/// null when it has none to give (another log, or larger than the transfer cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotResponse {
    /// [`WIRE_VERSION`].
    pub v: u64,
    /// `Snapshot::seal` bytes.
    pub snapshot: Option<ByteBuf>,
}

fn check_count(what: &'static str, count: usize, min: usize, max: usize) -> Result<(), WireError> {
    if count < min || count > max {
        return Err(WireError::Count {
            what,
            count,
            min,
            max,
        });
    }
    Ok(())
}

fn check_version(v: u64) -> Result<(), WireError> {
    if v != WIRE_VERSION {
        return Err(WireError::UnknownVersion(v));
    }
    Ok(())
}

/// Strict decode: bounded input, strict DAG-CBOR, and canonical re-encoding.
fn decode_canonical<'de, T>(
    what: &'static str,
    bytes: &'de [u8],
    max: usize,
) -> Result<T, WireError>
where
    T: Deserialize<'de> + Serialize,
{
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let value: T = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| WireError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    let again = serde_ipld_dagcbor::to_vec(&value).map_err(|e| WireError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if again != bytes {
        return Err(WireError::Malformed {
            what,
            reason: "not canonical DAG-CBOR".into(),
        });
    }
    Ok(value)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(value)
        .expect("maps of integers, booleans and byte strings always encode")
}

/// The wire shape of [`Gossip`].
#[derive(Serialize, Deserialize)]
struct GossipWire(u64, Vec<ByteBuf>);

impl Gossip {
    /// A gossip message carrying `entries`.
    pub fn new(entries: Vec<Vec<u8>>) -> Self {
        Self {
            v: WIRE_VERSION,
            entries: entries.into_iter().map(ByteBuf::from).collect(),
        }
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(&GossipWire(self.v, self.entries.clone()))
    }

    /// Decodes and checks every bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let GossipWire(v, entries) = decode_canonical("gossip message", bytes, MAX_GOSSIP_BYTES)?;
        check_version(v)?;
        check_count("gossip entries", entries.len(), 1, MAX_GOSSIP_ENTRIES)?;
        Ok(Self { v, entries })
    }
}

impl CatchupRequest {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks every bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = decode_canonical("catch-up request", bytes, MAX_REQUEST_BYTES)?;
        check_version(r.v)?;
        if r.log.len() != 32 {
            return Err(WireError::Malformed {
                what: "catch-up request",
                reason: "log id is not 32 bytes".into(),
            });
        }
        check_count("version vector", r.have.len(), 0, MAX_VECTOR_DEVICES)?;
        if r.have.iter().any(|(d, _)| d.len() != 8) {
            return Err(WireError::Malformed {
                what: "catch-up request",
                reason: "device id is not 8 bytes".into(),
            });
        }
        if r.have.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
            return Err(WireError::UnsortedVector);
        }
        let max = usize::try_from(r.max).unwrap_or(usize::MAX);
        check_count("requested page", max, 1, MAX_PAGE_ENTRIES)?;
        Ok(r)
    }
}

impl CatchupResponse {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks every bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = decode_canonical("catch-up response", bytes, MAX_RESPONSE_BYTES)?;
        check_version(r.v)?;
        check_count("catch-up page", r.entries.len(), 0, MAX_PAGE_ENTRIES)?;
        Ok(r)
    }
}

impl SnapshotRequest {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks every bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = decode_canonical("snapshot request", bytes, MAX_SNAPSHOT_REQUEST_BYTES)?;
        check_version(r.v)?;
        if r.log.len() != 32 {
            return Err(WireError::Malformed {
                what: "snapshot request",
                reason: "log id is not 32 bytes".into(),
            });
        }
        Ok(r)
    }
}

impl SnapshotResponse {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks every bound (the snapshot itself is checked by
    /// `Snapshot::open`).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = decode_canonical("snapshot response", bytes, MAX_SNAPSHOT_TRANSFER_BYTES)?;
        check_version(r.v)?;
        Ok(r)
    }
}

/// The compact wire form of an entry: a CBOR array of the values of its canonical map,
/// in the map's key order, without the keys and without the `key` and `log` pairs
/// (the same in every entry of a wallet):
/// `[v, ctx, dev, seq, sig, body, prev, wall, clock]`, each value's bytes exactly as
/// in the entry. The conversion is a byte splice both ways; no field is re-encoded.
///
/// The receiver puts the key names and its own wallet's signing key and log id back
/// and hands the result to the OpLog, whose strict canonical decoder and signature
/// check decide. An entry of another log or signer fails verification exactly as it
/// would in full form (as a bad signature); nothing is trusted.
#[derive(Debug, Clone)]
pub struct EntryCompactor {
    /// The value bytes of the `key` and `log` pairs of a full entry of this wallet.
    key_value: Vec<u8>,
    log_value: Vec<u8>,
}

/// The keys of a full entry in canonical order, as encoded CBOR text strings.
const ENTRY_KEYS: [&[u8]; 11] = [
    b"\x61v",
    b"\x63ctx",
    b"\x63dev",
    b"\x63key",
    b"\x63log",
    b"\x63seq",
    b"\x63sig",
    b"\x64body",
    b"\x64prev",
    b"\x64wall",
    b"\x65clock",
];
/// Positions of `key` and `log` in [`ENTRY_KEYS`].
const KEY_AT: usize = 3;
const LOG_AT: usize = 4;
/// CBOR headers: map of 11 pairs (a full entry), array of 9 items (compact).
const FULL_MAP: u8 = 0xab;
const COMPACT_ARRAY: u8 = 0x89;

/// The end of the CBOR item starting at `at`, for well-formed definite-length
/// items; `None` if `bytes` ends first or holds an indefinite length or a reserved
/// header. Iterative: nested arrays and maps only raise a counter.
fn item_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut pos = at;
    let mut pending: usize = 1;
    while pending > 0 {
        pending = pending.checked_sub(1)?;
        let head = *bytes.get(pos)?;
        pos = pos.checked_add(1)?;
        let (major, info) = (head >> 5, head & 0x1f);
        let arg: u64 = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize.checked_shl(u32::from(info.checked_sub(24)?))?;
                let raw = bytes.get(pos..pos.checked_add(n)?)?;
                pos = pos.checked_add(n)?;
                raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            _ => return None,
        };
        let arg = usize::try_from(arg).ok()?;
        match major {
            0 | 1 | 7 => {}
            2 | 3 => {
                pos = pos.checked_add(arg)?;
                if pos > bytes.len() {
                    return None;
                }
            }
            // Every item takes at least one byte: refuse counts the input cannot hold.
            4 | 5 => {
                let items = if major == 5 { arg.checked_mul(2)? } else { arg };
                if items > bytes.len().saturating_sub(pos) {
                    return None;
                }
                pending = pending.checked_add(items)?;
            }
            _ => pending = pending.checked_add(1)?,
        }
    }
    Some(pos)
}

/// The `(device, seq)` a compact entry claims, read without restoring or verifying
/// it (a hint for pipelining catch-up requests); `None` if it does not parse that far.
pub fn compact_position(compact: &[u8]) -> Option<([u8; 8], u64)> {
    if compact.first() != Some(&COMPACT_ARRAY) {
        return None;
    }
    let after_v = item_end(compact, 1)?;
    let dev_at = item_end(compact, after_v)?;
    // `dev` is bytes(8): header 0x48 and eight bytes.
    if compact.get(dev_at) != Some(&0x48) {
        return None;
    }
    let seq_at = dev_at.checked_add(9)?;
    let device: [u8; 8] = compact
        .get(dev_at.checked_add(1)?..seq_at)?
        .try_into()
        .ok()?;
    let head = *compact.get(seq_at)?;
    if head >> 5 != 0 {
        return None;
    }
    let end = item_end(compact, seq_at)?;
    let arg = compact.get(seq_at.checked_add(1)?..end)?;
    let seq = match head & 0x1f {
        info @ 0..=23 => u64::from(info),
        _ => arg.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    };
    Some((device, seq))
}

impl EntryCompactor {
    /// A compactor for the wallet with this log id and signing key.
    pub fn new(log: [u8; 32], key: [u8; 33]) -> Self {
        let mut key_value = vec![0x58, 33];
        key_value.extend_from_slice(&key);
        let mut log_value = vec![0x58, 32];
        log_value.extend_from_slice(&log);
        Self {
            key_value,
            log_value,
        }
    }

    /// The compact form of a full entry of this wallet, or `None` when `full` is not
    /// an eleven-key entry map carrying this wallet's key and log id.
    pub fn compact(&self, full: &[u8]) -> Option<Vec<u8>> {
        if full.first() != Some(&FULL_MAP) {
            return None;
        }
        let mut out = Vec::with_capacity(full.len());
        out.push(COMPACT_ARRAY);
        let mut pos = 1usize;
        for (i, name) in ENTRY_KEYS.iter().enumerate() {
            let value_at = pos.checked_add(name.len())?;
            if full.get(pos..value_at)? != *name {
                return None;
            }
            let end = item_end(full, value_at)?;
            let value = full.get(value_at..end)?;
            match i {
                KEY_AT if value != self.key_value.as_slice() => return None,
                LOG_AT if value != self.log_value.as_slice() => return None,
                KEY_AT | LOG_AT => {}
                _ => out.extend_from_slice(value),
            }
            pos = end;
        }
        (pos == full.len()).then_some(out)
    }

    /// The full entry bytes of a compact entry: the key names and this wallet's key
    /// and log id put back. Refuses input that is not a nine-item array of complete
    /// CBOR items with nothing after it; whether the result is a valid, canonical,
    /// correctly signed entry is for the OpLog to decide.
    pub fn expand(&self, compact: &[u8]) -> Result<Vec<u8>, WireError> {
        let bad = |reason: &str| WireError::Malformed {
            what: "compact entry",
            reason: reason.into(),
        };
        if compact.len() > crate::oplog::MAX_ENTRY_BYTES {
            return Err(WireError::TooLarge {
                what: "compact entry",
                len: compact.len(),
                max: crate::oplog::MAX_ENTRY_BYTES,
            });
        }
        if compact.first() != Some(&COMPACT_ARRAY) {
            return Err(bad("not a nine-item array"));
        }
        let mut out = Vec::with_capacity(compact.len().saturating_add(COMPACT_SAVING));
        out.push(FULL_MAP);
        let mut pos = 1usize;
        for (i, name) in ENTRY_KEYS.iter().enumerate() {
            out.extend_from_slice(name);
            match i {
                KEY_AT => out.extend_from_slice(&self.key_value),
                LOG_AT => out.extend_from_slice(&self.log_value),
                _ => {
                    let end = item_end(compact, pos).ok_or_else(|| bad("truncated item"))?;
                    let value = compact.get(pos..end).ok_or_else(|| bad("truncated item"))?;
                    out.extend_from_slice(value);
                    pos = end;
                }
            }
        }
        if pos != compact.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(out)
    }
}

/// Reads one `u32 length ‖ body` frame, refusing lengths above `max` before reading.
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    // One write: the length and the body leave in one stream frame (and one TCP
    // segment when small), never a lone 4-byte frame waiting for an ACK.
    let mut frame = Vec::with_capacity(body.len().saturating_add(4));
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    io.write_all(&frame).await?;
    io.close().await
}

fn invalid(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A request-response message that travels as one length-prefixed frame of canonical
/// DAG-CBOR, at most [`Framed::MAX_BYTES`].
pub trait Framed: Sized + Send + 'static {
    /// The largest frame accepted (checked before the frame is read in full).
    const MAX_BYTES: usize;
    /// Canonical bytes.
    fn encode(&self) -> Vec<u8>;
    /// Strict decoding.
    fn decode(bytes: &[u8]) -> Result<Self, WireError>;
}

macro_rules! framed {
    ($($ty:ty => $max:expr),* $(,)?) => {$(
        impl Framed for $ty {
            const MAX_BYTES: usize = $max;
            fn encode(&self) -> Vec<u8> {
                <$ty>::encode(self)
            }
            fn decode(bytes: &[u8]) -> Result<Self, WireError> {
                <$ty>::decode(bytes)
            }
        }
    )*};
}

framed! {
    CatchupRequest => MAX_REQUEST_BYTES,
    CatchupResponse => MAX_RESPONSE_BYTES,
    SnapshotRequest => MAX_SNAPSHOT_REQUEST_BYTES,
    SnapshotResponse => MAX_SNAPSHOT_TRANSFER_BYTES,
}

/// A request-response codec of one [`Framed`] request and one [`Framed`] response.
pub struct FrameCodec<Req, Res>(std::marker::PhantomData<fn() -> (Req, Res)>);

impl<Req, Res> Default for FrameCodec<Req, Res> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<Req, Res> Clone for FrameCodec<Req, Res> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<Req, Res> std::fmt::Debug for FrameCodec<Req, Res> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCodec")
    }
}

/// The catch-up protocol's codec.
pub type CatchupCodec = FrameCodec<CatchupRequest, CatchupResponse>;
/// The snapshot protocol's codec.
pub type SnapshotCodec = FrameCodec<SnapshotRequest, SnapshotResponse>;

impl<Req: Framed, Res: Framed> libp2p::request_response::Codec for FrameCodec<Req, Res> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Res;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Req> {
        Req::decode(&read_frame(io, Req::MAX_BYTES).await?).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Res> {
        Res::decode(&read_frame(io, Res::MAX_BYTES).await?).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> io::Result<()> {
        write_frame(io, &req.encode()).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Res,
    ) -> io::Result<()> {
        write_frame(io, &res.encode()).await
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests mutate known-length buffers")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> CatchupRequest {
        CatchupRequest {
            v: WIRE_VERSION,
            log: ByteBuf::from(vec![7; 32]),
            have: vec![
                (ByteBuf::from(vec![1; 8]), 4),
                (ByteBuf::from(vec![2; 8]), 9),
            ],
            max: 100,
        }
    }

    #[test]
    fn messages_round_trip() {
        let g = Gossip::new(vec![vec![1, 2, 3], vec![4]]);
        assert_eq!(Gossip::decode(&g.encode()).unwrap(), g);
        assert_eq!(
            CatchupRequest::decode(&request().encode()).unwrap(),
            request()
        );
        let r = CatchupResponse {
            v: WIRE_VERSION,
            more: true,
            pruned: false,
            entries: vec![ByteBuf::from(vec![9; 40])],
        };
        assert_eq!(CatchupResponse::decode(&r.encode()).unwrap(), r);
        let s = SnapshotRequest {
            v: WIRE_VERSION,
            log: ByteBuf::from(vec![7; 32]),
        };
        assert_eq!(SnapshotRequest::decode(&s.encode()).unwrap(), s);
        let s = SnapshotResponse {
            v: WIRE_VERSION,
            snapshot: Some(ByteBuf::from(vec![1, 2, 3])),
        };
        assert_eq!(SnapshotResponse::decode(&s.encode()).unwrap(), s);
        assert_eq!(CatchupResponse::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn gossip_bytes_match_the_worked_example_in_formats_md() {
        let g = Gossip::new(vec![vec![1, 2, 3]]);
        assert_eq!(hex::encode(g.encode()), "82028143010203");
        let r = CatchupResponse {
            v: WIRE_VERSION,
            more: false,
            pruned: true,
            entries: vec![],
        };
        // canonical order: v, more, pruned, entries
        assert_eq!(
            hex::encode(r.encode()),
            "a4617602646d6f7265f4667072756e6564f567656e747269657380"
        );
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(matches!(
            Gossip::decode(&Gossip::new(vec![]).encode()),
            Err(WireError::Count { .. })
        ));
        let many = Gossip::new(vec![vec![0]; MAX_GOSSIP_ENTRIES + 1]);
        assert!(matches!(
            Gossip::decode(&many.encode()),
            Err(WireError::Count { .. })
        ));
        let mut r = request();
        r.have.reverse();
        assert_eq!(
            CatchupRequest::decode(&r.encode()),
            Err(WireError::UnsortedVector)
        );
        let mut r = request();
        r.max = MAX_PAGE_ENTRIES as u64 + 1;
        assert!(matches!(
            CatchupRequest::decode(&r.encode()),
            Err(WireError::Count { .. })
        ));
        let mut r = request();
        r.v = 1;
        assert_eq!(
            CatchupRequest::decode(&r.encode()),
            Err(WireError::UnknownVersion(1))
        );
        let huge = vec![0u8; MAX_GOSSIP_BYTES + 1];
        assert!(matches!(
            Gossip::decode(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn oversize_frames_are_refused_before_reading() {
        let mut frame = (u32::try_from(MAX_REQUEST_BYTES).unwrap() + 1)
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(&[0; 16]);
        let mut io = futures::io::Cursor::new(frame);
        let err = futures::executor::block_on(read_frame(&mut io, MAX_REQUEST_BYTES)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    fn wallet() -> (crate::oplog::LogKeys, Vec<u8>) {
        static WALLET: std::sync::OnceLock<(crate::oplog::LogKeys, Vec<u8>)> =
            std::sync::OnceLock::new();
        WALLET.get_or_init(make_wallet).clone()
    }

    fn make_wallet() -> (crate::oplog::LogKeys, Vec<u8>) {
        use crate::oplog::entry::{Entry, tests};
        let keys = tests::keys(9);
        let ops = [crate::oplog::Op {
            key: "k000001".into(),
            value: Some(vec![0x5a; 45]),
        }];
        let (_, bytes) = Entry::seal_encoded(&keys, tests::draft(2), &ops).unwrap();
        (keys, bytes)
    }

    fn compactor(keys: &crate::oplog::LogKeys) -> EntryCompactor {
        EntryCompactor::new(*keys.log_id(), *keys.public_key())
    }

    #[test]
    fn compact_entries_round_trip_and_verify() {
        let (keys, full) = wallet();
        let c = compactor(&keys);
        let compact = c.compact(&full).unwrap();
        assert_eq!(compact.len() + COMPACT_SAVING, full.len());
        assert_eq!(compact[0], 0x89);
        let back = c.expand(&compact).unwrap();
        assert_eq!(back, full);
        assert_eq!(compact_position(&compact), Some(([1; 8], 2)));
        crate::oplog::decode_verified(&back, &keys).unwrap();
    }

    #[test]
    fn compact_form_of_the_worked_example_matches_formats_md() {
        use crate::oplog::entry::{Draft, Entry};
        let wk = crate::keys::WalletKeys::from_address_key(&crate::secret::Secret32::new([1; 32]))
            .unwrap();
        let keys = crate::oplog::LogKeys::new(&wk.oplog).unwrap();
        let draft = Draft {
            device: [1, 2, 3, 4, 5, 6, 7, 8],
            seq: 1,
            prev: None,
            ctx: vec![],
            clock: 1,
            wall_ms: 1_700_000_000_000,
        };
        let ops = [
            crate::oplog::Op {
                key: "settings.theme".into(),
                value: Some(b"dark".to_vec()),
            },
            crate::oplog::Op {
                key: "old".into(),
                value: None,
            },
        ];
        let (_, full) = Entry::seal_with_nonce(&keys, draft, &ops, [0x11; 12]).unwrap();
        assert_eq!(full.len(), 265);
        let compact = compactor(&keys).compact(&full).unwrap();
        assert_eq!(compact.len(), 149);
        let hex = hex::encode(&compact);
        assert!(
            hex.starts_with("8901804801020304050607080158414ab3dc"),
            "{hex}"
        );
        assert!(hex.ends_with("f61b0000018bcfe5680001"), "{hex}");
        assert_eq!(compactor(&keys).expand(&compact).unwrap(), full);
    }

    #[test]
    fn another_wallet_cannot_restore_our_entries() {
        let (keys, full) = wallet();
        let compact = compactor(&keys).compact(&full).unwrap();
        let wk = crate::keys::WalletKeys::from_address_key(&crate::secret::Secret32::new([8; 32]))
            .unwrap();
        let other = crate::oplog::LogKeys::new(&wk.oplog).unwrap();
        // Another wallet does not find its key and log id in our entry...
        assert!(compactor(&other).compact(&full).is_none());
        // ...and restoring ours with its values gives an entry that fails verification.
        let restored = compactor(&other).expand(&compact).unwrap();
        assert!(crate::oplog::decode_verified(&restored, &other).is_err());
    }

    #[test]
    fn non_canonical_compact_entries_are_refused() {
        let (keys, full) = wallet();
        let c = compactor(&keys);
        // The full form is not the compact form.
        assert!(c.expand(&full).is_err());
        let mut compact = c.compact(&full).unwrap();
        compact.push(0);
        assert!(c.expand(&compact).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Gossip::decode(&bytes);
            let _ = CatchupRequest::decode(&bytes);
            let _ = CatchupResponse::decode(&bytes);
            let _ = SnapshotRequest::decode(&bytes);
            let _ = SnapshotResponse::decode(&bytes);
        }

        #[test]
        fn random_compact_entries_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (keys, _) = wallet();
            let _ = compactor(&keys).expand(&bytes);
            let _ = compact_position(&bytes);
        }

        /// `compact_position` reads peers' catch-up pages before verification: any
        /// mutation of a real compact entry gives a position or `None`, never a panic,
        /// and an untouched entry gives its own.
        #[test]
        fn compact_position_of_mutated_entries_never_panics(pos in any::<proptest::sample::Index>(), byte in any::<u8>(), cut in any::<proptest::sample::Index>()) {
            let (keys, full) = wallet();
            let mut compact = compactor(&keys).compact(&full).unwrap();
            let entry = crate::oplog::entry::decode(&full).unwrap();
            prop_assert_eq!(compact_position(&compact), Some((entry.device, entry.seq)));
            let i = pos.index(compact.len());
            compact[i] = byte;
            let _ = compact_position(&compact);
            compact.truncate(cut.index(compact.len().saturating_add(1)));
            let _ = compact_position(&compact);
        }

        #[test]
        fn mutated_compact_entries_never_panic_nor_verify(pos in any::<proptest::sample::Index>(), byte in any::<u8>()) {
            let (keys, full) = wallet();
            let c = compactor(&keys);
            let mut compact = c.compact(&full).unwrap();
            let i = pos.index(compact.len());
            let changed = compact[i] != byte;
            compact[i] = byte;
            if let Ok(restored) = c.expand(&compact)
                && changed
            {
                prop_assert!(crate::oplog::decode_verified(&restored, &keys).is_err());
            }
        }

        #[test]
        fn mutated_requests_never_panic(pos in any::<proptest::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = request().encode();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let _ = CatchupRequest::decode(&bytes);
        }
    }
}
