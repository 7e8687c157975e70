//! Checking many entries' signatures at once.
//!
//! Catch-up pages carry hundreds of entries, all signed by the wallet's one OpLog
//! key. Checking an ECDSA signature alone costs a two-point multiplication (about
//! 90 µs on the 2-core CI machine); checking a group of them with one random linear
//! combination costs about a third of that per entry, because the doublings are
//! shared and each entry's random factor is only 128 bits long.
//!
//! The verdict for every entry is the one [`verify`] gives, reason included:
//! entries the fast path cannot take are checked alone, and when a group's combined
//! check fails, each entry of that group is checked alone.
//!
//! # Why the combined check is sound
//!
//! With digest `z`, the signature `(r, s, v)` of an entry verifies *and* recovers to
//! the wallet key `Q` exactly when `s·R = z·G + r·Q`, where `R` is the curve point
//! whose x-coordinate is `r` and whose y parity is bit 0 of `v` (this is the point
//! public-key recovery starts from). Entries whose `v` has bit 1 set (`R.x ≥ n`, which
//! happens with probability about 2⁻¹²⁸) are checked alone.
//!
//! Dividing entry `i`'s equation by `sᵢ` and weighting it by a fresh random 128-bit
//! `aᵢ`, with `bᵢ = aᵢ / sᵢ`, the group is accepted when
//!
//! ```text
//! Σ aᵢ·Rᵢ − (Σ bᵢ·zᵢ)·G − (Σ bᵢ·rᵢ)·Q = 0
//! ```
//!
//! If any entry's equation is false, the sum is zero for at most one value of that
//! entry's `aᵢ` given the others (the group has prime order), so a forged group
//! passes with probability at most 2⁻¹²⁸. The `aᵢ` are drawn from the thread's
//! CSPRNG after the entries are fixed, so a sender cannot aim at them.

use k256::elliptic_curve::ff::BatchInverter;
use k256::elliptic_curve::group::Group;
use k256::elliptic_curve::ops::{LinearCombination, Reduce};
use k256::elliptic_curve::point::DecompressPoint;
use k256::elliptic_curve::subtle::Choice;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use rand::Rng;

use super::Rejected;
use super::entry::{Entry, LogKeys, verify};

/// Entries per combined check. Measured on the CI machine: groups of 16 to 128 cost
/// 29–35 µs per entry, 256 is slower again (the tables stop fitting in cache); a
/// smaller group also means less re-checking when one entry in it is bad.
pub const GROUP: usize = 64;

/// One entry's share of the combined equation.
struct Term {
    /// The point `R` named by `r` and the recovery id's parity bit.
    point: AffinePoint,
    r: Scalar,
    s: Scalar,
    z: Scalar,
}

/// Verifies every entry's log id, signer and signature; the same verdicts, in the
/// same order, as calling [`verify`] on each.
pub fn verify_many(entries: &[Entry], keys: &LogKeys) -> Vec<Result<(), Rejected>> {
    // One entry (the live path's usual case) gains nothing from a combination, and
    // building its term would cost a square root for nothing.
    if entries.len() < 2 {
        return entries.iter().map(|e| verify(e, keys)).collect();
    }
    let mut verdicts: Vec<Option<Result<(), Rejected>>> = vec![None; entries.len()];
    let mut group: Vec<(usize, Term)> = Vec::with_capacity(GROUP);
    let wallet_key = keys.public_point();
    for (i, entry) in entries.iter().enumerate() {
        match term(entry, keys) {
            Some(t) => group.push((i, t)),
            None => verdicts[i] = Some(verify(entry, keys)),
        }
        if group.len() == GROUP {
            settle(&mut group, entries, keys, &wallet_key, &mut verdicts);
        }
    }
    settle(&mut group, entries, keys, &wallet_key, &mut verdicts);
    verdicts
        .into_iter()
        .zip(entries)
        // Every index got a verdict above; the fallback keeps this total anyway.
        .map(|(v, e)| v.unwrap_or_else(|| verify(e, keys)))
        .collect()
}

/// Runs the combined check on `group` (emptying it) and records the verdicts.
fn settle(
    group: &mut Vec<(usize, Term)>,
    entries: &[Entry],
    keys: &LogKeys,
    wallet_key: &ProjectivePoint,
    verdicts: &mut [Option<Result<(), Rejected>>],
) {
    if group.is_empty() {
        return;
    }
    // A group of one (a page's remainder) gains nothing from the combination.
    let all_valid = group.len() > 1 && combined_check(group, wallet_key);
    for (i, _) in group.drain(..) {
        let (Some(slot), Some(entry)) = (verdicts.get_mut(i), entries.get(i)) else {
            continue;
        };
        *slot = Some(if all_valid {
            Ok(())
        } else {
            verify(entry, keys)
        });
    }
}

/// The entry's term, or `None` when it must be checked alone: wrong log or signer,
/// unparsable or high-S signature, a recovery id other than 0 or 1, or an `r` that
/// names no curve point. Every one of these is rejected (or, for `v ≥ 2`, decided)
/// by [`verify`] with its own reason.
fn term(entry: &Entry, keys: &LogKeys) -> Option<Term> {
    if entry.log_id != *keys.log_id() || entry.signer != *keys.public_key() {
        return None;
    }
    let (rs, v) = entry.sig.split_at(64);
    let sig = k256::ecdsa::Signature::from_slice(rs).ok()?;
    if sig.normalize_s() != sig {
        return None;
    }
    let y_is_odd = match v.first() {
        Some(0) => Choice::from(0),
        Some(1) => Choice::from(1),
        _ => return None,
    };
    let r: Scalar = *sig.r();
    let point = Option::<AffinePoint>::from(AffinePoint::decompress(&r.to_bytes(), y_is_odd))?;
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&entry.signing_digest().into());
    Some(Term {
        point,
        r,
        s: *sig.s(),
        z,
    })
}

/// Whether `Σ aᵢ·Rᵢ − (Σ bᵢ·zᵢ)·G − (Σ bᵢ·rᵢ)·Q` is the identity (see the module
/// docs), with fresh random `aᵢ`.
fn combined_check(group: &[(usize, Term)], wallet_key: &ProjectivePoint) -> bool {
    let mut s_inverses: Vec<Scalar> = group.iter().map(|(_, t)| t.s).collect();
    let mut scratch = vec![Scalar::ZERO; s_inverses.len()];
    // `s` is non-zero (the signature parser refuses zero), so every inverse exists.
    BatchInverter::invert_with_external_scratch(&mut s_inverses, &mut scratch);

    let mut rng = rand::rng();
    let mut g_factor = Scalar::ZERO;
    let mut q_factor = Scalar::ZERO;
    let mut terms: Vec<(ProjectivePoint, Scalar)> = Vec::with_capacity(group.len() + 1);
    for ((_, t), s_inv) in group.iter().zip(s_inverses) {
        let mut wide = [0u8; 32];
        if let Some(low) = wide.get_mut(16..) {
            rng.fill_bytes(low);
        }
        let a = <Scalar as Reduce<FieldBytes>>::reduce(&wide.into());
        let b = a * s_inv;
        g_factor += b * t.z;
        q_factor += b * t.r;
        terms.push((ProjectivePoint::from(t.point), a));
    }
    terms.push((*wallet_key, -q_factor));
    let sum = ProjectivePoint::lincomb_vartime(terms.as_slice())
        + ProjectivePoint::mul_by_generator_vartime(&-g_factor);
    bool::from(sum.is_identity())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    use super::*;
    use crate::oplog::entry::tests::{draft, keys, ops};
    use proptest::prelude::*;

    fn signed(n: usize) -> Vec<Entry> {
        let k = keys(1);
        (1..=n as u64)
            .map(|seq| Entry::seal(&k, draft(seq), &ops()).unwrap())
            .collect()
    }

    fn individually(entries: &[Entry], k: &LogKeys) -> Vec<Result<(), Rejected>> {
        entries.iter().map(|e| verify(e, k)).collect()
    }

    #[test]
    fn a_valid_page_passes_in_groups_and_a_remainder() {
        let k = keys(1);
        let entries = signed(GROUP * 2 + 5);
        assert!(verify_many(&entries, &k).iter().all(Result::is_ok));
        assert!(verify_many(&[], &k).is_empty());
    }

    /// The fallback would hide a combined check that always fails; test it directly.
    #[test]
    fn the_combined_check_accepts_a_valid_group_and_refuses_one_bad_member() {
        let k = keys(1);
        let q = k.public_point();
        let entries = signed(GROUP);
        let group = |entries: &[Entry]| -> Vec<(usize, Term)> {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| (i, term(e, &k).unwrap()))
                .collect()
        };
        assert!(combined_check(&group(&entries), &q));
        for damage in [
            |e: &mut Entry| e.sig[64] ^= 1,
            |e: &mut Entry| e.sig[40] ^= 4,
            |e: &mut Entry| e.wall_ms += 1,
        ] {
            let mut bad = entries.clone();
            damage(&mut bad[GROUP / 2]);
            // `term` may refuse a damaged signature outright; if it takes it, the
            // combined check must refuse the group.
            if bad.iter().all(|e| term(e, &k).is_some()) {
                assert!(!combined_check(&group(&bad), &q));
            }
        }
        // A group signed under another key fails against ours.
        let theirs: Vec<(usize, Term)> = (1..=4)
            .map(|seq| {
                let mut e = Entry::seal(&keys(2), draft(seq), &ops()).unwrap();
                e.log_id = *k.log_id();
                e.signer = *k.public_key();
                (0, term(&e, &k).unwrap())
            })
            .collect();
        assert!(!combined_check(&theirs, &q));
    }

    #[test]
    fn a_flipped_recovery_id_is_caught_and_named_like_verify() {
        let k = keys(1);
        let mut entries = signed(10);
        entries[4].sig[64] ^= 1;
        let got = verify_many(&entries, &k);
        assert_eq!(got, individually(&entries, &k));
        assert!(matches!(got[4], Err(Rejected::BadSignature { seq: 5, .. })));
        assert_eq!(got.iter().filter(|v| v.is_ok()).count(), 9);
    }

    #[test]
    fn another_wallets_entries_keep_their_reasons() {
        let k = keys(1);
        let mut entries = signed(6);
        entries[1] = Entry::seal(&keys(2), draft(2), &ops()).unwrap();
        entries[3].log_id = [9; 32];
        let got = verify_many(&entries, &k);
        assert_eq!(got, individually(&entries, &k));
        assert!(matches!(got[1], Err(Rejected::ForeignLog { .. })));
        assert!(matches!(got[3], Err(Rejected::ForeignLog { .. })));
    }

    /// How one entry of a page is damaged in the property test below.
    #[derive(Debug, Clone)]
    enum Damage {
        None,
        SigByte(usize, u8),
        Wall(u64),
        Signer(u8),
        ReSignedBy(u8),
        HighS,
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            6 => Just(Damage::None),
            2 => (0..65usize, 1..=255u8).prop_map(|(i, x)| Damage::SigByte(i, x)),
            1 => any::<u64>().prop_map(Damage::Wall),
            1 => (0..33u8).prop_map(Damage::Signer),
            1 => (2..4u8).prop_map(Damage::ReSignedBy),
            1 => Just(Damage::HighS),
        ]
    }

    fn apply(e: &mut Entry, d: &Damage) {
        match *d {
            Damage::None => {}
            Damage::SigByte(i, x) => e.sig[i] ^= x,
            Damage::Wall(w) => e.wall_ms = w,
            Damage::Signer(i) => e.signer[usize::from(i)] ^= 1,
            Damage::ReSignedBy(n) => {
                let other = Entry::seal(&keys(n), draft(e.seq), &ops()).unwrap();
                e.sig = other.sig;
            }
            Damage::HighS => {
                let sig = k256::ecdsa::Signature::from_slice(&e.sig[..64]).unwrap();
                let (r, s) = sig.split_scalars();
                let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
                e.sig[..64].copy_from_slice(&high.to_bytes());
                e.sig[64] ^= 1;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn verdicts_match_verifying_one_by_one(
            damages in proptest::collection::vec(damage(), 1..(GROUP + 20)),
        ) {
            let k = keys(1);
            let mut entries = signed(damages.len());
            for (e, d) in entries.iter_mut().zip(&damages) {
                apply(e, d);
            }
            prop_assert_eq!(verify_many(&entries, &k), individually(&entries, &k));
        }
    }
}
