//! Exit codes: 0 success, 1 user or input error, 2 internal error; a broken pipe
//! on stdout is success (`sphere-cli status | head -1`).
//!
//! A user error is one the user can fix by asking differently: bad flags or
//! arguments, a named input file that is missing, unreadable or invalid, a named
//! output path that cannot be written as asked ([`write_output`]), an address
//! that cannot be listened on, a write the store refuses as invalid (also when a
//! running sync node refuses it), a wallet state the operator must act on. Anything
//! else (storage, network, a remote that misbehaves, bugs) is internal.

use std::process::ExitCode;

use sphere_profile::datadir::DataDirError;
use sphere_profile::ipfs::{FetchError, PinError};
use sphere_profile::keys::KeyError;
use sphere_profile::oplog::{OpenError, StoreError};
use sphere_profile::sync::SyncError;
use sphere_profile::sync::control::ControlError;

use crate::output::Printer;

/// Exit code of a user or input error.
pub(crate) const USER: u8 = 1;
/// Exit code of an internal error.
pub(crate) const INTERNAL: u8 = 2;

/// An error caused by what the user asked for or typed.
#[derive(Debug)]
pub(crate) struct UserError(pub(crate) String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// An outcome already reported on stdout that still needs a non-zero exit code
/// (`ipfs has` for "not available"): nothing more is printed.
#[derive(Debug)]
pub(crate) struct Quiet(pub(crate) u8);

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Quiet {}

/// Shorthand for a user error.
pub(crate) fn user(msg: impl Into<String>) -> anyhow::Error {
    UserError(msg.into()).into()
}

/// Writes an output file named on the command line. A path that cannot be written
/// as asked (its directory missing, no permission, a directory in the way, a
/// read-only file system) is the user's error (exit 1); anything else, such as a
/// full disk or an I/O error, stays internal.
pub(crate) fn write_output(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| output_error(path, "write", e))
}

/// Creates an output directory named on the command line, classified as
/// [`write_output`] does.
pub(crate) fn create_output_dir(path: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).map_err(|e| output_error(path, "create", e))
}

fn output_error(path: &std::path::Path, what: &str, e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind as K;
    let msg = format!("cannot {what} {}: {e}", path.display());
    match e.kind() {
        K::NotFound
        | K::PermissionDenied
        | K::IsADirectory
        | K::NotADirectory
        | K::AlreadyExists
        | K::ReadOnlyFilesystem
        | K::InvalidFilename => user(msg),
        _ => anyhow::Error::new(e).context(msg),
    }
}

fn is_user_error(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.is::<UserError>()
            || matches!(
                c.downcast_ref::<KeyError>(),
                Some(KeyError::Mnemonic(_) | KeyError::AddressIndex(_))
            )
            || matches!(
                c.downcast_ref::<DataDirError>(),
                Some(
                    DataDirError::AlreadyInitialized { .. }
                        | DataDirError::NotInitialized { .. }
                        | DataDirError::Locked { .. }
                        | DataDirError::WrongPassword
                        | DataDirError::NoStoredMnemonic
                )
            )
            || matches!(
                c.downcast_ref::<OpenError>(),
                Some(OpenError::DataDir(
                    DataDirError::NotInitialized { .. } | DataDirError::Locked { .. }
                ))
            )
            || matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Invalid(_)))
            // The same refusal, from the running sync node.
            || matches!(c.downcast_ref::<ControlError>(), Some(ControlError::Refused(_)))
            || matches!(c.downcast_ref::<PinError>(), Some(PinError::InvalidCar(_)))
            // A CID kind no gateway may serve (CIDv0, identity or non-sha2-256 hash).
            || matches!(c.downcast_ref::<FetchError>(), Some(FetchError::Unsupported(_)))
            || matches!(c.downcast_ref::<SyncError>(), Some(SyncError::Listen { .. }))
            || is_address_taken(c)
            || is_pointer_user_error(c)
    })
}

/// A listen address in use or not on this machine (e.g. `aggregator --listen`).
fn is_address_taken(c: &(dyn std::error::Error + 'static)) -> bool {
    c.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable
        )
    })
}

/// Pointer states the operator must act on (not bugs): CAR_UNAVAILABLE, a publish
/// refused for it, and every refused operator override; and the user's bad input:
/// a CID a pointer cannot carry, an aggregator URL that is not one.
fn is_pointer_user_error(c: &(dyn std::error::Error + 'static)) -> bool {
    use sphere_pointer::error::{DiscoverError, OverrideError, PublishError, RpcError};
    matches!(
        c.downcast_ref::<DiscoverError>(),
        Some(DiscoverError::ContentUnavailable { .. })
    ) || matches!(
        c.downcast_ref::<PublishError>(),
        Some(PublishError::CarUnavailable { .. } | PublishError::Cid(_))
    ) || matches!(c.downcast_ref::<RpcError>(), Some(RpcError::BadUrl(_)))
        || matches!(
            c.downcast_ref::<OverrideError>(),
            Some(
                OverrideError::CapabilityDenied { .. }
                    | OverrideError::CarLossNotPersistent { .. }
                    | OverrideError::CarAvailable { .. }
                    | OverrideError::VersionOutOfRange(_)
                    | OverrideError::Publish(
                        PublishError::CarUnavailable { .. } | PublishError::Cid(_)
                    )
            )
        )
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Prints `err` and returns the exit code it maps to.
pub(crate) fn report(printer: &Printer, err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    if let Some(Quiet(code)) = err.downcast_ref::<Quiet>() {
        return ExitCode::from(*code);
    }
    let code = if is_user_error(err) { USER } else { INTERNAL };
    printer.error(err, code);
    ExitCode::from(code)
}
