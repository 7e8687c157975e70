//! Live replication of the OpLog between a wallet's devices over libp2p (DESIGN §5).
//!
//! * [`wire`] — the bytes devices exchange (gossip batches, catch-up pages).
//! * [`node`] — the node: a swarm actor behind the cloneable [`Node`] handle.
//! * [`control`] — the local socket through which other commands reach a running node.
//! * [`config`], [`status`], [`peers`], [`identity`], [`error`] — its settings, what it
//!   reports, the remembered peers, the device key, and its errors.
//!
//! The node never trusts the network: every entry goes through
//! [`crate::oplog::Store::ingest`], which verifies signature, log id, signer and
//! sequence before anything is applied.

pub mod config;
pub mod control;
pub mod error;
pub mod identity;
pub mod node;
pub mod peers;
pub mod status;
pub mod wire;

pub use config::{ConfigError, SyncConfig};
pub use error::SyncError;
pub use libp2p::identity::Keypair;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
pub use node::Node;
pub use status::{PeerStatus, SyncEvent, SyncStatus};
