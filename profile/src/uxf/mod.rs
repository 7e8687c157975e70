//! UXF — the Universal eXchange Format: a content-addressed DAG of token elements,
//! byte-compatible with the TypeScript reference (`shared/spec/uxf.md`, v1 element
//! graph, reference commit `1973ee45`).
//!
//! A token (the state-transition SDK's token JSON) is cut into typed [`Element`]s
//! (genesis, transactions, states, proofs, certificates, …) whose ContentHash is the
//! SHA-256 of their canonical DAG-CBOR form; identical parts of different tokens are
//! stored once. A [`UxfPackage`] holds the element pool, a manifest token id → root
//! hash and an envelope, and travels as a CARv1 file ([`UxfPackage::to_car`] /
//! [`UxfPackage::from_car`]) or as JSON. Packages merge (per-token JOIN), diff and
//! garbage-collect with the reference's behaviour, quirks included (spec §9).
//!
//! Depends on nothing else in this crate and on no crypto beyond SHA-256.
//!
//! ```
//! use sphere_profile::uxf::UxfPackage;
//! # fn main() -> Result<(), sphere_profile::uxf::UxfError> {
//! let mut pkg = UxfPackage::new(1_700_000_000);
//! # let token_json = serde_json::json!({});
//! # if false {
//! pkg.ingest(&token_json, 1_700_000_000)?; // the SDK's token JSON
//! # }
//! let car = pkg.to_car()?;
//! let back = UxfPackage::from_car(&car)?;
//! assert!(back.verify().valid);
//! assert_eq!(back.to_car()?, car);
//! # Ok(()) }
//! ```

mod assemble;
pub mod car;
pub(crate) mod cbor;
mod chain;
mod deconstruct;
mod diff;
mod element;
mod error;
mod hash;
mod join;
mod json;
pub mod limits;
mod package;
#[cfg(test)]
mod proptests;
mod reason;
mod smt;
mod value;
mod verify;

pub use cbor::{Cbor, decode as decode_cbor, encode as encode_cbor};
pub use chain::{ChainEntry, InstanceChains, InstancePredicate, Strategy};
pub use deconstruct::parse_token_json;
pub use diff::Delta;
pub use element::{Child, Element, ElementType, Header, KIND_ENRICHED_SYNTHETIC, Key, Pool, key};
pub use error::{ErrorCode, Result, UxfError};
pub use hash::{BuildContentHasher, ContentHash, ContentHasher};
pub use join::{JoinOutcome, MergeOptions, MergeReport, resolve_token_root};
pub use package::{DedupStats, Envelope, UXF_VERSION, UxfPackage};
pub use value::Value;
pub use verify::{Issue, VerifyReport, VerifyStats};
