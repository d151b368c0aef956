//! The C2 operator's X25519 key pair that bundles are encrypted to, and its files.
//!
//! The public key file is one line of 64 hex characters. The private key file is JSON, mode
//! 0600, written atomically: a random 32-byte file key sealed under the passphrase exactly as
//! the station's master key is ([`MasterKey::seal_under_passphrase`]: PBKDF2-HMAC-SHA256, 600 000
//! iterations, AES-256-GCM), and the X25519 private key sealed under the file key with
//! [`RECIPIENT_KEY_CONTEXT`] ‖ public key as associated data. Reusing the master-key sealing
//! keeps a single passphrase construction in the code base.

use super::hpke_suite;
use crate::seal::{self, MasterKey, SealError, SealedMasterKey};
use keyfill_agent::keystore::write_atomically;
use keyfill_formats::SecretKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;
use zeroize::Zeroizing;

/// Associated data of the sealed private key, followed by the 32-byte public key.
pub const RECIPIENT_KEY_CONTEXT: &[u8] = b"keyfill c2 recipient key v1\0";
const FILE_KIND: &str = "keyfill-c2-recipient-key";
/// Key files are small; anything larger is not one of ours and is not read in full.
const MAX_KEY_FILE_LEN: u64 = 16 * 1024;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} already exists; refusing to replace a key (bundles encrypted to it would become unreadable)")]
    AlreadyExists { path: PathBuf },
    #[error("{path} is not a valid key file: {reason}")]
    Malformed { path: PathBuf, reason: &'static str },
    #[error("not a public key: expected 64 hex characters")]
    BadPublicKey,
    #[error("wrong passphrase for {path}, or the file was altered")]
    WrongPassphrase { path: PathBuf },
    #[error("{path}: the sealed private key does not match the public key in the file")]
    KeyMismatch { path: PathBuf },
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The C2 operator's X25519 public key. `Debug` and `Display` show hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecipientPublicKey([u8; 32]);

impl RecipientPublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RecipientPublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for RecipientPublicKey {
    type Err = KeyFileError;

    /// 64 hex characters, surrounding whitespace ignored.
    fn from_str(text: &str) -> Result<Self, KeyFileError> {
        parse_hex_key(text).map(RecipientPublicKey)
    }
}

impl fmt::Display for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientPublicKey({})", self.to_hex())
    }
}

/// The C2 operator's X25519 private key. Wiped on drop; `Debug` shows only the public key.
pub struct RecipientPrivateKey {
    secret: SecretKey,
    public: RecipientPublicKey,
}

impl fmt::Debug for RecipientPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientPrivateKey(<redacted>, public {})", self.public.to_hex())
    }
}

impl RecipientPrivateKey {
    /// A fresh key: 32 bytes from the system random source (RFC 9180 GenerateKeyPair for X25519).
    pub fn generate() -> Result<Self, SealError> {
        Ok(Self::from_secret(seal::random_key()?))
    }

    pub fn from_secret(secret: SecretKey) -> Self {
        let public = RecipientPublicKey(hpke_suite::public_key(&secret));
        RecipientPrivateKey { secret, public }
    }

    pub fn public_key(&self) -> RecipientPublicKey {
        self.public
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }
}

#[derive(Serialize, Deserialize)]
struct RecipientKeyFile {
    version: u32,
    kind: String,
    public_key: String,
    /// The random file key, sealed under the passphrase.
    file_key: SealedMasterKey,
    /// The X25519 private key sealed under the file key (hex of nonce ‖ ciphertext ‖ tag).
    sealed_private_key: String,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.to_path_buf(), source }
}

fn private_key_aad(public: &RecipientPublicKey) -> Vec<u8> {
    [RECIPIENT_KEY_CONTEXT, public.as_bytes()].concat()
}

fn parse_hex_key(text: &str) -> Result<[u8; 32], KeyFileError> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(KeyFileError::BadPublicKey);
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|_| KeyFileError::BadPublicKey)?;
    Ok(key)
}

/// Reads at most [`MAX_KEY_FILE_LEN`] bytes of text.
fn read_small_text(path: &Path) -> Result<String, KeyFileError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_LEN + 1).read_to_string(&mut text).map_err(io_error(path))?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyFileError::Malformed { path: path.to_path_buf(), reason: "too large" });
    }
    Ok(text)
}

/// Where the public key goes by default: the private key path with `.pub` appended.
pub fn public_key_path(private_path: &Path) -> PathBuf {
    let mut name = private_path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Seals `key` under `passphrase` and writes the private key file (mode 0600, atomically) and
/// the public key file. Refuses to replace an existing private key file.
pub fn write_recipient_key_files(
    key: &RecipientPrivateKey,
    private_path: &Path,
    public_path: &Path,
    passphrase: &str,
) -> Result<(), KeyFileError> {
    if private_path.exists() {
        return Err(KeyFileError::AlreadyExists { path: private_path.to_path_buf() });
    }
    let file_key = MasterKey::generate()?;
    let file = RecipientKeyFile {
        version: 1,
        kind: FILE_KIND.into(),
        public_key: key.public.to_hex(),
        file_key: file_key.seal_under_passphrase(passphrase)?,
        sealed_private_key: hex::encode(file_key.seal(&private_key_aad(&key.public), key.secret.expose())?),
    };
    let json = serde_json::to_string_pretty(&file)
        .map_err(|_| KeyFileError::Malformed { path: private_path.to_path_buf(), reason: "cannot encode" })?;
    write_atomically(private_path, json.as_bytes()).map_err(io_error(private_path))?;
    write_atomically(public_path, format!("{}\n", key.public.to_hex()).as_bytes()).map_err(io_error(public_path))
}

/// Generates a recipient key pair and writes both files; returns the public key.
pub fn generate_recipient_key_files(
    private_path: &Path,
    public_path: &Path,
    passphrase: &str,
) -> Result<RecipientPublicKey, KeyFileError> {
    let key = RecipientPrivateKey::generate()?;
    write_recipient_key_files(&key, private_path, public_path, passphrase)?;
    Ok(key.public_key())
}

/// Reads a file holding one 32-byte key as 64 hex characters (and whitespace).
fn read_hex_key_file(path: &Path) -> Result<[u8; 32], KeyFileError> {
    parse_hex_key(&read_small_text(path)?)
        .map_err(|_| KeyFileError::Malformed { path: path.to_path_buf(), reason: "expected 64 hex characters" })
}

/// Reads a recipient public key file.
pub fn read_recipient_public_key(path: &Path) -> Result<RecipientPublicKey, KeyFileError> {
    read_hex_key_file(path).map(RecipientPublicKey)
}

/// Reads the factory root public key a station writes (`factory-root.pub`), for importers to pin.
pub fn read_factory_root_public(path: &Path) -> Result<[u8; 32], KeyFileError> {
    read_hex_key_file(path)
}

/// Opens a private key file with its passphrase.
pub fn load_recipient_private_key(path: &Path, passphrase: &str) -> Result<RecipientPrivateKey, KeyFileError> {
    let malformed = |reason| KeyFileError::Malformed { path: path.to_path_buf(), reason };
    let text = Zeroizing::new(read_small_text(path)?);
    let file: RecipientKeyFile = serde_json::from_str(&text).map_err(|_| malformed("not the expected JSON"))?;
    if file.version != 1 || file.kind != FILE_KIND {
        return Err(malformed("unsupported version or kind"));
    }
    let public = RecipientPublicKey(parse_hex_key(&file.public_key).map_err(|_| malformed("public key"))?);
    let sealed = hex::decode(&file.sealed_private_key).map_err(|_| malformed("sealed private key is not hex"))?;
    let file_key = MasterKey::unseal(&file.file_key, passphrase).map_err(|e| match e {
        SealError::WrongPassphrase => KeyFileError::WrongPassphrase { path: path.to_path_buf() },
        other => KeyFileError::Seal(other),
    })?;
    let secret = file_key.open_key(&private_key_aad(&public), &sealed).map_err(|e| match e {
        SealError::Unauthentic => malformed("the sealed private key failed authentication"),
        other => KeyFileError::Seal(other),
    })?;
    let key = RecipientPrivateKey::from_secret(secret);
    if key.public != public {
        return Err(KeyFileError::KeyMismatch { path: path.to_path_buf() });
    }
    Ok(key)
}
