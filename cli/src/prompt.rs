//! Secrets from the user: prompted on the terminal without echo, or taken from
//! standard input / `SPHERE_PASSWORD` for scripts. Never echoed, never logged.

use std::io::Read;

use anyhow::Context;
use zeroize::Zeroizing;

use crate::exit::user;

/// The env var scripts use to supply the wallet password.
pub(crate) const PASSWORD_ENV: &str = "SPHERE_PASSWORD";

/// The password from `SPHERE_PASSWORD`, else prompted (twice when `confirm`).
pub(crate) fn password(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        if p.is_empty() {
            return Err(user(format!("{PASSWORD_ENV} is set but empty")));
        }
        return Ok(Zeroizing::new(p));
    }
    let no_terminal = |_| {
        user(format!(
            "a password is needed: set {PASSWORD_ENV}, or run in a terminal"
        ))
    };
    let first = Zeroizing::new(rpassword::prompt_password("Password: ").map_err(no_terminal)?);
    if first.is_empty() {
        return Err(user("the password must not be empty"));
    }
    if confirm {
        let again =
            Zeroizing::new(rpassword::prompt_password("Repeat password: ").map_err(no_terminal)?);
        if *again != *first {
            return Err(user("the passwords do not match"));
        }
    }
    Ok(first)
}

/// A mnemonic typed at a prompt without echo.
pub(crate) fn mnemonic_from_tty() -> anyhow::Result<Zeroizing<String>> {
    let phrase =
        rpassword::prompt_password("Mnemonic (words separated by spaces): ").map_err(|_| {
            user("--import needs a terminal to prompt on; scripts use --mnemonic-stdin")
        })?;
    Ok(Zeroizing::new(phrase))
}

/// Most bytes of standard input taken as a mnemonic (24 words of at most 8 letters
/// are under 220 bytes; this leaves room for any spacing).
const MAX_MNEMONIC_INPUT: usize = 4096;

/// A mnemonic read from standard input (all of it, up to 4 KiB). Reads at most one
/// byte past the limit, so an endless input is refused without being buffered.
pub(crate) fn mnemonic_from_stdin() -> anyhow::Result<Zeroizing<String>> {
    let limit = MAX_MNEMONIC_INPUT + 1;
    // Room for one byte more than is ever read, so the buffer is never reallocated
    // (a reallocation would leave an unzeroized copy of the secret behind).
    let mut bytes = Zeroizing::new(Vec::with_capacity(limit + 1));
    std::io::stdin()
        .lock()
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)
        .context("reading the mnemonic from stdin")?;
    if bytes.len() > MAX_MNEMONIC_INPUT {
        return Err(user(format!(
            "standard input is too long to be a mnemonic (more than {MAX_MNEMONIC_INPUT} bytes)"
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| user("standard input is not UTF-8 text, so it is not a mnemonic"))?;
    Ok(Zeroizing::new(text.to_owned()))
}
