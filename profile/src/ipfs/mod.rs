//! IPFS: the verified gateway client and the embedded gateway server.
//!
//! Everything here treats bytes from the network as hostile: a block is believed
//! only once it re-hashes to its CID ([`block`]), a CAR only once its single root,
//! every block, and the completeness of its DAG check out ([`car`]). The
//! [`IpfsClient`] pins and fetches through an ordered list of Kubo-RPC or trustless
//! gateways with caps, time-outs, retries and failover, reading and writing the
//! local SQLite [`BlockCache`] first. The embedded gateway ([`server`], feature
//! `server`) serves the same endpoints over the same block store, so tests, demos
//! and a user's own machine need no Kubo.
//!
//! Only CIDv1 with sha2-256 and the dag-cbor or raw codec are accepted: the kinds
//! this project writes (UXF bundles, OpLog snapshots). Byte-level request and
//! response shapes are in `docs/formats.md` §7.
//!
//! This module imports nothing from `oplog`, `sync`, `tokens` or `uxf`.

pub mod block;
pub mod cache;
pub mod car;
pub mod client;
pub mod config;
pub mod error;
pub mod multipart;
#[cfg(feature = "server")]
pub mod server;
mod stream;

pub use block::VerifiedBlock;
pub use cache::BlockCache;
pub use car::{Car, CarLimits};
pub use client::{Fetched, Found, IpfsClient, Pinned, Probe, Source};
pub use config::{GatewayConfig, GatewayUrl};
pub use error::{
    BlockError, CacheError, CarError, ConfigError, FailureCause, FetchError, GatewayFailure,
    PinError,
};
