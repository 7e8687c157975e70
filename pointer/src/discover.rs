//! Discovery and recovery (spec §5, §9–§10): find the latest valid version from the
//! keys alone.
//!
//! 1. **Expand**: lo = local version (assumed included), hi = max(1024, lo+1);
//!    while probe(hi) holds, lo = hi and hi doubles, up to 2^22 (`Overflow` if even
//!    that is included).
//! 2. **Bisect**: while hi − lo > 1, probe the midpoint. `included_version` = lo.
//! 3. **Walk back** from `included_version`: a version is valid when both sides are
//!    included and verified, they XOR-decode to a CID with every check, and the
//!    optional content check accepts it. Invalid versions are skipped (and
//!    reported); more than `walkback_limit` in a row is `CorruptStreak` (one
//!    discovery may walk further after [`crate::Pointer::accept_corrupt_streak`]).
//!
//! **CAR unavailable** (spec §10, the reference's code behaviour of §5.2): a
//! verified version whose content check says `Unavailable` (its snapshot CAR
//! cannot be fetched from any gateway) is recorded as a failed fetch in
//! `car_loss_attempts` (with the injected clock) and, by default, skipped with a
//! [`PointerEvent::VersionSkippedUnfetchable`]; an older fetchable version is then
//! the answer. When no fetchable version remains (or skipping is turned off),
//! discovery fails with `ContentUnavailable` (CAR_UNAVAILABLE): the local version
//! does not advance and the `car_unavailable` row refuses every publish until a
//! later discovery fetches a version or an operator runs
//! [`crate::Pointer::accept_car_loss`].
//!
//! probe(v) = side A included OR side B included (spec H2), each proof fully
//! verified; results are cached for the run, so the walk-back reuses the bisection's
//! last probe. Cost: ⌈log2⌉ doublings plus ⌈log2⌉ bisections, two RPCs per probe.
//!
//! A walk-back below the version this device itself committed is refused
//! (`WalkbackFloor`): the aggregator hides or lags behind what it certified. If a
//! version on the way down was skipped for a missing CAR, the answer is
//! CAR_UNAVAILABLE instead (the content, not the aggregator, is what is missing).
//!
//! BLOCKED: set to `network_timeout` when a proof RPC fails for good (the latest
//! version cannot be known, so publishing could roll the wallet back), to
//! `untrusted_proof` when a proof does not verify. A successful discovery clears a
//! transient reason (`network_timeout`, `retry_exhausted`, `marker_cleared`);
//! other reasons need [`crate::Pointer::clear_blocked`].

use std::collections::HashMap;

use cid::Cid;

use crate::derive::Side;
use crate::error::{DiscoverError, RpcError};
use crate::events::PointerEvent;
use crate::pointer::{ContentStatus, Pointer};
use crate::proof::{self, ProofOutcome};

/// Reasons a discovery may clear by itself.
pub const TRANSIENT_BLOCK_REASONS: [&str; 3] =
    ["network_timeout", "retry_exhausted", "marker_cleared"];

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Latest valid version (0 = none).
    pub valid_version: u32,
    /// Highest version with at least one side included.
    pub included_version: u32,
    /// The CID at `valid_version`.
    pub cid: Option<Cid>,
    /// Versions skipped in the walk-back, with the reason.
    pub skipped: Vec<(u32, String)>,
    /// Versions probed.
    pub probes: u32,
    /// Whether a content check accepted `cid` (false without a content check).
    pub content_checked: bool,
}

/// Both sides of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Side A.
    pub a: ProofOutcome,
    /// Side B.
    pub b: ProofOutcome,
}

impl ProbeResult {
    /// At least one side included.
    pub fn included(&self) -> bool {
        self.a.transaction_hash().is_some() || self.b.transaction_hash().is_some()
    }
}

impl Pointer {
    /// Fetches and fully verifies the proof of one side of `version`.
    pub async fn probe_side(
        &self,
        side: Side,
        version: u32,
    ) -> Result<ProofOutcome, DiscoverError> {
        let ssh = self.keys.state_hash(side, version);
        let sid = self.keys.state_id(side, version);
        let bytes = self
            .client
            .inclusion_proof(&sid)
            .await
            .map_err(|source| DiscoverError::ProofUnavailable { version, source })?;
        proof::verify_bytes(
            &self.trust_base,
            &self.keys.lock_script(),
            &ssh,
            &sid,
            &bytes,
        )
        .map_err(|source| DiscoverError::Untrusted {
            version,
            side,
            source,
        })
    }

    /// Probes both sides of `version` in parallel.
    pub async fn probe(&self, version: u32) -> Result<ProbeResult, DiscoverError> {
        let (a, b) = tokio::join!(
            self.probe_side(Side::A, version),
            self.probe_side(Side::B, version)
        );
        let p = ProbeResult { a: a?, b: b? };
        self.emit(PointerEvent::Probe {
            version,
            included: p.included(),
        });
        Ok(p)
    }

    /// Finds the latest valid version and its CID; records it as the local version
    /// and applies the BLOCKED set/clear rules.
    pub async fn discover(&self) -> Result<Discovery, DiscoverError> {
        match self.find_latest().await {
            Ok(d) => {
                self.known_included
                    .fetch_max(d.included_version, std::sync::atomic::Ordering::Relaxed);
                let cid = d.cid.map(|c| c.to_string());
                self.with_state(|s, w| {
                    s.observe(w, d.valid_version, cid.as_deref())?;
                    s.clear_car_unavailable(w)
                })?;
                if let Some(reason) = self.local_state()?.blocked
                    && TRANSIENT_BLOCK_REASONS.contains(&reason.as_str())
                {
                    self.with_state(|s, w| s.clear_blocked(w))?;
                    self.emit(PointerEvent::BlockedCleared { reason });
                }
                self.emit(PointerEvent::Discovered {
                    valid_version: d.valid_version,
                    included_version: d.included_version,
                });
                Ok(d)
            }
            Err(e) => {
                match &e {
                    DiscoverError::ProofUnavailable { source, .. } if source.is_transient() => {
                        self.block("network_timeout")?;
                    }
                    DiscoverError::ProofUnavailable {
                        source: RpcError::Protocol(_),
                        ..
                    } => self.block("protocol_error")?,
                    DiscoverError::Untrusted { .. } => self.block("untrusted_proof")?,
                    DiscoverError::ContentUnavailable { version } => {
                        let (v, at) = (*version, self.config.clock.now());
                        self.with_state(|s, w| s.set_car_unavailable(w, v, at))?;
                        self.emit(PointerEvent::CarUnavailable { version: v });
                    }
                    _ => {}
                }
                Err(e)
            }
        }
    }

    async fn cached(
        &self,
        cache: &mut HashMap<u32, ProbeResult>,
        v: u32,
    ) -> Result<ProbeResult, DiscoverError> {
        if let Some(p) = cache.get(&v) {
            return Ok(p.clone());
        }
        let p = self.probe(v).await?;
        cache.insert(v, p.clone());
        Ok(p)
    }

    async fn find_latest(&self) -> Result<Discovery, DiscoverError> {
        let st = self.local_state()?;
        let local = st.local_version;
        // A version this device committed with a CID was valid when it was confirmed.
        let floor = if st.local_cid.is_some() { local } else { 0 };
        let walkback_limit = self.take_walkback_limit();
        let ceiling = self.config.hard_ceiling;
        let mut cache = HashMap::new();
        let mut lo = local.min(ceiling);
        let mut hi = self
            .config
            .initial_probe
            .max(lo.saturating_add(1))
            .min(ceiling);
        // Phase 1: expand.
        loop {
            if !self.cached(&mut cache, hi).await?.included() {
                break;
            }
            lo = hi;
            if hi >= ceiling {
                return Err(DiscoverError::Overflow(hi));
            }
            hi = hi.saturating_mul(2).min(ceiling);
        }
        // Phase 2: bisect (probe(lo) holds or lo is the local floor, probe(hi) fails).
        while hi.saturating_sub(lo) > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.cached(&mut cache, mid).await?.included() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let included_version = lo;
        // Phase 3: walk back to the newest valid version.
        let mut skipped = Vec::new();
        let mut v = included_version;
        let mut streak = 0u32;
        let mut unavailable = None::<u32>;
        while v > 0 {
            if v < floor {
                // Below our own commit only because CARs are missing: that is
                // CAR_UNAVAILABLE, not an aggregator hiding versions.
                if let Some(version) = unavailable {
                    return Err(DiscoverError::ContentUnavailable { version });
                }
                return Err(DiscoverError::WalkbackFloor { local: floor });
            }
            let p = self.cached(&mut cache, v).await?;
            let reason = match (p.a.transaction_hash(), p.b.transaction_hash()) {
                (Some(a), Some(b)) => match self.keys.decode(v, &a, &b) {
                    Ok(cid) => match self.check_content(cid).await {
                        ContentStatus::Valid => {
                            if self.content_check.is_some() {
                                self.with_state(|s, w| s.forget_car_loss_attempts(w, v))?;
                            }
                            return Ok(Discovery {
                                valid_version: v,
                                included_version,
                                cid: Some(cid),
                                skipped,
                                probes: u32::try_from(cache.len()).unwrap_or(u32::MAX),
                                content_checked: self.content_check.is_some(),
                            });
                        }
                        ContentStatus::Invalid => "content invalid".to_owned(),
                        ContentStatus::Unavailable => {
                            let at = self.config.clock.now();
                            let tries =
                                self.with_state(|s, w| s.record_car_fetch_failure(w, v, at))?;
                            if !self.config.skip_unavailable {
                                return Err(DiscoverError::ContentUnavailable { version: v });
                            }
                            unavailable.get_or_insert(v);
                            self.emit(PointerEvent::VersionSkippedUnfetchable {
                                version: v,
                                attempts: tries.attempts,
                            });
                            skipped.push((v, "CAR unavailable".to_owned()));
                            streak = streak.saturating_add(1);
                            if streak >= walkback_limit {
                                return Err(DiscoverError::CorruptStreak(streak));
                            }
                            v -= 1;
                            continue;
                        }
                    },
                    Err(e) => e.to_string(),
                },
                _ => "only one side included".to_owned(),
            };
            self.emit(PointerEvent::VersionSkipped {
                version: v,
                reason: reason.clone(),
            });
            skipped.push((v, reason));
            streak = streak.saturating_add(1);
            if streak >= walkback_limit {
                return Err(DiscoverError::CorruptStreak(streak));
            }
            v -= 1;
        }
        if let Some(version) = unavailable {
            return Err(DiscoverError::ContentUnavailable { version });
        }
        Ok(Discovery {
            valid_version: 0,
            included_version,
            cid: None,
            skipped,
            probes: u32::try_from(cache.len()).unwrap_or(u32::MAX),
            content_checked: false,
        })
    }

    pub(crate) async fn check_content(&self, cid: Cid) -> ContentStatus {
        match &self.content_check {
            Some(check) => check(cid).await,
            None => ContentStatus::Valid,
        }
    }
}
