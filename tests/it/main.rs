//! Cross-crate integration tests: one module per area.

/// Pointer golden vectors (v2 flavour, SDK 3.0.1) and proof verification.
mod pointer_golden;

/// Pointer publish/discover against the embedded aggregator (loopback HTTP).
mod pointer_flow;

use std::path::PathBuf;

/// The shared dir: `SPHERE_SHARED_DIR`, else `<repo>/../shared`.
pub(crate) fn shared_dir() -> PathBuf {
    std::env::var_os("SPHERE_SHARED_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from,
    )
}
