//! The station home directory: sealed master key, factory root, station identity and
//! certificate. Everything secret here is sealed; the directory is created with mode 0700.

use crate::bundle::{
    BundleSigner, BundleSignerCertificate, Ed25519Signer, SignerError, TokenSigner, certify_bundle_signer,
    signer_certificate_trusted,
};
use crate::hsm::TokenError;
use crate::protocol::StationCredentials;
use crate::seal::{self, MasterKey, SealError, SealedMasterKey};
use keyfill_agent::identity::x25519_public_key as x25519_public;
use keyfill_agent::keystore::write_atomically;
use keyfill_formats::cert::{self, CertificateBody, StationCertificate};
use ring::signature::Ed25519KeyPair;
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
const BUNDLE_SIGNER_CONTEXT: &[u8] = b"keyfill bundle signer v1\0";
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
    #[error(
        "this station has no valid bundle-signing key, and its home does not hold the factory root's private key \
         (the root was imported): pass the factory root key (PKCS#8) to create and certify one"
    )]
    FactoryRootRequired,
    #[error("the factory root key given is not this station's factory root")]
    FactoryRootMismatch,
    #[error("the bundle-signer certificate is not signed by this home's factory root or does not match its key")]
    BundleSignerUntrusted,
    #[error("bundle-signing key: {source}")]
    BundleSigner { source: SignerError },
    #[error("cannot join with the shared master key")]
    Share(#[from] crate::fleet::ShareError),
    #[error(
        "this station has no valid signing key for its audit log, and its home does not hold the factory root's \
         private key (the root was imported): run `keyfill audit enrol --factory-root-key FILE` once, with the \
         factory root key (PKCS#8)"
    )]
    AuditKeyRequiresRoot,
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl From<SignerError> for HomeError {
    fn from(source: SignerError) -> Self {
        HomeError::BundleSigner { source }
    }
}

#[derive(Serialize, Deserialize)]
struct FactoryRootFile {
    version: u32,
    public_key: String,
    /// Absent when the root was imported (its private key stays in offline storage) or is in
    /// the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_pkcs8: Option<String>,
    /// The label of the root's key in the station's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_key: Option<String>,
}

const TOKEN_FILE: &str = "token.json";

/// The token of a station whose keys a PKCS#11 token holds; the home then has no sealed master
/// key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub version: u32,
    /// The PKCS#11 module's path.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The label of the master key (AES-256) in the token.
    pub master_key: String,
    /// The master key's check value, as recorded when it was made or moved there.
    pub master_key_check: String,
}

/// Where a new station's keys go.
#[derive(Debug)]
pub enum NewCustody<'a> {
    /// Files in the home: the master key sealed under `passphrase`; with `join`, the master
    /// key a station of the same factory root shared, and its transfer passphrase.
    Passphrase { passphrase: &'a str, join: Option<(&'a crate::fleet::MasterKeyShare, &'a str)> },
    /// A PKCS#11 token, logged in, generates and keeps the master key, the factory root (unless
    /// one is imported) and the signing key; `module` is where it was opened from.
    Token { token: std::sync::Arc<crate::hsm::Token>, module: &'a Path },
}

#[derive(Serialize, Deserialize)]
struct StationFile {
    version: u32,
    station_id: String,
    station_name: String,
    noise_public: String,
    sealed_noise_private: String,
    certificate: String,
    /// Absent in homes created before bundle signing: [`StationHome::bundle_signer`] adds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bundle_signer: Option<BundleSignerFile>,
    /// The label of the Noise static key in the station's token, when the token holds it
    /// (`sealed_noise_private` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    noise_token_key: Option<String>,
}

/// The station's bundle-signing key, sealed, and its certificate from the factory root.
#[derive(Serialize, Deserialize)]
struct BundleSignerFile {
    /// Hex of the `BundleSignerCertificate` encoding.
    certificate: String,
    /// Hex of the Ed25519 PKCS#8 document sealed under the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_pkcs8: Option<String>,
    /// The label of the key in the station's token, when the token holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_key: Option<String>,
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
    /// The home it was unlocked from, where failed unlocks wait to be audited.
    pub home: PathBuf,
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
        self.initialise_joining(passphrase, station_name, import_root_pkcs8, None)
    }

    /// [`StationHome::initialise`]; with `join` (a master key shared by a station of the same
    /// factory root, and its transfer passphrase), the new station uses that master key instead
    /// of a new one, so that it can share that station's inventory.
    pub fn initialise_joining(
        &self,
        passphrase: &str,
        station_name: &str,
        import_root_pkcs8: Option<&[u8]>,
        join: Option<(&crate::fleet::MasterKeyShare, &str)>,
    ) -> Result<StationInfo, HomeError> {
        self.initialise_with(NewCustody::Passphrase { passphrase, join }, station_name, import_root_pkcs8)
    }

    /// Creates the home with its keys where `custody` says: the master key, the factory root
    /// (new, or imported from a PKCS#8 document, which is then not kept), the station static key
    /// and its certificate signed by the root, and the signing key and its certificate.
    pub fn initialise_with(
        &self,
        custody: NewCustody<'_>,
        station_name: &str,
        import_root_pkcs8: Option<&[u8]>,
    ) -> Result<StationInfo, HomeError> {
        if self.is_initialised() {
            return Err(HomeError::AlreadyInitialised(self.root.clone()));
        }
        if let NewCustody::Passphrase { passphrase: "", .. } = custody {
            return Err(SealError::EmptyPassphrase.into());
        }
        let station_id = seal::random_array::<16>()?;
        let labels = TokenLabels::new(&station_id);

        // The root: imported (not kept), made in the token, or made here and sealed.
        let mut root_pkcs8 = None;
        let mut root_token_key = None;
        let root: Box<dyn Ed25519Signer> = match (import_root_pkcs8, &custody) {
            (Some(document), _) => Box::new(root_key_pair(document)?),
            (None, NewCustody::Token { token, .. }) => {
                let (key, public) = token.generate_ed25519(&labels.factory_root).map_err(token_failed)?;
                root_token_key = Some(labels.factory_root.clone());
                Box::new(TokenSigner { key, public })
            }
            (None, NewCustody::Passphrase { .. }) => {
                let document =
                    Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|_| SealError::Random)?;
                let document = zeroize::Zeroizing::new(document.as_ref().to_vec());
                let pair = root_key_pair(&document)?;
                root_pkcs8 = Some(document);
                Box::new(pair)
            }
        };
        let root_public = root.public_key().map_err(|_| HomeError::BadRootKey)?;
        let (master, sealed_master, token_file) = match &custody {
            NewCustody::Passphrase { passphrase, join } => {
                let master = match join {
                    Some((share, transfer_passphrase)) => share.open(transfer_passphrase, &root_public)?,
                    None => MasterKey::generate()?,
                };
                let sealed = master.seal_under_passphrase(passphrase)?;
                (master, Some(sealed), None)
            }
            NewCustody::Token { token, module } => {
                let key = token.generate_aes_key(&labels.master).map_err(token_failed)?;
                let check = MasterKey::token_check_value(&key)?;
                let file = TokenFile {
                    version: 1,
                    module: module.to_path_buf(),
                    token: token.label().to_owned(),
                    master_key: labels.master.clone(),
                    master_key_check: check.to_hex(),
                };
                (MasterKey::in_token(key, check), None, Some(file))
            }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(io_error(&self.root))?;

        // The Noise static key: made in the token when it holds the keys, else here and sealed.
        let (sealed_noise_private, noise_public, noise_token_key) = match &custody {
            NewCustody::Token { token, .. } => {
                let (_, public) = token.generate_x25519(&labels.noise_static).map_err(token_failed)?;
                (String::new(), public, Some(labels.noise_static.clone()))
            }
            NewCustody::Passphrase { .. } => {
                let static_private = seal::random_key()?;
                let sealed = hex::encode(master.seal(STATION_STATIC_CONTEXT, static_private.expose())?);
                (sealed, x25519_public(&static_private), None)
            }
        };
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
        let signature = root.sign(&CertificateBody::signing_input(&tbs)).map_err(|_| HomeError::BadRootKey)?;
        let certificate = StationCertificate { body, tbs, signature };
        let (bundle_signer, _) =
            issue_bundle_signer(root.as_ref(), station_id, &certificate.body.station_name, &master, now)?;

        let root_file = FactoryRootFile {
            version: 1,
            public_key: hex::encode(root_public),
            sealed_pkcs8: match &root_pkcs8 {
                Some(document) => Some(hex::encode(master.seal(ROOT_SIGNING_CONTEXT, document)?)),
                None => None,
            },
            token_key: root_token_key,
        };
        let station_file = StationFile {
            version: 1,
            station_id: hex::encode(station_id),
            station_name: certificate.body.station_name.clone(),
            noise_public: hex::encode(noise_public),
            sealed_noise_private,
            certificate: hex::encode(certificate.encode()),
            bundle_signer: Some(bundle_signer),
            noise_token_key,
        };
        if let Some(sealed) = &sealed_master {
            self.write(MASTER_KEY_FILE, to_json(sealed)?.as_bytes())?;
        }
        if let Some(file) = &token_file {
            self.write(TOKEN_FILE, to_json(file)?.as_bytes())?;
        }
        self.write(FACTORY_ROOT_FILE, to_json(&root_file)?.as_bytes())?;
        self.write(FACTORY_ROOT_PUBLIC_FILE, format!("{}\n", hex::encode(root_public)).as_bytes())?;
        // Written last: its presence marks the home as initialised.
        self.write(STATION_FILE, to_json(&station_file)?.as_bytes())?;
        self.info()
    }

    /// Moves this station's master key into `token` (opened from `module`, logged in) as a key
    /// that never leaves it, then forgets the copy sealed under the passphrase: the station is
    /// unlocked with the token's PIN from then on. Every sealed secret stays as it is: the token
    /// opens them alike, which is checked on the station's own sealed key before anything is
    /// written. The factory root and signing key stay sealed under the master key.
    pub fn move_master_into_token(
        &self,
        passphrase: &str,
        token: &std::sync::Arc<crate::hsm::Token>,
        module: &Path,
    ) -> Result<TokenFile, HomeError> {
        if self.token_file()?.is_some() {
            return Err(SealError::InToken.into());
        }
        let unlocked = self.unlock(passphrase)?;
        let labels = TokenLabels::new(&unlocked.info.station_id);
        let moved = unlocked.master_key.move_into_token(token, &labels.master)?;
        let station: StationFile = self.read_json(STATION_FILE)?;
        let sealed = hex::decode(&station.sealed_noise_private).map_err(|_| HomeError::Malformed {
            path: self.root.join(STATION_FILE),
            reason: "sealed key is not hex".into(),
        })?;
        let opened = moved.open_key(STATION_STATIC_CONTEXT, &sealed)?;
        if x25519_public(&opened) != unlocked.info.certificate.body.noise_static {
            return Err(HomeError::CertificateUntrusted);
        }
        let file = TokenFile {
            version: 1,
            module: module.to_path_buf(),
            token: token.label().to_owned(),
            master_key: labels.master,
            master_key_check: moved.check_value().to_hex(),
        };
        self.write(TOKEN_FILE, to_json(&file)?.as_bytes())?;
        // Last: until the token file is written the passphrase still unlocks the station.
        let sealed_master = self.root.join(MASTER_KEY_FILE);
        std::fs::remove_file(&sealed_master).map_err(io_error(&sealed_master))?;
        Ok(file)
    }

    /// Removes the master key sealed under the shared passphrase, once the custody file holds
    /// it sealed under the unlock secret: the passphrase unlocks nothing from then on.
    pub fn forget_passphrase_master(&self) -> Result<(), HomeError> {
        let path = self.root.join(MASTER_KEY_FILE);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(error)),
            _ => Ok(()),
        }
    }

    /// Removes the custody file (an enabling undone before it took effect).
    pub fn forget_custody_file(&self) -> Result<(), HomeError> {
        let path = self.root.join(crate::custody::unlock::CUSTODY_FILE);
        std::fs::remove_file(&path).map_err(io_error(&path))
    }

    /// Whether the station has named operators (its home holds a custody file).
    pub fn has_named_operators(&self) -> bool {
        self.root.join(crate::custody::unlock::CUSTODY_FILE).exists()
    }

    /// The token holding this station's keys, if they are in one.
    pub fn token_file(&self) -> Result<Option<TokenFile>, HomeError> {
        if !self.root.join(TOKEN_FILE).exists() {
            return Ok(None);
        }
        self.read_json(TOKEN_FILE).map(Some)
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

    /// Unlocks the master key and the station credentials; checks the certificate. A wrong
    /// passphrase is noted for the audit log ([`crate::audit::pending`]), which records it
    /// at the next unlock.
    ///
    /// A station whose keys are in a token ([`StationHome::token_file`]) is unlocked with the
    /// token's user PIN instead: the token is opened and logged in, and its master key found.
    pub fn unlock(&self, passphrase: &str) -> Result<UnlockedStation, HomeError> {
        let master_key = match self.token_file()? {
            Some(file) => match open_token_master(&file, passphrase) {
                Ok(master_key) => master_key,
                Err(error) => {
                    if matches!(error, HomeError::Token(TokenError::PinIncorrect { .. } | TokenError::PinLocked { .. }))
                    {
                        crate::audit::pending::note_failed_unlock(&self.root, &error.to_string());
                    }
                    return Err(error);
                }
            },
            None => {
                let in_custody = crate::custody::CustodyFile::read(&self.root)
                    .map_err(|error| HomeError::Encode(error.to_string()))?
                    .and_then(|file| file.sealed_master);
                let sealed: SealedMasterKey = match in_custody {
                    Some(sealed) => sealed,
                    None => self.read_json(MASTER_KEY_FILE)?,
                };
                match MasterKey::unseal(&sealed, passphrase) {
                    Ok(master_key) => master_key,
                    Err(error) => {
                        crate::audit::pending::note_failed_unlock(&self.root, &error.to_string());
                        return Err(error.into());
                    }
                }
            }
        };
        let info = self.info()?;
        let station: StationFile = self.read_json(STATION_FILE)?;
        let (static_private, static_public, token_static) = match (&station.noise_token_key, master_key.token_key()) {
            (Some(label), Some(master)) => {
                let (key, public) = master.token().x25519_key(label)?;
                let stand_in = keyfill_formats::SecretKey::from_bytes(crate::protocol::token_dh::TOKEN_STATIC_STAND_IN);
                (stand_in, public, Some(crate::protocol::token_dh::TokenStatic { key, public }))
            }
            _ => {
                let sealed_private = hex::decode(&station.sealed_noise_private).map_err(|_| HomeError::Malformed {
                    path: self.root.join(STATION_FILE),
                    reason: "sealed key is not hex".into(),
                })?;
                let static_private = master_key.open_key(STATION_STATIC_CONTEXT, &sealed_private)?;
                let public = x25519_public(&static_private);
                (static_private, public, None)
            }
        };
        if !keyfill_formats::proof::certificate_signature_valid(&info.certificate, &info.factory_root)
            || static_public != info.certificate.body.noise_static
        {
            return Err(HomeError::CertificateUntrusted);
        }
        let now = unix_now();
        let body = &info.certificate.body;
        if now < body.not_before || now > body.not_after {
            return Err(HomeError::CertificateNotValid { not_before: body.not_before, not_after: body.not_after, now });
        }
        let credentials = StationCredentials { static_private, certificate: info.certificate.encode(), token_static };
        Ok(UnlockedStation { info, master_key, credentials, home: self.root.clone() })
    }
}

impl StationHome {
    /// The station's bundle-signing key, ready to sign. A home created before bundle signing has
    /// none, and a certificate expires: then a new key is created, certified by the factory root
    /// (the one sealed in this home, else `offline_root_pkcs8`) and saved in station.json.
    /// Without either root, [`HomeError::FactoryRootRequired`].
    pub fn bundle_signer(
        &self,
        unlocked: &UnlockedStation,
        offline_root_pkcs8: Option<&[u8]>,
    ) -> Result<BundleSigner, HomeError> {
        let mut station: StationFile = self.read_json(STATION_FILE)?;
        let now = unix_now();
        if let Some(stored) = &station.bundle_signer {
            let signer = self.open_bundle_signer(stored, unlocked)?;
            if signer.certificate().body.valid_at(now) {
                return Ok(signer);
            }
        }
        let root = self.factory_root_key_pair(unlocked, offline_root_pkcs8)?;
        let info = &unlocked.info;
        let (file, signer) =
            issue_bundle_signer(root.as_ref(), info.station_id, &info.station_name, &unlocked.master_key, now)?;
        station.bundle_signer = Some(file);
        self.write(STATION_FILE, to_json(&station)?.as_bytes())?;
        Ok(signer)
    }

    /// The key that signs this station's audit log: its signing key ([`StationHome::bundle_signer`],
    /// created and certified now if the home has none and holds the factory root).
    pub fn audit_key(&self, unlocked: &UnlockedStation) -> Result<crate::audit::AuditKey, HomeError> {
        match self.bundle_signer(unlocked, None) {
            Ok(signer) => Ok(crate::audit::AuditKey::new(std::sync::Arc::new(signer))),
            Err(HomeError::FactoryRootRequired) => Err(HomeError::AuditKeyRequiresRoot),
            Err(other) => Err(other),
        }
    }

    /// Who acts at this station: its id, `operator`, and its audit key ([`StationHome::audit_key`]).
    pub fn actor(&self, unlocked: &UnlockedStation, operator: &str) -> Result<crate::db::events::Actor, HomeError> {
        Ok(crate::db::events::Actor {
            station_id: hex::encode(unlocked.info.station_id),
            operator: operator.to_owned(),
            audit: self.audit_key(unlocked)?,
        })
    }

    /// The bundle-signer certificate, if the home has one; needs no passphrase.
    pub fn bundle_signer_certificate(&self) -> Result<Option<BundleSignerCertificate>, HomeError> {
        let station: StationFile = self.read_json(STATION_FILE)?;
        station.bundle_signer.map(|stored| self.decode_signer_certificate(&stored)).transpose()
    }

    fn decode_signer_certificate(&self, stored: &BundleSignerFile) -> Result<BundleSignerCertificate, HomeError> {
        let path = self.root.join(STATION_FILE);
        let malformed = |reason: String| HomeError::Malformed { path: path.clone(), reason };
        let bytes =
            hex::decode(&stored.certificate).map_err(|_| malformed("bundle signer certificate is not hex".into()))?;
        BundleSignerCertificate::decode(&bytes).map_err(|e| malformed(format!("bundle signer certificate: {e}")))
    }

    fn open_bundle_signer(
        &self,
        stored: &BundleSignerFile,
        unlocked: &UnlockedStation,
    ) -> Result<BundleSigner, HomeError> {
        let certificate = self.decode_signer_certificate(stored)?;
        if !signer_certificate_trusted(&certificate, &unlocked.info.factory_root)
            || certificate.body.station_id != unlocked.info.station_id
        {
            return Err(HomeError::BundleSignerUntrusted);
        }
        let mismatch = |e| match e {
            SignerError::KeyMismatch => HomeError::BundleSignerUntrusted,
            other => other.into(),
        };
        if let Some(label) = &stored.token_key {
            let token = unlocked.master_key.token_key().ok_or_else(|| HomeError::Malformed {
                path: self.root.join(STATION_FILE),
                reason: "the signing key is in a token, and the master key is not".into(),
            })?;
            let (key, public) = token.token().ed25519_key(label).map_err(token_failed)?;
            return BundleSigner::in_token(TokenSigner { key, public }, certificate).map_err(mismatch);
        }
        let sealed =
            hex::decode(stored.sealed_pkcs8.as_deref().unwrap_or_default()).map_err(|_| HomeError::Malformed {
                path: self.root.join(STATION_FILE),
                reason: "sealed bundle signer key is not hex".into(),
            })?;
        let pkcs8 = unlocked.master_key.open(BUNDLE_SIGNER_CONTEXT, &sealed)?;
        BundleSigner::new(&pkcs8, certificate).map_err(mismatch)
    }

    /// The factory root's key: `offline_pkcs8` if given, else the one sealed in this home or
    /// held by its token.
    fn factory_root_key_pair(
        &self,
        unlocked: &UnlockedStation,
        offline_pkcs8: Option<&[u8]>,
    ) -> Result<Box<dyn Ed25519Signer>, HomeError> {
        let root: Box<dyn Ed25519Signer> = match offline_pkcs8 {
            Some(document) => Box::new(root_key_pair(document)?),
            None => {
                let root: FactoryRootFile = self.read_json(FACTORY_ROOT_FILE)?;
                match (root.token_key, root.sealed_pkcs8, unlocked.master_key.token_key()) {
                    (Some(label), _, Some(master)) => {
                        let (key, public) = master.token().ed25519_key(&label).map_err(token_failed)?;
                        Box::new(TokenSigner { key, public })
                    }
                    (_, Some(sealed), _) => {
                        let sealed = hex::decode(sealed).map_err(|_| HomeError::Malformed {
                            path: self.root.join(FACTORY_ROOT_FILE),
                            reason: "sealed key is not hex".into(),
                        })?;
                        Box::new(root_key_pair(&unlocked.master_key.open(ROOT_SIGNING_CONTEXT, &sealed)?)?)
                    }
                    _ => return Err(HomeError::FactoryRootRequired),
                }
            }
        };
        if root.public_key().map_err(|_| HomeError::BadRootKey)? != unlocked.info.factory_root {
            return Err(HomeError::FactoryRootMismatch);
        }
        Ok(root)
    }
}

/// The labels of a station's keys in its token.
struct TokenLabels {
    master: String,
    factory_root: String,
    noise_static: String,
    station: String,
}

impl TokenLabels {
    fn new(station_id: &[u8; 16]) -> Self {
        let station = hex::encode(station_id);
        TokenLabels {
            master: format!("keyfill {station} master"),
            factory_root: format!("keyfill {station} factory root"),
            noise_static: format!("keyfill {station} noise static"),
            station,
        }
    }

    /// Signing keys are replaced when their certificate expires: each has its own label.
    fn signer(&self, not_before: u64) -> String {
        format!("keyfill {} signer {not_before}", self.station)
    }
}

fn token_failed(error: TokenError) -> HomeError {
    HomeError::Token(error)
}

fn root_key_pair(pkcs8: &[u8]) -> Result<Ed25519KeyPair, HomeError> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| HomeError::BadRootKey)
}

/// Opens the station's token with `pin` and finds its master key.
fn open_token_master(file: &TokenFile, pin: &str) -> Result<MasterKey, HomeError> {
    let token = crate::hsm::Token::open(&file.module, &file.token, pin)?;
    let key = token.aes_key(&file.master_key)?;
    let check = crate::seal::KeyCheckValue::from_hex(&file.master_key_check)
        .ok_or_else(|| HomeError::Encode("token.json: the master key's check value is not 32 hex digits".into()))?;
    Ok(MasterKey::in_token(key, check))
}

/// A new bundle-signing key certified by `root` for as long as a station certificate, sealed
/// for station.json.
fn issue_bundle_signer(
    root: &dyn Ed25519Signer,
    station_id: [u8; 16],
    station_name: &str,
    master: &MasterKey,
    now: u64,
) -> Result<(BundleSignerFile, BundleSigner), HomeError> {
    let not_after = now + CERTIFICATE_LIFETIME_SECS;
    if let Some(master) = master.token_key() {
        let label = TokenLabels::new(&station_id).signer(now);
        let (key, public) = master.token().generate_ed25519(&label).map_err(token_failed)?;
        let certificate =
            certify_bundle_signer(root, station_id, station_name, public, now.saturating_sub(3600), not_after)?;
        let file = BundleSignerFile {
            certificate: hex::encode(certificate.encode()),
            sealed_pkcs8: None,
            token_key: Some(label),
        };
        return Ok((file, BundleSigner::in_token(TokenSigner { key, public }, certificate)?));
    }
    let pkcs8 = BundleSigner::generate_pkcs8()?;
    let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
    let certificate =
        certify_bundle_signer(root, station_id, station_name, public, now.saturating_sub(3600), not_after)?;
    let file = BundleSignerFile {
        certificate: hex::encode(certificate.encode()),
        sealed_pkcs8: Some(hex::encode(master.seal(BUNDLE_SIGNER_CONTEXT, &pkcs8)?)),
        token_key: None,
    };
    Ok((file, BundleSigner::new(&pkcs8, certificate)?))
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
