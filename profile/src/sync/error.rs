//! Errors of the sync node.

use crate::oplog::StoreError;

/// Why a node could not start or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Invalid settings.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The libp2p transport or behaviour could not be built.
    #[error("building the libp2p node: {0}")]
    Build(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A dial was refused before any connection attempt.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The device identity file is unreadable or invalid.
    #[error("device identity {path}: {reason}")]
    Identity {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node has stopped.
    #[error("the sync node has stopped")]
    Stopped,
}
