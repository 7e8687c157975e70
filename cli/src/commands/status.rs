//! `sphere-cli status`: the wallet's identity and what the data dir holds.
//! Reads `wallet.json` only, so it works while another process holds the lock.

use std::path::Path;

use serde_json::json;
use sphere_profile::datadir::{DataDir, PROFILE_DB};

use crate::output::Printer;

pub(crate) fn run(data_dir: &Path, printer: &Printer) -> anyhow::Result<()> {
    let info = DataDir::read_info(data_dir)?;
    let db = data_dir.join(PROFILE_DB);
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).ok();
    let human = format!(
        "data dir:       {}\naddress id:     {}\ndirect address: {}\npublic key:     {}\npath:           {}\ndevice id:      {}\ncreated:        {} (unix seconds)\nmnemonic:       {}\nprofile db:     {}\n",
        data_dir.display(),
        info.address_id,
        info.direct_address,
        info.public_key,
        info.derivation_path,
        info.device_id,
        info.created_at,
        if info.mnemonic.is_some() {
            "stored (sealed)"
        } else {
            "not stored"
        },
        db_bytes.map_or_else(|| "not created yet".to_owned(), |b| format!("{b} bytes")),
    );
    printer.result(
        &human,
        &json!({
            "data_dir": data_dir,
            "address_id": info.address_id,
            "direct_address": info.direct_address,
            "public_key": info.public_key,
            "derivation_path": info.derivation_path,
            "device_id": info.device_id,
            "created_at": info.created_at,
            "mnemonic_stored": info.mnemonic.is_some(),
            "profile_db_bytes": db_bytes,
        }),
    )?;
    Ok(())
}
