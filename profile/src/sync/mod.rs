//! Live replication of the OpLog between a wallet's devices over libp2p (DESIGN §5).
//!
//! [`wire`] owns the bytes devices exchange; the node that speaks them builds on the
//! OpLog store.

pub mod wire;
