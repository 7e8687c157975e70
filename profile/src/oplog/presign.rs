//! Presignatures: the half of an ECDSA signature that does not depend on the message,
//! computed ahead of time on a helper thread, so that a commit signs its entry in a few
//! microseconds instead of 40–70 µs.
//!
//! An ECDSA signature over prehash `z` with key `d` and nonce `k` is
//! `r = x(k·G) mod n`, `s = k⁻¹ · (z + r·d) mod n`. Nearly all of its cost is `k·G`, its
//! affine `x` and `k⁻¹`, none of which involves `z`. A [`Presignature`] holds `k⁻¹`, `r`
//! and the recovery id's bits; [`Presignature::sign`] does the two multiplications and
//! the addition that remain, then low-S normalization as k256 does. Same signature
//! equation and group operations as k256's own signer (`ecdsa::hazmat::sign_prehashed`,
//! which a property test checks it against byte for byte), just split in two.
//!
//! **Nonces.** `k` is hedged: SHA-512 over a domain tag, a secret derived from `d`,
//! 32 bytes from the OS RNG and a per-pool counter, reduced to a non-zero scalar. It is
//! unpredictable while either the RNG or `d` is sound, and distinct within a process
//! even if the RNG repeated itself. It is not RFC 6979's message-bound nonce (the
//! message does not exist yet); a verifier cannot tell the two apart. A presignature is
//! consumed by `sign` (it is neither `Clone` nor `Copy`), so a nonce signs once, and
//! `k⁻¹` is zeroized when it is dropped.
//!
//! **The pool.** [`PresignPool`] keeps up to [`POOL_SIZE`] presignatures and is
//! refilled when [`PresignPool::take`] finds it at [`POOL_LOW`] or below (a store that
//! never writes computes none): one refill per `POOL_SIZE − POOL_LOW` entries, off the
//! writer's path. Who refills it depends on where `take` runs:
//!
//! * on a multi-threaded tokio runtime, a task on that runtime, one presignature
//!   (about 55 µs) per poll. A worker that would otherwise park between group
//!   commits does the work; the committing writer then wakes the other writers
//!   without first waking a parked worker (an unpark cost the leader about 15 µs per
//!   commit on the 2-core CI machine), and no extra thread competes with the
//!   runtime's for the cores (`docs/benchmarks.md`);
//! * anywhere else (the store thread, a current-thread runtime, no runtime), the
//!   pool's own thread, which sleeps until asked.
//!
//! An empty pool is not an error: the caller signs with RFC 6979 inline.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use k256::ecdsa::{RecoveryId, Signature, SigningKey};
use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::ops::{Invert, Reduce, ReduceNonZero};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::scalar::IsHigh;
use k256::{FieldBytes, NonZeroScalar, ProjectivePoint, Scalar, WideBytes};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroize;

use crate::secret::Secret32;

/// Most presignatures a pool holds.
pub(crate) const POOL_SIZE: usize = 64;

/// A pool that falls to this many wakes its thread to fill it up again.
pub(crate) const POOL_LOW: usize = 32;

/// Domain tag of the hedge secret derived from the signing key.
const HEDGE_DOMAIN: &[u8] = b"sphere-oplog-presign-hedge-v1";

/// Domain tag of the nonce hash.
const NONCE_DOMAIN: &[u8] = b"sphere-oplog-presign-nonce-v1";

/// The message-independent part of one ECDSA signature: `k⁻¹`, `r = x(k·G) mod n` and
/// the recovery id of `k·G` before low-S normalization.
pub(crate) struct Presignature {
    k_inv: Scalar,
    r: Scalar,
    recid: RecoveryId,
}

impl Drop for Presignature {
    fn drop(&mut self) {
        // `k⁻¹` and one signature made with it give away the signing key.
        self.k_inv.zeroize();
    }
}

impl Presignature {
    /// The presignature of nonce `k`; `None` in the negligible case `r = 0`.
    pub(crate) fn from_nonce(k: &NonZeroScalar) -> Option<Self> {
        let big_r = ProjectivePoint::mul_by_generator(k.as_ref()).to_affine();
        let x = big_r.x();
        let r = <Scalar as Reduce<FieldBytes>>::reduce(&x);
        if bool::from(r.is_zero()) {
            return None;
        }
        // The recovery id says which of the up to four points with x-coordinate `r`
        // is k·G: the parity of its y, and whether its x was at least n.
        let x_reduced = r.to_repr() != x;
        Some(Self {
            k_inv: *<NonZeroScalar as Invert>::invert(k),
            r,
            recid: RecoveryId::new(big_r.y_is_odd().into(), x_reduced),
        })
    }

    /// Completes the signature over `prehash` with key `d`, low-S, with its recovery
    /// id; `None` in the negligible case `s = 0`. Consumes the presignature: its nonce
    /// signs one message only.
    pub(crate) fn sign(
        self,
        d: &NonZeroScalar,
        prehash: &[u8; 32],
    ) -> Option<(Signature, RecoveryId)> {
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*prehash));
        let s = self.k_inv * (z + self.r * d.as_ref());
        let sig = Signature::from_scalars(self.r, s).ok()?;
        if bool::from(s.is_high()) {
            // s and n − s both verify; the low one is canonical, and negating s
            // mirrors k·G, whose y parity flips.
            let recid = RecoveryId::new(!self.recid.is_y_odd(), self.recid.is_x_reduced());
            Some((sig.normalize_s(), recid))
        } else {
            Some((sig, self.recid))
        }
    }
}

/// Makes hedged nonces for one signing key.
struct NonceSource {
    hedge: Secret32,
    counter: u64,
}

impl NonceSource {
    fn new(signing: &SigningKey) -> Self {
        let mut d = signing.as_nonzero_scalar().to_repr();
        let hedge: [u8; 32] = Sha256::new()
            .chain_update(HEDGE_DOMAIN)
            .chain_update(d)
            .finalize()
            .into();
        d.zeroize();
        Self {
            hedge: Secret32::new(hedge),
            counter: 0,
        }
    }

    fn next(&mut self) -> Option<NonZeroScalar> {
        let mut entropy = [0u8; 32];
        rand::fill(&mut entropy);
        self.counter = self.counter.wrapping_add(1);
        let mut wide: WideBytes = Sha512::new()
            .chain_update(NONCE_DOMAIN)
            .chain_update(self.hedge.expose())
            .chain_update(entropy)
            .chain_update(self.counter.to_be_bytes())
            .finalize();
        entropy.zeroize();
        let k = <Scalar as ReduceNonZero<WideBytes>>::reduce_nonzero(&wide);
        wide.zeroize();
        // `reduce_nonzero` maps into 1 ..= n − 1, so this is always `Some`.
        NonZeroScalar::new(k).into()
    }
}

/// What the pool's owner and its refillers share.
#[derive(Default)]
struct State {
    ready: Vec<Presignature>,
    /// A refill is asked for or under way (by the thread or a runtime task), until
    /// the pool holds [`POOL_SIZE`].
    refill: bool,
    /// The refill is the thread's to do.
    thread_asked: bool,
    /// Refills the thread has done (the rest were done by runtime tasks).
    thread_refills: u64,
    /// The pool was dropped: the thread and any refill task end.
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Nonces for the thread and the refill tasks alike (one counter).
    source: Mutex<NonceSource>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update of `State` is one assignment or push/pop: a panic elsewhere
        // cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Computes one presignature, holding the nonce source only to draw the nonce.
    fn make(&self) -> Option<Presignature> {
        let mut k = self
            .source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next()?;
        let made = Presignature::from_nonce(&k);
        k.zeroize();
        made
    }

    /// Adds one presignature; whether the refill is over (the pool is full, or was
    /// dropped).
    fn add(&self, made: Option<Presignature>) -> bool {
        let mut state = self.lock();
        if state.stop {
            return true;
        }
        state.ready.extend(made);
        if state.ready.len() >= POOL_SIZE {
            state.refill = false;
            return true;
        }
        false
    }
}

/// Presignatures for one signing key, made by a task on the caller's runtime or on a
/// helper thread (see the module docs).
/// Dropping the pool stops and joins the thread and zeroizes what is left.
pub(crate) struct PresignPool {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PresignPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("PresignPool")
            .field("ready", &state.ready.len())
            .field("thread_refills", &state.thread_refills)
            .finish()
    }
}

impl PresignPool {
    /// Starts the pool's thread, which computes nothing until a [`Self::take`] asks
    /// it to.
    pub(crate) fn start(signing: &SigningKey) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            source: Mutex::new(NonceSource::new(signing)),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("oplog-presign".into())
            .spawn(move || fill(&theirs))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// A presignature if one is ready. Starts a refill once the pool is at
    /// [`POOL_LOW`] or below: on the caller's runtime if it is multi-threaded, else
    /// on the pool's thread.
    pub(crate) fn take(&self) -> Option<Presignature> {
        let mut state = self.shared.lock();
        let p = state.ready.pop();
        if state.ready.len() <= POOL_LOW && !state.refill {
            state.refill = true;
            match multi_threaded_runtime() {
                Some(rt) => {
                    drop(state);
                    rt.spawn(refill(RefillDuty {
                        shared: Arc::clone(&self.shared),
                        done: false,
                    }));
                }
                None => {
                    state.thread_asked = true;
                    drop(state);
                    self.shared.wake.notify_one();
                }
            }
        }
        p
    }
}

/// The runtime the caller runs on, if it is a multi-threaded one.
fn multi_threaded_runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .ok()
        .filter(|rt| rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl Drop for PresignPool {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A refill task's claim on [`State::refill`]: a task dropped before it finished
/// (its runtime shut down) gives the claim up, so that the next `take` starts another
/// refill instead of waiting for one that will never end.
struct RefillDuty {
    shared: Arc<Shared>,
    done: bool,
}

impl Drop for RefillDuty {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().refill = false;
        }
    }
}

/// Refills the pool on a runtime: one presignature per poll, so the task never holds
/// a worker for more than one computation.
async fn refill(mut duty: RefillDuty) {
    loop {
        let made = duty.shared.make();
        if duty.shared.add(made) {
            duty.done = true;
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// The pool's thread: sleeps until asked, then fills the pool up, one presignature
/// at a time so that the owner's `take` never waits for a computation.
fn fill(shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.thread_asked && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
        }
        while !shared.add(shared.make()) {}
        let mut state = shared.lock();
        state.thread_asked = false;
        state.thread_refills = state.thread_refills.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::VerifyingKey;
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use proptest::prelude::*;

    fn scalar(bytes: [u8; 32]) -> NonZeroScalar {
        let s = <Scalar as ReduceNonZero<FieldBytes>>::reduce_nonzero(&FieldBytes::from(bytes));
        Option::from(NonZeroScalar::new(s)).unwrap()
    }

    proptest! {
        /// Split in two, the signature is exactly the one k256's own signer makes with
        /// the same key, nonce and prehash: same r, same low-S s, same recovery id.
        #[test]
        fn presigned_equals_k256_with_the_same_nonce(
            d in any::<[u8; 32]>(),
            k in any::<[u8; 32]>(),
            z in any::<[u8; 32]>(),
        ) {
            let (d, k) = (scalar(d), scalar(k));
            let ours = Presignature::from_nonce(&k).unwrap().sign(&d, &z).unwrap();
            let theirs = ecdsa::hazmat::sign_prehashed::<k256::Secp256k1>(&d, &k, &z).unwrap();
            prop_assert_eq!(ours, theirs);
            let vk = VerifyingKey::from(&SigningKey::from(d));
            prop_assert!(vk.verify_prehash(&z, &ours.0).is_ok());
            prop_assert_eq!(
                VerifyingKey::recover_from_prehash(&z, &ours.0, ours.1).unwrap(),
                vk
            );
        }
    }

    /// Signs `z` with a presignature from the pool and checks that the signature
    /// recovers to `key`.
    fn sign_and_recover(p: Presignature, key: &SigningKey, z: &[u8; 32]) -> Signature {
        let (sig, recid) = p.sign(key.as_nonzero_scalar(), z).unwrap();
        let vk = VerifyingKey::recover_from_prehash(z, &sig, recid).unwrap();
        assert_eq!(&vk, key.verifying_key());
        sig
    }

    fn wait_for(pool: &PresignPool, what: &str, done: impl Fn(&State) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done(&pool.shared.lock()) {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn wait_until_full(pool: &PresignPool) {
        wait_for(pool, "the pool fills", |s| s.ready.len() >= POOL_SIZE);
    }

    #[test]
    fn the_pool_fills_after_the_first_take_and_its_nonces_differ() {
        let key = SigningKey::from(scalar([5; 32]));
        let pool = PresignPool::start(&key).unwrap();
        assert!(
            pool.take().is_none(),
            "nothing is computed before it is asked for"
        );
        wait_until_full(&pool);
        let z = [9u8; 32];
        let mut rs = std::collections::HashSet::new();
        for _ in 0..POOL_SIZE {
            let sig = sign_and_recover(pool.take().unwrap(), &key, &z);
            assert!(rs.insert(sig.r().to_bytes()), "a nonce was used twice");
        }
        drop(pool);
    }

    #[test]
    fn on_a_multi_threaded_runtime_a_task_fills_the_pool_not_the_thread() {
        let key = SigningKey::from(scalar([6; 32]));
        let pool = PresignPool::start(&key).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        assert!(rt.block_on(async { pool.take() }).is_none());
        wait_until_full(&pool);
        assert_eq!(
            pool.shared.lock().thread_refills,
            0,
            "the thread refilled the pool"
        );
        sign_and_recover(pool.take().unwrap(), &key, &[3u8; 32]);
    }

    #[test]
    fn a_refill_task_dropped_unfinished_gives_its_claim_up() {
        let key = SigningKey::from(scalar([7; 32]));
        let pool = PresignPool::start(&key).unwrap();
        pool.shared.lock().refill = true;
        drop(RefillDuty {
            shared: Arc::clone(&pool.shared),
            done: false,
        });
        assert!(!pool.shared.lock().refill);

        // A runtime that shuts down in the middle of a refill: the next take,
        // outside any runtime, has the thread fill the pool.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async { pool.take() });
        drop(rt);
        while pool.take().is_some() {}
        wait_for(&pool, "the thread refills", |s| s.thread_refills >= 1);
        wait_until_full(&pool);
    }
}
