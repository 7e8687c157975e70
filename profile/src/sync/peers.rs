//! The peer book: addresses of devices this node has connected to, remembered in a
//! small JSON file so the next start can redial them without any discovery service.
//!
//! # Format
//!
//! `{"v": 1, "peers": ["/ip4/…/tcp/…/p2p/<peer id>", …]}`, newest first, at most
//! [`MAX_REMEMBERED`]; written atomically. An unreadable book is treated as empty
//! (it is a cache) and rewritten on the next connection.

use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// Most addresses remembered.
pub const MAX_REMEMBERED: usize = 64;

#[derive(Serialize, Deserialize)]
struct BookFile {
    v: u32,
    peers: Vec<String>,
}

/// Remembered peer addresses, persisted to one file.
#[derive(Debug)]
pub struct PeerBook {
    path: PathBuf,
    peers: Vec<Multiaddr>,
}

impl PeerBook {
    /// Loads the book at `path` (empty when missing or unreadable).
    pub fn load(path: &Path) -> Self {
        let peers = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<BookFile>(&b).ok())
            .filter(|f| f.v == 1)
            .map(|f| {
                f.peers
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .take(MAX_REMEMBERED)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            path: path.to_path_buf(),
            peers,
        }
    }

    /// The remembered addresses, newest first.
    pub fn peers(&self) -> &[Multiaddr] {
        &self.peers
    }

    /// Remembers `addr` (moved to the front); returns whether the book changed.
    pub fn remember(&mut self, addr: Multiaddr) -> bool {
        if self.peers.first() == Some(&addr) {
            return false;
        }
        self.peers.retain(|a| a != &addr);
        self.peers.insert(0, addr);
        self.peers.truncate(MAX_REMEMBERED);
        true
    }

    /// Writes the book atomically.
    pub fn save(&self) -> Result<(), crate::datadir::DataDirError> {
        let file = BookFile {
            v: 1,
            peers: self.peers.iter().map(ToString::to_string).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("strings serialize");
        crate::datadir::write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_newest_first_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut book = PeerBook::load(&path);
        assert!(book.peers().is_empty());
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip4/127.0.0.1/tcp/2".parse().unwrap();
        assert!(book.remember(a.clone()));
        assert!(book.remember(b.clone()));
        assert!(book.remember(a.clone()));
        assert!(!book.remember(a.clone()));
        book.save().unwrap();
        assert_eq!(PeerBook::load(&path).peers(), &[a, b]);
        std::fs::write(&path, "not json").unwrap();
        assert!(PeerBook::load(&path).peers().is_empty());
    }
}
