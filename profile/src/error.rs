//! The crate's umbrella error: one `From` per module error, for callers that only
//! pass errors on. Callers that branch on a failure match the module's own error.

use crate::{cipher::CipherError, datadir::DataDirError, envelope::EnvelopeError, keys::KeyError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Value decryption failed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// A stored value is not a valid envelope.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The data dir could not be created, opened or locked.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A UXF package, element or CAR was refused.
    #[error(transparent)]
    Uxf(#[from] crate::uxf::UxfError),
    /// The OpLog could not be opened.
    #[error(transparent)]
    OplogOpen(#[from] crate::oplog::OpenError),
    /// An OpLog operation failed.
    #[error(transparent)]
    Oplog(#[from] crate::oplog::StoreError),
    /// A CAR was refused.
    #[error(transparent)]
    Car(#[from] crate::ipfs::error::CarError),
    /// Fetching from IPFS failed on every gateway.
    #[error(transparent)]
    Fetch(#[from] crate::ipfs::error::FetchError),
    /// Pinning to IPFS failed on every gateway.
    #[error(transparent)]
    Pin(#[from] crate::ipfs::error::PinError),
    /// The sync node failed.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
