//! Publish (spec §4): anchor a CID as the wallet's next pointer version.
//!
//! 1. Take the per-wallet lock. If BLOCKED: a transient reason is retried through a
//!    discovery (which clears it on success); any other reason fails with `Blocked`.
//!    If the last discovery ended with CAR_UNAVAILABLE: fail with `CarUnavailable`
//!    (publishing over a version whose content nobody fetched could discard it;
//!    spec §10) — only [`crate::Pointer::accept_car_loss`] publishes then.
//! 2. Resolve the version against the pending marker (one-time-pad guard):
//!    * no marker, or a stale one (≤ local version): v = candidate =
//!      max(local version, highest version the last discovery saw included) + 1;
//!    * a marker more than 1024 ahead of the local version: `MarkerCorrupt`, BLOCKED;
//!    * a marker ≥ candidate for the **same** CID: an idempotent crash retry, v = marker;
//!    * a marker ≥ candidate for **another** CID: first finish the marker's own
//!      publish with its own bytes (its pad may already be public), then v = marker + 1;
//!    * a marker below the candidate (left by a lost race): v = candidate, which
//!      discovery placed above every included version.
//!
//!    The marker {v, cid} is written durably before anything for v is derived.
//! 3. Derive both sides and submit them in parallel; each side is retried with
//!    identical bytes on transient errors (inside the client).
//! 4. Outcome matrix: `SUCCESS` and `STATE_ID_EXISTS` (and unknown strings, as the
//!    v2 reference does) go on to confirmation; a signature/key rejection burns v
//!    (local version = v, marker cleared, BLOCKED `rejected`); other rejections fail
//!    without burning; network failures keep the marker for the next attempt.
//! 5. **Confirm** by fetching both inclusion proofs until certified, verifying them,
//!    and comparing the leaves' transaction hashes with ours: `SUCCESS` only means
//!    "queued", and two devices racing in one round can both get it. Both ours →
//!    done: local version = v and the marker cleared in one transaction. Any side
//!    holding another ciphertext → conflict: rediscover and publish at
//!    max(valid, included) + 1, up to the retry budget (`RETRY_EXHAUSTED` sets
//!    BLOCKED).

use std::time::{Duration, Instant};

use cid::Cid;

use crate::derive::{Side, SideCommitment, VersionCommitments, check_publishable};
use crate::discover::TRANSIENT_BLOCK_REASONS;
use crate::error::{DiscoverError, PublishError, StateError};
use crate::events::PointerEvent;
use crate::pointer::Pointer;
use crate::proof::ProofOutcome;
use crate::state::Marker;
use crate::wire::CertificationStatus;

/// A completed publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The version now holding the CID.
    pub version: u32,
    /// Conflicts lost on the way.
    pub conflicts: u32,
}

enum AtError {
    Conflict,
    Fail(PublishError),
}

impl From<PublishError> for AtError {
    fn from(e: PublishError) -> Self {
        Self::Fail(e)
    }
}

impl From<StateError> for AtError {
    fn from(e: StateError) -> Self {
        Self::Fail(e.into())
    }
}

fn side_failure(e: DiscoverError) -> PublishError {
    match e {
        DiscoverError::ProofUnavailable { source, .. } => PublishError::Rpc(source),
        DiscoverError::Untrusted { source, .. } => PublishError::Verify(source),
        other => PublishError::Discover(Box::new(other)),
    }
}

impl Pointer {
    /// Publishes `cid` as the wallet's next version (the module doc's algorithm).
    pub async fn publish(&self, cid: &Cid) -> Result<Published, PublishError> {
        self.publish_inner(cid, 0, false).await
    }

    /// [`Pointer::publish`] at a version of at least `min_version`;
    /// `accepting_car_loss` skips the CAR_UNAVAILABLE refusal (`accept_car_loss`).
    pub(crate) async fn publish_inner(
        &self,
        cid: &Cid,
        min_version: u32,
        accepting_car_loss: bool,
    ) -> Result<Published, PublishError> {
        let _lock = self.publish_lock.lock().await;
        check_publishable(cid)?;
        let cid_bytes = cid.to_bytes();
        if let Some(reason) = self.local_state()?.blocked {
            if TRANSIENT_BLOCK_REASONS.contains(&reason.as_str()) {
                self.discover()
                    .await
                    .map_err(|e| PublishError::Discover(Box::new(e)))?;
            } else {
                self.emit(PointerEvent::PublishFailed { code: "BLOCKED" });
                return Err(PublishError::Blocked { reason });
            }
        }
        if !accepting_car_loss && let Some(version) = self.local_state()?.car_unavailable {
            self.emit(PointerEvent::PublishFailed {
                code: "CAR_UNAVAILABLE",
            });
            return Err(PublishError::CarUnavailable { version });
        }
        // Above everything known: our own commits and what discovery saw included
        // (a corrupt top version is stepped over instead of conflicting on it).
        let mut candidate = self
            .local_state()?
            .local_version
            .max(
                self.known_included
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
            .saturating_add(1)
            .max(min_version);
        let mut conflicts = 0u32;
        loop {
            let st = self.local_state()?;
            let v = match st.marker {
                None => candidate,
                Some(m) if m.version <= st.local_version => {
                    self.with_state(|s, w| s.clear_marker(w))?;
                    candidate
                }
                Some(m) if m.version - st.local_version > self.config.marker_max_jump => {
                    self.block("marker_corrupt")?;
                    return Err(StateError::MarkerCorrupt(format!(
                        "marker version {} is more than {} above local version {}",
                        m.version, self.config.marker_max_jump, st.local_version
                    ))
                    .into());
                }
                Some(m) if m.version >= candidate => {
                    if m.cid == cid_bytes {
                        m.version
                    } else {
                        match Cid::read_bytes(m.cid.as_slice()) {
                            Ok(old) => match self.publish_at(m.version, &old).await {
                                Ok(()) => {
                                    let s = old.to_string();
                                    self.with_state(|st, w| st.commit(w, m.version, Some(&s)))?;
                                }
                                Err(AtError::Conflict) => {}
                                Err(AtError::Fail(e)) => return Err(e),
                            },
                            Err(_) => self.with_state(|s, w| s.clear_marker(w))?,
                        }
                        m.version.saturating_add(1)
                    }
                }
                Some(_) => candidate,
            };
            match self.publish_at(v, cid).await {
                Ok(()) => {
                    let s = cid.to_string();
                    self.with_state(|st, w| st.commit(w, v, Some(&s)))?;
                    self.emit(PointerEvent::PublishConfirmed { version: v });
                    return Ok(Published {
                        version: v,
                        conflicts,
                    });
                }
                Err(AtError::Fail(e)) => {
                    self.emit(PointerEvent::PublishFailed {
                        code: match &e {
                            PublishError::Rejected { .. } => "REJECTED",
                            PublishError::Rpc(_) => "NETWORK_ERROR",
                            PublishError::Verify(_) => "UNTRUSTED_PROOF",
                            _ => "PUBLISH_FAILED",
                        },
                    });
                    return Err(e);
                }
                Err(AtError::Conflict) => {
                    conflicts = conflicts.saturating_add(1);
                    self.emit(PointerEvent::PublishConflict { version: v });
                    if conflicts >= self.config.retry_budget {
                        self.block("retry_exhausted")?;
                        return Err(PublishError::RetryExhausted {
                            attempts: conflicts,
                        });
                    }
                    tokio::time::sleep(self.client_backoff(conflicts)).await;
                    let d = self
                        .discover()
                        .await
                        .map_err(|e| PublishError::Discover(Box::new(e)))?;
                    candidate = d
                        .valid_version
                        .max(d.included_version)
                        .max(v)
                        .saturating_add(1);
                }
            }
        }
    }

    fn client_backoff(&self, n: u32) -> Duration {
        crate::client::ClientConfig::default()
            .with_backoff(Duration::from_millis(50), Duration::from_secs(2))
            .backoff(n)
    }

    /// Writes the marker for (`v`, `cid`), then derives, submits and confirms.
    async fn publish_at(&self, v: u32, cid: &Cid) -> Result<(), AtError> {
        let marker = Marker {
            version: v,
            cid: cid.to_bytes(),
        };
        self.with_state(|s, w| s.set_marker(w, &marker))?;
        self.emit(PointerEvent::PublishStarted { version: v });
        let built = self.keys.build(v, cid).map_err(PublishError::from)?;
        let (a, b) = tokio::join!(self.submit_side(&built.a), self.submit_side(&built.b));
        let statuses = [(Side::A, a), (Side::B, b)];
        // Rejections first: a burnt version must not be reused.
        for (side, r) in &statuses {
            if let Ok(st) = r
                && matches!(
                    st,
                    CertificationStatus::SignatureVerificationFailed
                        | CertificationStatus::InvalidSignatureFormat
                        | CertificationStatus::InvalidPublicKeyFormat
                )
            {
                self.with_state(|s, w| s.commit(w, v, None))?;
                self.block("rejected")?;
                return Err(AtError::Fail(PublishError::Rejected {
                    version: v,
                    side: *side,
                    status: st.as_str().to_owned(),
                }));
            }
        }
        for (side, r) in statuses {
            match r {
                Err(e) => return Err(AtError::Fail(e)),
                Ok(
                    CertificationStatus::Success
                    | CertificationStatus::StateIdExists
                    | CertificationStatus::Other(_),
                ) => {}
                Ok(other) => {
                    return Err(AtError::Fail(PublishError::Rejected {
                        version: v,
                        side,
                        status: other.as_str().to_owned(),
                    }));
                }
            }
        }
        self.confirm(&built).await
    }

    /// Submits one side (for crash-recovery tests and operators: a publish is the
    /// marker, both sides, and the confirmation — see [`Pointer::publish`]).
    pub async fn submit_side(
        &self,
        c: &SideCommitment,
    ) -> Result<CertificationStatus, PublishError> {
        let mut not_ready = 0u32;
        loop {
            let status = self.client.submit(&c.request()).await?;
            self.emit(PointerEvent::SideSubmitted {
                version: c.version,
                side: c.side,
                status: status.as_str().to_owned(),
            });
            if status == CertificationStatus::ServiceNotReady && not_ready < 5 {
                not_ready += 1;
                tokio::time::sleep(self.client_backoff(not_ready)).await;
                continue;
            }
            return Ok(status);
        }
    }

    /// Simulates a crash between the two side submissions: writes the marker for
    /// the next version and submits side A only. For crash-recovery tests.
    pub async fn begin_and_submit_side_a_only(&self, cid: &Cid) -> Result<u32, PublishError> {
        let _lock = self.publish_lock.lock().await;
        let v = self.local_state()?.local_version.saturating_add(1);
        let marker = Marker {
            version: v,
            cid: cid.to_bytes(),
        };
        self.with_state(|s, w| s.set_marker(w, &marker))?;
        let built = self.keys.build(v, cid)?;
        self.submit_side(&built.a).await?;
        Ok(v)
    }

    /// Waits until both sides are certified; `Ok` when both carry our ciphertexts,
    /// `Conflict` when either carries another.
    async fn confirm(&self, built: &VersionCommitments) -> Result<(), AtError> {
        let v = built.version;
        let deadline = Instant::now() + self.config.confirm_timeout;
        let mut delay = Duration::from_millis(50);
        let mut ours = [None::<bool>, None::<bool>];
        loop {
            for (i, side) in Side::BOTH.iter().enumerate() {
                if ours[i].is_some() {
                    continue;
                }
                match self.probe_side(*side, v).await.map_err(side_failure)? {
                    ProofOutcome::Included {
                        transaction_hash, ..
                    } => ours[i] = Some(transaction_hash == built.side(*side).ciphertext),
                    ProofOutcome::Absent => {}
                }
            }
            if ours.contains(&Some(false)) {
                return Err(AtError::Conflict);
            }
            if ours == [Some(true), Some(true)] {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(AtError::Fail(PublishError::NotConfirmed { version: v }));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}
