//! What a node reports about itself: [`SyncStatus`] and the [`SyncEvent`] stream.

use std::collections::BTreeMap;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// A peer as the status sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub peer: String,
    /// Whether it subscribed to this wallet's topic (is one of our devices).
    pub wallet_peer: bool,
    /// Unix ms of the last catch-up with it that ended with nothing more to fetch.
    pub last_catchup_ms: Option<u64>,
    /// Invalid messages received from it.
    pub strikes: u32,
}

/// A snapshot of the node's state.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Where it listens.
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerStatus>,
    /// Entries received and applied (gossip and catch-up).
    pub entries_in: u64,
    /// Local entries published on gossip.
    pub entries_out: u64,
    /// Entries served to catch-up requests.
    pub entries_served: u64,
    /// Snapshots received and imported (from peers that had pruned what we lacked).
    #[serde(default)]
    pub snapshots_in: u64,
    /// Snapshots served to peers behind our pruning floor.
    #[serde(default)]
    pub snapshots_served: u64,
    /// Rejected messages and entries, by reason.
    pub rejected: BTreeMap<String, u64>,
}

/// Something the node did, for `--json` event output and for tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyncEvent {
    /// Listening on an address.
    Listening {
        /// The address, with `/p2p/<peer id>` appended.
        addr: String,
    },
    /// A connection to a peer is up.
    Connected {
        /// The peer.
        peer: String,
    },
    /// The last connection to a peer closed.
    Disconnected {
        /// The peer.
        peer: String,
    },
    /// Local entries were published.
    Published {
        /// How many.
        entries: usize,
    },
    /// Remote entries were applied.
    Applied {
        /// From whom.
        peer: String,
        /// How many.
        entries: usize,
        /// `gossip`, `catchup` or `snapshot` (then `entries` counts the snapshot's
        /// records that won the merge).
        via: &'static str,
    },
    /// A catch-up round with a peer finished.
    CaughtUp {
        /// The peer.
        peer: String,
        /// Entries it brought.
        entries: usize,
    },
    /// Something from a peer was refused.
    Rejected {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A peer was banned for sending invalid data.
    Banned {
        /// The peer.
        peer: String,
    },
}

pub(crate) fn addr_with_peer(addr: &Multiaddr, peer: &PeerId) -> String {
    format!("{addr}/p2p/{peer}")
}
