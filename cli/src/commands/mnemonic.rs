//! `sphere-cli mnemonic`: reveal the sealed mnemonic after checking the password.

use std::path::Path;

use serde_json::json;
use sphere_profile::datadir::{DataDir, DataDirError};

use crate::output::Printer;
use crate::prompt;

pub(crate) fn run(data_dir: &Path, printer: &Printer) -> anyhow::Result<()> {
    let info = DataDir::read_info(data_dir)?;
    let sealed = info
        .mnemonic
        .as_ref()
        .ok_or(DataDirError::NoStoredMnemonic)?;
    let mnemonic = sealed.open(&prompt::password(false)?)?;
    let phrase = mnemonic.phrase();
    printer.warn("anyone who sees these words controls the wallet");
    printer.result(
        &format!("{}\n", phrase.as_str()),
        &json!({ "mnemonic": phrase.as_str() }),
    )?;
    Ok(())
}
