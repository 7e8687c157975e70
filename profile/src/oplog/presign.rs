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
//! **The pool.** [`PresignPool`] keeps up to [`POOL_SIZE`] presignatures. Its thread
//! sleeps until the first [`PresignPool::take`] (a store that never writes computes
//! none) and is woken again when the pool falls to [`POOL_LOW`]: one wake-up per
//! `POOL_SIZE − POOL_LOW` entries, off the writer's path. An empty pool is not an
//! error: the caller signs with RFC 6979 inline.

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

    fn presignature(&mut self) -> Option<Presignature> {
        let mut k = self.next()?;
        let made = Presignature::from_nonce(&k);
        k.zeroize();
        made
    }
}

/// What the pool's owner and its thread share.
#[derive(Default)]
struct State {
    ready: Vec<Presignature>,
    /// The thread should fill the pool up to [`POOL_SIZE`].
    refill: bool,
    /// The pool was dropped: the thread ends.
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update of `State` is one assignment or push/pop: a panic elsewhere
        // cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Presignatures for one signing key, made on a helper thread (see the module docs).
/// Dropping the pool stops and joins the thread and zeroizes what is left.
pub(crate) struct PresignPool {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PresignPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignPool")
            .field("ready", &self.shared.lock().ready.len())
            .finish()
    }
}

impl PresignPool {
    /// Starts the pool's thread, which computes nothing until the first
    /// [`Self::take`].
    pub(crate) fn start(signing: &SigningKey) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let mut source = NonceSource::new(signing);
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("oplog-presign".into())
            .spawn(move || fill(&theirs, &mut source))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// A presignature if one is ready. Asks the thread for more once the pool is at
    /// [`POOL_LOW`] or below.
    pub(crate) fn take(&self) -> Option<Presignature> {
        let mut state = self.shared.lock();
        let p = state.ready.pop();
        if state.ready.len() <= POOL_LOW && !state.refill {
            state.refill = true;
            drop(state);
            self.shared.wake.notify_one();
        }
        p
    }
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

/// The pool's thread: sleeps until asked, then fills the pool up, one presignature
/// at a time so that the owner's `take` never waits for a computation.
fn fill(shared: &Shared, source: &mut NonceSource) {
    loop {
        {
            let mut state = shared.lock();
            while !state.refill && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
        }
        loop {
            let made = source.presignature();
            let mut state = shared.lock();
            if state.stop {
                return;
            }
            state.ready.extend(made);
            if state.ready.len() >= POOL_SIZE {
                state.refill = false;
                break;
            }
        }
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

    #[test]
    fn the_pool_fills_after_the_first_take_and_its_nonces_differ() {
        let key = SigningKey::from(scalar([5; 32]));
        let pool = PresignPool::start(&key).unwrap();
        assert!(
            pool.take().is_none(),
            "nothing is computed before it is asked for"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pool.shared.lock().ready.len() < POOL_SIZE {
            assert!(
                std::time::Instant::now() < deadline,
                "the pool never filled"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let z = [9u8; 32];
        let mut rs = std::collections::HashSet::new();
        for _ in 0..POOL_SIZE {
            let (sig, recid) = pool
                .take()
                .unwrap()
                .sign(key.as_nonzero_scalar(), &z)
                .unwrap();
            let vk = VerifyingKey::recover_from_prehash(&z, &sig, recid).unwrap();
            assert_eq!(&vk, key.verifying_key());
            assert!(rs.insert(sig.r().to_bytes()), "a nonce was used twice");
        }
        drop(pool);
    }
}
