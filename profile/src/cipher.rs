//! Sphere value encryption: AES-256-GCM under the Profile value key.
//!
//! # Format
//!
//! ```text
//! IV (12 bytes, random) ‖ ciphertext (len = plaintext len) ‖ tag (16 bytes)
//! ```
//!
//! No associated data, exactly as the TypeScript reference writes it
//! (`shared/spec/profile.md` §2.2), so values move between implementations. The
//! shortest valid blob is 28 bytes (empty plaintext); anything shorter, or whose tag
//! does not verify, is a [`CipherError`].

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use crate::secret::Secret32;

/// Length of the random IV that starts every blob.
pub const IV_LEN: usize = 12;
/// Length of the GCM tag that ends every blob.
pub const TAG_LEN: usize = 16;

/// Why a value blob could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// The blob is shorter than IV + tag.
    #[error("encrypted value too short: {len} bytes, need at least {}", IV_LEN + TAG_LEN)]
    TooShort {
        /// Length of the rejected blob.
        len: usize,
    },
    /// Authentication failed: wrong key, or the blob was altered.
    #[error("encrypted value failed authentication (wrong key or altered bytes)")]
    Authentication,
}

fn cipher(key: &Secret32) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key.expose()))
}

/// Encrypts `plaintext` under `key` with a fresh random IV.
pub fn encrypt(key: &Secret32, plaintext: &[u8]) -> Vec<u8> {
    let mut iv = [0u8; IV_LEN];
    rand::fill(&mut iv);
    encrypt_with_iv(key, &iv, plaintext, &[])
}

/// Encrypts with a caller-chosen IV and associated data. Reusing an IV under one key
/// breaks GCM; only known-answer tests and callers that derive unique IVs use this.
pub fn encrypt_with_iv(key: &Secret32, iv: &[u8; IV_LEN], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let sealed = cipher(key)
        .encrypt(
            &Nonce::from(*iv),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption only fails for inputs beyond 64 GiB");
    let mut out = Vec::with_capacity(IV_LEN + sealed.len());
    out.extend_from_slice(iv);
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts a Sphere value blob (no associated data).
pub fn decrypt(key: &Secret32, blob: &[u8]) -> Result<Vec<u8>, CipherError> {
    decrypt_with_aad(key, blob, &[])
}

/// Decrypts `IV ‖ ciphertext ‖ tag` with associated data `aad`.
pub fn decrypt_with_aad(key: &Secret32, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CipherError> {
    let (Some(iv), Some(sealed)) = (blob.get(..IV_LEN), blob.get(IV_LEN..)) else {
        return Err(CipherError::TooShort { len: blob.len() });
    };
    if sealed.len() < TAG_LEN {
        return Err(CipherError::TooShort { len: blob.len() });
    }
    let iv: [u8; IV_LEN] = iv
        .try_into()
        .map_err(|_| CipherError::TooShort { len: blob.len() })?;
    cipher(key)
        .decrypt(&Nonce::from(iv), Payload { msg: sealed, aad })
        .map_err(|_| CipherError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Secret32 {
        Secret32::new([7; 32])
    }

    proptest! {
        #[test]
        fn round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let blob = encrypt(&key(), &plain);
            prop_assert_eq!(blob.len(), plain.len() + IV_LEN + TAG_LEN);
            prop_assert_eq!(decrypt(&key(), &blob).unwrap(), plain);
        }

        #[test]
        fn any_flipped_bit_is_a_typed_error(
            plain in proptest::collection::vec(any::<u8>(), 0..256),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut blob = encrypt(&key(), &plain);
            let bit = bit.index(blob.len() * 8);
            blob[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(decrypt(&key(), &blob), Err(CipherError::Authentication));
        }

        #[test]
        fn random_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..128)) {
            prop_assert!(decrypt(&key(), &blob).is_err());
        }
    }

    #[test]
    fn short_blobs_are_rejected_by_length() {
        for len in 0..IV_LEN + TAG_LEN {
            assert_eq!(
                decrypt(&key(), &vec![0; len]),
                Err(CipherError::TooShort { len })
            );
        }
    }
}
