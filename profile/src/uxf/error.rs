//! The one error type of [`crate::uxf`] and the reference's error codes.
//!
//! Every failure carries an [`ErrorCode`] equal to the code the TypeScript reference
//! uses for the same failure (`[UXF:<CODE>]`, spec §8.7), so tests can check that both
//! implementations reject an input for the same reason. One enum serves the whole module
//! because callers branch on the code, not on the operation; the variants carry the
//! identifying data (hash, token id, role).

use std::fmt;

/// The reference's error classes (spec §8.7), plus [`ErrorCode::SmtPath`] for the
/// state-transition SDK's own SMT-path parser errors, which are not UXF errors there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A hash or a hex byte field is malformed, or an element type is unknown.
    InvalidHash,
    /// An element that should be in the pool is not.
    MissingElement,
    /// No manifest entry for the token id.
    TokenNotFound,
    /// `assemble_at_state` beyond the token's transactions.
    StateIndexOutOfRange,
    /// An element has another type than its role requires.
    TypeMismatch,
    /// An instance chain is malformed.
    InvalidInstanceChain,
    /// Bytes or JSON could not be decoded.
    SerializationError,
    /// A hash does not match its content.
    VerificationFailed,
    /// A cycle (or a walk deeper than the limit) in the element graph.
    CycleDetected,
    /// Input is not a valid token or package.
    InvalidPackage,
    /// An argument is out of its domain.
    InvalidInput,
    /// A documented limit is exceeded.
    LimitExceeded,
    /// A strict merge skipped tokens.
    MergePartialFailure,
    /// The SMT path JSON/CBOR is malformed (the SDK's parser error, not a UXF code).
    SmtPath,
}

impl ErrorCode {
    /// The reference's spelling (`INVALID_HASH`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidHash => "INVALID_HASH",
            Self::MissingElement => "MISSING_ELEMENT",
            Self::TokenNotFound => "TOKEN_NOT_FOUND",
            Self::StateIndexOutOfRange => "STATE_INDEX_OUT_OF_RANGE",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::InvalidInstanceChain => "INVALID_INSTANCE_CHAIN",
            Self::SerializationError => "SERIALIZATION_ERROR",
            Self::VerificationFailed => "VERIFICATION_FAILED",
            Self::CycleDetected => "CYCLE_DETECTED",
            Self::InvalidPackage => "INVALID_PACKAGE",
            Self::InvalidInput => "INVALID_INPUT",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::MergePartialFailure => "MERGE_PARTIAL_FAILURE",
            Self::SmtPath => "SMT_PATH",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A UXF failure: its reference error class and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[UXF:{code}] {message}")]
#[non_exhaustive]
pub struct UxfError {
    /// The reference's error class.
    pub code: ErrorCode,
    /// What went wrong, naming the hash, token id or field concerned.
    pub message: String,
    /// Token ids a strict merge skipped (only for [`ErrorCode::MergePartialFailure`]).
    pub skipped: Vec<String>,
}

impl UxfError {
    /// An error of class `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            skipped: Vec::new(),
        }
    }

    /// The reference's error class.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

/// `Result` with [`UxfError`].
pub type Result<T, E = UxfError> = std::result::Result<T, E>;

macro_rules! err {
    ($code:ident, $($arg:tt)*) => {
        $crate::uxf::error::UxfError::new($crate::uxf::error::ErrorCode::$code, format!($($arg)*))
    };
}
pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_reference_prefix() {
        let e = UxfError::new(ErrorCode::InvalidPackage, "Token must have a genesis field");
        assert_eq!(
            e.to_string(),
            "[UXF:INVALID_PACKAGE] Token must have a genesis field"
        );
        assert_eq!(e.code(), ErrorCode::InvalidPackage);
    }
}
