//! # sphere-profile
//!
//! The local-first store a Unicity wallet lives on. A wallet keeps a *Profile*: its
//! token inventory and its operational records (outbox, sent ledger, tombstones,
//! address book, settings). This crate keeps it
//!
//! 1. **locally first**, in an encrypted key-value Merkle-CRDT OpLog on SQLite
//!    ([`oplog`]), every entry content-addressed and signed, last writer wins per key;
//! 2. **in sync between the user's devices**, by replicating the OpLog over libp2p
//!    gossipsub with a request-response catch-up protocol ([`sync`]);
//! 3. **with tokens as content**: the inventory is packed as UXF ([`uxf`]) into CARv1
//!    bundles pinned to IPFS gateways, every block CID-verified on fetch ([`ipfs`],
//!    [`tokens`]);
//! 4. **recoverable from the mnemonic alone**: everything is derived from the wallet's
//!    BIP39 mnemonic ([`keys`]); the snapshot CID is anchored through the [`Anchor`]
//!    seam, which the `sphere-pointer` crate implements on the Unicity aggregator.
//!
//! Byte formats shared with the TypeScript Sphere wallet (key derivation, value
//! encryption and envelope, UXF) are byte-compatible with it; formats this project
//! owns are specified in `docs/formats.md`.
//!
//! ## Crate features
//!
//! * `server` (default): the embedded IPFS gateway server (axum).
//! * `test-utils`: in-memory helpers for integration tests.
#![warn(missing_docs)]

pub mod anchor;
mod checkpoint;
pub mod cipher;
pub mod datadir;
pub mod envelope;
pub mod error;
pub mod ipfs;
pub mod keys;
pub mod legacy;
pub mod oplog;
pub mod secret;
pub mod sync;
pub mod tokens;
pub mod uxf;

pub use anchor::Anchor;
pub use error::{Error, Result};
