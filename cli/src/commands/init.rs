//! `sphere-cli init`: create a wallet data dir.

use std::path::Path;

use serde_json::json;
use sphere_profile::datadir::{DataDir, KEYS_FILE, KdfParams, MnemonicStorage, WALLET_FILE};
use sphere_profile::keys::{ADDRESS_PATH_PREFIX, Mnemonic, WalletKeys, WordCount};

use crate::args::{InitArgs, Words};
use crate::exit::user;
use crate::output::{Printer, path_json};
use crate::prompt;

pub(crate) fn run(data_dir: &Path, args: &InitArgs, printer: &Printer) -> anyhow::Result<()> {
    // Fail before asking for secrets if the dir is already taken.
    if data_dir.join(WALLET_FILE).exists() {
        return Err(sphere_profile::datadir::DataDirError::AlreadyInitialized {
            path: data_dir.to_path_buf(),
        }
        .into());
    }
    let (mnemonic, generated) = if args.mnemonic_stdin {
        (Mnemonic::parse(&prompt::mnemonic_from_stdin()?)?, false)
    } else if args.import {
        (Mnemonic::parse(&prompt::mnemonic_from_tty()?)?, false)
    } else {
        let words = match args.words {
            Words::W12 => WordCount::Twelve,
            Words::W24 => WordCount::TwentyFour,
        };
        (Mnemonic::generate(words), true)
    };
    let keys = WalletKeys::from_mnemonic(&mnemonic, "", args.address_index)?;
    let path = format!("{ADDRESS_PATH_PREFIX}/{}", args.address_index);

    let password;
    let storage = if args.no_store_mnemonic {
        MnemonicStorage::NotStored
    } else {
        password = prompt::password(true).map_err(|e| {
            if std::env::var_os(prompt::PASSWORD_ENV).is_none() {
                user(format!(
                    "{e}; or pass --no-store-mnemonic to keep the mnemonic only yourself"
                ))
            } else {
                e
            }
        })?;
        MnemonicStorage::Sealed {
            mnemonic: &mnemonic,
            password: &password,
            params: KdfParams::default(),
        }
    };
    let dir = DataDir::create(data_dir, &keys, &path, storage)?;
    // The wallet files exist from here on. Everything below is infallible except
    // writing to stdout; if that fails and the mnemonic is neither shown nor
    // stored, the wallet could never be recovered, so it is removed again.
    let info = dir.info();

    let stored = info.mnemonic.is_some();
    let mut human = format!(
        "Created wallet in {}\n  address id:     {}\n  direct address: {}\n  public key:     {}\n  path:           {}\n  mnemonic:       {}\n",
        data_dir.display(),
        info.address_id,
        info.direct_address,
        info.public_key,
        info.derivation_path,
        if stored {
            "stored, sealed under your password (Argon2id + AES-256-GCM)"
        } else {
            "not stored"
        },
    );
    let phrase = mnemonic.phrase();
    if generated {
        printer.warn(
            "this is your new mnemonic. It is shown once. Write it down and keep it offline: \
             anyone who has it controls the wallet, and without it the wallet cannot be recovered.",
        );
        human.push_str(&format!("\n  {}\n", phrase.as_str()));
    }
    let mut out = json!({
        "data_dir": path_json(data_dir),
        "address_id": info.address_id,
        "direct_address": info.direct_address,
        "public_key": info.public_key,
        "derivation_path": info.derivation_path,
        "device_id": info.device_id,
        "mnemonic_stored": stored,
        "generated": generated,
    });
    if generated {
        out["mnemonic"] = json!(phrase.as_str());
    }
    if let Err(e) = printer.result(&human, &out) {
        if generated && !stored {
            return Err(unshown_mnemonic(dir, &e));
        }
        return Err(e.into());
    }
    printer.hint(
        "next: `sphere-cli status` shows this wallet; set SPHERE_DATA_DIR to skip --data-dir",
    );
    Ok(())
}

/// A new mnemonic that is not stored could not be written out: removes the wallet
/// files just created (`wallet.json` first, the mark of a complete wallet) so no
/// wallet exists whose mnemonic nobody has, and says so. The cause is kept as text
/// only, so a broken pipe here is not mistaken for a reader that stopped early.
fn unshown_mnemonic(dir: DataDir, cause: &std::io::Error) -> anyhow::Error {
    let path = dir.path().to_path_buf();
    let removed = [WALLET_FILE, KEYS_FILE]
        .iter()
        .map(|f| match std::fs::remove_file(path.join(f)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", path.join(f).display())),
        })
        .collect::<Result<Vec<()>, String>>();
    drop(dir);
    match removed {
        Ok(_) => anyhow::anyhow!(
            "could not write the new mnemonic to standard output ({cause}); the wallet was \
             removed again, no wallet exists: run `sphere-cli init` again"
        ),
        Err(e) => anyhow::anyhow!(
            "could not write the new mnemonic to standard output ({cause}), and could not \
             remove the wallet files ({e}): delete {} and run `sphere-cli init` again; that \
             wallet's mnemonic is lost",
            path.display()
        ),
    }
}
