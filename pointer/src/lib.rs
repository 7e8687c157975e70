//! # sphere-pointer
//!
//! The aggregator pointer layer: the CID of a wallet's latest Profile snapshot is
//! published to the Unicity aggregator's sparse Merkle tree as two XOR-blinded
//! commitments (sides A and B) per version, so that a fresh device can find it from
//! the mnemonic alone. Implements [`sphere_profile::Anchor`].
//!
//! Layers, bottom up: [`cbor`] (strict codec) → [`smt`], [`certificate`], [`wire`]
//! (aggregator objects) → [`derive`](mod@derive) (per side/version construction) → [`proof`]
//! (full verification) → [`client`] (JSON-RPC) → [`state`] (SQLite markers) →
//! [`publish`] / [`discover`] → [`Pointer`], with the operator [`overrides`] of
//! spec §10. The embedded aggregator is [`server`].
//!
//! ## Crate features
//!
//! * `server` (default): the embedded aggregator (axum JSON-RPC over a radix SMT).
#![warn(missing_docs)]

pub mod cbor;
pub mod certificate;
pub mod client;
pub mod derive;
pub mod discover;
pub mod error;
pub mod events;
pub mod overrides;
pub mod pointer;
pub mod proof;
pub mod publish;
#[cfg(feature = "server")]
pub mod server;
pub mod smt;
pub mod state;
pub mod wire;

pub use certificate::TrustBase;
pub use derive::{PointerKeys, Side};
pub use error::{Error, Result};
pub use pointer::{Clock, Pointer, PointerConfig};
