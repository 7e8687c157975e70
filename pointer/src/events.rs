//! Observability: what the pointer layer reports while it works. Sent on an
//! optional bounded channel ([`crate::Pointer::with_events`]); a full channel drops
//! events rather than slowing the pointer down. Events carry versions, sides and
//! reasons, never secrets or ciphertexts.

use crate::derive::Side;

/// Capacity callers should give the event channel.
pub const EVENT_CHANNEL_CAP: usize = 256;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PointerEvent {
    /// A publish chose `version` and wrote its marker.
    PublishStarted {
        /// The version.
        version: u32,
    },
    /// One side's request was answered.
    SideSubmitted {
        /// The version.
        version: u32,
        /// The side.
        side: Side,
        /// The status string.
        status: String,
    },
    /// Both sides verified in the SMT with our ciphertexts.
    PublishConfirmed {
        /// The version.
        version: u32,
    },
    /// Another device's ciphertext holds a side of `version`; reconciling.
    PublishConflict {
        /// The version.
        version: u32,
    },
    /// A publish failed with a permanent error.
    PublishFailed {
        /// Error code (e.g. `REJECTED`, `BLOCKED`).
        code: &'static str,
    },
    /// Discovery probed `version`.
    Probe {
        /// The version.
        version: u32,
        /// Whether at least one side is included.
        included: bool,
    },
    /// Walk-back skipped an invalid or unavailable version.
    VersionSkipped {
        /// The version.
        version: u32,
        /// Why.
        reason: String,
    },
    /// Walk-back skipped a verified version whose snapshot CAR could not be
    /// fetched (the reference's `storage:pointer-version-skipped-unfetchable`).
    VersionSkippedUnfetchable {
        /// The version.
        version: u32,
        /// Failed fetches recorded for it so far.
        attempts: u32,
    },
    /// Discovery stopped with CAR_UNAVAILABLE: no version below the latest has a
    /// fetchable CAR either; publishing is refused (`recover_car_unavailable`).
    CarUnavailable {
        /// The newest verified version whose CAR is missing.
        version: u32,
    },
    /// An operator override was refused: the capability is not granted.
    OverrideDenied {
        /// `acceptCarLoss`, `acceptCorruptStreak` or `clearPendingMarker`.
        operation: &'static str,
    },
    /// `acceptCarLoss` refused: the loss is not persistent yet (`car_loss_pending`).
    CarLossPending {
        /// The version.
        version: u32,
        /// Failed fetches recorded.
        attempts: u32,
        /// Seconds between the first and the latest.
        span_secs: u64,
    },
    /// `acceptCarLoss` aborted: the final fetch found the CAR
    /// (`car_loss_aborted_peer_found`).
    CarLossAbortedPeerFound {
        /// The version.
        version: u32,
    },
    /// `acceptCarLoss` used: the local state was republished above the lost
    /// version (`car_loss_accepted`).
    CarLossAccepted {
        /// The version whose CAR was given up.
        version: u32,
        /// The version the local state was republished at.
        republished_at: u32,
    },
    /// `acceptCorruptStreak` used: the next discovery may walk back `limit`
    /// versions (`corrupt_streak_override_used`).
    CorruptStreakOverrideUsed {
        /// The walk-back limit for that one discovery.
        limit: u32,
    },
    /// `clearPendingMarker` used (`pending_marker_cleared`).
    PendingMarkerCleared {
        /// The marker's version, if there was one.
        version: Option<u32>,
    },
    /// Discovery finished.
    Discovered {
        /// Latest valid version (0 = none).
        valid_version: u32,
        /// Highest version with a side included.
        included_version: u32,
    },
    /// Publishing was blocked.
    BlockedSet {
        /// Reason.
        reason: String,
    },
    /// The block was lifted.
    BlockedCleared {
        /// The reason it had.
        reason: String,
    },
}
