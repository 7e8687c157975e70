//! [`SyncConfig`]: how a node listens, whom it dials, and how often it reconciles.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;

/// Default period of anti-entropy catch-up with every connected device.
pub const DEFAULT_ANTI_ENTROPY: Duration = Duration::from_secs(30);
/// Default number of invalid messages after which a peer is disconnected and banned.
pub const DEFAULT_MAX_STRIKES: u32 = 3;
/// How long a banned peer stays banned.
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// First redial delay of an explicit or remembered peer; doubles up to [`REDIAL_MAX`].
pub const REDIAL_MIN: Duration = Duration::from_millis(500);
/// Longest redial delay.
pub const REDIAL_MAX: Duration = Duration::from_secs(60);
/// Timeout of one catch-up request.
pub const CATCHUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a [`SyncConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The gossip drop rate is not within 0..=1.
    #[error("gossip drop rate {0} is not between 0 and 1")]
    DropRate(f64),
    /// A zero anti-entropy period would spin.
    #[error("anti-entropy period must be positive")]
    ZeroPeriod,
    /// Catch-up page outside 1..=the wire maximum.
    #[error("catch-up page of {0} entries is outside 1..={max}", max = super::wire::MAX_PAGE_ENTRIES)]
    Page(usize),
}

/// Node settings. Every field has a default; build with the `with_*` setters and
/// check with [`SyncConfig::build`].
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) peers: Vec<Multiaddr>,
    pub(crate) peer_book: Option<PathBuf>,
    pub(crate) mdns: bool,
    pub(crate) anti_entropy: Duration,
    pub(crate) page: usize,
    pub(crate) max_strikes: u32,
    pub(crate) gossip_drop_rate: f64,
}

impl Default for SyncConfig {
    /// Listen on `127.0.0.1`, any port; no peers; no peer book; no mDNS; anti-entropy
    /// every 30 s (±20 % jitter); catch-up pages of [`crate::oplog::MAX_PAGE`] (1024)
    /// entries, the most a store serves at once; ban after 3 strikes; no
    /// gossip dropped.
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .expect("a valid literal multiaddr"),
            ],
            peers: Vec::new(),
            peer_book: None,
            mdns: false,
            anti_entropy: DEFAULT_ANTI_ENTROPY,
            page: crate::oplog::MAX_PAGE,
            max_strikes: DEFAULT_MAX_STRIKES,
            gossip_drop_rate: 0.0,
        }
    }
}

impl SyncConfig {
    /// Addresses to listen on (replaces the default).
    #[must_use]
    pub fn with_listen(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.listen = addrs;
        self
    }

    /// Peers to dial at start and redial with backoff when they drop.
    #[must_use]
    pub fn with_peers(mut self, peers: Vec<Multiaddr>) -> Self {
        self.peers = peers;
        self
    }

    /// A JSON file where peers this node connected to are remembered and redialled
    /// at the next start.
    #[must_use]
    pub fn with_peer_book(mut self, path: PathBuf) -> Self {
        self.peer_book = Some(path);
        self
    }

    /// Discover devices on the LAN by mDNS (multicast; never used by tests).
    #[must_use]
    pub fn with_mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    /// Period of anti-entropy catch-up (jittered by ±20 %).
    #[must_use]
    pub fn with_anti_entropy(mut self, period: Duration) -> Self {
        self.anti_entropy = period;
        self
    }

    /// Entries asked for per catch-up page.
    #[must_use]
    pub fn with_page(mut self, entries: usize) -> Self {
        self.page = entries;
        self
    }

    /// Invalid messages tolerated from one peer before it is banned.
    #[must_use]
    pub fn with_max_strikes(mut self, strikes: u32) -> Self {
        self.max_strikes = strikes;
        self
    }

    /// Test switch: the fraction of received gossip messages dropped unread, to
    /// show that catch-up alone converges.
    #[must_use]
    pub fn with_gossip_drop_rate(mut self, rate: f64) -> Self {
        self.gossip_drop_rate = rate;
        self
    }

    /// Checks the rules that involve the values.
    pub fn build(self) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&self.gossip_drop_rate) {
            return Err(ConfigError::DropRate(self.gossip_drop_rate));
        }
        if self.anti_entropy.is_zero() {
            return Err(ConfigError::ZeroPeriod);
        }
        if self.page == 0 || self.page > super::wire::MAX_PAGE_ENTRIES {
            return Err(ConfigError::Page(self.page));
        }
        Ok(self)
    }
}
