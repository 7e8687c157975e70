//! The wallet data dir: its layout, creation, and the one-process lock.
//!
//! ```text
//! <data dir>/            mode 0700 when `create` makes it (an existing dir keeps its mode)
//!   wallet.json          public identity and settings (format below)
//!   keys.json            mode 0600: the three working secrets (`keys::StoredKeys`)
//!   lock                 exclusive lock held by the one process using the dir; holds its pid
//!   profile.db           the Profile's SQLite database (OpLog, block cache, …)
//! ```
//!
//! The data dir never holds the BIP39 mnemonic in plaintext, nor the address
//! (spending) key. The mnemonic is kept only if the user gives a password, sealed
//! with AES-256-GCM under a key stretched from it by Argon2id (memory-hard; 64 MiB,
//! 3 passes, 1 lane by default), or not at all. Both files are written to a temporary
//! file, fsynced and renamed, then the directory is fsynced, so a crash leaves either
//! the old file or the new one. The exact JSON is in `docs/formats.md` § "Data dir".

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::cipher;
use crate::keys::{KeyError, Mnemonic, StoredKeys, WalletKeys};
use crate::secret::Secret32;

/// Public identity file name.
pub const WALLET_FILE: &str = "wallet.json";
/// Working-secrets file name.
pub const KEYS_FILE: &str = "keys.json";
/// Lock file name.
pub const LOCK_FILE: &str = "lock";
/// Lock file of the aggregator pointer: publishing needs one writer per wallet, but
/// not the Profile database, so it runs beside a sync node that holds [`LOCK_FILE`].
pub const POINTER_LOCK_FILE: &str = "pointer.lock";
/// The Profile database file name.
pub const PROFILE_DB: &str = "profile.db";
/// Version of `wallet.json` and `keys.json`.
pub const FORMAT_VERSION: u32 = 1;
/// Associated data binding a sealed mnemonic to its purpose.
const MNEMONIC_AAD: &[u8] = b"sphere-profile/mnemonic/v1";

/// Why a data dir could not be created, opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// `init` on a dir that already holds a wallet.
    #[error("a wallet already exists in {path}; refusing to overwrite it")]
    AlreadyInitialized {
        /// The data dir.
        path: PathBuf,
    },
    /// The dir holds no wallet.
    #[error("no wallet in {path}; run `sphere-cli init` first")]
    NotInitialized {
        /// The data dir.
        path: PathBuf,
    },
    /// Another process holds the data dir's lock.
    #[error("data dir {path} is in use by another process{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The data dir.
        path: PathBuf,
        /// The holder's pid, if it wrote one.
        pid: Option<u32>,
    },
    /// The password does not open the sealed mnemonic.
    #[error("wrong password")]
    WrongPassword,
    /// The wallet was created without storing its mnemonic.
    #[error("this wallet does not store its mnemonic (it was created with --no-store-mnemonic)")]
    NoStoredMnemonic,
    /// A file of the data dir is not in the expected format.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of an unknown format version; never guessed at.
    #[error("{path} has format version {found}, this build reads version {FORMAT_VERSION}")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// Key material in the data dir is invalid.
    #[error("invalid key material in the data dir: {0}")]
    Keys(#[from] KeyError),
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Argon2id cost parameters of a sealed mnemonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: above OWASP's Argon2id minimum, about half a second here.
    fn default() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// A mnemonic sealed under a password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedMnemonic {
    /// Always `argon2id`.
    pub kdf: String,
    /// Argon2id costs.
    #[serde(flatten)]
    pub params: KdfParams,
    /// 16-byte random salt, hex.
    pub salt: String,
    /// `IV ‖ ciphertext ‖ tag` of the phrase (see [`crate::cipher`]), hex; AAD
    /// `sphere-profile/mnemonic/v1`.
    pub sealed: String,
}

/// Largest Argon2id memory cost a `wallet.json` may ask for (1 GiB, 16× the default).
pub const MAX_KDF_M_COST_KIB: u32 = 1024 * 1024;
/// Most Argon2id passes a `wallet.json` may ask for (the default is 3).
pub const MAX_KDF_T_COST: u32 = 64;
/// Most Argon2id lanes a `wallet.json` may ask for (the default is 1).
pub const MAX_KDF_P_COST: u32 = 16;

fn stretch(password: &str, salt: &[u8], params: KdfParams) -> Result<Secret32, DataDirError> {
    // The costs come from a file: a damaged or hostile one must not make opening the
    // mnemonic take hours or allocate gigabytes.
    if params.m_cost_kib > MAX_KDF_M_COST_KIB
        || params.t_cost > MAX_KDF_T_COST
        || params.p_cost > MAX_KDF_P_COST
    {
        return Err(DataDirError::Corrupt {
            path: PathBuf::from(WALLET_FILE),
            reason: format!(
                "KDF costs {}/{}/{} (KiB/passes/lanes) exceed the limits \
                 {MAX_KDF_M_COST_KIB}/{MAX_KDF_T_COST}/{MAX_KDF_P_COST}",
                params.m_cost_kib, params.t_cost, params.p_cost
            ),
        });
    }
    let argon_params =
        argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32)).map_err(
            |e| DataDirError::Corrupt {
                path: PathBuf::from(WALLET_FILE),
                reason: format!("bad KDF parameters: {e}"),
            },
        )?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password.as_bytes(), salt, &mut out[..])
        .map_err(|e| DataDirError::Corrupt {
            path: PathBuf::from(WALLET_FILE),
            reason: format!("KDF failed: {e}"),
        })?;
    Ok(Secret32::new(*out))
}

impl SealedMnemonic {
    /// Seals `mnemonic` under `password`.
    pub fn seal(
        mnemonic: &Mnemonic,
        password: &str,
        params: KdfParams,
    ) -> Result<Self, DataDirError> {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let key = stretch(password, &salt, params)?;
        let mut iv = [0u8; cipher::IV_LEN];
        rand::fill(&mut iv);
        let sealed = cipher::encrypt_with_iv(&key, &iv, mnemonic.phrase().as_bytes(), MNEMONIC_AAD);
        Ok(Self {
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            sealed: hex::encode(sealed),
        })
    }

    /// Opens it with `password`.
    pub fn open(&self, password: &str) -> Result<Mnemonic, DataDirError> {
        let corrupt = |reason: &str| DataDirError::Corrupt {
            path: PathBuf::from(WALLET_FILE),
            reason: reason.into(),
        };
        if self.kdf != "argon2id" {
            return Err(corrupt("unknown mnemonic KDF"));
        }
        let salt = hex::decode(&self.salt).map_err(|_| corrupt("mnemonic salt is not hex"))?;
        let sealed =
            hex::decode(&self.sealed).map_err(|_| corrupt("sealed mnemonic is not hex"))?;
        let key = stretch(password, &salt, self.params)?;
        let phrase = Zeroizing::new(
            cipher::decrypt_with_aad(&key, &sealed, MNEMONIC_AAD)
                .map_err(|_| DataDirError::WrongPassword)?,
        );
        let phrase =
            std::str::from_utf8(&phrase).map_err(|_| corrupt("sealed mnemonic is not UTF-8"))?;
        Ok(Mnemonic::parse(phrase)?)
    }
}

/// `wallet.json`: the public side of a wallet, readable without any secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletInfo {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// Unix seconds when the data dir was created.
    pub created_at: u64,
    /// BIP32 path of the address key.
    pub derivation_path: String,
    /// Compressed address public key, hex.
    pub public_key: String,
    /// Sphere DIRECT address.
    pub direct_address: String,
    /// Sphere address id.
    pub address_id: String,
    /// Random id of this device (8 bytes, hex), fixed at creation.
    pub device_id: String,
    /// The sealed mnemonic, or `null` when it is not stored.
    pub mnemonic: Option<SealedMnemonic>,
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    format: u32,
    public_key: String,
    direct_address: String,
    profile_key: String,
    pointer_secret: String,
    oplog_root: String,
}

/// How `init` should treat the mnemonic.
pub enum MnemonicStorage<'a> {
    /// Seal it under this password.
    Sealed {
        /// The mnemonic.
        mnemonic: &'a Mnemonic,
        /// The password.
        password: &'a str,
        /// Argon2id costs.
        params: KdfParams,
    },
    /// Do not store it at all.
    NotStored,
}

/// An open, locked data dir.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    info: WalletInfo,
    _lock: File,
}

impl DataDir {
    /// Creates a wallet in `path` (created if missing). Refuses a dir that already
    /// holds one.
    pub fn create(
        path: &Path,
        keys: &WalletKeys,
        derivation_path: &str,
        mnemonic: MnemonicStorage<'_>,
    ) -> Result<Self, DataDirError> {
        if path.join(WALLET_FILE).exists() {
            return Err(DataDirError::AlreadyInitialized {
                path: path.to_path_buf(),
            });
        }
        create_private_dir(path)?;
        let lock = lock(path, LOCK_FILE)?;
        // Check again under the lock: another process may have won the race.
        if path.join(WALLET_FILE).exists() {
            return Err(DataDirError::AlreadyInitialized {
                path: path.to_path_buf(),
            });
        }
        let mut device = [0u8; 8];
        rand::fill(&mut device);
        let info = WalletInfo {
            format: FORMAT_VERSION,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            derivation_path: derivation_path.to_owned(),
            public_key: hex::encode(keys.public_key()),
            direct_address: keys.direct_address().to_owned(),
            address_id: keys.address_id(),
            device_id: hex::encode(device),
            mnemonic: match mnemonic {
                MnemonicStorage::Sealed {
                    mnemonic,
                    password,
                    params,
                } => Some(SealedMnemonic::seal(mnemonic, password, params)?),
                MnemonicStorage::NotStored => None,
            },
        };
        let stored = keys.stored();
        let keys_file = KeysFile {
            format: FORMAT_VERSION,
            public_key: hex::encode(stored.public_key),
            direct_address: stored.direct_address.clone(),
            profile_key: hex::encode(stored.profile_key.expose()),
            pointer_secret: hex::encode(stored.pointer_secret.expose()),
            oplog_root: hex::encode(stored.oplog_root.expose()),
        };
        let keys_json =
            Zeroizing::new(serde_json::to_vec_pretty(&keys_file).expect("plain strings serialize"));
        write_atomic(&path.join(KEYS_FILE), &keys_json)?;
        // wallet.json last: its presence marks a complete wallet.
        write_atomic(
            &path.join(WALLET_FILE),
            &serde_json::to_vec_pretty(&info).expect("plain data serializes"),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            info,
            _lock: lock,
        })
    }

    /// Opens and locks the wallet in `path`.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        Self::open_with_lock(path, LOCK_FILE)
    }

    /// Opens the wallet in `path` holding the lock file `lock_file` instead of the
    /// Profile's (e.g. [`POINTER_LOCK_FILE`]): for work that must be exclusive among
    /// its own kind but does not touch the Profile database.
    pub fn open_with_lock(path: &Path, lock_file: &str) -> Result<Self, DataDirError> {
        let info = Self::read_info(path)?;
        let lock = lock(path, lock_file)?;
        Ok(Self {
            path: path.to_path_buf(),
            info,
            _lock: lock,
        })
    }

    /// Reads `wallet.json` without taking the lock (for read-only status).
    pub fn read_info(path: &Path) -> Result<WalletInfo, DataDirError> {
        let file = path.join(WALLET_FILE);
        if !file.exists() {
            return Err(DataDirError::NotInitialized {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(&file).map_err(io_at(&file))?;
        let info: WalletInfo =
            serde_json::from_slice(&bytes).map_err(|e| DataDirError::Corrupt {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        if info.format != FORMAT_VERSION {
            return Err(DataDirError::UnknownFormat {
                path: file,
                found: info.format,
            });
        }
        Ok(info)
    }

    /// The wallet's keys, rebuilt from `keys.json`.
    pub fn keys(&self) -> Result<WalletKeys, DataDirError> {
        let file = self.path.join(KEYS_FILE);
        let bytes = Zeroizing::new(std::fs::read(&file).map_err(io_at(&file))?);
        let corrupt = |reason: &str| DataDirError::Corrupt {
            path: file.clone(),
            reason: reason.into(),
        };
        let k: KeysFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(&e.to_string()))?;
        if k.format != FORMAT_VERSION {
            return Err(DataDirError::UnknownFormat {
                path: file,
                found: k.format,
            });
        }
        let secret = |hex_str: &str, what: &str| -> Result<Secret32, DataDirError> {
            let mut b = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_str, &mut b[..])
                .map_err(|_| corrupt(&format!("{what} is not 32 hex bytes")))?;
            Ok(Secret32::new(*b))
        };
        let mut public_key = [0u8; 33];
        hex::decode_to_slice(&k.public_key, &mut public_key)
            .map_err(|_| corrupt("public_key is not 33 hex bytes"))?;
        let keys = WalletKeys::from_stored(StoredKeys {
            public_key,
            direct_address: k.direct_address.clone(),
            profile_key: secret(&k.profile_key, "profile_key")?,
            pointer_secret: secret(&k.pointer_secret, "pointer_secret")?,
            oplog_root: secret(&k.oplog_root, "oplog_root")?,
        })?;
        if hex::encode(keys.public_key()) != self.info.public_key {
            return Err(corrupt(
                "keys.json belongs to another wallet than wallet.json",
            ));
        }
        Ok(keys)
    }

    /// Opens the sealed mnemonic.
    pub fn reveal_mnemonic(&self, password: &str) -> Result<Mnemonic, DataDirError> {
        self.info
            .mnemonic
            .as_ref()
            .ok_or(DataDirError::NoStoredMnemonic)?
            .open(password)
    }

    /// The public wallet info.
    pub fn info(&self) -> &WalletInfo {
        &self.info
    }

    /// The dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the Profile database.
    pub fn profile_db(&self) -> PathBuf {
        self.path.join(PROFILE_DB)
    }
}

/// Creates `path` with mode 0700 if it does not exist (missing parents get the
/// default mode). An existing dir keeps the mode its owner gave it: the secrets in
/// it are in 0600 files either way.
fn create_private_dir(path: &Path) -> Result<(), DataDirError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        Ok(()) => {}
        // Another process made it first: then it is theirs, not ours to chmod.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
            return Ok(());
        }
        Err(e) => return Err(io_at(path)(e)),
    }
    #[cfg(unix)]
    {
        // The umask may have taken bits from the mode asked for; this sets exactly 0700.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(io_at(path))?;
    }
    Ok(())
}

/// Takes the exclusive lock file `name` of `dir` and records our pid in it; the
/// lock lasts as long as the returned file is open. Another holder gives
/// [`DataDirError::Locked`] with its pid. Also used for directories that are not
/// wallets (the embedded aggregator's).
pub fn lock(dir: &Path, name: &str) -> Result<File, DataDirError> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut s = String::new();
            let pid = file
                .read_to_string(&mut s)
                .ok()
                .and_then(|_| s.trim().parse().ok());
            return Err(DataDirError::Locked {
                path: dir.to_path_buf(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_at(&path)(e)),
    }
    file.set_len(0).map_err(io_at(&path))?;
    file.rewind().map_err(io_at(&path))?;
    write!(file, "{}", std::process::id()).map_err(io_at(&path))?;
    file.sync_data().map_err(io_at(&path))?;
    Ok(file)
}

/// Writes `bytes` to `path` atomically with mode 0600: temp file, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_at(path))?;
    }
    tmp.write_all(bytes).map_err(io_at(path))?;
    tmp.as_file().sync_all().map_err(io_at(path))?;
    tmp.persist(path).map_err(|e| io_at(path)(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        m_cost_kib: 256,
        t_cost: 1,
        p_cost: 1,
    };

    fn wallet() -> (Mnemonic, WalletKeys) {
        let m = Mnemonic::parse("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about").unwrap();
        let k = WalletKeys::from_mnemonic(&m, "", 0).unwrap();
        (m, k)
    }

    #[cfg(unix)]
    #[test]
    fn create_makes_a_new_dir_0700_and_keeps_an_existing_dirs_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let (_, keys) = wallet();

        let new = dir.path().join("a/new");
        drop(DataDir::create(&new, &keys, "m/44'/0'/0'/0/0", MnemonicStorage::NotStored).unwrap());
        assert_eq!(mode(&new), 0o700);

        let existing = dir.path().join("existing");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).unwrap();
        drop(
            DataDir::create(
                &existing,
                &keys,
                "m/44'/0'/0'/0/0",
                MnemonicStorage::NotStored,
            )
            .unwrap(),
        );
        assert_eq!(mode(&existing), 0o750, "an existing dir keeps its mode");
        assert_eq!(mode(&existing.join(KEYS_FILE)), 0o600);
    }

    #[test]
    fn create_open_reveal() {
        let dir = tempfile::tempdir().unwrap();
        let (m, keys) = wallet();
        let path = dir.path().join("w");
        let storage = MnemonicStorage::Sealed {
            mnemonic: &m,
            password: "pw",
            params: FAST,
        };
        drop(DataDir::create(&path, &keys, "m/44'/0'/0'/0/0", storage).unwrap());
        let d = DataDir::open(&path).unwrap();
        assert_eq!(d.info().address_id, keys.address_id());
        assert_eq!(d.keys().unwrap().oplog.signing_key, keys.oplog.signing_key);
        assert_eq!(d.reveal_mnemonic("pw").unwrap().phrase(), m.phrase());
        assert!(matches!(
            d.reveal_mnemonic("nope"),
            Err(DataDirError::WrongPassword)
        ));
        let keys_text = std::fs::read_to_string(path.join(KEYS_FILE)).unwrap();
        let wallet_text = std::fs::read_to_string(path.join(WALLET_FILE)).unwrap();
        assert!(!wallet_text.contains("abandon") && !keys_text.contains("abandon"));
    }

    #[test]
    fn refuses_overwrite_and_second_opener() {
        let dir = tempfile::tempdir().unwrap();
        let (_, keys) = wallet();
        let d = DataDir::create(dir.path(), &keys, "m", MnemonicStorage::NotStored).unwrap();
        assert!(matches!(
            DataDir::create(dir.path(), &keys, "m", MnemonicStorage::NotStored),
            Err(DataDirError::AlreadyInitialized { .. })
        ));
        match DataDir::open(dir.path()) {
            Err(DataDirError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(matches!(
            d.reveal_mnemonic("x"),
            Err(DataDirError::NoStoredMnemonic)
        ));
        drop(d);
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn kdf_costs_beyond_the_limits_are_refused_before_any_work() {
        let (m, _) = wallet();
        let sealed = SealedMnemonic::seal(&m, "pw", FAST).unwrap();
        for params in [
            KdfParams {
                t_cost: u32::MAX,
                ..FAST
            },
            KdfParams {
                m_cost_kib: MAX_KDF_M_COST_KIB + 1,
                ..FAST
            },
            KdfParams {
                p_cost: MAX_KDF_P_COST + 1,
                ..FAST
            },
        ] {
            let tampered = SealedMnemonic {
                params,
                ..sealed.clone()
            };
            assert!(
                matches!(tampered.open("pw"), Err(DataDirError::Corrupt { ref reason, .. }) if reason.contains("exceed the limits")),
                "{params:?}"
            );
        }
        assert_eq!(sealed.open("pw").unwrap().phrase(), m.phrase());
    }

    #[test]
    fn missing_wallet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            DataDir::open(dir.path()),
            Err(DataDirError::NotInitialized { .. })
        ));
    }
}
