//! UXF — the Universal eXchange Format: a content-addressed DAG of token elements,
//! byte-compatible with the TypeScript reference (`shared/spec/uxf.md`).
//!
//! Depends on nothing else in this crate and on no crypto beyond SHA-256.
