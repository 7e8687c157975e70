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
