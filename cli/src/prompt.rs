//! Secrets from the user: prompted on the terminal without echo, or taken from
//! standard input / `SPHERE_PASSWORD` for scripts. Never echoed, never logged.

use std::io::BufRead;

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

/// A mnemonic read from standard input (all of it, up to 4 KiB).
pub(crate) fn mnemonic_from_stdin() -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    loop {
        let mut line = Zeroizing::new(String::new());
        let n = lock
            .read_line(&mut line)
            .context("reading the mnemonic from stdin")?;
        if n == 0 {
            break;
        }
        text.push_str(&line);
        if text.len() > 4096 {
            return Err(user("standard input is too long to be a mnemonic"));
        }
    }
    Ok(text)
}
