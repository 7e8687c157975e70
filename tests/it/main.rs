//! Cross-crate integration tests: known-answer vectors read from `../shared` (the
//! golden files are the law, never copied), and in-process multi-component tests.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures by design"
)]

mod oplog;
mod shared;
mod spec_vectors;
mod sync;
