//! An operator's smart card (or any PKCS#11 token with a PIN, through OpenSC for a PC/SC card):
//! a second factor besides the passphrase. The card generates an Ed25519 key that never leaves
//! it; the operator's record, signed by the station, names the card and the key's public half;
//! at each login the card signs a fresh challenge with its PIN entered, and the signature is
//! checked against the record.

use super::roles::OperatorName;
use crate::hsm::{Token, TokenError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;
use zeroize::Zeroizing;

const CHALLENGE_LABEL: &[u8] = b"keyfill operator card login v1\0";

/// The card an operator's record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardBinding {
    /// The token's label.
    pub token: String,
    /// The label of the Ed25519 key in it.
    pub key: String,
    /// Its public key, hex.
    pub public: String,
}

/// How to reach a card: the PKCS#11 module and the card's PIN.
pub struct CardAccess {
    pub module: PathBuf,
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for CardAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardAccess").field("module", &self.module).finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CardError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "the card {token:?} signed with a key that is not the one recorded for {name}: it is another card, or its key \
         was replaced; a security officer must add the operator again with their card"
    )]
    Mismatch { name: OperatorName, token: String },
    #[error("the system random source failed")]
    Random,
}

impl CardError {
    /// Whether the card refused its PIN (a failed login, counted as a wrong passphrase is).
    pub fn wrong_pin(&self) -> bool {
        matches!(self, CardError::Token(TokenError::PinIncorrect { .. } | TokenError::PinLocked { .. }))
    }
}

fn key_label(name: &OperatorName) -> String {
    format!("keyfill operator {name}")
}

/// Has the card labelled `token` generate the operator's key.
pub fn enrol(name: &OperatorName, token: &str, access: &CardAccess) -> Result<CardBinding, CardError> {
    let card = Token::open(&access.module, token, &access.pin)?;
    let label = key_label(name);
    let (_, public) = card.generate_ed25519(&label)?;
    Ok(CardBinding { token: token.to_owned(), key: label, public: hex::encode(public) })
}

/// Has the card sign a fresh challenge, and checks the signature against the binding.
pub fn prove(name: &OperatorName, binding: &CardBinding, access: &CardAccess) -> Result<(), CardError> {
    let card = Token::open(&access.module, &binding.token, &access.pin)?;
    let (key, _) = card.ed25519_key(&binding.key)?;
    let nonce = crate::seal::random_array::<32>().map_err(|_| CardError::Random)?;
    let mut challenge = CHALLENGE_LABEL.to_vec();
    challenge.extend_from_slice(name.as_str().as_bytes());
    challenge.push(0);
    challenge.extend_from_slice(&nonce);
    let signature = key.sign_ed25519(&challenge)?;
    let public: Option<[u8; 32]> = hex::decode(&binding.public).ok().and_then(|bytes| bytes.try_into().ok());
    match public {
        Some(public) if crate::bundle::signature_valid(&public, &challenge, &signature) => Ok(()),
        _ => Err(CardError::Mismatch { name: name.clone(), token: binding.token.clone() }),
    }
}
