//! The device's libp2p identity: an ed25519 key kept in the data dir, created on
//! first use. It is the transport identity: it names the device on the network (its
//! peer id) and authenticates the Noise handshake. Gossip messages are anonymous and
//! carry no signature, and OpLog entries are signed with the wallet's OpLog key.

use std::path::Path;

use libp2p::identity::Keypair;
use zeroize::Zeroizing;

use super::error::SyncError;

/// File name of the device key inside a data dir.
pub const DEVICE_KEY_FILE: &str = "device-p2p.key";

/// Loads the key at `path` (64 hex chars), or creates it (mode 0600) when missing.
pub fn load_or_create(path: &Path) -> Result<Keypair, SyncError> {
    let bad = |reason: String| SyncError::Identity {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut seed[..])
            .map_err(|_| bad("not 64 hex characters".into()))?;
        return Keypair::ed25519_from_bytes(*seed).map_err(|e| bad(e.to_string()));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::fill(&mut seed[..]);
    let text = Zeroizing::new(hex::encode(&seed[..]));
    crate::datadir::write_atomic(path, text.as_bytes()).map_err(|e| bad(e.to_string()))?;
    Keypair::ed25519_from_bytes(*seed).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEVICE_KEY_FILE);
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(SyncError::Identity { .. })
        ));
    }
}
