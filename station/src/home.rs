//! The station home directory: sealed master key, factory root, station identity and
//! certificate. Everything secret here is sealed; the directory is created with mode 0700.

use crate::protocol::StationCredentials;
use crate::seal::{self, MasterKey, SealError, SealedMasterKey};
use keyfill_agent::identity::x25519_public_key as x25519_public;
use keyfill_agent::keystore::write_atomically;
use keyfill_formats::cert::{self, CertificateBody, StationCertificate};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

const MASTER_KEY_FILE: &str = "master-key.json";
const FACTORY_ROOT_FILE: &str = "factory-root.json";
/// The factory root public key, for device agents to pin.
pub const FACTORY_ROOT_PUBLIC_FILE: &str = "factory-root.pub";
const STATION_FILE: &str = "station.json";
const ROOT_SIGNING_CONTEXT: &[u8] = b"keyfill factory root v1\0";
const STATION_STATIC_CONTEXT: &[u8] = b"keyfill station static v1\0";
/// Certificates are valid for two years from issue.
pub const CERTIFICATE_LIFETIME_SECS: u64 = 2 * 365 * 24 * 3600;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HomeError {
    #[error("station home {0} is not initialised; run `keyfill init`")]
    NotInitialised(PathBuf),
    #[error("station home {0} is already initialised")]
    AlreadyInitialised(PathBuf),
    #[error("I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the factory root key is not a valid Ed25519 PKCS#8 document")]
    BadRootKey,
    #[error("the station certificate is not valid now (valid {not_before}..={not_after}, now {now})")]
    CertificateNotValid { not_before: u64, not_after: u64, now: u64 },
    #[error("cannot encode a home file: {0}")]
    Encode(String),
    #[error("the station certificate is not signed by this home's factory root")]
    CertificateUntrusted,
}

#[derive(Serialize, Deserialize)]
struct FactoryRootFile {
    version: u32,
    public_key: String,
    /// Absent when the root was imported: its private key stays in offline storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_pkcs8: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StationFile {
    version: u32,
    station_id: String,
    station_name: String,
    noise_public: String,
    sealed_noise_private: String,
    certificate: String,
}

/// Public facts about this station.
#[derive(Debug, Clone)]
pub struct StationInfo {
    pub station_id: [u8; 16],
    pub station_name: String,
    pub factory_root: [u8; 32],
    pub certificate: StationCertificate,
}

/// An unlocked station: its master key and credentials.
#[derive(Debug)]
pub struct UnlockedStation {
    pub info: StationInfo,
    pub master_key: MasterKey,
    pub credentials: StationCredentials,
}

#[derive(Debug, Clone)]
pub struct StationHome {
    root: PathBuf,
}

/// The default station home: the user's data directory for Keyfill.
pub fn default_home() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "keyfill", "keyfill").map(|dirs| dirs.data_dir().to_path_buf())
}

/// The default database: a SQLite file in the home.
pub fn default_db_url(home: &Path) -> String {
    format!("sqlite://{}", home.join("keyfill.db").display())
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io { path: path.to_path_buf(), source }
}

impl StationHome {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StationHome { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn is_initialised(&self) -> bool {
        self.root.join(STATION_FILE).exists()
    }

    pub fn factory_root_public_path(&self) -> PathBuf {
        self.root.join(FACTORY_ROOT_PUBLIC_FILE)
    }

    fn write(&self, name: &str, contents: &[u8]) -> Result<(), HomeError> {
        let path = self.root.join(name);
        write_atomically(&path, contents).map_err(io_error(&path))
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, HomeError> {
        let path = self.root.join(name);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HomeError::NotInitialised(self.root.clone()));
            }
            other => other.map_err(io_error(&path))?,
        };
        serde_json::from_str(&text).map_err(|e| HomeError::Malformed { path, reason: e.to_string() })
    }

    /// Creates the home: master key sealed under `passphrase`, factory root (new, or imported
    /// from a PKCS#8 document), station static key and a certificate signed by the root.
    pub fn initialise(
        &self,
        passphrase: &str,
        station_name: &str,
        import_root_pkcs8: Option<&[u8]>,
    ) -> Result<StationInfo, HomeError> {
        if self.is_initialised() {
            return Err(HomeError::AlreadyInitialised(self.root.clone()));
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(io_error(&self.root))?;
        let master = MasterKey::generate()?;
        let sealed_master = master.seal_under_passphrase(passphrase)?;

        let pkcs8 = match import_root_pkcs8 {
            Some(document) => zeroize::Zeroizing::new(document.to_vec()),
            None => {
                let document =
                    Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|_| SealError::Random)?;
                zeroize::Zeroizing::new(document.as_ref().to_vec())
            }
        };
        let root = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|_| HomeError::BadRootKey)?;
        let root_public: [u8; 32] = root.public_key().as_ref().try_into().map_err(|_| HomeError::BadRootKey)?;

        let static_private = seal::random_key()?;
        let noise_public = x25519_public(&static_private);
        let station_id = seal::random_array::<16>()?;
        let now = unix_now();
        let body = CertificateBody {
            station_id,
            station_name: truncate_to_bytes(station_name, cert::MAX_STATION_NAME).to_owned(),
            noise_static: noise_public,
            not_before: now.saturating_sub(3600),
            not_after: now + CERTIFICATE_LIFETIME_SECS,
            root_key_id: cert::root_key_id(&root_public),
        };
        let tbs = body.encode();
        let signature: [u8; 64] =
            root.sign(&CertificateBody::signing_input(&tbs)).as_ref().try_into().map_err(|_| HomeError::BadRootKey)?;
        let certificate = StationCertificate { body, tbs, signature };

        let root_file = FactoryRootFile {
            version: 1,
            public_key: hex::encode(root_public),
            sealed_pkcs8: match import_root_pkcs8 {
                Some(_) => None,
                None => Some(hex::encode(master.seal(ROOT_SIGNING_CONTEXT, &pkcs8)?)),
            },
        };
        let station_file = StationFile {
            version: 1,
            station_id: hex::encode(station_id),
            station_name: certificate.body.station_name.clone(),
            noise_public: hex::encode(noise_public),
            sealed_noise_private: hex::encode(master.seal(STATION_STATIC_CONTEXT, static_private.expose())?),
            certificate: hex::encode(certificate.encode()),
        };
        self.write(MASTER_KEY_FILE, to_json(&sealed_master)?.as_bytes())?;
        self.write(FACTORY_ROOT_FILE, to_json(&root_file)?.as_bytes())?;
        self.write(FACTORY_ROOT_PUBLIC_FILE, format!("{}\n", hex::encode(root_public)).as_bytes())?;
        // Written last: its presence marks the home as initialised.
        self.write(STATION_FILE, to_json(&station_file)?.as_bytes())?;
        self.info()
    }

    /// Public station facts; needs no passphrase.
    pub fn info(&self) -> Result<StationInfo, HomeError> {
        let station: StationFile = self.read_json(STATION_FILE)?;
        let root: FactoryRootFile = self.read_json(FACTORY_ROOT_FILE)?;
        let path = self.root.join(STATION_FILE);
        let malformed = |reason: &str| HomeError::Malformed { path: path.clone(), reason: reason.into() };
        let certificate_bytes = hex::decode(&station.certificate).map_err(|_| malformed("certificate is not hex"))?;
        let certificate = StationCertificate::decode(&certificate_bytes).map_err(|e| malformed(&e.to_string()))?;
        let factory_root: [u8; 32] = hex::decode(&root.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("factory root public key"))?;
        Ok(StationInfo {
            station_id: certificate.body.station_id,
            station_name: station.station_name,
            factory_root,
            certificate,
        })
    }

    /// Unlocks the master key and the station credentials; checks the certificate.
    pub fn unlock(&self, passphrase: &str) -> Result<UnlockedStation, HomeError> {
        let sealed: SealedMasterKey = self.read_json(MASTER_KEY_FILE)?;
        let master_key = MasterKey::unseal(&sealed, passphrase)?;
        let info = self.info()?;
        let station: StationFile = self.read_json(STATION_FILE)?;
        let sealed_private = hex::decode(&station.sealed_noise_private).map_err(|_| HomeError::Malformed {
            path: self.root.join(STATION_FILE),
            reason: "sealed key is not hex".into(),
        })?;
        let static_private = master_key.open_key(STATION_STATIC_CONTEXT, &sealed_private)?;
        if !keyfill_formats::proof::certificate_signature_valid(&info.certificate, &info.factory_root)
            || x25519_public(&static_private) != info.certificate.body.noise_static
        {
            return Err(HomeError::CertificateUntrusted);
        }
        let now = unix_now();
        let body = &info.certificate.body;
        if now < body.not_before || now > body.not_after {
            return Err(HomeError::CertificateNotValid { not_before: body.not_before, not_after: body.not_after, now });
        }
        let credentials = StationCredentials { static_private, certificate: info.certificate.encode() };
        Ok(UnlockedStation { info, master_key, credentials })
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_to_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn to_json<T: Serialize>(value: &T) -> Result<String, HomeError> {
    serde_json::to_string_pretty(value).map_err(|e| HomeError::Encode(e.to_string()))
}
