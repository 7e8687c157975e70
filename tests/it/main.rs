//! Cross-crate integration tests: known-answer vectors read from `../shared` (the
//! golden files are the law, never copied), and in-process multi-component tests.
//! One module per area.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures by design"
)]

mod shared;

/// IPFS client against real loopback gateways: honest, tampering, truncating, stalling, oversize.
mod ipfs;
/// IPFS HTTP Range resume, `Content-Encoding` refusal, `HEAD` availability probes.
mod ipfs_range;
/// The OpLog store: convergence, tombstones, pending, rejections, snapshots.
mod oplog;
/// Discovery that fetches the snapshot CAR from real gateways; CAR_UNAVAILABLE; overrides.
mod pointer_car;
/// Pointer publish/discover against the embedded aggregator (loopback HTTP).
mod pointer_flow;
/// Pointer golden vectors (v2 flavour, SDK 3.0.1) and proof verification.
mod pointer_golden;
/// Key, value-encryption and envelope known answers.
mod spec_vectors;
/// Multi-device sync over TCP loopback, in one process.
mod sync;
/// UXF golden vectors through the library.
mod uxf_golden;

pub(crate) use shared::shared_dir;
