//! [`Pointer`]: one wallet's pointer chain on one aggregator — keys, client, trust
//! base, durable state, and the publish/discover algorithms ([`crate::publish`],
//! [`crate::discover`]). Implements [`sphere_profile::Anchor`].
//!
//! One `Pointer` per wallet per process: publishes are serialised by an async
//! mutex (the per-wallet lock of spec §4.1); other processes are kept out by the
//! wallet data dir's exclusive lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cid::Cid;
use sphere_profile::keys::PointerSeeds;
use tokio::sync::mpsc;

use crate::certificate::TrustBase;
use crate::client::AggregatorClient;
use crate::derive::{KeysError, PointerKeys};
use crate::error::{Error, StateError};
use crate::events::PointerEvent;
use crate::state::{PointerState, WalletState};

/// What a content check says about a decoded CID (e.g. "the snapshot CAR fetches
/// and parses").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentStatus {
    /// The content is there and valid.
    Valid,
    /// The content is there but not a valid snapshot: skip the version.
    Invalid,
    /// The content cannot be fetched now.
    Unavailable,
}

/// An async content check.
pub type ContentCheck =
    Arc<dyn Fn(Cid) -> Pin<Box<dyn Future<Output = ContentStatus> + Send>> + Send + Sync>;

/// Failed CAR fetches of a version required before `acceptCarLoss` (spec §3
/// `CAR_FETCH_PERSISTENT_*`).
pub const CAR_LOSS_MIN_ATTEMPTS: u32 = 12;
/// Time the failed fetches must span before `acceptCarLoss` (24 h).
pub const CAR_LOSS_MIN_SPAN: Duration = Duration::from_secs(24 * 60 * 60);
/// Highest walk-back limit `acceptCorruptStreak` grants (the reference's
/// `WALKBACK_HARD_CEILING`), and its default.
pub const WALKBACK_HARD_CEILING: u32 = 4096;

/// Wall clock in Unix seconds. Injected so tests of the 24-hour rules need not
/// wait a day.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }))
    }

    /// A clock reading `f`.
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Tunables of publish and discovery (spec §3 constants by default).
#[derive(Debug, Clone)]
pub struct PointerConfig {
    pub(crate) retry_budget: u32,
    pub(crate) confirm_timeout: Duration,
    pub(crate) initial_probe: u32,
    pub(crate) hard_ceiling: u32,
    pub(crate) walkback_limit: u32,
    pub(crate) skip_unavailable: bool,
    pub(crate) marker_max_jump: u32,
    pub(crate) allow_operator_overrides: bool,
    pub(crate) clock: Clock,
}

impl Default for PointerConfig {
    fn default() -> Self {
        Self {
            retry_budget: 5,
            confirm_timeout: Duration::from_secs(30),
            initial_probe: 1024,
            hard_ceiling: 1 << 22,
            walkback_limit: 64,
            skip_unavailable: true,
            marker_max_jump: 1024,
            allow_operator_overrides: false,
            clock: Clock::system(),
        }
    }
}

impl PointerConfig {
    /// Conflict retries before `RETRY_EXHAUSTED` (default 5).
    pub fn with_retry_budget(mut self, n: u32) -> Self {
        self.retry_budget = n.max(1);
        self
    }
    /// How long to wait for both sides to be certified (default 30 s).
    pub fn with_confirm_timeout(mut self, d: Duration) -> Self {
        self.confirm_timeout = d;
        self
    }
    /// First upper probe of a cold discovery (default 1024).
    pub fn with_initial_probe(mut self, v: u32) -> Self {
        self.initial_probe = v.max(1);
        self
    }
    /// Invalid versions walked past before `CORRUPT_STREAK` (default 64).
    pub fn with_walkback_limit(mut self, n: u32) -> Self {
        self.walkback_limit = n.max(1);
        self
    }
    /// Skip versions whose content is unavailable (default true) instead of
    /// stopping with `CAR_UNAVAILABLE`.
    pub fn with_skip_unavailable(mut self, skip: bool) -> Self {
        self.skip_unavailable = skip;
        self
    }
    /// Grants the operator overrides of spec §10 (`accept_car_loss`,
    /// `accept_corrupt_streak`, `clear_pending_marker`); default false, and
    /// without it they fail with CAPABILITY_DENIED. The embedding application
    /// decides (the CLI: `SPHERE_ALLOW_OVERRIDES=1` and `NODE_ENV` ≠ production).
    pub fn with_operator_overrides(mut self, allow: bool) -> Self {
        self.allow_operator_overrides = allow;
        self
    }
    /// The clock that timestamps failed CAR fetches (default: the system clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// One wallet's pointer on one aggregator.
pub struct Pointer {
    pub(crate) keys: PointerKeys,
    pub(crate) wallet: String,
    pub(crate) client: AggregatorClient,
    pub(crate) trust_base: TrustBase,
    state: Mutex<PointerState>,
    pub(crate) publish_lock: tokio::sync::Mutex<()>,
    pub(crate) config: PointerConfig,
    events: Option<mpsc::Sender<PointerEvent>>,
    pub(crate) content_check: Option<ContentCheck>,
    /// Highest version the last discovery saw included (may be above the valid one).
    pub(crate) known_included: AtomicU32,
    /// One-shot walk-back limit armed by `accept_corrupt_streak` (0 = none).
    pub(crate) corrupt_streak_override: AtomicU32,
}

impl std::fmt::Debug for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pointer")
            .field("wallet", &self.wallet)
            .field("aggregator", &self.client.url())
            .finish_non_exhaustive()
    }
}

impl Pointer {
    /// A pointer for the wallet whose seeds are `seeds`.
    pub fn new(
        seeds: &PointerSeeds,
        client: AggregatorClient,
        trust_base: TrustBase,
        state: PointerState,
        config: PointerConfig,
    ) -> Result<Self, KeysError> {
        let keys = PointerKeys::new(seeds)?;
        Ok(Self {
            wallet: hex::encode(keys.public_key()),
            keys,
            client,
            trust_base,
            state: Mutex::new(state),
            publish_lock: tokio::sync::Mutex::new(()),
            config,
            events: None,
            content_check: None,
            known_included: AtomicU32::new(0),
            corrupt_streak_override: AtomicU32::new(0),
        })
    }

    /// Sends [`PointerEvent`]s to `tx` (dropped when the channel is full).
    pub fn with_events(mut self, tx: mpsc::Sender<PointerEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Checks decoded CIDs during discovery's walk-back.
    pub fn with_content_check(mut self, check: ContentCheck) -> Self {
        self.content_check = Some(check);
        self
    }

    /// The derived keys.
    pub fn keys(&self) -> &PointerKeys {
        &self.keys
    }

    /// The aggregator client.
    pub fn client(&self) -> &AggregatorClient {
        &self.client
    }

    /// The wallet id in the state file (hex signing public key).
    pub fn wallet_id(&self) -> &str {
        &self.wallet
    }

    pub(crate) fn with_state<T>(
        &self,
        f: impl FnOnce(&PointerState, &str) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard, &self.wallet)
    }

    /// The durable state of this wallet.
    pub fn local_state(&self) -> Result<WalletState, StateError> {
        self.with_state(|s, w| s.get(w))
    }

    /// Sets BLOCKED (emits an event).
    pub(crate) fn block(&self, reason: &str) -> Result<(), StateError> {
        self.with_state(|s, w| s.set_blocked(w, reason))?;
        self.emit(PointerEvent::BlockedSet {
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Operator override: lifts BLOCKED whatever its reason.
    pub fn clear_blocked(&self) -> Result<(), StateError> {
        if let Some(reason) = self.local_state()?.blocked {
            self.with_state(|s, w| s.clear_blocked(w))?;
            self.emit(PointerEvent::BlockedCleared { reason });
        }
        Ok(())
    }

    /// The walk-back limit of the next discovery (taking a one-shot override).
    pub(crate) fn take_walkback_limit(&self) -> u32 {
        match self.corrupt_streak_override.swap(0, Ordering::Relaxed) {
            0 => self.config.walkback_limit,
            n => n,
        }
    }

    pub(crate) fn emit(&self, e: PointerEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(e);
        }
    }
}

impl sphere_profile::Anchor for Pointer {
    type Error = Error;

    async fn publish(&self, cid: Cid) -> Result<(), Error> {
        Pointer::publish(self, &cid).await?;
        Ok(())
    }

    async fn latest(&self) -> Result<Option<Cid>, Error> {
        Ok(self.discover().await?.cid)
    }
}
