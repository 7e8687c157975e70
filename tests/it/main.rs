//! Cross-crate integration tests: known-answer vectors read from `../shared` (the
//! golden files are the law, never copied), and in-process multi-component tests.

mod shared;
mod spec_vectors;
