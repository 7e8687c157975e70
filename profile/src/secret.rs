//! Typed secrets: key material that is zeroized on drop and never printed.
//!
//! Every secret this crate handles (seed, private keys, the profile value key, the
//! OpLog keys, pointer seeds) is a [`SecretBytes`]. Its `Debug` prints `[redacted]`, it
//! has no `Display`, and the only way to the bytes is the explicit [`SecretBytes::expose`].

use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` bytes of key material, zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes<const N: usize>([u8; N]);

/// A 32-byte secret: private keys, symmetric keys, HKDF outputs.
pub type Secret32 = SecretBytes<32>;

impl<const N: usize> SecretBytes<N> {
    /// Takes ownership of `bytes`. The caller should zeroize its own copy.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Call sites are the audit trail of where secrets are used.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> std::fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret32::new([0xab; 32]);
        let shown = format!("{s:?} {s:#?}");
        assert_eq!(shown, "[redacted] [redacted]");
        assert!(!shown.contains("ab"));
    }
}
