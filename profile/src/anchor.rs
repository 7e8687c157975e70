//! The seam through which a Profile anchors its latest snapshot CID somewhere that a
//! fresh device can find from the mnemonic alone.
//!
//! `sphere-profile` never depends on `sphere-pointer`; the pointer crate implements
//! this trait on the Unicity aggregator, and tests implement it in memory.

use std::future::Future;

use cid::Cid;

/// Publishes and finds the CID of a wallet's latest Profile snapshot.
pub trait Anchor {
    /// The error this anchor reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Anchors `cid` as the wallet's newest snapshot. Returns once the anchor is
    /// durable and verified (for the aggregator: both inclusion proofs checked).
    fn publish(&self, cid: Cid) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The newest anchored snapshot CID, or `None` when nothing was ever anchored.
    fn latest(&self) -> impl Future<Output = Result<Option<Cid>, Self::Error>> + Send;
}
