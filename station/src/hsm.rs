//! Keys in a PKCS#11 token (an HSM, a smart card through OpenSC, SoftHSM2 in tests), through
//! `cryptoki`. The token generates the keys as non-extractable objects and uses them itself: the
//! master key seals and opens with AES-256-GCM inside the token, the signing keys sign with
//! EdDSA (Ed25519) inside it. What comes out is ciphertext, plaintext the caller asked for, and
//! signatures; never a key of the token's.
//!
//! A station names its objects by label (`keyfill <station id> master`, …), found again at each
//! unlock: object handles do not outlive a session.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use thiserror::Error;
use zeroize::Zeroizing;

/// DER of the Ed25519 curve's object identifier (RFC 8410), for `CKA_EC_PARAMS`.
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of X25519's object identifier (RFC 8410).
const X25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
/// AES-GCM's nonce and tag, as the software seal uses them ([`crate::seal`]).
pub const GCM_NONCE_LEN: usize = 12;
const GCM_TAG_BITS: u64 = 128;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error(
        "the PKCS#11 module {path} cannot be loaded ({reason}): check the path (SoftHSM2's is \
         /usr/lib/softhsm/libsofthsm2.so, OpenSC's /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so) and that its package \
         is installed"
    )]
    Module { path: PathBuf, reason: String },
    #[error(
        "no token labelled {label:?} in the PKCS#11 module {module} (tokens present: {present:?}): plug the token in, \
         or check its label"
    )]
    TokenNotFound { label: String, module: PathBuf, present: Vec<String> },
    #[error(
        "the token {label:?} refused the PIN: it is not the token's user PIN (a token locks itself after a few wrong PINs)"
    )]
    PinIncorrect { label: String },
    #[error(
        "the token {label:?} has locked its user PIN after too many wrong PINs: its security officer must unlock it"
    )]
    PinLocked { label: String },
    #[error(
        "the token {token:?} holds no {what} labelled {object:?}: this station home was set up with another token, or \
         the key was deleted from it"
    )]
    ObjectMissing { token: String, what: &'static str, object: String },
    #[error("the token {token:?} failed to {operation}: {reason}")]
    Operation { token: String, operation: &'static str, reason: String },
}

/// Each module is loaded and initialised once per process: PKCS#11 allows one `C_Initialize`.
fn module(path: &Path) -> Result<Pkcs11, TokenError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(loaded) = modules.get(path) {
        return Ok(loaded.clone());
    }
    let failed = |error: Error| TokenError::Module { path: path.to_path_buf(), reason: error.to_string() };
    let pkcs11 = Pkcs11::new(path).map_err(failed)?;
    // Without OS locking a module may turn its own locks off; sessions are used from several
    // threads.
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => return Err(failed(error)),
    }
    modules.insert(path.to_path_buf(), pkcs11.clone());
    Ok(pkcs11)
}

/// Idle sessions kept for reuse; more are opened while more calls are under way at once.
const MAX_IDLE_SESSIONS: usize = 8;

/// One token, logged in: its sessions, each used by one call at a time, so that the calls of
/// several sessions at once (a line's lanes) run side by side where the token can.
pub struct Token {
    label: String,
    pkcs11: Pkcs11,
    slot: cryptoki::slot::Slot,
    idle: Mutex<Vec<Session>>,
}

/// A session lent to one call, given back when dropped.
struct Lent<'a> {
    token: &'a Token,
    session: Option<Session>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        // Taken only by `drop`.
        self.session.as_ref().unwrap_or_else(|| unreachable!("a lent session is held until dropped"))
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut idle = self.token.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < MAX_IDLE_SESSIONS {
                idle.push(session);
            }
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("label", &self.label).finish_non_exhaustive()
    }
}

/// What a decryption by the token found.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The ciphertext, its associated data or its tag was altered, or another key sealed it.
    #[error("sealed data failed authentication")]
    Unauthentic,
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl Token {
    /// Opens the token labelled `label` in the module at `module_path` and logs in with `pin`.
    pub fn open(module_path: &Path, label: &str, pin: &str) -> Result<Arc<Token>, TokenError> {
        let pkcs11 = module(module_path)?;
        let failed = |operation: &'static str| {
            move |error: Error| TokenError::Operation { token: label.to_owned(), operation, reason: error.to_string() }
        };
        let mut present = Vec::new();
        let mut found = None;
        for slot in pkcs11.get_slots_with_initialized_token().map_err(failed("list its slots"))? {
            let info = pkcs11.get_token_info(slot).map_err(failed("describe a slot's token"))?;
            if info.label() == label {
                if info.user_pin_locked() {
                    return Err(TokenError::PinLocked { label: label.to_owned() });
                }
                found = Some(slot);
                break;
            }
            present.push(info.label().to_owned());
        }
        let Some(slot) = found else {
            return Err(TokenError::TokenNotFound {
                label: label.to_owned(),
                module: module_path.to_path_buf(),
                present,
            });
        };
        let session = pkcs11.open_rw_session(slot).map_err(failed("open a session"))?;
        let mut login = session.login(UserType::User, Some(&AuthPin::from(pin)));
        if let Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) = login {
            // Login is per token and process: a session this process still has open is logged
            // in. Every unlock proves the PIN all the same: log out and in again.
            let _ = session.logout();
            login = session.login(UserType::User, Some(&AuthPin::from(pin)));
        }
        match login {
            Ok(()) => {}
            Err(Error::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _)) => {
                return Err(TokenError::PinIncorrect { label: label.to_owned() });
            }
            Err(Error::Pkcs11(RvError::PinLocked, _)) => return Err(TokenError::PinLocked { label: label.to_owned() }),
            Err(error) => return Err(failed("log in")(error)),
        }
        Ok(Arc::new(Token { label: label.to_owned(), pkcs11, slot, idle: Mutex::new(vec![session]) }))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Changes the token's user PIN (C_SetPIN in a logged-in session).
    pub fn set_pin(&self, old: &str, new: &str) -> Result<(), TokenError> {
        self.with_session("change its user PIN", |session| session.set_pin(&AuthPin::from(old), &AuthPin::from(new)))
    }

    /// An idle session, or a new one (logged in already: login is per token and process).
    fn session(&self) -> Result<Lent<'_>, TokenError> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let session = match idle {
            Some(session) => session,
            None => self.pkcs11.open_rw_session(self.slot).map_err(|error| self.failed("open a session", error))?,
        };
        Ok(Lent { token: self, session: Some(session) })
    }

    fn with_session<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Session) -> Result<T, Error>,
    ) -> Result<T, TokenError> {
        let session = self.session()?;
        work(&session).map_err(|error| self.failed(operation, error))
    }

    fn failed(&self, operation: &'static str, error: Error) -> TokenError {
        TokenError::Operation { token: self.label.clone(), operation, reason: error.to_string() }
    }

    fn private_template(label: &str) -> Vec<Attribute> {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    /// A new AES-256 key, generated in the token, that never leaves it.
    pub fn generate_aes_key(self: &Arc<Self>, label: &str) -> Result<TokenKey, TokenError> {
        let mut template = Self::private_template(label);
        template.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(true),
        ]);
        let handle = self.with_session("generate an AES key", |s| s.generate_key(&Mechanism::AesKeyGen, &template))?;
        Ok(TokenKey { token: self.clone(), handle, label: label.to_owned() })
    }

    /// An AES-256 key from outside made a token object that never leaves the token again: a
    /// station's master key moved into a token.
    pub fn import_aes_key(self: &Arc<Self>, label: &str, value: &[u8; 32]) -> Result<TokenKey, TokenError> {
        let mut template = Self::private_template(label);
        template.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(value.to_vec()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(true),
        ]);
        // The template's copy of the key is wiped once the token has it.
        let handle = self.with_session("import the master key", |s| s.create_object(&template));
        for attribute in &mut template {
            if let Attribute::Value(bytes) = attribute {
                zeroize::Zeroize::zeroize(bytes);
            }
        }
        Ok(TokenKey { token: self.clone(), handle: handle?, label: label.to_owned() })
    }

    /// A new Ed25519 key pair generated in the token; its private key never leaves it.
    pub fn generate_ed25519(self: &Arc<Self>, label: &str) -> Result<(TokenKey, [u8; 32]), TokenError> {
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcParams(ED25519_PARAMS.to_vec()),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let mut private_template = Self::private_template(label);
        private_template.push(Attribute::Sign(true));
        let (public, private) = self.with_session("generate an Ed25519 key", |s| {
            s.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public_template, &private_template)
        })?;
        let public_key = self.ed25519_public(public)?;
        Ok((TokenKey { token: self.clone(), handle: private, label: label.to_owned() }, public_key))
    }

    /// A new X25519 key pair generated in the token; its private key never leaves it and is
    /// used only to derive (`CKM_ECDH1_DERIVE`). The standard mechanism is tried first; SoftHSM2
    /// makes X25519 keys with its Edwards mechanism instead.
    pub fn generate_x25519(self: &Arc<Self>, label: &str) -> Result<(TokenKey, [u8; 32]), TokenError> {
        let public_template = |key_type| {
            vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::KeyType(key_type),
                Attribute::EcParams(X25519_PARAMS.to_vec()),
                Attribute::Derive(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ]
        };
        let mut private_template = Self::private_template(label);
        private_template.push(Attribute::Derive(true));
        let standard = self.with_session("generate an X25519 key", |s| {
            s.generate_key_pair(
                &Mechanism::EccMontgomeryKeyPairGen,
                &public_template(KeyType::EC_MONTGOMERY),
                &private_template,
            )
        });
        let (public, private) = match standard {
            Ok(pair) => pair,
            Err(_) => self.with_session("generate an X25519 key", |s| {
                s.generate_key_pair(
                    &Mechanism::EccEdwardsKeyPairGen,
                    &public_template(KeyType::EC_EDWARDS),
                    &private_template,
                )
            })?,
        };
        let public_key = self.ed25519_public(public)?;
        Ok((TokenKey { token: self.clone(), handle: private, label: label.to_owned() }, public_key))
    }

    /// The X25519 private key labelled `label`, and its public key.
    pub fn x25519_key(self: &Arc<Self>, label: &str) -> Result<(TokenKey, [u8; 32]), TokenError> {
        let private = self.find(ObjectClass::PRIVATE_KEY, "X25519 private key", label)?;
        let public = self.find(ObjectClass::PUBLIC_KEY, "X25519 public key", label)?;
        Ok((private, self.ed25519_public(public.handle)?))
    }

    /// The 32-byte public key of an EC key (Ed25519 or X25519).
    fn ed25519_public(&self, handle: ObjectHandle) -> Result<[u8; 32], TokenError> {
        let attributes =
            self.with_session("read a public key", |s| s.get_attributes(handle, &[AttributeType::EcPoint]))?;
        let point = attributes.into_iter().find_map(|attribute| match attribute {
            Attribute::EcPoint(point) => Some(point),
            _ => None,
        });
        // `CKA_EC_POINT` is the DER OCTET STRING of the key (04 20 ‖ 32 bytes); some modules
        // give the 32 bytes bare.
        let key = match point.as_deref() {
            Some([0x04, 0x20, key @ ..]) if key.len() == 32 => key,
            Some(key) if key.len() == 32 => key,
            _ => {
                return Err(TokenError::Operation {
                    token: self.label.clone(),
                    operation: "read an Ed25519 public key",
                    reason: "the key's EC point is not 32 bytes".into(),
                });
            }
        };
        Ok(key.try_into().unwrap_or([0; 32]))
    }

    fn find(self: &Arc<Self>, class: ObjectClass, what: &'static str, label: &str) -> Result<TokenKey, TokenError> {
        let template = [Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())];
        let found = self.with_session("look a key up", |s| s.find_objects(&template))?;
        match found.as_slice() {
            [handle] => Ok(TokenKey { token: self.clone(), handle: *handle, label: label.to_owned() }),
            [] => Err(TokenError::ObjectMissing { token: self.label.clone(), what, object: label.to_owned() }),
            _ => Err(TokenError::Operation {
                token: self.label.clone(),
                operation: "look a key up",
                reason: format!("{} objects are labelled {label:?}; one must be", found.len()),
            }),
        }
    }

    /// The AES key labelled `label`.
    pub fn aes_key(self: &Arc<Self>, label: &str) -> Result<TokenKey, TokenError> {
        self.find(ObjectClass::SECRET_KEY, "AES key", label)
    }

    /// The Ed25519 private key labelled `label`, and its public key.
    pub fn ed25519_key(self: &Arc<Self>, label: &str) -> Result<(TokenKey, [u8; 32]), TokenError> {
        let private = self.find(ObjectClass::PRIVATE_KEY, "Ed25519 private key", label)?;
        let public = self.find(ObjectClass::PUBLIC_KEY, "Ed25519 public key", label)?;
        Ok((private, self.ed25519_public(public.handle)?))
    }
}

/// A key held by a token: a handle, used through the token's session. `Debug` shows its label.
#[derive(Clone)]
pub struct TokenKey {
    token: Arc<Token>,
    handle: ObjectHandle,
    label: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({:?} in {:?})", self.label, self.token.label)
    }
}

/// What a token says of a key's custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Custody {
    pub sensitive: bool,
    pub extractable: bool,
    /// Generated in the token (not imported).
    pub local: bool,
}

impl TokenKey {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// `nonce ‖ ciphertext ‖ tag`, AES-256-GCM with `nonce` (the layout of [`crate::seal`]).
    pub fn seal(&self, nonce: &[u8; GCM_NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, TokenError> {
        let mut iv = *nonce;
        let sealed = self.token.with_session("seal with AES-GCM", |s| {
            let params = GcmParams::new(&mut iv, aad, GCM_TAG_BITS.into())?;
            s.encrypt(&Mechanism::AesGcm(params), self.handle, plaintext)
        })?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// Opens what [`TokenKey::seal`] (or the software seal under the same key) sealed.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let Some((nonce, ciphertext)) = sealed.split_at_checked(GCM_NONCE_LEN) else {
            return Err(OpenError::Unauthentic);
        };
        let mut iv: [u8; GCM_NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Unauthentic)?;
        let session = self.token.session()?;
        let opened = GcmParams::new(&mut iv, aad, GCM_TAG_BITS.into())
            .and_then(|params| session.decrypt(&Mechanism::AesGcm(params), self.handle, ciphertext));
        match opened {
            Ok(plaintext) => Ok(Zeroizing::new(plaintext)),
            // SoftHSM2 answers a wrong tag with CKR_GENERAL_ERROR; the standard says
            // CKR_ENCRYPTED_DATA_INVALID.
            Err(Error::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange | RvError::GeneralError,
                _,
            )) => Err(OpenError::Unauthentic),
            Err(error) => Err(self.token.failed("open with AES-GCM", error).into()),
        }
    }

    /// AES-CMAC (NIST SP 800-38B) of `data` under this key.
    pub fn cmac(&self, data: &[u8]) -> Result<[u8; 16], TokenError> {
        let mac = self.token.with_session("compute a CMAC", |s| s.sign(&Mechanism::AesCMac, self.handle, data))?;
        mac.as_slice().try_into().map_err(|_| TokenError::Operation {
            token: self.token.label.clone(),
            operation: "compute a CMAC",
            reason: format!("{} bytes, not 16", mac.len()),
        })
    }

    /// An Ed25519 signature (pure EdDSA, RFC 8032) of `message`.
    pub fn sign_ed25519(&self, message: &[u8]) -> Result<[u8; 64], TokenError> {
        let signature = self.token.with_session("sign with Ed25519", |s| {
            s.sign(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), self.handle, message)
        })?;
        signature.as_slice().try_into().map_err(|_| TokenError::Operation {
            token: self.token.label.clone(),
            operation: "sign with Ed25519",
            reason: format!("a signature of {} bytes", signature.len()),
        })
    }

    /// The X25519 shared secret of this private key and `peer` (RFC 7748), derived by the token
    /// into a session object that is read and destroyed at once.
    pub fn derive_x25519(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, TokenError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let session = self.token.session()?;
        let params = Ecdh1DeriveParams::new(EcKdf::null(), peer);
        let derived = session
            .derive_key(&Mechanism::Ecdh1Derive(params), self.handle, &template)
            .map_err(|error| self.token.failed("derive with X25519", error))?;
        let value = session.get_attributes(derived, &[AttributeType::Value]);
        let _ = session.destroy_object(derived);
        let mut secret = Zeroizing::new([0u8; 32]);
        match value {
            Ok(mut attributes) => match attributes.as_mut_slice() {
                [Attribute::Value(bytes)] if bytes.len() == 32 => {
                    secret.copy_from_slice(bytes);
                    zeroize::Zeroize::zeroize(bytes);
                    Ok(secret)
                }
                _ => Err(TokenError::Operation {
                    token: self.token.label.clone(),
                    operation: "derive with X25519",
                    reason: "the derived secret is not 32 bytes".into(),
                }),
            },
            Err(error) => Err(self.token.failed("read a derived secret", error)),
        }
    }

    /// What the token says of this key: whether it may ever leave the token.
    pub fn custody(&self) -> Result<Custody, TokenError> {
        let wanted = [AttributeType::Sensitive, AttributeType::Extractable, AttributeType::Local];
        let attributes =
            self.token.with_session("read a key's attributes", |s| s.get_attributes(self.handle, &wanted))?;
        let mut custody = Custody { sensitive: false, extractable: true, local: false };
        for attribute in attributes {
            match attribute {
                Attribute::Sensitive(value) => custody.sensitive = value,
                Attribute::Extractable(value) => custody.extractable = value,
                Attribute::Local(value) => custody.local = value,
                _ => {}
            }
        }
        Ok(custody)
    }

    /// Whether the token can still give back this key's value (it must not).
    pub fn value_readable(&self) -> bool {
        let Ok(session) = self.token.session() else { return false };
        matches!(
            session.get_attributes(self.handle, &[AttributeType::Value]).as_deref(),
            Ok([Attribute::Value(value)]) if !value.is_empty()
        )
    }
}
