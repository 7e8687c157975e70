//! Operator overrides (spec §10): the three ways an operator gets a wallet past a
//! state the pointer refuses to leave by itself.
//!
//! * [`Pointer::accept_car_loss`]`(v, local)`: the snapshot CAR of verified
//!   version `v` is gone for good. Allowed only after
//!   [`CAR_LOSS_MIN_ATTEMPTS`] failed fetches of `v` spread over at least
//!   [`CAR_LOSS_MIN_SPAN`] (recorded by discovery in `car_loss_attempts`, with the
//!   configured [`crate::pointer::Clock`]). One more fetch is tried first (the
//!   reference polls peers that might still hold the bundle): if it succeeds the
//!   loss is not accepted. Otherwise the caller's local state `local` is
//!   republished at max(local version, v) + 1 **before** anything advances; only
//!   then are CAR_UNAVAILABLE and the attempts of versions ≤ v forgotten.
//! * [`Pointer::accept_corrupt_streak`]`(limit)`: the next discovery — one
//!   attempt only — may walk back `limit` invalid versions (default and maximum
//!   [`WALKBACK_HARD_CEILING`]) instead of the configured 64.
//! * [`Pointer::clear_pending_marker`]: drops a pending-version marker (e.g. one
//!   `MARKER_CORRUPT` refuses) and sets BLOCKED `marker_cleared` until the next
//!   successful discovery.
//!
//! Each needs the `allow_operator_overrides` capability
//! ([`crate::PointerConfig::with_operator_overrides`]); without it the call fails
//! with [`OverrideError::CapabilityDenied`] and changes nothing. Every use, refusal
//! and denial emits a [`PointerEvent`]. This library never reads the environment:
//! the application decides whether to grant the capability.

use cid::Cid;

use crate::derive::{VERSION_MAX, VERSION_MIN};
use crate::error::OverrideError;
use crate::events::PointerEvent;
use crate::pointer::{
    CAR_LOSS_MIN_ATTEMPTS, CAR_LOSS_MIN_SPAN, ContentStatus, Pointer, WALKBACK_HARD_CEILING,
};
use crate::publish::Published;

impl Pointer {
    fn require_overrides(&self, operation: &'static str) -> Result<(), OverrideError> {
        if self.config.allow_operator_overrides {
            Ok(())
        } else {
            self.emit(PointerEvent::OverrideDenied { operation });
            Err(OverrideError::CapabilityDenied { operation })
        }
    }

    /// Operator override `acceptCarLoss(version)` (module docs): gives up the
    /// snapshot CAR of `version` and republishes `local` (the CID of this device's
    /// current state) at max(local version, `version`) + 1 or above.
    pub async fn accept_car_loss(
        &self,
        version: u32,
        local: &Cid,
    ) -> Result<Published, OverrideError> {
        self.require_overrides("acceptCarLoss")?;
        if !(VERSION_MIN..=VERSION_MAX).contains(&version) {
            return Err(OverrideError::VersionOutOfRange(version));
        }
        let attempts = self
            .with_state(|s, w| s.car_loss_attempts(w, version))?
            .unwrap_or(crate::state::CarLossAttempts {
                attempts: 0,
                first_at: 0,
                last_at: 0,
            });
        if attempts.attempts < CAR_LOSS_MIN_ATTEMPTS
            || attempts.span_secs() < CAR_LOSS_MIN_SPAN.as_secs()
        {
            self.emit(PointerEvent::CarLossPending {
                version,
                attempts: attempts.attempts,
                span_secs: attempts.span_secs(),
            });
            return Err(OverrideError::CarLossNotPersistent {
                version,
                attempts: attempts.attempts,
                span_secs: attempts.span_secs(),
                min_attempts: CAR_LOSS_MIN_ATTEMPTS,
                min_span_secs: CAR_LOSS_MIN_SPAN.as_secs(),
            });
        }
        // Last look before giving the content up.
        if self.content_check.is_some() {
            let p = self.probe(version).await?;
            if let (Some(a), Some(b)) = (p.a.transaction_hash(), p.b.transaction_hash())
                && let Ok(cid) = self.keys.decode(version, &a, &b)
            {
                match self.check_content(cid).await {
                    ContentStatus::Valid => {
                        self.with_state(|s, w| {
                            s.forget_car_loss_attempts(w, version)?;
                            s.clear_car_unavailable(w)
                        })?;
                        self.emit(PointerEvent::CarLossAbortedPeerFound { version });
                        return Err(OverrideError::CarAvailable { version });
                    }
                    ContentStatus::Unavailable => {
                        let at = self.config.clock.now();
                        self.with_state(|s, w| s.record_car_fetch_failure(w, version, at))?;
                    }
                    ContentStatus::Invalid => {}
                }
            }
        }
        let target = self
            .local_state()?
            .local_version
            .max(version)
            .saturating_add(1);
        let published = self.publish_inner(local, target, true).await?;
        self.with_state(|s, w| {
            s.clear_car_unavailable(w)?;
            s.clear_car_loss_attempts(w, version)
        })?;
        self.emit(PointerEvent::CarLossAccepted {
            version,
            republished_at: published.version,
        });
        Ok(published)
    }

    /// Operator override `acceptCorruptStreak(limit)` (module docs): the next
    /// discovery, and only that one, may walk back `limit` versions (default and
    /// cap [`WALKBACK_HARD_CEILING`]). Returns the limit armed.
    pub fn accept_corrupt_streak(&self, limit: Option<u32>) -> Result<u32, OverrideError> {
        self.require_overrides("acceptCorruptStreak")?;
        let limit = limit
            .unwrap_or(WALKBACK_HARD_CEILING)
            .clamp(1, WALKBACK_HARD_CEILING);
        self.corrupt_streak_override
            .store(limit, std::sync::atomic::Ordering::Relaxed);
        self.emit(PointerEvent::CorruptStreakOverrideUsed { limit });
        Ok(limit)
    }

    /// Operator override `clearPendingMarker` (module docs): drops the pending
    /// marker and sets BLOCKED `marker_cleared` until the next successful
    /// discovery. Returns the version the marker held.
    pub fn clear_pending_marker(&self) -> Result<Option<u32>, OverrideError> {
        self.require_overrides("clearPendingMarker")?;
        let version = self.local_state()?.marker.map(|m| m.version);
        self.with_state(|s, w| s.clear_marker(w))?;
        self.block("marker_cleared")?;
        self.emit(PointerEvent::PendingMarkerCleared { version });
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use sphere_profile::keys::PointerSeeds;
    use sphere_profile::secret::Secret32;

    use super::*;
    use crate::PointerConfig;
    use crate::client::{AggregatorClient, ClientConfig};
    use crate::pointer::Clock;
    use crate::state::{Marker, PointerState};

    fn pointer(config: PointerConfig) -> Pointer {
        let key = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let tb = crate::certificate::TrustBase::single(
            "node-1",
            &crate::certificate::public_key(&key),
            3,
        );
        // Never contacted: every test here stays local.
        let client = AggregatorClient::new("http://127.0.0.1:9/", ClientConfig::default()).unwrap();
        Pointer::new(
            &PointerSeeds::derive(&Secret32::new([5; 32])),
            client,
            tb,
            PointerState::in_memory().unwrap(),
            config,
        )
        .unwrap()
    }

    fn cid() -> Cid {
        use multihash_codetable::{Code, MultihashDigest};
        Cid::new_v1(0x71, Code::Sha2_256.digest(b"local state"))
    }

    #[tokio::test]
    async fn every_override_is_denied_without_the_capability() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let p = pointer(PointerConfig::default()).with_events(tx);
        p.with_state(|s, w| {
            s.set_marker(
                w,
                &Marker {
                    version: 3,
                    cid: cid().to_bytes(),
                },
            )
        })
        .unwrap();
        assert!(matches!(
            p.clear_pending_marker(),
            Err(OverrideError::CapabilityDenied {
                operation: "clearPendingMarker"
            })
        ));
        assert!(matches!(
            p.accept_corrupt_streak(Some(100)),
            Err(OverrideError::CapabilityDenied { .. })
        ));
        assert!(matches!(
            p.accept_car_loss(1, &cid()).await,
            Err(OverrideError::CapabilityDenied { .. })
        ));
        // Nothing changed.
        let st = p.local_state().unwrap();
        assert_eq!((st.marker.map(|m| m.version), st.blocked), (Some(3), None));
        assert_eq!(p.take_walkback_limit(), 64);
        drop(p);
        let mut denied = Vec::new();
        while let Some(e) = rx.recv().await {
            if let PointerEvent::OverrideDenied { operation } = e {
                denied.push(operation);
            }
        }
        assert_eq!(
            denied,
            ["clearPendingMarker", "acceptCorruptStreak", "acceptCarLoss"]
        );
    }

    #[test]
    fn clear_pending_marker_drops_it_and_blocks() {
        let p = pointer(PointerConfig::default().with_operator_overrides(true));
        p.with_state(|s, w| {
            s.set_marker(
                w,
                &Marker {
                    version: 9,
                    cid: cid().to_bytes(),
                },
            )
        })
        .unwrap();
        assert_eq!(p.clear_pending_marker().unwrap(), Some(9));
        let st = p.local_state().unwrap();
        assert_eq!(st.marker, None);
        assert_eq!(st.blocked.as_deref(), Some("marker_cleared"));
    }

    #[test]
    fn corrupt_streak_override_is_one_shot_and_capped() {
        let p = pointer(PointerConfig::default().with_operator_overrides(true));
        assert_eq!(p.accept_corrupt_streak(Some(200)).unwrap(), 200);
        assert_eq!(p.take_walkback_limit(), 200);
        assert_eq!(p.take_walkback_limit(), 64);
        assert_eq!(
            p.accept_corrupt_streak(Some(u32::MAX)).unwrap(),
            WALKBACK_HARD_CEILING
        );
        assert_eq!(
            p.accept_corrupt_streak(None).unwrap(),
            WALKBACK_HARD_CEILING
        );
    }

    #[tokio::test]
    async fn car_loss_needs_twelve_attempts_over_a_day() {
        let now = Arc::new(AtomicU64::new(1_000_000));
        let clock = {
            let now = now.clone();
            Clock::from_fn(move || now.load(Ordering::Relaxed))
        };
        let p = pointer(
            PointerConfig::default()
                .with_operator_overrides(true)
                .with_clock(clock.clone()),
        );
        // 12 attempts within an hour: enough attempts, not enough time.
        for _ in 0..12 {
            let at = now.fetch_add(300, Ordering::Relaxed);
            p.with_state(|s, w| s.record_car_fetch_failure(w, 4, at))
                .unwrap();
        }
        match p.accept_car_loss(4, &cid()).await {
            Err(OverrideError::CarLossNotPersistent {
                attempts: 12,
                span_secs,
                ..
            }) => assert!(span_secs < 24 * 3600),
            other => panic!("expected CarLossNotPersistent, got {other:?}"),
        }
        // Over a day but only 2 attempts for another version.
        for _ in 0..2 {
            let at = now.fetch_add(86_400, Ordering::Relaxed);
            p.with_state(|s, w| s.record_car_fetch_failure(w, 5, at))
                .unwrap();
        }
        assert!(matches!(
            p.accept_car_loss(5, &cid()).await,
            Err(OverrideError::CarLossNotPersistent { attempts: 2, .. })
        ));
        assert!(matches!(
            p.accept_car_loss(0, &cid()).await,
            Err(OverrideError::VersionOutOfRange(0))
        ));
    }
}
