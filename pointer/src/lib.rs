//! # sphere-pointer
//!
//! The aggregator pointer layer: the CID of a wallet's latest Profile snapshot is
//! published to the Unicity aggregator's sparse Merkle tree as two XOR-blinded
//! commitments (sides A and B) per version, so that a fresh device can find it from
//! the mnemonic alone. Implements [`sphere_profile::Anchor`].
//!
//! ## Crate features
//!
//! * `server` (default): the embedded aggregator (axum JSON-RPC over a radix SMT).
#![warn(missing_docs)]
